"""YAML for untrusted files: safe, bounded and fast.

PyYAML's loaders build documents recursively: a file of a hundred thousand ``[`` crashes the
C composer with a stack overflow, and a few aliases ("billion laughs") can stand for billions of
nodes that any consumer walking the document would expand. So documents are built here from
libyaml's event stream (an iterative state machine) with an explicit stack, and every document
is bounded: its nesting depth, its number of aliases, and its size with aliases expanded,
computed exactly as it is built, without ever expanding anything. It is also quicker than
``yaml.load_all(..., Loader=CSafeLoader)``, whose Python constructor dominates on large files.

Scalars resolve exactly as with PyYAML's safe loader (YAML 1.1: ``yes`` is true, ``2024-01-02``
a date); merge keys (``<<``) are supported; tags other than the standard ``!!str``, ``!!int``…
are refused, as the safe loader refuses them.
"""

from __future__ import annotations

from typing import Any

import yaml

# The C parser when PyYAML was built with libyaml; both are safe (no arbitrary objects).
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 100_000  # per document, aliases expanded
MAX_ALIASES = 50  # per document
MAX_DEPTH = 64  # nesting per document

STR = "tag:yaml.org,2002:str"
MERGE = "tag:yaml.org,2002:merge"
NO_KEY = object()


class YamlRefused(Exception):
    """A document (or the file) cannot be loaded; the message is user-facing."""

    def __init__(self, document: int, reason: str) -> None:
        super().__init__(reason)
        self.document = document
        self.reason = reason


def _describe(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML: {problem}{where}"


class _Frame:
    """An open mapping or sequence; ``size`` counts its nodes with aliases expanded."""

    __slots__ = ("anchor", "container", "is_map", "key", "merges", "size")

    def __init__(self, container: Any, anchor: str | None) -> None:
        self.container = container
        self.is_map = isinstance(container, dict)
        self.size = 1
        self.key: Any = NO_KEY
        self.merges: list[dict[Any, Any]] | None = None
        self.anchor = anchor


def _build(loader: Any, documents: list[Any]) -> None:
    """Append every document of the loader's stream to ``documents``; raise YamlRefused."""
    resolvers = loader.yaml_implicit_resolvers
    constructors = loader.yaml_constructors
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int | None]] = {}  # anchor → (value, expanded size)
    aliases = 0
    root: Any = None

    def refuse(reason: str) -> YamlRefused:
        return YamlRefused(len(documents), reason)

    def scalar(event: Any) -> Any:
        tag = event.tag
        value = event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value  # quoted: a string
            if not resolvers.get(value[0] if value else ""):
                return value  # no implicit type starts with this character
            tag = loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag == STR:
            return value
        if tag == MERGE:
            return MERGE
        constructor = constructors.get(tag)
        if constructor is None or not tag.startswith("tag:yaml.org,2002:"):
            raise refuse(f"the tag {tag!r} is not supported")
        return constructor(loader, yaml.ScalarNode(tag, value, style=event.style))

    def add(value: Any, size: int) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        frame.size += size
        if frame.size > MAX_NODES:
            raise refuse(f"expands to more than {MAX_NODES:,} nodes through aliases")
        if not frame.is_map:
            frame.container.append(value)
        elif frame.key is NO_KEY:
            if isinstance(value, (dict, list)):
                raise refuse("a mapping or a list cannot be a key")
            frame.key = value
        elif frame.key is MERGE:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(s, dict) for s in sources):
                raise refuse("a merge key (<<) needs a mapping or a list of mappings")
            frame.merges = (frame.merges or []) + sources
            frame.key = NO_KEY
        else:
            frame.container[frame.key] = value
            frame.key = NO_KEY

    def open_(container: Any, event: Any, standard: str) -> None:
        if event.tag is not None and event.tag not in ("!", standard):
            raise refuse(f"the tag {event.tag!r} is not supported")
        if len(stack) >= MAX_DEPTH:
            raise refuse(f"nested more than {MAX_DEPTH} levels deep")
        if event.anchor is not None:
            anchors[event.anchor] = (container, None)  # its size is known when it closes
        stack.append(_Frame(container, event.anchor))

    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    while True:
        event = loader.get_event()
        kind = type(event)
        if kind is scalar_event:
            value = scalar(event)
            if event.anchor is not None:
                anchors[event.anchor] = (value, 1)
            add(value, 1)
        elif kind is map_start:
            open_({}, event, "tag:yaml.org,2002:map")
        elif kind is seq_start:
            open_([], event, "tag:yaml.org,2002:seq")
        elif kind is map_end or kind is seq_end:
            frame = stack.pop()
            for source in frame.merges or ():
                for key, item in source.items():
                    frame.container.setdefault(key, item)
            if frame.anchor is not None:
                anchors[frame.anchor] = (frame.container, frame.size)
            add(frame.container, frame.size)
        elif kind is alias_event:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise refuse(f"uses more than {MAX_ALIASES} aliases")
            if event.anchor not in anchors:
                raise refuse(f"alias *{event.anchor} has no anchor")
            value, size = anchors[event.anchor]
            if size is None:
                raise refuse(f"alias *{event.anchor} refers to a node that contains it")
            add(value, size)
        elif kind is yaml.DocumentEndEvent:
            documents.append(root)
            root, aliases = None, 0
            anchors.clear()
        elif event is None or kind is yaml.StreamEndEvent:
            return


def load_all(text: str) -> tuple[list[Any], YamlRefused | None]:
    """Every document of ``text``, up to the first one refused (and why it was refused)."""
    loader = LOADER(text)
    documents: list[Any] = []
    try:
        _build(loader, documents)
    except YamlRefused as exc:
        return documents, exc
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        return documents, YamlRefused(len(documents), _describe(exc))
    finally:
        loader.dispose()
    return documents, None
