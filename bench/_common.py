"""Helpers shared by the benchmarks: free ports, the CLI, waiting for a server."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-c", "from lamplighter.cli import main; main()", *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


def spawn_cli(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from lamplighter.cli import main; main()", *args]
    handle = log.open("wb")
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def cpu_check() -> float:
    """Seconds for a fixed pure-Python loop (10 million additions): this machine's speed at
    the moment, printed beside the figures. On a shared VM it moves by a third within minutes."""
    started = time.perf_counter()
    total = 0
    for number in range(10_000_000):
        total += number
    return time.perf_counter() - started


def _busy_and_total() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def settle(limit_s: float = 60.0, busy_below: float = 0.15, window_s: float = 0.5) -> float:
    """Wait until the machine is quiet (under ``busy_below`` of its CPUs busy over a window):
    a server keeps working after its round (Alertmanager aggregating and collecting what it
    took, our worker paging, PostgreSQL's autovacuum), and that work would be charged to the
    next round, whoever runs it. Returns the seconds waited (``limit_s`` at most)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        busy0, total0 = _busy_and_total()
        time.sleep(window_s)
        busy1, total1 = _busy_and_total()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < busy_below:
            break
    return time.monotonic() - started
