"""A template's parameters JSON Schema as an HTML form, and the form's text back as typed values.

Each top-level property becomes one field: ``string`` a text input (``textarea`` when
``format: textarea`` or ``maxLength`` over 200), ``integer`` and ``number`` a number input with
``min``/``max``/``step``, ``boolean`` a checkbox, an ``enum`` a select, an array of strings a
textarea with one item per line (checkboxes when the items are an enum). A secret string
(``format: password`` or ``writeOnly: true``) is a password input, never filled in again when the
form comes back with errors. Anything else (objects, arrays of numbers) is a JSON textarea. The
inputs are named ``param.<name>`` so a parameter can never collide with the form's own fields
(``csrf_token``, ``requesting_team``, ``mode``).

Parsing only turns text into JSON values; the schema itself is checked by
:func:`lamplighter.selfservice.runs.start`, so the form, the API and the CLI agree on what is valid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

from lamplighter.core.errors import FieldError, LamplighterError, ValidationFailed

PREFIX = "param."
MAX_FIELD_CHARS = 100_000


@dataclass(frozen=True)
class ParamField:
    """One form field drawn from one property of the parameters schema."""

    name: str
    label: str
    help: str
    widget: str  # text password textarea number checkbox select checkboxes lines json
    required: bool
    default: str  # the default as the form shows it
    attributes: dict[str, str] = field(default_factory=dict)  # min, max, step, pattern, …
    choices: tuple[tuple[str, str], ...] = ()
    # A type-ahead picker's suggestion URL (text fields with ``format: entity-ref``,
    # ``team-slug`` or ``person``; ``x-kinds: [resource]`` limits the entities suggested).
    suggest: str = ""

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def dom_id(self) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.name)
        return f"f-p-{safe}"


@dataclass
class ParamForm:
    """What the user typed (as text, by parameter name) and what is wrong with it."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    requesting_team: str = ""
    team_error: str | None = None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _widget(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if "enum" in schema:
        return "select"
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind == "string" and is_secret(schema):
        return "password"
    if kind == "string":
        if schema.get("format") in PICKERS:
            return "text"
        long_text = schema.get("format") == "textarea" or int(schema.get("maxLength", 0)) > 200
        return "textarea" if long_text else "text"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping) and items.get("type") == "string":
            return "checkboxes" if "enum" in items else "lines"
    return "json"


def is_secret(schema: Mapping[str, Any]) -> bool:
    """Whether a parameter's schema marks it secret: ``format: password`` or ``writeOnly``."""
    return schema.get("format") == "password" or schema.get("writeOnly") is True


def fields_of(schema: Mapping[str, Any]) -> list[ParamField]:
    """The form's fields, in the schema's property order."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = set(schema.get("required") or [])
    result = []
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        widget = _widget(sub)
        attributes: dict[str, str] = {}
        for key, attribute in (("minimum", "min"), ("maximum", "max")):
            if isinstance(sub.get(key), (int, float)) and not isinstance(sub.get(key), bool):
                attributes[attribute] = str(sub[key])
        if widget == "number":
            attributes["step"] = "1" if sub.get("type") == "integer" else "any"
        if widget in ("text", "textarea", "password"):
            if isinstance(sub.get("maxLength"), int):
                attributes["maxlength"] = str(sub["maxLength"])
            if isinstance(sub.get("minLength"), int):
                attributes["minlength"] = str(sub["minLength"])
        if widget in ("text", "password") and isinstance(sub.get("pattern"), str):
            attributes["pattern"] = sub["pattern"]
        choices: tuple[tuple[str, str], ...] = ()
        if widget == "select":
            choices = tuple((_as_text(v), _as_text(v)) for v in sub.get("enum") or [])
        elif widget == "checkboxes":
            choices = tuple((str(v), str(v)) for v in sub["items"].get("enum") or [])
        suggest = _suggest_url(sub, PREFIX + str(name)) if widget == "text" else ""
        default = sub.get("default")
        if widget == "password":
            shown = ""  # a secret default stays on the server; left empty, the default applies
        elif widget in ("lines", "checkboxes") and isinstance(default, list):
            shown = "\n".join(str(item) for item in default)
        else:
            shown = _as_text(default)
        result.append(
            ParamField(
                name=str(name),
                label=str(sub.get("title") or str(name).replace("_", " ").capitalize()),
                help=str(sub.get("description") or ""),
                widget=widget,
                required=name in required,
                default=shown,
                attributes=attributes,
                choices=choices,
                suggest=suggest,
            )
        )
    return result


PICKERS = {
    "entity-ref": "/catalog/suggest",
    "team-slug": "/suggest/teams",
    "person": "/people/suggest",
}


def _suggest_url(schema: Mapping[str, Any], input_name: str) -> str:
    source = PICKERS.get(str(schema.get("format") or ""))
    if source is None:
        return ""
    query = {"field": input_name}
    kinds = schema.get("x-kinds")
    if source == PICKERS["entity-ref"] and isinstance(kinds, list) and kinds:
        query["kinds"] = ",".join(str(k) for k in kinds)
    return f"{source}?{urlencode(query)}"


def blank(fields: Sequence[ParamField], requesting_team: str = "") -> ParamForm:
    """The form as first shown: every field at its default."""
    return ParamForm({f.name: f.default for f in fields}, requesting_team=requesting_team)


def echo(fields: Sequence[ParamField], form: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """What the user sent, as the form shows it again (checkbox groups one choice per line)."""
    shown = {}
    for f in fields:
        sent = [str(v) for v in form.get(f.input_name, [])]
        if f.widget == "checkbox":
            shown[f.name] = "on" if any(sent) else ""
        elif f.widget == "checkboxes":
            shown[f.name] = "\n".join(sent)
        elif f.widget == "password":
            shown[f.name] = ""  # a secret is never written back into the page
        else:
            shown[f.name] = sent[0] if sent else ""
    return shown


def read(
    fields: Sequence[ParamField],
    schema: Mapping[str, Any],
    form: Mapping[str, Sequence[str]],
    validate_schema: Callable[[Mapping[str, Any], Any], Any] = lambda schema, values: values,
) -> dict[str, Any]:
    """The submitted form's text as typed parameters.

    ``form`` maps an input name to its list of values. An empty optional field is left out so
    the schema's default applies. Text that cannot be a number (or JSON) raises ValidationFailed
    naming ``parameters.<name>``."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    typed: dict[str, Any] = {}
    problems: list[FieldError] = []
    for f in fields:
        sent = [str(v) for v in form.get(f.input_name, [])]
        if sum(len(v) for v in sent) > MAX_FIELD_CHARS:
            problems.append(FieldError(f"parameters.{f.name}", "is too long"))
            continue
        text = sent[0] if sent else ""
        sub: Mapping[str, Any] = properties.get(f.name) or {}
        if f.widget == "checkbox":
            typed[f.name] = bool(text)
            continue
        if f.widget == "checkboxes":
            typed[f.name] = sent
            continue
        if f.widget == "lines":
            items = [line.strip() for line in text.splitlines() if line.strip()]
            if items or f.required:
                typed[f.name] = items
            continue
        if not text.strip():
            continue  # missing: the default applies, or the schema says it is required
        try:
            typed[f.name] = _typed(f, sub, text.strip())
        except ValueError as exc:
            problems.append(FieldError(f"parameters.{f.name}", str(exc)))
    if problems:
        # Every problem of the form at once: the fields that could be read are checked against
        # the schema too, so one submit names them all.
        try:
            validate_schema(schema, typed)
        except ValidationFailed as more:
            bad = {p.field for p in problems}
            problems += [e for e in more.errors if e.field not in bad]
        raise ValidationFailed("; ".join(p.reason for p in problems), errors=problems)
    return typed


def _typed(f: ParamField, sub: Mapping[str, Any], text: str) -> Any:
    if f.widget == "select":
        for value in sub.get("enum") or []:
            if _as_text(value) == text:
                return value
        raise ValueError("choose one of the listed values")
    if f.widget == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError("enter a number") from None
        if not math.isfinite(number):
            raise ValueError("enter a number")
        if sub.get("type") == "integer":
            if not number.is_integer():
                raise ValueError("enter a whole number")
            return int(number)
        return int(number) if number.is_integer() and "." not in text else number
    if f.widget == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError("enter a JSON value") from None
    return text


def failed(
    fields: Sequence[ParamField], shown: dict[str, str], team: str, exc: LamplighterError
) -> ParamForm:
    """Put each problem next to its field: ``parameters.<name>…`` goes to field ``<name>``."""
    names = {f.name for f in fields}
    errors: dict[str, str] = {}
    team_error: str | None = None
    leftovers: list[str] = []
    for error in exc.errors:
        parts = error.field.split(".")
        if len(parts) >= 2 and parts[0] == "parameters" and parts[1] in names:
            rest = ".".join(parts[2:])
            reason = f"{rest}: {error.reason}" if rest else error.reason
            errors.setdefault(parts[1], reason)
        elif error.field == "requesting_team":
            team_error = error.reason
        else:
            leftovers.append(f"{error.field}: {error.reason}")
    summary = "; ".join(leftovers) or (None if errors or team_error else exc.detail)
    return ParamForm(shown, errors, summary, team, team_error)
