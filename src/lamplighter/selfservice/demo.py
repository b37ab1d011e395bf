"""Self-service's part of the demo: the shipped golden paths, owned by the platform team."""

from __future__ import annotations

from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.selfservice import golden

ACTOR = Actor.system("demo loader")


def load(db: Database) -> bool:
    """Sync the golden paths; unchanged files change nothing. Whether any template changed."""
    with db.transaction() as session:
        result = golden.load_golden(session=session, actor=ACTOR, owner="platform")
    return bool(result.created or result.updated)
