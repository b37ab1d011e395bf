"""Full-text search over names, titles, descriptions and tags.

SQLite uses the FTS5 table ``catalog_search_fts`` (kept in step with ``catalog_search`` by
triggers); PostgreSQL a stored ``search_vector`` column with a GIN index. Every word of the query
must match, as a prefix: ``pay api`` finds ``payments-api``.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity, SearchDocument
from lamplighter.catalog.service import ListFilters, apply_filters

WORD_RE = re.compile(r"[a-z0-9]+")
MAX_WORDS = 8


def words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())[:MAX_WORDS]


def search(
    *, session: Session, text: str, filters: ListFilters, offset: int = 0, limit: int = 50
) -> list[Entity]:
    """Entities matching every word, best match first (then by name)."""
    terms = words(text)
    if not terms:
        return []
    if session.get_bind().dialect.name == "postgresql":
        query_text = " & ".join(f"{term}:*" for term in terms)
        # A stored column (migration 0004), GIN-indexed: no to_tsvector per row at query time.
        vector: sa.ColumnElement[Any] = sa.literal_column("catalog_search.search_vector")
        # Inlined, not bound: psycopg prepares a statement it has run five times, and
        # PostgreSQL's generic plan for it cannot see how common the words are (a rare word's
        # plan then served a common one at three times the cost). The words are [a-z0-9]+ only.
        tsquery = sa.func.to_tsquery(
            sa.literal_column("'simple'"), sa.bindparam("q", query_text, literal_execute=True)
        )
        matches = (
            sa.select(SearchDocument.entity_id, sa.func.ts_rank(vector, tsquery).label("rank"))
            .where(vector.op("@@")(tsquery))
            .subquery()
        )
        order = [matches.c.rank.desc(), Entity.name_key, Entity.id]
    else:
        query_text = " ".join(f'"{term}"*' for term in terms)
        matches = (
            sa.select(
                sa.literal_column("rowid").label("entity_id"),
                sa.literal_column("bm25(catalog_search_fts)").label("rank"),
            )
            .select_from(sa.table("catalog_search_fts"))
            .where(sa.text("catalog_search_fts MATCH :query").bindparams(query=query_text))
            .subquery()
        )
        order = [matches.c.rank.asc(), Entity.name_key, Entity.id]
    query = sa.select(Entity).join(matches, matches.c.entity_id == Entity.id)
    query = apply_filters(query, filters).order_by(*order).offset(offset).limit(limit)
    return list(session.scalars(query))
