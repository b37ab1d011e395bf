"""The dependency graph of one entity as an inline SVG picture, drawn on the server.

Columns run left to right: what depends on the entity two hops away, one hop away, the entity
itself, what it depends on, and what those depend on; every arrow reads "depends on". A column
shows at most ``max_per_column`` nodes and says "+N more" for the rest, so the picture stays
legible however large the blast radius. Edges that close a cycle are drawn dashed in red (unless
the cycle runs through the entity itself: then its nodes appear on both sides, which says it
already), and the nodes on a cycle are outlined in red.

Drawing takes two steps so that a page loads only the entities it shows::

    picture = plan(root_id=root.id, dependencies=forward, dependents=backward)
    infos = {e.id: NodeInfo(...) for e in graph.entities(session, picture.ids)}
    svg = render(picture, infos, caption=f"Dependency graph of {root.ref}")

No JavaScript and no styles inline (the pages' Content-Security-Policy forbids them): colours are
presentation attributes, and app.css adds hover and focus rings.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import markupsafe

from lamplighter.catalog.graph import Traversal

Slot = tuple[int, int]  # (column, entity id); the root sits in column 0

NODE_W = 172
NODE_H = 42
COL_GAP = 52
ROW_GAP = 12
HEAD_H = 30
PAD = 6
BACK_EDGE_ROOM = 24
NAME_CHARS = 18
KIND_CHARS = 24
# Colours from app.css, repeated because CSS variables do not reach presentation attributes.
EDGE = "#6b7685"
CYCLE = "#b42318"
CYCLE_BG = "#fef3f2"
BORDER = "#b8c0cb"
TEXT = "#18202b"
MUTED = "#545e6c"
ROOT_BG = "#111c33"
ACCENT = "#f4b03e"


@dataclass(frozen=True)
class NodeInfo:
    """What a node shows: a short name, its kind (and type), where it links, and a tooltip."""

    name: str
    kind: str
    url: str
    tooltip: str


@dataclass
class Picture:
    """Which entities go where; ``edges`` and ``back_edges`` run from dependent to dependency."""

    root_id: int
    columns: dict[int, list[int]] = field(default_factory=dict)
    hidden: dict[int, int] = field(default_factory=dict)
    edges: list[tuple[Slot, Slot]] = field(default_factory=list)
    back_edges: list[tuple[Slot, Slot]] = field(default_factory=list)
    cycles: list[list[int]] = field(default_factory=list)

    @property
    def ids(self) -> set[int]:
        """Every entity the picture or its cycle list names."""
        return {i for ids in self.columns.values() for i in ids} | {
            i for cycle in self.cycles for i in cycle
        }

    @property
    def empty(self) -> bool:
        return not any(ids for column, ids in self.columns.items() if column != 0)


def _normalised(cycle: list[int], root_id: int) -> tuple[int, ...]:
    """One spelling per cycle: without the repeated end, starting at the root or the lowest id."""
    ring = cycle[:-1] or cycle
    start = ring.index(root_id) if root_id in ring else ring.index(min(ring))
    return tuple(ring[start:] + ring[:start])


def plan(
    *,
    root_id: int,
    dependencies: Traversal,
    dependents: Traversal,
    max_per_column: int = 8,
    expanded: Collection[int] = (),
    max_expanded: int = 60,
) -> Picture:
    """Choose the nodes to draw and the edges between them.

    A column (``1`` and up for dependencies, ``-1`` and down for dependents) shows at most
    ``max_per_column`` nodes, or ``max_expanded`` when it is in ``expanded`` (the "+N more" node
    was followed), so that the picture stays legible and its page fast at any depth.
    """
    picture = Picture(root_id=root_id, columns={0: [root_id]})
    seen_cycles: set[tuple[int, ...]] = set()
    for walk, sign in ((dependencies, 1), (dependents, -1)):
        level_of: dict[int, int] = {root_id: 0}
        cyclic = {i for cycle in walk.cycles for i in cycle}
        for level in range(1, walk.depth + 1):
            column = sign * level
            shown_before = set(picture.columns.get(sign * (level - 1), []))
            at_level = [r for r in walk.reached if r.depth == level]
            reachable = [r for r in at_level if level == 1 or r.via_id in shown_before]
            # Nodes on a cycle first, then by id, so that a page is stable.
            order = sorted(reachable, key=lambda r: (r.entity_id not in cyclic, r.entity_id))
            shown = order[: max_expanded if column in expanded else max_per_column]
            if shown:
                picture.columns[column] = [r.entity_id for r in shown]
            if len(at_level) > len(shown):
                picture.hidden[column] = len(at_level) - len(shown)
            for reached in shown:
                level_of[reached.entity_id] = level
                via = reached.via_id if level > 1 and reached.via_id is not None else root_id
                parent = (sign * (level - 1), via)
                here = (column, reached.entity_id)
                picture.edges.append((parent, here) if sign > 0 else (here, parent))
        for cycle in walk.cycles:
            # Forward, each node depends on the next; backward, on the previous one.
            reading = cycle if sign > 0 else cycle[::-1]
            key = _normalised(reading, root_id)
            if key not in seen_cycles:
                seen_cycles.add(key)
                picture.cycles.append([*key, key[0]])
            origin, target = cycle[-2], cycle[-1]  # the edge that closed the cycle
            # A cycle through the root shows already: its nodes sit on both sides of it.
            if root_id not in cycle and origin in level_of and target in level_of:
                a = (sign * level_of[origin], origin)
                b = (sign * level_of[target], target)
                picture.back_edges.append((a, b) if sign > 0 else (b, a))
    return picture


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ordered(picture: Picture, nodes: Mapping[int, NodeInfo]) -> dict[int, list[int]]:
    """Order each column by the row of its parent, then by name, so edges cross little."""
    ordered: dict[int, list[int]] = {0: [picture.root_id]}
    parent_of: dict[Slot, Slot] = {}
    for source, target in picture.edges:
        child, parent = (target, source) if target[0] > 0 else (source, target)
        parent_of[child] = parent
    for column in sorted((c for c in picture.columns if c != 0), key=abs):
        previous = ordered.get(column - (1 if column > 0 else -1), [])

        def key(
            entity_id: int, column: int = column, previous: list[int] = previous
        ) -> tuple[int, str, int]:
            parent = parent_of.get((column, entity_id), (0, picture.root_id))[1]
            row = previous.index(parent) if parent in previous else 0
            return (row, nodes[entity_id].name.lower(), entity_id)

        ordered[column] = sorted((i for i in picture.columns[column] if i in nodes), key=key)
    return ordered


def _back_edge(
    source: tuple[int, int], target: tuple[int, int], columns: int, index: int, height: int
) -> str:
    """A dashed red arrow closing a cycle: from a node back to one in the same column or left of it.

    Next door, it runs straight across the gap, under the edge the other way; from a node to
    itself, it loops round its bottom right corner; further, it goes round every node, along a
    lane under the columns.
    """
    (sx, sy), (tx, ty) = source, target
    y1, y2 = sy + NODE_H - 9, ty + NODE_H - 9
    if columns == 0:
        right, bottom = sx + NODE_W, sy + NODE_H
        path = f"M{right},{y1} H{right + 14} V{bottom + 8} H{right - 24} V{bottom + 2}"
    elif columns == 1:
        middle = (sx + tx + NODE_W) // 2
        path = f"M{sx},{y1} C{middle},{y1} {middle},{y2} {tx + NODE_W + 2},{y2}"
    else:
        gap1, gap2 = sx - COL_GAP // 3 + index * 4, tx + NODE_W + COL_GAP // 3 - index * 4
        lane = height - PAD - index * 6
        path = f"M{sx},{y1} H{gap1} V{lane} H{gap2} V{y2} H{tx + NODE_W + 2}"
    return (
        f'<path class="dep-edge dep-back-edge" d="{path}" fill="none" stroke="{CYCLE}"'
        ' stroke-width="1.5" stroke-dasharray="5 4" stroke-linejoin="round"'
        ' marker-end="url(#dep-arrow-cycle)"><title>depends on (closes a cycle)</title></path>'
    )


def _heading(column: int) -> str:
    hops = abs(column)
    side = "Used by" if column < 0 else "Depends on"
    return side if hops == 1 else f"{side} · {hops} hops"


def render(
    picture: Picture,
    nodes: Mapping[int, NodeInfo],
    *,
    caption: str,
    more_urls: Mapping[int, str] | None = None,
    css_class: str = "dep-graph",
) -> markupsafe.Markup:
    """The picture as an ``<svg>`` element whose nodes link to their entities; a column's
    "+N more" node links to ``more_urls[column]`` when given (the page showing all of it)."""
    esc = markupsafe.escape
    columns = _ordered(picture, nodes)
    used = sorted({*columns, *picture.hidden})
    x_of = {column: PAD + i * (NODE_W + COL_GAP) for i, column in enumerate(used)}
    rows = {c: len(columns.get(c, [])) + (1 if picture.hidden.get(c) else 0) for c in used}
    tallest = max(rows.values())
    body_h = tallest * (NODE_H + ROW_GAP) - ROW_GAP
    width = PAD * 2 + len(used) * NODE_W + (len(used) - 1) * COL_GAP
    far = any(abs(a[0] - b[0]) > 1 for a, b in picture.back_edges)
    height = HEAD_H + body_h + PAD * 2 + (BACK_EDGE_ROOM if far else 0)

    def top(column: int, row: int) -> int:
        offset = (body_h - (rows[column] * (NODE_H + ROW_GAP) - ROW_GAP)) // 2
        return HEAD_H + PAD + offset + row * (NODE_H + ROW_GAP)

    where: dict[Slot, tuple[int, int]] = {
        (column, entity_id): (x_of[column], top(column, row))
        for column, ids in columns.items()
        for row, entity_id in enumerate(ids)
    }
    on_cycle = {i for cycle in picture.cycles for i in cycle}
    out: list[str] = [
        f'<svg class="{esc(css_class)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="group" aria-label="{esc(caption)}">',
        "<defs>",
        *(
            f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
            f' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"'
            f' fill="{colour}"/></marker>'
            for name, colour in (("dep-arrow", EDGE), ("dep-arrow-cycle", CYCLE))
        ),
        "</defs>",
    ]
    for column in used:
        label = _heading(column) if column else ""
        if label:
            out.append(
                f'<text class="dep-heading" x="{x_of[column] + NODE_W // 2}" y="18"'
                f' text-anchor="middle" font-size="12" font-weight="700" fill="{MUTED}">'
                f"{esc(label.upper())}</text>"
            )
    for source, target in picture.edges:
        if source not in where or target not in where:
            continue
        (sx, sy), (tx, ty) = where[source], where[target]
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H // 2, tx - 2, ty + NODE_H // 2
        middle = (x1 + x2) // 2
        out.append(
            f'<path class="dep-edge" d="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"'
            f' fill="none" stroke="{EDGE}" stroke-width="1.5" marker-end="url(#dep-arrow)"/>'
        )
    for index, (source, target) in enumerate(picture.back_edges):
        if source in where and target in where:
            out.append(
                _back_edge(where[source], where[target], source[0] - target[0], index, height)
            )
    for (column, entity_id), (x, y) in where.items():
        info = nodes[entity_id]
        is_root = column == 0
        cyclic = entity_id in on_cycle
        fill = ROOT_BG if is_root else CYCLE_BG if cyclic else "#ffffff"
        stroke = CYCLE if cyclic else ACCENT if is_root else BORDER
        name_fill, kind_fill = ("#ffffff", "#e6e9ee") if is_root else (TEXT, MUTED)
        kind = ("↻ on a cycle · " if cyclic else "") + info.kind
        classes = "dep-node" + (" dep-root" if is_root else "") + (" dep-cycle" if cyclic else "")
        shape = (
            f"<title>{esc(info.tooltip)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}"'
            f' stroke="{stroke}" stroke-width="{2 if is_root or cyclic else 1}"/>'
            f'<text x="{x + 10}" y="{y + 17}" font-size="13" font-weight="700"'
            f' fill="{name_fill}">{esc(_cut(info.name, NAME_CHARS))}</text>'
            f'<text x="{x + 10}" y="{y + 33}" font-size="11" fill="{kind_fill}">'
            f"{esc(_cut(kind, KIND_CHARS))}</text>"
        )
        if is_root:
            out.append(f'<g class="{classes}" aria-current="page">{shape}</g>')
        else:
            out.append(f'<a class="{classes}" href="{esc(info.url)}">{shape}</a>')
    for column, count in picture.hidden.items():
        x, y = x_of[column], top(column, rows[column] - 1)
        more = (
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"'
            f' fill="#f9fafb" stroke="{BORDER}" stroke-dasharray="4 3"/>'
            f'<text x="{x + NODE_W // 2}" y="{y + 26}" text-anchor="middle" font-size="13"'
            f' fill="{MUTED}">+{count} more</text>'
        )
        url = (more_urls or {}).get(column)
        if url:
            title = f"Show all of {_heading(column).lower()}"
            out.append(
                f'<a class="dep-more dep-node" href="{esc(url)}"><title>{esc(title)}</title>'
                f"{more}</a>"
            )
        else:
            out.append(f'<g class="dep-more">{more}</g>')
    out.append("</svg>")
    # Safe: every piece of text and every attribute value above went through escape().
    return markupsafe.Markup("".join(out))  # noqa: S704
