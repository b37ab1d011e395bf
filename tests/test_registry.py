"""A standalone worker (`lamplighter worker`) knows every job kind and action the web app does."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json
from lamplighter.core import jobs
from lamplighter.core.plugins import load_plugins
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import ACTIONS

load_plugins(Settings(secret_key="x" * 40))
print(json.dumps({"handlers": sorted(jobs.HANDLERS), "actions": sorted(ACTIONS)}))
"""


def test_a_fresh_process_registers_every_job_handler_and_action() -> None:
    # A fresh interpreter: this test process has imported everything already.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"webhook.deliver", "selfservice.run", "selfservice.expire_grants"} <= set(
        found["handlers"]
    )
    assert set(found["actions"]) >= {
        "repo.create",
        "pipeline.create",
        "postgres.database",
        "kafka.topic",
        "access.grant",
        "catalog.register",
        "http.request",
        "ticket.create",
    }
