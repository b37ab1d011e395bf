"""Benchmark: the service catalog at 10,000 and 100,000 entities (issue 3).

Targets on the 2-core build machine, SQLite and PostgreSQL:
- import 10,000 entities from catalog-info.yaml files in < 10 s, 100,000 in < 100 s;
- re-import of the unchanged 10,000 in < 5 s;
- with 100,000 entities: GET one entity p99 < 20 ms and >= 1,000 requests/s (wrk, separate
  process, `lamplighter serve --no-worker --workers 2`), reverse dependency traversal to
  depth 5 p95 < 50 ms, search p95 < 50 ms. The GET is measured at 4, 8 and 16 connections
  (--connections): by Little's law the mean latency is connections / throughput, so a closed
  loop of 16 at 1,000 requests/s already means 16 ms on average, and the curve shows where the
  two targets meet.

    python bench/catalog.py [--entities 100000] [--backends sqlite,postgresql] [--pg-url URL]
                            [--connections 4,8,16] [--seconds 20] [--repeat 3] [--peer DIR]

The 10,000 import (with its re-import) and each wrk load run --repeat times; the figure is the
median, printed with the fastest and slowest run (this machine is a shared VM whose speed moves
by a third within minutes; a fixed pure-Python loop, the "CPU check", is timed before and after
each database's runs to show it). On PostgreSQL the queries are timed after a VACUUM (ANALYZE),
the steady state autovacuum reaches a minute or two after a large import. Every first import
starts with an empty data directory, so without the parsed-YAML cache that a re-import uses.

The synthetic catalog: a few hundred teams (Groups, each with a lead, under departments of ten)
with four members each (Users), ten domains,
a system per 50 entities, resources, APIs and services in files of 100 entities under
teams/<slug>/part-<n>/catalog-info.yaml (found by the directory walk) plus org/*.yaml and
domains.yaml reached through the root Location. Each service depends on a resource of its team
and on two other services, one in five of them among 50 platform "hubs", so reverse traversals
fan out; one service in a hundred adds an edge back, so there are cycles. The imports run the
real CLI in a separate process; the database is wiped first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from _common import cli, cpu_check, free_port, machine, spawn_cli, wait_http
from http_get import parse_wrk
from jobs import DEFAULT_PG

WORDS = (  # noqa: SIM905 - a paragraph reads better than a list of 88 strings
    "payments ledger billing invoice checkout cart orders returns refunds shipping tracking "
    "inventory warehouse pricing discounts loyalty rewards identity auth sessions profiles "
    "search ranking catalog reviews ratings media images video streaming notifications email "
    "sms push analytics metrics events audit fraud risk compliance tax currency exchange "
    "accounts onboarding kyc support tickets chat recommendations feed graph social messaging "
    "scheduling calendar booking maps geo routing delivery fleet drivers partners vendors "
    "marketplace listings ads campaigns experiments flags config secrets vault storage backup "
    "archive export import reporting dashboards billing-engine gateway edge cache queue stream"
).split()
TAGS = ["java", "python", "go", "kotlin", "node", "rust", "pci", "gdpr", "critical", "batch"]
PER_FILE = 100
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=DUMPER, sort_keys=False)


def _doc(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    api_version = "lamplighter.io/v1alpha1" if kind == "Platform" else "backstage.io/v1alpha1"
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": spec,
    }


def generate(root: Path, entities: int, seed: int = 7) -> dict[str, Any]:
    """Write a synthetic catalog of ``entities`` entities; return names to query."""
    rng = random.Random(seed)
    shutil.rmtree(root, ignore_errors=True)
    (root / "org").mkdir(parents=True)
    team_count = max(20, entities // 300)
    teams = [f"team-{i:03d}" for i in range(team_count)]
    departments = [f"dept-{i:02d}" for i in range(max(1, team_count // 10))]
    groups: list[dict[str, Any]] = [  # led by the first member of their first team
        _doc(
            "Group",
            dept,
            {"type": "department", "children": []},
            annotations={"lamplighter.io/lead": f"u{index:03d}-0"},
        )
        for index, dept in enumerate(departments)
    ]
    users = []
    for index, slug in enumerate(teams):
        members = [f"u{index:03d}-{m}" for m in range(4)]
        groups.append(
            _doc(
                "Group",
                slug,
                {
                    "type": "team",
                    "profile": {"displayName": f"Team {index}"},
                    "parent": departments[index % len(departments)],
                    "children": [],
                    "members": members,
                },
                annotations={"lamplighter.io/lead": members[0]},
            )
        )
        users.extend(
            _doc(
                "User",
                name,
                {
                    "profile": {"displayName": name.upper(), "email": f"{name}@example.com"},
                    "memberOf": [slug],
                },
            )
            for name in members
        )
    (root / "org" / "groups.yaml").write_text(_dump(groups))
    (root / "org" / "users.yaml").write_text(_dump(users))
    domains = [f"domain-{i}" for i in range(10)]
    (root / "domains.yaml").write_text(
        _dump([_doc("Domain", d, {"owner": teams[i % team_count]}) for i, d in enumerate(domains)])
    )
    (root / "catalog-info.yaml").write_text(
        _dump(
            [
                _doc(
                    "Location",
                    "root",
                    {"targets": ["./org/groups.yaml", "./org/users.yaml", "./domains.yaml"]},
                )
            ]
        )
    )
    remaining = entities - len(domains)
    systems = max(1, remaining // 50)
    resources = remaining // 5
    apis = remaining // 10
    services = remaining - systems - resources - apis
    # every entity belongs to a team; a team's entities share its systems
    owner_of = lambda i: teams[i % team_count]  # noqa: E731
    system_names = [f"{owner_of(i)}-sys-{i}" for i in range(systems)]
    resource_names = [f"{owner_of(i)}-{rng.choice(WORDS)}-db-{i}" for i in range(resources)]
    api_names = [f"{rng.choice(WORDS)}-api-{i}" for i in range(apis)]
    service_names = [f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i}" for i in range(services)]
    hubs = service_names[:50]
    docs: list[tuple[str, dict[str, Any]]] = []

    def common(i: int) -> dict[str, Any]:
        words = rng.sample(WORDS, 6)
        return {
            "title": f"{words[0].title()} {words[1]} {i}",
            "description": " ".join(words[2:]) + ".",
            "tags": sorted(rng.sample(TAGS, 2)),
            "annotations": {
                "github.com/project-slug": f"acme/{words[0]}-{i}",
                "lamplighter.io/tier": str(1 + i % 4),
            },
        }

    for i, name in enumerate(system_names):
        docs.append(
            (
                owner_of(i),
                _doc(
                    "System", name, {"owner": owner_of(i), "domain": domains[i % 10]}, **common(i)
                ),
            )
        )
    for i, name in enumerate(resource_names):
        team = owner_of(i)
        spec = {
            "type": rng.choice(["database", "topic", "queue", "bucket", "cache"]),
            "owner": team,
            "system": system_names[i % systems],
        }
        docs.append((team, _doc("Resource", name, spec, **common(i))))
    for i, name in enumerate(api_names):
        team = owner_of(i)
        spec = {
            "type": "openapi",
            "lifecycle": "production",
            "owner": team,
            "system": system_names[i % systems],
        }
        docs.append((team, _doc("API", name, spec, **common(i))))
    for i, name in enumerate(service_names):
        team = owner_of(i)
        depends = [f"resource:{resource_names[rng.randrange(resources)]}"]
        for _ in range(2):
            pool = hubs if rng.random() < 0.2 else service_names
            other = rng.choice(pool)
            if other != name:
                depends.append(f"component:{other}")
        if rng.random() < 0.01 and i > 0:  # an edge back: cycles exist
            depends.append(f"component:{service_names[rng.randrange(i)]}")
        spec = {
            "type": "service",
            "lifecycle": rng.choice(["production", "production", "experimental", "deprecated"]),
            "owner": team,
            "system": system_names[i % systems],
            "dependsOn": sorted(set(depends)),
            "providesApis": [api_names[i % apis]] if i < apis else [],
            "consumesApis": [api_names[rng.randrange(apis)]],
        }
        docs.append((team, _doc("Component", name, spec, **common(i))))
    by_team: dict[str, list[dict[str, Any]]] = {}
    for team, doc in docs:
        by_team.setdefault(team, []).append(doc)
    files = 0
    for team, team_docs in by_team.items():
        for part in range(0, len(team_docs), PER_FILE):
            path = root / "teams" / team / f"part-{part // PER_FILE}" / "catalog-info.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_dump(team_docs[part : part + PER_FILE]))
            files += 1
    return {
        "files": files + 4,
        "services": service_names,
        "resources": resource_names,
        "hubs": hubs,
        "emails": [u["spec"]["profile"]["email"] for u in users],
    }


# -- measuring -------------------------------------------------------------------------------------
def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def timed_import(env: dict[str, str], path: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    report = json.loads(cli(env, "catalog", "import", str(path), "--output", "json"))
    elapsed = time.perf_counter() - started
    if report["errors"]:
        raise SystemExit(f"the import reported errors: {report['errors'][:3]}")
    return elapsed, report


def query_latencies(url: str, info: dict[str, Any], samples: int) -> dict[str, float]:
    """Reverse traversals to depth 5 and searches, in this process, as the API would run them."""
    import sqlalchemy as sa

    import lamplighter.models_registry  # noqa: F401
    from lamplighter.catalog import graph, search, service
    from lamplighter.catalog.models import Entity
    from lamplighter.core.db import Database

    rng = random.Random(11)
    db = Database(url)
    figures: dict[str, float] = {}
    with db.sessionmaker() as session:
        ids = dict(
            session.execute(
                sa.select(Entity.name, Entity.id).where(Entity.kind.in_(["service", "resource"]))
            )
            .tuples()
            .all()
        )
        names = list(ids)

        def walk(roots: list[int]) -> tuple[list[float], list[int]]:
            timings, sizes = [], []
            for root in roots:
                started = time.perf_counter()
                result = graph.traverse(session=session, root_id=root, reverse=True, depth=5)
                timings.append((time.perf_counter() - started) * 1000)
                sizes.append(len(result.reached))
            return timings, sizes

        walk([ids[n] for n in rng.sample(names, 20)])  # warm-up
        timings, sizes = walk([ids[n] for n in rng.sample(names, samples)])
        figures |= {
            "traverse_p50_ms": percentile(timings, 50),
            "traverse_p95_ms": percentile(timings, 95),
            "traverse_mean_reached": statistics.mean(sizes),
            "traverse_max_reached": max(sizes),
        }
        hub_timings, hub_sizes = walk([ids[n] for n in info["hubs"][:20]])
        figures |= {
            "hub_traverse_p50_ms": percentile(hub_timings, 50),
            "hub_traverse_p95_ms": percentile(hub_timings, 95),
            "hub_traverse_mean_reached": statistics.mean(hub_sizes),
        }
        queries = []
        for _ in range(samples):
            word = rng.choice(WORDS)
            roll = rng.random()
            if roll < 0.5:
                queries.append(word)
            elif roll < 0.8:
                queries.append(f"{word} {rng.choice(WORDS)}")
            else:
                queries.append(word[:4])  # a prefix, as typed
        found, timings = [], []
        for text in queries[:20]:  # warm-up
            search.search(session=session, text=text, filters=service.ListFilters())
        for text in queries:
            started = time.perf_counter()
            rows = search.search(session=session, text=text, filters=service.ListFilters())
            timings.append((time.perf_counter() - started) * 1000)
            found.append(len(rows))
        figures |= {
            "search_p50_ms": percentile(timings, 50),
            "search_p95_ms": percentile(timings, 95),
            "search_mean_results": statistics.mean(found),
        }
        # what people mostly type: words of the one thing they look for ("Payments ledger 4711")
        titles = session.scalars(
            sa.select(Entity.title).where(Entity.id.in_(rng.sample(list(ids.values()), samples)))
        ).all()
        timings = []
        for title in titles:
            started = time.perf_counter()
            search.search(session=session, text=title, filters=service.ListFilters())
            timings.append((time.perf_counter() - started) * 1000)
        figures |= {
            "search_specific_p50_ms": percentile(timings, 50),
            "search_specific_p95_ms": percentile(timings, 95),
        }
    db.dispose()
    return figures


def http_get(
    env: dict[str, str],
    info: dict[str, Any],
    work: Path,
    seconds: int,
    connections: list[int],
    repeat: int,
) -> dict[str, float]:
    """wrk against `serve --no-worker --workers 2`, GET of random entities with their relations,
    ``repeat`` times per number of connections (one server, warmed up once); medians."""
    token = json.loads(
        cli(
            env,
            "token",
            "create",
            "--user",
            info["emails"][0],
            "--name",
            "bench",
            "--output",
            "json",
        )
    )["token"]
    rng = random.Random(5)
    paths = [
        f"/api/v1/catalog/entities/service/default/{n}" for n in rng.sample(info["services"], 500)
    ]
    paths += [
        f"/api/v1/catalog/entities/resource/default/{n}" for n in rng.sample(info["resources"], 200)
    ]
    script = work / "paths.lua"
    script.write_text(
        "local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
        "request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n"
    )
    port = free_port()
    server = spawn_cli(
        env, "serve", "--no-worker", "--port", str(port), "--workers", "2", log=work / "server.log"
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        base = f"http://127.0.0.1:{port}"
        header = f"Authorization: Bearer {token}"
        subprocess.run(
            ["wrk", "-t1", "-c4", "-d3s", "-s", str(script), "-H", header, base],
            check=True,
            capture_output=True,
        )
        figures: dict[str, float] = {}
        for n in connections:
            runs = []
            for _ in range(repeat):
                result = subprocess.run(
                    [
                        "wrk",
                        "-t2",
                        f"-c{n}",
                        f"-d{seconds}s",
                        "--latency",
                        "-s",
                        str(script),
                        "-H",
                        header,
                        base,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs.append(parse_wrk(result.stdout))
            for key in runs[0]:
                values = [run[key] for run in runs]
                if key == "non_2xx":
                    figures[f"c{n}_{key}"] = sum(values)
                elif key in {"requests_per_s", "p99_ms"}:
                    figures |= _spread(f"c{n}_{key}", values)
                else:
                    figures[f"c{n}_{key}"] = statistics.median(values)
        return figures
    finally:
        server.terminate()
        server.wait(timeout=20)


def _spread(name: str, values: list[float]) -> dict[str, float]:
    """The median of repeated runs under ``name``, and the fastest and slowest beside it."""
    if len(values) == 1:
        return {name: values[0]}
    return {
        name: statistics.median(values),
        f"{name}_min": min(values),
        f"{name}_max": max(values),
    }


def steady_state(url: str) -> None:
    """What autovacuum does within a minute or two of a large import (visibility map, hint
    bits, the GIN index's pending list), done now, so it does not run during the timings."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE)")
    engine.dispose()


def effective_url(url: str | None, data_dir: Path) -> str:
    return url or f"sqlite:///{(data_dir / 'lamplighter.db').resolve()}"


def wipe(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def _set_revision(database_url: str, revision: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


def alternate_get(
    env: dict[str, str],
    peer_env: dict[str, str],
    database_url: str,
    info: dict[str, Any],
    work: Path,
    args: argparse.Namespace,
) -> dict[str, float]:
    """The GET at the first connection count, served by the peer's code and this build's in
    turn from the same database (the peer sees its own newest revision in the version row, so
    it starts; reading entities needs nothing of the newer columns): the same data and minutes
    of the machine for both, so the ratio speaks of the code."""
    n = int(args.connections.split(",")[0])
    head = "from lamplighter.core.migrate import head_revision; print(head_revision())"
    revisions = {
        side: subprocess.run(
            [sys.executable, "-c", head], env=side_env, check=True, capture_output=True, text=True
        ).stdout.strip()
        for side, side_env in (("peer", peer_env), ("this", env))
    }
    runs: dict[str, list[dict[str, float]]] = {"peer": [], "this": []}
    try:
        for _ in range(args.repeat):
            for side, side_env in (("peer", peer_env), ("this", env)):
                _set_revision(database_url, revisions[side])
                runs[side].append(http_get(side_env, info, work, args.seconds, [n], 1))
    finally:
        _set_revision(database_url, revisions["this"])
    figures: dict[str, float] = {}
    for side, prefix in (("peer", "peer_get"), ("this", "alt_get")):
        for key in (f"c{n}_requests_per_s", f"c{n}_p99_ms"):
            figures |= _spread(f"{prefix}_{key}", [run[key] for run in runs[side]])
    return figures


def run_backend(
    backend: str,
    url: str | None,
    trees: dict[int, tuple[Path, dict[str, Any]]],
    args: argparse.Namespace,
    work: Path,
) -> dict[str, float]:
    data_dir = work / backend
    env = os.environ | {
        "LAMPLIGHTER_DATA_DIR": str(data_dir),
        "LAMPLIGHTER_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "LAMPLIGHTER_LOG_LEVEL": "WARNING",
    }
    env.pop("LAMPLIGHTER_DATABASE_URL", None)
    if url:
        env["LAMPLIGHTER_DATABASE_URL"] = url
    sides = {"": env}
    if args.peer:  # the same commands, run by the peer checkout's code
        peer_src = str(Path(args.peer).resolve() / "src")
        sides["peer_"] = env | {"PYTHONPATH": peer_src}

    def fresh(side_env: dict[str, str]) -> None:
        """An empty database and no parse cache: each first import is a cold one. The side's own
        CLI upgrades it, so a peer meets no revision it does not know."""
        shutil.rmtree(data_dir, ignore_errors=True)
        if url:
            wipe(url)
        cli(side_env, "db", "upgrade")

    figures: dict[str, float] = {}
    small_path, _ = trees[10_000]
    imports: dict[str, list[float]] = {side: [] for side in sides}
    reimports: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.repeat):
        for side, side_env in sides.items():  # alternating, so both meet the same machine
            fresh(side_env)
            elapsed, report = timed_import(side_env, small_path)
            assert len(report["created"]) == 10_000, len(report["created"])
            imports[side].append(elapsed)
            elapsed, report = timed_import(side_env, small_path)
            assert report["unchanged"] == 10_000 and not report["created"]
            assert not report["updated"]
            reimports[side].append(elapsed)
    for side in sides:
        figures |= _spread(f"{side}import_10k_s", imports[side])
        figures |= _spread(f"{side}reimport_10k_s", reimports[side])
    big_path, big = trees[args.entities]
    big_key = f"import_{args.entities // 1000}k_s"
    if args.peer and args.entities != 10_000:
        fresh(sides["peer_"])
        figures[f"peer_{big_key}"], report = timed_import(sides["peer_"], big_path)
        assert len(report["created"]) == args.entities
    if args.entities != 10_000:  # else a smoke run: the queries use the 10,000 just imported
        fresh(env)
        figures[big_key], report = timed_import(env, big_path)
        assert len(report["created"]) == args.entities
        figures[f"reimport_{args.entities // 1000}k_s"], _ = timed_import(env, big_path)
    if url:
        steady_state(url)
    figures |= query_latencies(effective_url(url, data_dir), big, args.samples)
    connections = [int(n) for n in args.connections.split(",")]
    if args.peer:  # the GET by both builds from this one database, alternating
        figures |= alternate_get(env, sides["peer_"], effective_url(url, data_dir), big, work, args)
    figures |= {
        f"get_{k}": v
        for k, v in http_get(env, big, work, args.seconds, connections, args.repeat).items()
    }
    if args.peer:  # this build's time over the peer's (below 1: faster); throughput: over
        for key in ("import_10k_s", "reimport_10k_s", big_key):
            if f"peer_{key}" in figures:
                figures[f"ratio_{key}"] = figures[key] / figures[f"peer_{key}"]
        n = connections[0]
        if f"peer_get_c{n}_requests_per_s" in figures:
            figures[f"ratio_get_c{n}_requests_per_s"] = (
                figures[f"alt_get_c{n}_requests_per_s"] / figures[f"peer_get_c{n}_requests_per_s"]
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000, help="the large catalog's size")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("LAMPLIGHTER_BENCH_DATABASE_URL", DEFAULT_PG),
        help="wiped",
    )
    parser.add_argument("--seconds", type=int, default=20, help="wrk duration")
    parser.add_argument(
        "--connections", default="4,8,16", help="wrk connections, one run for each (comma list)"
    )
    parser.add_argument("--samples", type=int, default=300, help="traversals and searches timed")
    parser.add_argument(
        "--peer",
        default="",
        help="another checkout (e.g. `git worktree add /tmp/peer HEAD~1`) whose code runs the "
        "same 10,000 imports and its own 100,000 import alternately with this one, and serves "
        "the GET from this build's database in turn with it; the ratios are printed",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the 10,000 import and of each wrk load; the median is the figure",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="lamplighter-catalog-bench-"))
    try:
        trees = {}
        for size in sorted({10_000, args.entities}):
            started = time.perf_counter()
            info = generate(work / f"catalog-{size}", size)
            trees[size] = (work / f"catalog-{size}", info)
            print(
                f"generated {size:,} entities in {info['files']:,} files ({time.perf_counter() - started:.1f} s)"
            )
        print(f"machine: {machine()}")
        for backend in args.backends.split(","):
            url = args.pg_url if backend == "postgresql" else None
            load_before, cpu_before = os.getloadavg()[0], cpu_check()
            figures = run_backend(backend, url, trees, args, work)
            print(
                f"{backend}: (1-minute load average {load_before:.1f} before, "
                f"{os.getloadavg()[0]:.1f} after; CPU check {cpu_before:.2f} s before, "
                f"{cpu_check():.2f} s after)"
            )
            for key, value in figures.items():
                print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")
            big = args.entities // 1000
            checks = [
                ("import 10k < 10 s", figures["import_10k_s"] < 10),
                (f"import {big}k < 100 s", figures[f"import_{big}k_s"] < 100),
                ("re-import unchanged 10k < 5 s", figures["reimport_10k_s"] < 5),
                *(
                    (
                        f"GET at {n} connections: p99 < 20 ms and >= 1,000 req/s",
                        figures.get(f"get_c{n}_p99_ms", 1e9) < 20
                        and figures.get(f"get_c{n}_requests_per_s", 0) >= 1000,
                    )
                    for n in args.connections.split(",")
                ),
                ("reverse traversal depth 5 p95 < 50 ms", figures["traverse_p95_ms"] < 50),
                ("search p95 < 50 ms", figures["search_p95_ms"] < 50),
            ]
            for label, met in checks:
                print(f"  target {label}: {'met' if met else 'NOT met'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
