"""Route lookup by path prefix instead of a scan of every route.

FastAPI matches a request by trying every route of every included router in turn, and an included
router is matched twice (once to find it, once to pick its route): with ~140 routes that was 18 %
of an authenticated GET, and it grows with every domain. ``index_routes(app)`` builds, once all
routers are included, a tree of the routes' leading literal path segments; a request walks the
tree as far as its own segments go and tries only the routes found on the way, in their original
order, with FastAPI's own matchers. The answer is the linear scan's by construction: a route can
only match a path that starts with its literal segments. Anything the candidates do not answer
(a 404, a redirect to the other trailing-slash form, lifespan and websockets) goes to FastAPI's
own router unchanged. ``tests/core/test_routing.py`` checks both against each other.

    app.include_router(...)  # every router, in any order
    routing.index_routes(app)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi._body_limit import wrap_app_with_body_limit
from fastapi.routing import (
    _FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY,
    _FASTAPI_INCLUDED_ROUTER_KEY,
    APIRoute,
    APIRouter,
    _apply_router_form_limits,
    _EffectiveRouteContext,
    _get_fastapi_scope,
    _IncludedRouter,
    _update_scope,
)
from fastapi.telemetry._api import _route_selected
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Receive, Scope, Send

__all__ = ["RouteIndex", "index_routes", "leaves"]


@dataclass(eq=False)
class Leaf:
    """One route as the app would reach it: top level, or inside a chain of included routers."""

    order: int
    route: BaseRoute  # a top-level route, or the effective route inside `chain`
    context: _EffectiveRouteContext | None = None
    chain: tuple[_IncludedRouter, ...] = ()

    @property
    def template(self) -> str | None:
        """The full path template, or None when the path alone does not decide (a Host)."""
        source: Any = self.route
        if self.context is not None:
            source = self.context.starlette_route or self.context
        path = getattr(source, "path", None)
        if isinstance(source, (Route, Mount, _EffectiveRouteContext)) and isinstance(path, str):
            return path
        return None

    @property
    def target(self) -> BaseRoute:
        """The route object FastAPI puts in ``scope["route"]`` (or hands the request to)."""
        if self.context is None:
            return self.route
        return self.context.starlette_route or self.context.original_route

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        context = self.context
        if context is None:
            return self.route.matches(scope)
        match, child_scope = context.matches(scope)
        if match is not Match.NONE and isinstance(context.original_route, APIRoute):
            child_scope["route"] = context.original_route
        return match, child_scope


def _branch_leaves(branch: _IncludedRouter, chain: tuple[_IncludedRouter, ...]) -> Iterator[Leaf]:
    for candidate in branch.effective_candidates():
        if isinstance(candidate, _IncludedRouter):
            yield from _branch_leaves(candidate, (*chain, candidate))
        else:
            yield Leaf(order=0, route=candidate.original_route, context=candidate, chain=chain)


def leaves(router: APIRouter) -> list[Leaf]:
    """Every route of the router, included routers flattened, in the order FastAPI tries them."""
    found: list[Leaf] = []
    for route in router.routes:
        if isinstance(route, _IncludedRouter):
            found.extend(_branch_leaves(route, (route,)))
        else:
            found.append(Leaf(order=0, route=route))
    for order, leaf in enumerate(found):
        leaf.order = order
    return found


def _reachable_routers(
    router: APIRouter, found: dict[int, APIRouter] | None = None
) -> list[APIRouter]:
    """The router and every router included in it, at any depth, each once."""
    found = {} if found is None else found
    found[id(router)] = router
    for route in router.routes:
        if isinstance(route, _IncludedRouter) and id(route.original_router) not in found:
            _reachable_routers(route.original_router, found)
    return list(found.values())


def _literal_segments(template: str | None) -> list[str] | None:
    """The leading segments with no parameter in them; None when nothing can be assumed."""
    if template is None or not template.startswith("/"):
        return None
    segments = []
    for segment in template[1:].split("/"):
        if "{" in segment:
            break
        segments.append(segment)
    return segments


@dataclass(eq=False)
class _Node:
    leaves: list[Leaf] = field(default_factory=list)
    children: dict[str, _Node] = field(default_factory=dict)
    candidates: tuple[Leaf, ...] = ()  # this node's leaves and every ancestor's, in order


class RouteIndex:
    """The innermost ASGI app of the router: a prefix-tree lookup in front of FastAPI's scan."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.fallback = router.app
        self._built_for: tuple[list[BaseRoute], int] | None = None
        self._routers: tuple[APIRouter, ...] = ()
        self.root = _Node()

    def _version(self) -> int:
        """The routers' change counters, summed. FastAPI's ``_get_routes_version`` walks the
        included routers recursively (16 calls a request here, 8 % of the entity GET); the
        routers reachable at the last build are enough, since including a new router anywhere
        changes the counter of a router already reachable."""
        return sum(router._routes_version for router in self._routers)

    def _signature(self) -> tuple[list[BaseRoute], int]:
        return list(self.router.routes), self._version()

    def build(self) -> None:
        """(Re)build the tree from the router's routes as they are now."""
        root = _Node()
        for leaf in leaves(self.router):
            node = root
            for segment in _literal_segments(leaf.template) or ():
                node = node.children.setdefault(segment, _Node())
            node.leaves.append(leaf)

        def settle(node: _Node, inherited: tuple[Leaf, ...]) -> None:
            node.candidates = tuple(sorted((*inherited, *node.leaves), key=lambda x: x.order))
            for child in node.children.values():
                settle(child, node.candidates)

        settle(root, ())
        self.root = root
        self._routers = tuple(_reachable_routers(self.router))
        self._built_for = self._signature()

    def candidates(self, route_path: str) -> tuple[Leaf, ...]:
        """The routes that may match this path, in the order the linear scan tries them."""
        node = self.root
        if route_path.startswith("/"):
            children = node.children
            for segment in route_path[1:].split("/"):
                child = children.get(segment)
                if child is None:
                    break
                node = child
                children = child.children
        return node.candidates

    def resolve(self, scope: Scope) -> tuple[Match, Scope, Leaf | None]:
        """The route the scan would pick: the first full match, else the first partial one."""
        partial: tuple[Scope, Leaf] | None = None
        for leaf in self.candidates(get_route_path(scope)):
            match, child_scope = leaf.matches(scope)
            if match is Match.FULL:
                return match, child_scope, leaf
            if match is Match.PARTIAL and partial is None:
                partial = (child_scope, leaf)
        if partial is not None:
            return Match.PARTIAL, partial[0], partial[1]
        return Match.NONE, {}, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        built_for = self._built_for
        if (
            built_for is None
            or built_for[0] != self.router.routes
            or built_for[1] != self._version()
        ):
            self.build()  # routes added or reordered after start-up (tests do)
        _, child_scope, leaf = self.resolve(scope)
        if leaf is None:
            await self.fallback(scope, receive, send)  # 404, slash redirects, low-priority routes
            return
        router = self.router
        if "router" not in scope:
            scope["router"] = router
        _apply_router_form_limits(scope, router.form_limits)
        context = leaf.context
        if context is None:  # a route of the app itself
            route = leaf.route
            _update_scope(scope, child_scope)
            _route_selected(
                scope=scope,
                path=getattr(route, "path_format", None),
                mount=isinstance(route, Mount),
            )
            await route.handle(scope, receive, send)
            return
        # What FastAPI does on its way down the included routers to this route.
        for branch in leaf.chain:
            _apply_router_form_limits(scope, branch.include_context.form_limits)
        innermost = leaf.chain[-1]
        fastapi_scope = _get_fastapi_scope(scope)
        fastapi_scope[_FASTAPI_INCLUDED_ROUTER_KEY] = innermost
        _update_scope(scope, child_scope)
        target = leaf.target
        _route_selected(
            scope=scope,
            path=getattr(context.starlette_route, "path_format", None) or context.path_format,
            mount=isinstance(target, Mount),
        )
        fastapi_scope[_FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY] = context
        original = context.original_route
        if isinstance(original, APIRoute):
            scope["route"] = original
            await original.handle(scope, receive, send)
            return
        handle = wrap_app_with_body_limit(target.handle, innermost.include_context.max_body_size)
        await handle(scope, receive, send)


def index_routes(app: FastAPI) -> RouteIndex:
    """Route requests through a prefix index; call once, after every router is included."""
    router = app.router
    current = router.middleware_stack
    if isinstance(current, RouteIndex):
        current.build()
        return current
    bound: Any = current
    if getattr(bound, "__func__", None) is not APIRouter.app or bound.__self__ is not router:
        raise RuntimeError("index_routes needs a router without router-level middleware")
    index = RouteIndex(router)
    index.build()
    router.middleware_stack = index
    return index
