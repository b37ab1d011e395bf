"""Benchmark: authenticated GET of a small object, measured with wrk in a separate process,
against a bare FastAPI + sqlite3 app doing the same work (bench/floor_app.py).

The GET is the catalog entity read (`/api/v1/catalog/entities/{kind}/{namespace}/{name}`). Both
servers run at once on copies of the same SQLite file; wrk measures them in alternating rounds,
since a shared machine's speed drifts within minutes, and the ratio of the medians is printed.
Target (issue 10): >= 0.5x the floor in one process, p99 < 20 ms at 16 connections.

    python bench/http_get.py [--seconds 10] [--rounds 3] [--connections 16] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _common import cli, free_port, machine, spawn_cli, wait_http


def parse_wrk(output: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    figures = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        if match:
            figures[f"p{pct}_ms"] = round(ms(match.group(1)), 2)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def wrk(url: str, header: str, *, seconds: int, connections: int) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", header, url],
        check=True,
        capture_output=True,
        text=True,
    )
    return parse_wrk(result.stdout)


def copy_sqlite(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="measure on this PostgreSQL database instead of SQLite (it is wiped; no floor)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    data_dir = Path(tempfile.mkdtemp(prefix="lamplighter-bench-"))
    env = os.environ | {
        "LAMPLIGHTER_DATA_DIR": str(data_dir),
        "LAMPLIGHTER_SECRET_KEY": "bench-secret-key-0123456789abcdef",
    }
    env.pop("LAMPLIGHTER_DATABASE_URL", None)
    if args.pg_url:
        from jobs import reset

        reset(args.pg_url)
        env["LAMPLIGHTER_DATABASE_URL"] = args.pg_url
    cli(env, "db", "upgrade")
    cli(env, "demo", "load")
    token = json.loads(
        cli(
            env,
            "token",
            "create",
            "--user",
            "priya@example.com",
            "--name",
            "bench",
            "--output",
            "json",
        )
    )["token"]
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    path = "/api/v1/catalog/entities"
    try:
        port = free_port()
        servers["lamplighter"] = (
            spawn_cli(
                env,
                "serve",
                "--no-worker",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                log=data_dir / "server.log",
            ),
            f"http://127.0.0.1:{port}",
        )
        if not args.pg_url:
            floor_db = data_dir / "floor.db"
            copy_sqlite(data_dir / "lamplighter.db", floor_db)
            floor_port = free_port()
            log = (data_dir / "floor.log").open("wb")
            floor = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("floor_app.py")),
                    "--db",
                    str(floor_db),
                    "--port",
                    str(floor_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            servers["floor"] = (floor, f"http://127.0.0.1:{floor_port}")
        header = f"Authorization: Bearer {token}"
        base = servers["lamplighter"][1]
        wait_http(f"{base}/healthz")
        listed = httpx.get(
            f"{base}/api/v1/catalog/entities",
            params={"kind": "service", "limit": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        listed.raise_for_status()
        ref = listed.json()["items"][0]
        path = f"/api/v1/catalog/entities/{ref['kind']}/{ref['namespace']}/{ref['name']}"
        for name, (_, base) in servers.items():
            wait_http(f"{base}/healthz")
            answer = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 200:
                raise SystemExit(f"{name}: GET {path} answered {answer.status_code}")
            subprocess.run(
                ["wrk", "-t1", "-c4", "-d2s", "-H", header, base + path],
                check=True,
                capture_output=True,
            )  # warm-up
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for number in range(args.rounds):
            # Alternate which goes first: a shared machine's speed drifts within minutes.
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for name in order:
                rounds[name].append(
                    wrk(
                        servers[name][1] + path,
                        header,
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=20)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"machine: {machine()}")
    print(
        f"authenticated GET {path} on {'PostgreSQL' if args.pg_url else 'SQLite'}, "
        f"{args.workers} server process(es), wrk -t2 -c{args.connections} -d{args.seconds}s, "
        f"{args.rounds} alternating rounds"
    )
    medians: dict[str, dict[str, float]] = {}
    for name, figures in rounds.items():
        medians[name] = {
            key: statistics.median(f.get(key, 0.0) for f in figures) for key in figures[0]
        }
        print(f"{name}:")
        print("  rounds requests/s: " + ", ".join(f"{f['requests_per_s']:.0f}" for f in figures))
        print("  rounds p99 ms: " + ", ".join(f"{f.get('p99_ms', 0.0):.1f}" for f in figures))
        for key, value in medians[name].items():
            print(f"  {key}: {value}")  # medians over the rounds
    ours = medians["lamplighter"]
    if "floor" in medians:
        ratios = [
            ll["requests_per_s"] / fl["requests_per_s"]
            for ll, fl in zip(rounds["lamplighter"], rounds["floor"], strict=True)
        ]
        ratio = ours["requests_per_s"] / medians["floor"]["requests_per_s"]
        print(f"ratio_to_floor: {ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"  target >= 0.5x the floor: {'met' if ratio >= 0.5 else 'NOT met'}")
    print(f"  target p99 < 20 ms: {'met' if ours.get('p99_ms', 1e9) < 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
