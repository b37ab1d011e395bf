"""The request types Lamplighter ships with, and the response targets per priority."""

from __future__ import annotations

from typing import Any

DEFAULT_TARGETS: dict[str, dict[str, int]] = {
    "P1": {"first_response_minutes": 15, "done_minutes": 4 * 60},
    "P2": {"first_response_minutes": 60, "done_minutes": 24 * 60},
    "P3": {"first_response_minutes": 4 * 60, "done_minutes": 3 * 24 * 60},
    "P4": {"first_response_minutes": 24 * 60, "done_minutes": 10 * 24 * 60},
}

# slug, name, description, expected effort (minutes)
DEFAULT_TYPES: list[tuple[str, str, str, int]] = [
    ("new-repository", "New repository", "Create a git repository with the team's defaults.", 30),
    ("ci-cd-pipeline", "CI/CD pipeline", "Add or change a build and deployment pipeline.", 120),
    ("database", "Database", "Provision a database and its credentials.", 90),
    (
        "message-topic",
        "Message topic",
        "Create a topic or queue with partitions and retention.",
        45,
    ),
    ("access-grant", "Access grant", "Grant a person or team access to a resource.", 20),
    ("deployment-help", "Deployment help", "Help getting a release out, or rolling one back.", 60),
    (
        "dns-certificate",
        "DNS or certificate change",
        "Add or change DNS records or TLS certificates.",
        40,
    ),
    ("capacity", "Capacity request", "More compute, storage or quota.", 60),
    (
        "incident-follow-up",
        "Incident follow-up",
        "An action item from an incident retrospective.",
        120,
    ),
    ("other", "Other", "Anything that fits no other type.", 30),
]


def default_type_rows() -> list[dict[str, Any]]:
    return [
        {
            "slug": slug,
            "name": name,
            "description": description,
            "expected_effort_minutes": effort,
            "targets": DEFAULT_TARGETS,
            "is_active": True,
        }
        for slug, name, description, effort in DEFAULT_TYPES
    ]
