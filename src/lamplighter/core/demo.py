"""The demo organisation `make run` loads once."""

from __future__ import annotations

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database

DEMO_PASSWORD = "lamplighter-demo"  # noqa: S105 - printed by `make run` on purpose
CREDENTIALS = {"admin_email": "admin@example.com", "password": DEMO_PASSWORD}

USERS = [
    # email, display name, role, time zone
    ("admin@example.com", "Ada Admin", "admin", "UTC"),
    ("sam@example.com", "Sam Reliability", "sre", "Europe/Berlin"),
    ("priya@example.com", "Priya Payments", "member", "Asia/Kolkata"),
    ("diego@example.com", "Diego Checkout", "member", "America/Sao_Paulo"),
    ("mei@example.com", "Mei Platform", "member", "Asia/Singapore"),
    ("tom@example.com", "Tom Payments", "member", "Europe/London"),
    ("olga@example.com", "Olga Support", "member", "Europe/Warsaw"),
    ("vic@example.com", "Vic Viewer", "viewer", "America/New_York"),
]
TEAMS = [
    # slug, name, lead, members, description
    (
        "platform",
        "Platform",
        "mei@example.com",
        ["sam@example.com"],
        "Container platform, CI/CD and the golden paths.",
    ),
    (
        "payments",
        "Payments",
        "priya@example.com",
        ["tom@example.com"],
        "Card payments, payouts and the ledger.",
    ),
    (
        "checkout",
        "Checkout",
        "diego@example.com",
        [],
        "Basket, checkout flow and order confirmation.",
    ),
    (
        "support",
        "Frontline support",
        "olga@example.com",
        [],
        "First receivers of alerts; runbooks and common issues.",
    ),
]


def load(db: Database) -> bool:
    """Create the demo users and teams unless they exist; return whether anything was created."""
    actor = Actor.system("demo loader")
    with db.transaction() as session:
        if identity.get_user_by_email(session=session, email=USERS[0][0]) is not None:
            return False
        for email, name, role, time_zone in USERS:
            identity.create_user(
                session=session,
                actor=actor,
                email=email,
                display_name=name,
                role=role,
                time_zone=time_zone,
                password=DEMO_PASSWORD,
            )
        for slug, name, lead, members, description in TEAMS:
            identity.create_team(
                session=session,
                actor=actor,
                slug=slug,
                name=name,
                lead_email=lead,
                description=description,
            )
            for member in members:
                identity.add_member(session=session, actor=actor, slug=slug, email=member)
    return True
