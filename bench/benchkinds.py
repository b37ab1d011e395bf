"""Job kinds used only by bench/jobs.py (loaded in workers through LAMPLIGHTER_PLUGINS)."""

from __future__ import annotations

from lamplighter.core import jobs


@jobs.handler("bench.isolated")
def isolated(ctx: jobs.JobContext) -> None:
    """A trivial job that is not batch-safe: one transaction (and lease renewal) per job."""
