"""The ``${{ … }}`` expressions of templates: checked when a template is saved, evaluated when
a run renders a step's input, its condition or the template's output.

**Expressions** are written ``${{ … }}`` (as in GitHub Actions) so that plain ``{{ }}`` inside
an input (a copier or CI file rendered later) passes through untouched. Each expression is a
Jinja expression evaluated in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`jinja2.StrictUndefined` over ``parameters``, ``steps.<id>.output`` (earlier steps
only) and ``run`` (``id``, ``dry_run``, ``requester``: an email, ``team``: the requesting
team's slug). A value that is one whole expression keeps its type (a number stays a number, a
list a list); an expression inside other text is rendered as text.
A missing parameter or step output is an error naming the place and the expression; reaching
for Python internals (``__class__``, ``mro``, ``__globals__``, ``__subclasses__`` …) is refused
when the template is saved and again when it is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lamplighter.core.errors import FieldError, LamplighterError

EXPRESSION_RE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
WHOLE_RE = re.compile(r"^\s*\$\{\{(.*?)\}\}\s*$", re.DOTALL)
FORBIDDEN_RE = re.compile(r"__|\bmro\b|\bfunc_globals\b|\bgi_frame\b|\bf_globals\b")
MAX_EXPRESSION_CHARS = 2000


class _Parameters(dict[str, Any]):
    """The run's parameters, named as such when one is missing."""


class _Steps(dict[str, Any]):
    """Earlier steps' outputs by step id."""


class _StepOutput(dict[str, Any]):
    def __init__(self, step_id: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.step_id = step_id


class _Missing(jinja2.StrictUndefined):
    """StrictUndefined whose message speaks of parameters and steps, not of dict objects."""

    @property
    def _undefined_message(self) -> str:
        owner, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint:  # the sandbox's "access to attribute … is unsafe"
            return str(self._undefined_hint)
        if isinstance(owner, _Parameters):
            known = ", ".join(sorted(owner)) or "none"
            return f"there is no parameter {name!r} (parameters: {known})"
        if isinstance(owner, _Steps):
            return f"step {name!r} has no output: it is not an earlier step that succeeded"
        if isinstance(owner, _StepOutput):
            known = ", ".join(sorted(owner)) or "none"
            return f"the output of step {owner.step_id!r} has no field {name!r} (fields: {known})"
        return str(super()._undefined_message)


_ENV = ImmutableSandboxedEnvironment(undefined=_Missing, autoescape=False)


def expression_context(
    parameters: Mapping[str, Any], outputs: Mapping[str, Any], run: Mapping[str, Any]
) -> dict[str, Any]:
    """What expressions read: ``parameters``, ``steps.<id>.output`` and ``run``.

    ``outputs`` maps a step id to its output (a mapping, or :func:`placeholder_output`)."""
    steps = _Steps(
        {
            step_id: {
                "output": _StepOutput(step_id, output) if isinstance(output, Mapping) else output
            }
            for step_id, output in outputs.items()
        }
    )
    return {"parameters": _Parameters(parameters), "steps": steps, "run": dict(run)}


def _plain(value: Any) -> Any:
    """Expression results as JSON-ready values (no wrappers, tuples as lists)."""
    if isinstance(value, _Placeholder):
        return value.text
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class ExpressionError(LamplighterError):
    """An expression cannot be evaluated; the message names where and which expression."""

    status = 422
    slug = "expression-failed"
    title = "Expression failed"


def expressions_in(value: Any) -> Iterator[str]:
    """Every ``${{ … }}`` expression in a value (strings inside mappings and lists too)."""
    if isinstance(value, str):
        for match in EXPRESSION_RE.finditer(value):
            yield match.group(1).strip()
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from expressions_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions_in(item)


def _referenced_steps(tree: nodes.Node) -> set[str]:
    """Step ids an expression reads through ``steps.<id>`` or ``steps['<id>']``."""
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == "steps"):
            continue
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                found.add(arg.value)
    return found


def check_expression(expression: str, *, known_steps: set[str] | None = None) -> str | None:
    """Why an expression is refused, or None when it may be saved."""
    if not expression:
        return "an empty expression ${{ }}"
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"an expression longer than {MAX_EXPRESSION_CHARS} characters"
    if FORBIDDEN_RE.search(expression):
        return (
            f"${{{{ {expression} }}}} reaches for Python internals (names with '__' or 'mro'); "
            "expressions may only read parameters, steps and run"
        )
    try:
        tree = _ENV.parse("{{ " + expression + " }}")
    except jinja2.TemplateSyntaxError as exc:
        return f"${{{{ {expression} }}}} is not a valid expression: {exc.message}"
    for name in tree.find_all(nodes.Name):
        if name.name not in {"parameters", "steps", "run", "true", "false", "none"}:
            return (
                f"${{{{ {expression} }}}} uses {name.name!r}; expressions may only read "
                "parameters, steps and run"
            )
    if known_steps is not None:
        for step_id in sorted(_referenced_steps(tree)):
            if step_id not in known_steps:
                return (
                    f"${{{{ {expression} }}}} reads the output of step {step_id!r}, "
                    "which is not an earlier step"
                )
    return None


class _Placeholder:
    """Stands for the output of a step that has not run (dry runs): any field reads as text."""

    def __init__(self, step_id: str) -> None:
        self.text = f"<output of step {step_id}>"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.text

    def __getitem__(self, name: str) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def placeholder_output(step_id: str) -> Any:
    return _Placeholder(step_id)


def evaluate(expression: str, context: Mapping[str, Any], *, where: str) -> Any:
    """Evaluate one expression; raise ExpressionError naming ``where`` and the expression."""
    shown = f"${{{{ {expression} }}}}"
    problem = check_expression(expression)
    if problem is not None:
        raise ExpressionError(f"{where}: {problem}", errors=[FieldError(where, problem)])
    try:
        result = _ENV.compile_expression(expression, undefined_to_none=False)(**context)
        if isinstance(result, jinja2.Undefined):
            str(result)  # a StrictUndefined raises here, naming what was missing
        _check_defined(result)
    except SecurityError as exc:
        reason = f"{shown} was refused by the sandbox: {exc}"
        raise ExpressionError(f"{where}: {reason}", errors=[FieldError(where, reason)]) from None
    except jinja2.UndefinedError as exc:
        reason = f"{shown} is undefined: {exc}"
        raise ExpressionError(f"{where}: {reason}", errors=[FieldError(where, reason)]) from None
    except Exception as exc:  # arithmetic on text, a bad filter argument …
        reason = f"{shown} failed: {type(exc).__name__}: {exc}"
        raise ExpressionError(f"{where}: {reason}", errors=[FieldError(where, reason)]) from None
    return _plain(result)


def _check_defined(value: Any) -> None:
    if isinstance(value, jinja2.Undefined):
        str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_defined(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_defined(item)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(value: Any, context: Mapping[str, Any], *, where: str) -> Any:
    """Render every expression in ``value``; a string that is one whole expression keeps its type."""
    if isinstance(value, str):
        whole = WHOLE_RE.match(value)
        if whole and "${{" not in whole.group(1):
            return evaluate(whole.group(1).strip(), context, where=where)
        return EXPRESSION_RE.sub(
            lambda m: _text(evaluate(m.group(1).strip(), context, where=where)), value
        )
    if isinstance(value, Mapping):
        return {key: render(item, context, where=f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context, where=f"{where}.{i}") for i, item in enumerate(value)]
    return value


def condition(expression: Any, context: Mapping[str, Any], *, where: str) -> bool:
    """Evaluate a step's ``if``: an expression (with or without ``${{ }}``) or a boolean."""
    if isinstance(expression, bool):
        return expression
    text = str(expression)
    whole = WHOLE_RE.match(text)
    return bool(evaluate((whole.group(1) if whole else text).strip(), context, where=where))
