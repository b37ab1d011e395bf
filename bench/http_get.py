"""Benchmark: authenticated GET of a small object, measured with wrk in a separate process.

Target (issue 2): >= 2,000 requests/s and p99 < 20 ms on this 2-core machine with SQLite.

    python bench/http_get.py [--seconds 20] [--connections 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="measure on this PostgreSQL database instead of SQLite (it is wiped)",
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
    user_id = json.loads(
        cli(
            env,
            "user",
            "create",
            "--email",
            "bench@example.com",
            "--name",
            "Bench",
            "--output",
            "json",
        )
    )["id"]
    port = free_port()
    server = spawn_cli(
        env,
        "serve",
        "--no-worker",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        log=data_dir / "server.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/api/v1/users/{user_id}"
        header = f"Authorization: Bearer {token}"
        subprocess.run(
            ["wrk", "-t1", "-c4", "-d3s", "-H", header, url], check=True, capture_output=True
        )  # warm-up
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--latency",
                "-H",
                header,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = parse_wrk(result.stdout)
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"machine: {machine()}")
    print(
        f"authenticated GET /api/v1/users/{{id}} on {'PostgreSQL' if args.pg_url else 'SQLite'}, {args.workers} server processes, wrk -t2 -c{args.connections} -d{args.seconds}s"
    )
    for key, value in figures.items():
        print(f"  {key}: {value}")
    print(f"  target >= 2000 req/s: {'met' if figures['requests_per_s'] >= 2000 else 'NOT met'}")
    print(f"  target p99 < 20 ms: {'met' if figures.get('p99_ms', 1e9) < 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
