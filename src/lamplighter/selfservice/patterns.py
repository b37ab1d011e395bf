"""JSON Schema ``pattern`` and ``patternProperties`` matched in linear time, with RE2.

Python's ``re`` backtracks: the parameter pattern ``^(a+)+$`` took 3 s on a 30-character
``aaa…!`` and held the API process for that long on every request. RE2 matches in time linear
in the input whatever the pattern, and refuses what it cannot do that way (backreferences,
lookaround), so a template whose pattern RE2 cannot compile is refused when it is saved
(:func:`pattern_problems`) rather than failing when someone runs it.

The parameters of a run are checked by :func:`validator_for`, a ``Draft202012Validator`` whose
``pattern`` and ``patternProperties`` keywords use RE2; everything else is jsonschema's own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, cast

import re2  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator, ValidationError, validators

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the author, not to stderr


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why."""


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; PatternError when RE2 cannot match it in linear time."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(reason) from None


def _search(pattern: str, text: str) -> bool:
    return compile_pattern(pattern).search(text) is not None


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = _search(pattern, instance)
    except PatternError as exc:
        yield ValidationError(f"the pattern {pattern!r} cannot be used: {exc}")
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any,
    pattern_properties: Mapping[str, Any],
    instance: Any,
    schema: Mapping[str, Any],
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            yield ValidationError(f"the pattern {pattern!r} cannot be used: {exc}")
            continue
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


LinearValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties},
)


def validator_for(schema: Mapping[str, Any]) -> Draft202012Validator:
    """A Draft 2020-12 validator of ``schema`` whose patterns match in linear time."""
    validator = LinearValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return cast(Draft202012Validator, validator)


def pattern_problems(schema: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """``(where, why)`` for every ``pattern`` or ``patternProperties`` key RE2 cannot compile,
    ``where`` a dotted path inside the schema (``properties.name.pattern``)."""
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            here = (*path, str(key))
            if key == "pattern" and isinstance(value, str):
                try:
                    compile_pattern(value)
                except PatternError as exc:
                    yield ".".join(here), _refusal(value, exc)
            elif key == "patternProperties" and isinstance(value, Mapping):
                for pattern, subschema in value.items():
                    try:
                        compile_pattern(str(pattern))
                    except PatternError as exc:
                        yield ".".join((*here, str(pattern))), _refusal(str(pattern), exc)
                    yield from pattern_problems(subschema, (*here, str(pattern)))
            elif key not in ("enum", "const", "default", "examples"):
                yield from pattern_problems(value, here)
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from pattern_problems(item, (*path, str(index)))


def _refusal(pattern: str, exc: PatternError) -> str:
    return (
        f"the pattern {pattern!r} cannot be matched in linear time ({exc}); patterns may not "
        "use backreferences or lookaround"
    )
