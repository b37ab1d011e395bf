"""Relations to entities that are not in the catalog (yet).

Backstage keeps a relation whose target is missing and shows it as unresolved; so does
Lamplighter. An import stores such a relation here; when its target is created (by an import or
through the API) it becomes a real ``Relation``; when a target is deleted, the relations that
pointed at it come back here, so registering it again restores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity, Relation, UnresolvedRelation

Key = tuple[str, str, str]  # (kind, namespace, lowercase name)
CHUNK = 500


def store(session: Session, rows: Iterable[tuple[int, str, Key, str]]) -> None:
    """Keep relations (source id, type, target key, target name as written) as unresolved."""
    values = [
        {
            "source_id": source_id,
            "type": relation,
            "target_kind": key[0],
            "target_namespace": key[1],
            "target_key": key[2],
            "target_name": name[:63],
        }
        for source_id, relation, key, name in rows
    ]
    for start in range(0, len(values), CHUNK):
        session.execute(sa.insert(UnresolvedRelation), values[start : start + CHUNK])


def forget(session: Session, source_ids: Iterable[int]) -> None:
    ids = sorted(set(source_ids))
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        session.execute(sa.delete(UnresolvedRelation).where(UnresolvedRelation.source_id.in_(part)))


def resolve_arrivals(session: Session, arrivals: Mapping[Key, int]) -> int:
    """Turn the unresolved relations that name a newly created entity into relations."""
    keys = sorted(arrivals)
    resolved = 0
    target = sa.tuple_(
        UnresolvedRelation.target_kind,
        UnresolvedRelation.target_namespace,
        UnresolvedRelation.target_key,
    )
    for start in range(0, len(keys), CHUNK):
        part = keys[start : start + CHUNK]
        rows = session.execute(
            sa.select(
                UnresolvedRelation.source_id,
                UnresolvedRelation.type,
                UnresolvedRelation.target_kind,
                UnresolvedRelation.target_namespace,
                UnresolvedRelation.target_key,
            ).where(target.in_(part))
        ).tuples()
        edges = {
            (source_id, relation, arrivals[(kind, namespace, name)])
            for source_id, relation, kind, namespace, name in rows
        }
        if not edges:
            continue
        session.execute(
            sa.insert(Relation),
            [{"source_id": s, "type": t, "target_id": d} for s, t, d in sorted(edges)],
        )
        session.execute(sa.delete(UnresolvedRelation).where(target.in_(part)))
        resolved += len(edges)
    return resolved


def dangle_incoming(session: Session, target_ids: Iterable[int]) -> None:
    """Before entities are deleted: the relations pointing at them from entities that stay are
    kept as unresolved."""
    ids = sorted(set(target_ids))
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        rows = session.execute(
            sa.select(Relation.source_id, Relation.type, Entity.kind, Entity.namespace, Entity.name)
            .join(Entity, Entity.id == Relation.target_id)
            .where(Relation.target_id.in_(part), Relation.source_id.not_in(ids))
        ).tuples()
        store(
            session,
            [
                (source_id, relation, (kind, namespace, name.lower()), name)
                for source_id, relation, kind, namespace, name in rows
            ],
        )


def of(session: Session, entity_id: int) -> list[UnresolvedRelation]:
    """The entity's unresolved relations, by type and target."""
    return list(
        session.scalars(
            sa.select(UnresolvedRelation)
            .where(UnresolvedRelation.source_id == entity_id)
            .order_by(
                UnresolvedRelation.type,
                UnresolvedRelation.target_kind,
                UnresolvedRelation.target_key,
            )
        )
    )
