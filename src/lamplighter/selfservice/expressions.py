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

**Bounds.** An expression cannot make a value bigger than :data:`MAX_RESULT_CHARS` (text, or the
total size of a list or mapping) nor an integer longer than :data:`MAX_INT_BITS` bits: before
it happened, ``${{ 9**(9**7) }}`` in an output link held the API process 11 s on every read of
the run and ``'a' * 10**8`` made 100 MB. Arithmetic, repetition (``'a' * n``, ``[x] * n``),
concatenation, the width arguments of string methods and filters (``center``, ``indent`` …),
``replace``, ``join`` and format widths are checked before they are computed, every result
after; going over is an :class:`ExpressionError` naming where.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Mapping
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
MAX_RESULT_CHARS = 100_000  # the size of any value an expression makes (text, list, mapping)
MAX_INT_BITS = 1024  # about 308 decimal digits
# Digits of a width or precision in a format ("%0999999d", "{:>999999}").
_FORMAT_WIDTH_RE = re.compile(r"(\d+)")


class _Parameters(dict[str, Any]):
    """The run's parameters, named as such when one is missing."""


class _Steps(dict[str, Any]):
    """Earlier steps' outputs by step id."""


class _Body(dict[str, Any]):
    """A posted JSON body (an alert webhook's), named as such when a field is missing."""


# The names a self-service template's expressions read, and those of an alert webhook mapping.
RUN_NAMES = frozenset({"parameters", "steps", "run"})
BODY_NAMES = frozenset({"body"})


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
        if isinstance(owner, _Body):
            known = ", ".join(sorted(owner)) or "none"
            return f"the body has no field {name!r} (fields: {known})"
        if isinstance(owner, _StepOutput):
            known = ", ".join(sorted(owner)) or "none"
            return f"the output of step {owner.step_id!r} has no field {name!r} (fields: {known})"
        return str(super()._undefined_message)


class TooBig(Exception):
    """A value an expression would make is over the bounds; the message says which."""


def _size(value: Any, limit: int = MAX_RESULT_CHARS) -> int:
    """The size of a value as it would be stored (characters, counting nested items), counted
    only up to a little past ``limit`` so a huge shared structure costs nothing to measure."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return max(1, value.bit_length() // 3)
    if isinstance(value, Mapping):
        total = 0
        for key, item in value.items():
            total += 1 + _size(key, limit - total) + _size(item, limit - total)
            if total > limit:
                break
        return total
    if isinstance(value, (list, tuple)):
        total = 0
        for item in value:
            total += 1 + _size(item, limit - total)
            if total > limit:
                break
        return total
    return len(str(value)) if isinstance(value, float) else 1


def _check_size(value: Any, what: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise TooBig(f"{what} makes an integer over {MAX_INT_BITS} bits")
        return value
    if _size(value) > MAX_RESULT_CHARS:
        raise TooBig(f"{what} makes a value over {MAX_RESULT_CHARS:,} characters")
    return value


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (str, list, tuple))


def _check_count(count: Any, what: str) -> None:
    if isinstance(count, int) and not isinstance(count, bool) and count > MAX_RESULT_CHARS:
        raise TooBig(f"{what} with {count:,} (at most {MAX_RESULT_CHARS:,})")


def _check_format(template: Any, what: str) -> None:
    """Refuse a format whose widths would make a value over the bounds."""
    if isinstance(template, str):
        for digits in _FORMAT_WIDTH_RE.findall(template):
            too_wide = len(digits) > 6 or int(digits) > MAX_RESULT_CHARS
            if too_wide and ("%" in template or "{" in template):
                raise TooBig(f"{what}: a format width of {digits} characters is too wide")


def _before_binop(op: str, left: Any, right: Any) -> None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if op == "**" and numbers and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
            raise TooBig(f"{left} ** {right} makes an integer over {MAX_INT_BITS} bits")
    elif op == "*":
        integers = numbers and isinstance(left, int) and isinstance(right, int)
        if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise TooBig(f"the product makes an integer over {MAX_INT_BITS} bits")
        for sequence, count in ((left, right), (right, left)):
            repeated = _is_sequence(sequence) and isinstance(count, int) and count > 0
            if repeated and _size(sequence) * count > MAX_RESULT_CHARS:
                raise TooBig(
                    f"repeating a value {count:,} times makes it over "
                    f"{MAX_RESULT_CHARS:,} characters"
                )
    elif op == "+" and _is_sequence(left) and _is_sequence(right):
        if _size(left) + _size(right) > MAX_RESULT_CHARS:
            raise TooBig(f"joining the two makes a value over {MAX_RESULT_CHARS:,} characters")
    elif op == "%" and isinstance(left, str):
        _check_format(left, "%-formatting")


def _before_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Estimate what a string method or filter call would make, before it makes it."""
    name = getattr(func, "__name__", "")
    # The sandbox hands str.format over wrapped (functools.update_wrapper): look through it.
    owner = getattr(getattr(func, "__wrapped__", func), "__self__", None)
    for value in (*args, *kwargs.values()):
        _check_count(value, f"{name}() called")
    if isinstance(owner, str):
        subject: Any = owner
        rest = args
    else:
        subject = args[0] if args else None
        rest = args[1:]
    if not isinstance(subject, str):
        joined = name in ("join", "do_join") and isinstance(subject, (list, tuple)) and rest
        if joined and len(subject) * _size(rest[0]) > MAX_RESULT_CHARS:
            raise TooBig(f"join makes a value over {MAX_RESULT_CHARS:,} characters")
        return
    if name in ("replace", "do_replace") and len(rest) >= 2:
        old, new = str(rest[0]), str(rest[1])
        hits = subject.count(old) if old else len(subject) + 1
        if len(subject) + hits * len(new) > MAX_RESULT_CHARS:
            raise TooBig(f"replace makes a value over {MAX_RESULT_CHARS:,} characters")
    elif name == "join" and rest:
        items = rest[0]
        if isinstance(items, (list, tuple, str)) and len(items) * len(subject) > MAX_RESULT_CHARS:
            raise TooBig(f"join makes a value over {MAX_RESULT_CHARS:,} characters")
    elif name == "expandtabs":
        tabsize = rest[0] if rest else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int) and subject.count("\t") * tabsize > MAX_RESULT_CHARS:
            raise TooBig(f"expandtabs makes a value over {MAX_RESULT_CHARS:,} characters")
    elif name == "translate":
        raise TooBig("translate() is not available in expressions")
    elif name in ("format", "format_map", "do_format"):
        _check_format(subject, f"{name}()")
    elif name in ("do_indent", "do_wordwrap"):
        extra = max((_size(v) for v in (*rest, *kwargs.values())), default=1)
        lines = subject.count("\n") + 1 if name == "do_indent" else len(subject)
        if len(subject) + lines * max(extra, 1) > MAX_RESULT_CHARS:
            raise TooBig(f"{name[3:]} makes a value over {MAX_RESULT_CHARS:,} characters")


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that refuses what would go over the bounds, before and after it runs."""

    @functools.wraps(func)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        _before_call(func, args, kwargs)
        return _check_size(func(*args, **kwargs), f"the filter {func.__name__[3:]!r}")

    return filter_


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with every operator, call and filter kept inside the bounds."""

    intercepted_binops = frozenset(["**", "*", "+", "-", "/", "//", "%"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _before_binop(operator, left, right)
        return _check_size(_BINOPS[operator](left, right), f"the operator {operator!r}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _before_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_size(result, f"{getattr(__obj, '__name__', 'the call')}()")


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "**": operator.pow,
    "*": operator.mul,
    "+": operator.add,
    "-": operator.sub,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}

_ENV = _BoundedSandbox(undefined=_Missing, autoescape=False)
_ENV.filters = {name: _bounded(func) for name, func in _ENV.filters.items()}


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


def body_context(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a webhook mapping's expressions read: the posted JSON as ``body``."""
    return {"body": _Body(body)}


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


def _names_text(names: frozenset[str]) -> str:
    ordered = sorted(names, key=["parameters", "steps", "run", "body"].index)
    return ordered[0] if len(ordered) == 1 else ", ".join(ordered[:-1]) + " and " + ordered[-1]


def check_expression(
    expression: str, *, known_steps: set[str] | None = None, names: frozenset[str] = RUN_NAMES
) -> str | None:
    """Why an expression is refused, or None when it may be saved. ``names`` are what it may
    read: a template's parameters, steps and run (the default), or a webhook's body."""
    if not expression:
        return "an empty expression ${{ }}"
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"an expression longer than {MAX_EXPRESSION_CHARS} characters"
    if FORBIDDEN_RE.search(expression):
        return (
            f"${{{{ {expression} }}}} reaches for Python internals (names with '__' or 'mro'); "
            f"expressions may only read {_names_text(names)}"
        )
    try:
        tree = _ENV.parse("{{ " + expression + " }}")
    except jinja2.TemplateSyntaxError as exc:
        return f"${{{{ {expression} }}}} is not a valid expression: {exc.message}"
    for name in tree.find_all(nodes.Name):
        if name.name not in names | {"true", "false", "none"}:
            return (
                f"${{{{ {expression} }}}} uses {name.name!r}; expressions may only read "
                f"{_names_text(names)}"
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
    # What the context holds is what may be read: a run's names, or a webhook's body.
    problem = check_expression(expression, names=BODY_NAMES if "body" in context else RUN_NAMES)
    if problem is not None:
        raise ExpressionError(f"{where}: {problem}", errors=[FieldError(where, problem)])
    try:
        result = _ENV.compile_expression(expression, undefined_to_none=False)(**context)
        if isinstance(result, jinja2.Undefined):
            str(result)  # a StrictUndefined raises here, naming what was missing
        _check_defined(result)
        _check_size(_plain(result), "the expression")
    except SecurityError as exc:
        reason = f"{shown} was refused by the sandbox: {exc}"
        raise ExpressionError(f"{where}: {reason}", errors=[FieldError(where, reason)]) from None
    except TooBig as exc:
        reason = f"{shown} is over the bounds of an expression: {exc}"
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
        text = EXPRESSION_RE.sub(
            lambda m: _text(evaluate(m.group(1).strip(), context, where=where)), value
        )
        if len(text) > MAX_RESULT_CHARS:
            reason = f"the rendered text is over {MAX_RESULT_CHARS:,} characters"
            raise ExpressionError(f"{where}: {reason}", errors=[FieldError(where, reason)])
        return text
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
