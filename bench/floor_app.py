"""The floor for an authenticated GET: bare FastAPI + uvicorn + sqlite3 doing the work of
Lamplighter's catalog entity GET and nothing else — the bearer token looked up by its SHA-256
hash, the entity row (with its owner team and accountable person) and its relations read, JSON
out. `async def`, no ORM, no middleware, no validation of the output. `bench/http_get.py` runs it
beside Lamplighter, on a copy of the same SQLite file, to put a ratio on what the app costs.

    python bench/floor_app.py --db path/to/lamplighter.db --port 8001
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

TOKEN_SQL = (
    "SELECT t.expires_at, t.revoked_at, u.id, u.is_active FROM api_tokens t "
    "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?"
)
ENTITY_SQL = (
    "SELECT e.id, e.kind, e.namespace, e.name, e.title, e.description, e.type, e.lifecycle, "
    "e.tier, e.tags, e.labels, e.annotations, e.links, e.cost_centre, e.version, e.provenance, "
    "e.location, t.id, t.slug, t.name, u.id, u.email, u.display_name "
    "FROM catalog_entities e LEFT JOIN teams t ON t.id = e.owner_team_id "
    "LEFT JOIN users u ON u.id = e.accountable_user_id "
    "WHERE e.kind = ? AND e.namespace = ? AND e.name_key = ?"
)
RELATIONS_SQL = (
    "SELECT 0, r.type, e.kind, e.namespace, e.name, e.title FROM catalog_relations r "
    "JOIN catalog_entities e ON e.id = r.target_id WHERE r.source_id = ?1 UNION ALL "
    "SELECT 1, r.type, e.kind, e.namespace, e.name, e.title FROM catalog_relations r "
    "JOIN catalog_entities e ON e.id = r.source_id WHERE r.target_id = ?1"
)
UNAUTHORIZED = Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})


def create(db_path: str) -> FastAPI:
    """The floor app over one SQLite connection (one process, one event loop: no locking)."""
    connection = sqlite3.connect(db_path, check_same_thread=False)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/api/v1/catalog/entities/{kind}/{namespace}/{name}")
    async def read_entity(kind: str, namespace: str, name: str, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return UNAUTHORIZED
        key = hashlib.sha256(token.encode()).hexdigest()
        found = connection.execute(TOKEN_SQL, (key,)).fetchone()
        if found is None or found[1] is not None or not found[3]:
            return UNAUTHORIZED
        row = connection.execute(ENTITY_SQL, (kind, namespace, name.lower())).fetchone()
        if row is None:
            return Response(status_code=404)
        relations = connection.execute(RELATIONS_SQL, (row[0],)).fetchall()
        body = {
            "ref": f"{row[1]}:{row[2]}/{row[3]}",
            "id": row[0],
            "kind": row[1],
            "namespace": row[2],
            "name": row[3],
            "title": row[4],
            "description": row[5],
            "type": row[6],
            "lifecycle": row[7],
            "tier": row[8],
            "tags": orjson.loads(row[9] or "[]"),
            "labels": orjson.loads(row[10] or "{}"),
            "annotations": orjson.loads(row[11] or "{}"),
            "links": orjson.loads(row[12] or "[]"),
            "cost_centre": row[13],
            "version": row[14],
            "provenance": row[15],
            "location": row[16],
            "owner": {"id": row[17], "slug": row[18], "name": row[19]} if row[17] else None,
            "accountable": {"id": row[20], "email": row[21], "display_name": row[22]}
            if row[20]
            else None,
            "relations": [
                {"incoming": r[0], "type": r[1], "ref": f"{r[2]}:{r[3]}/{r[4]}", "title": r[5]}
                for r in relations
            ],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create(args.db), host="127.0.0.1", port=args.port, access_log=False, log_config=None
    )


if __name__ == "__main__":
    main()
