"""Benchmark: the pages a newcomer opens first, signed in, against the same pages of an earlier
commit (by default the one before issue 12) on the same demo data, measured with wrk in
alternating rounds; prints each page's requests/s, p50 and p99, and the ratio to the peer.

Issue 12 made the home page answer "what needs attention" (each domain's panel queries run on
every load), the template list check every template against the installation, and the entity
page draw the blast radius; this measures what that costs.

    python bench/pages.py [--peer COMMIT] [--seconds 5] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _common import ROOT, free_port, machine, wait_http

PAGES = {
    "home (admin)": ("admin@example.com", "/"),
    "home (member)": ("priya@example.com", "/"),
    "self-service templates": ("priya@example.com", "/selfservice"),
    "ticket queue": ("admin@example.com", "/tickets"),
    # The default blast radius (3 hops) now; the peer drew a 2-hop graph and refused ?depth=4.
    "entity page (payments-db)": ("priya@example.com", "/catalog/resource/default/payments-db"),
}
PASSWORD = "lamplighter-demo"


def run(python: str, env: dict[str, str], *args: str) -> None:
    command = [python, "-c", "from lamplighter.cli import main; main()", *args]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)


def start(source: Path, python: str, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(source / "src"),
        "LAMPLIGHTER_DATA_DIR": str(data),
        "LAMPLIGHTER_SECRET_KEY": "bench-secret-key-bench-secret-key-0123",
    }
    env.pop("LAMPLIGHTER_DATABASE_URL", None)
    run(python, env, "db", "upgrade")
    run(python, env, "demo", "load")
    port = free_port()
    command = [python, "-c", "from lamplighter.cli import main; main()", "serve"]
    command += ["--port", str(port), "--no-worker"]
    log = (data / "server.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    return server, base


def cookie_for(base: str, email: str) -> str:
    with httpx.Client(base_url=base) as client:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf, "no CSRF token on the sign-in page"
        data = {"email": email, "password": PASSWORD, "csrf_token": csrf.group(1), "next": "/"}
        answer = client.post("/login", data=data, follow_redirects=False)
        assert answer.status_code == 303, answer.text[:300]
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def wrk(url: str, cookie: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Cookie: {cookie}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        figures[f"p{pct}"] = ms(match.group(1)) if match else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(bad.group(1)) if bad else 0.0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default="1b21500", help="commit to compare with")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    peer_src = work / "peer"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(peer_src), args.peer],
        check=True,
        capture_output=True,
    )
    servers = []
    try:
        (work / "now").mkdir()
        (work / "then").mkdir()
        now, now_url = start(ROOT, sys.executable, work / "now")
        then, then_url = start(peer_src, sys.executable, work / "then")
        servers = [now, then]
        results: dict[str, dict[str, list[dict[str, float]]]] = {}
        cookies = {
            (base, email): cookie_for(base, email)
            for base in (now_url, then_url)
            for email in {e for e, _ in PAGES.values()}
        }
        for name, (email, path) in PAGES.items():
            for base in (now_url, then_url):  # warm up
                wrk(f"{base}{path}", cookies[(base, email)], 1, args.connections)
            for _ in range(args.rounds):
                for label, base in (("now", now_url), (args.peer, then_url)):
                    figures = wrk(
                        f"{base}{path}", cookies[(base, email)], args.seconds, args.connections
                    )
                    results.setdefault(name, {}).setdefault(label, []).append(figures)
        print(
            f"{args.rounds} alternating rounds of {args.seconds} s, {args.connections} connections"
        )
        print(
            f"{'page':<36}{'now rps':>9}{'p50 ms':>8}{'p99 ms':>8}{'peer rps':>10}{'p99 ms':>8}{'ratio':>7}"
        )
        for name, by in results.items():
            mine = by["now"]
            peer = by[args.peer]
            rps = statistics.median(r["rps"] for r in mine)
            peer_rps = statistics.median(r["rps"] for r in peer)
            bad = sum(r["non_2xx"] for r in mine + peer)
            print(
                f"{name:<36}{rps:>9.0f}{statistics.median(r['p50'] for r in mine):>8.1f}"
                f"{statistics.median(r['p99'] for r in mine):>8.1f}{peer_rps:>10.0f}"
                f"{statistics.median(r['p99'] for r in peer):>8.1f}{rps / peer_rps:>7.2f}"
                + (f"  ({bad:.0f} non-2xx!)" if bad else "")
            )
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(peer_src)],
            capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
