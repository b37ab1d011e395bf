"""The alerting and on-call part of the demo: who is on call, how alerts reach them, and three
weeks of believable alert history.

- Schedules: Payments' frontline (Priya and Tom, weekly, handing over on Mondays at 09:00
  Europe/London), Platform's SRE rotation (Mei and Sam, daily at 08:00 Europe/Berlin) with
  Olga's frontline-support cover on weekdays 09:00 to 17:00, and an override where Tom covers
  Priya for an evening.
- Escalation policies: Payments' default is Frontline → Application SRE (Sam) after
  10 minutes → Infrastructure SRE (the Platform rotation) after 15, repeated once; Platform's
  default pages its rotation.
- Integrations: an Alertmanager receiver on payments-gateway, a PagerDuty-style integration on
  the payments API, a heartbeat for the ledger's nightly settlement (late, so it alerts when the
  worker runs), each with its key printed by nobody (rotate one to use it).
- Contact methods: Priya's email and an "after 5 minutes by email" rule.
- History: about 25 alert kinds' worth of groups over 21 days — a flapping checkout error rate,
  a disk alert with no runbook, pages at night for the people in Asia — acknowledged and
  resolved at believable delays, with the delivery log that the alert report reads; and one
  group firing now on payments-gateway, acknowledged by nobody yet.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.alerting import integrations, store
from lamplighter.alerting.intake import IncomingAlert
from lamplighter.alerting.models import Alert, AlertGroup, AlertGroupLog, Integration
from lamplighter.alerting.schemas import IntegrationIn
from lamplighter.catalog import service as catalog
from lamplighter.catalog.refs import Ref
from lamplighter.core import identity, people
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.oncall.models import (
    ContactMethod,
    Delivery,
    EscalationPolicy,
    NotificationRule,
    OnCallOverride,
    OnCallSchedule,
)

ACTOR = Actor.system("demo loader")
HISTORY_DAYS = 21

# kind, summary, severity, entity, runbook, groups over the three weeks
KINDS: list[tuple[str, str, str, str, str | None, int]] = [
    ("CheckoutHighErrorRate", "Checkout answers 5xx to {n} % of requests", "critical",
     "checkout-web", "https://runbooks.example.com/checkout/high-error-rate", 14),
    ("PaymentsGatewayLatency", "Card authorisations take {n}00 ms at p99", "error",
     "payments-gateway", "https://runbooks.example.com/payments/latency", 6),
    ("DiskWillFillIn4Hours", "payments-db volume fills in 4 hours ({n} % used)", "warning",
     "payments-db", None, 5),
    ("LedgerSettlementLate", "Nightly settlement {n} minutes late", "error",
     "ledger", "https://runbooks.example.com/ledger/settlement", 3),
    ("OrdersConsumerLag", "orders-topic consumer lag over {n}k messages", "warning",
     "orders-topic", None, 4),
]  # fmt: skip


def _rotation(
    participants: list[int], kind: str, anchor: str, zone: str, **more: Any
) -> dict[str, Any]:
    return {
        "name": more.pop("name", "rotation"),
        "kind": "rotation",
        "until": None,
        "versions": [
            {
                "effective_from": "2026-01-05T00:00:00+00:00",
                "participants": participants,
                "kind": kind,
                "every": 1,
                "anchor": anchor,
                "time_zone": zone,
                "restrictions": more.pop("restrictions", []),
            }
        ],
    }


def load(db: Database) -> bool:
    with db.transaction() as session:
        payments = people.find_team_by_slug(session=session, slug="payments")
        platform = people.find_team_by_slug(session=session, slug="platform")
        gateway = catalog.find(session, Ref("service", "default", "payments-gateway"))
        if payments is None or platform is None or gateway is None:
            return False
        if session.scalar(
            sa.select(OnCallSchedule.id).where(OnCallSchedule.team_id == payments.id)
        ):
            return False
        users = {
            email.split("@")[0]: identity.get_user_by_email(session=session, email=email)
            for email in ("priya@example.com", "tom@example.com", "sam@example.com",
                          "mei@example.com", "olga@example.com")
        }  # fmt: skip
        ids = {name: user.id for name, user in users.items() if user is not None}
        if len(ids) < 5:
            return False
        frontline = OnCallSchedule(
            team_id=payments.id,
            name="Payments frontline",
            description="Weekly, handing over on Mondays at 09:00 London time.",
            time_zone="Europe/London",
            layers=[
                _rotation(
                    [ids["priya"], ids["tom"]],
                    "weekly",
                    "2026-01-05T09:00:00+00:00",
                    "Europe/London",
                    name="weekly",
                )
            ],
        )
        sre = OnCallSchedule(
            team_id=platform.id,
            name="Platform SRE",
            description="Daily at 08:00 Berlin time; frontline support covers office hours.",
            time_zone="Europe/Berlin",
            layers=[
                _rotation(
                    [ids["mei"], ids["sam"]],
                    "daily",
                    "2026-01-05T08:00:00+01:00",
                    "Europe/Berlin",
                    name="sre",
                ),
                _rotation(
                    [ids["olga"]],
                    "weekly",
                    "2026-01-05T09:00:00+01:00",
                    "Europe/Warsaw",
                    name="office hours",
                    restrictions=[
                        {
                            "start_weekday": day,
                            "start_time": "09:00",
                            "end_weekday": day,
                            "end_time": "17:00",
                        }
                        for day in range(5)
                    ],
                ),
            ],
        )
        session.add_all([frontline, sre])
        session.flush()
        now = utcnow()
        tonight = now.replace(hour=18, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
        session.add(
            OnCallOverride(
                schedule_id=frontline.id,
                user_id=ids["tom"],
                starts_at=tonight,
                ends_at=tonight + dt.timedelta(hours=6),
                reason="Priya at a wedding",
            )
        )
        policy = EscalationPolicy(
            team_id=payments.id,
            name="Payments",
            description="Frontline, then application SRE, then the platform rotation.",
            is_team_default=True,
            repeat=1,
            tiers=[
                {
                    "name": "Frontline",
                    "delay_minutes": 10,
                    "targets": [{"type": "schedule", "id": frontline.id}],
                },
                {
                    "name": "Application SRE",
                    "delay_minutes": 15,
                    "targets": [{"type": "user", "id": ids["sam"]}],
                },
                {
                    "name": "Infrastructure SRE",
                    "delay_minutes": 20,
                    "targets": [{"type": "schedule", "id": sre.id}],
                },
            ],
        )
        session.add(policy)
        session.add(
            EscalationPolicy(
                team_id=platform.id,
                name="Platform",
                is_team_default=True,
                tiers=[
                    {
                        "name": "SRE rotation",
                        "delay_minutes": 15,
                        "targets": [{"type": "schedule", "id": sre.id}],
                    }
                ],
            )
        )
        email = ContactMethod(
            user_id=ids["priya"], kind="email", address="priya@example.com", label="Work"
        )
        session.add(email)
        session.flush()
        session.add(
            NotificationRule(user_id=ids["priya"], contact_method_id=email.id, delay_minutes=5)
        )
        created = {}
        for name, kind, entity, extra in (
            ("Prometheus (prod)", "alertmanager", "payments-gateway", {}),
            (
                "Payments API monitors",
                "pagerduty",
                "api:payments-api",
                {"group_by": ["@dedup_key"]},
            ),
            (
                "Nightly settlement",
                "heartbeat",
                "ledger",
                {"heartbeat_interval_s": 86400, "heartbeat_grace_s": 3600},
            ),
        ):
            integration, _ = integrations.create(
                session=session,
                actor=ACTOR,
                data=IntegrationIn(name=name, kind=kind, entity=entity, **extra),
            )
            created[kind] = integration
        # The settlement last reported a day and a half ago: late.
        created["heartbeat"].last_ping_at = now - dt.timedelta(hours=36)
        _history(session, created["alertmanager"], ids, now)
        _firing_now(session, created["alertmanager"], now)
    return True


def _history(
    session: Session, integration: Integration, ids: dict[str, int], now: dt.datetime
) -> None:
    rng = random.Random(14)
    entity_ids = {
        name: catalog.get_by_ref(session=session, ref=name, field="entity").id
        for name in {kind[3] for kind in KINDS}
    }
    frontline = [ids["priya"], ids["tom"]]
    for kind, summary, severity, entity, runbook, count in KINDS:
        for index in range(count):
            opened = now - dt.timedelta(
                days=rng.uniform(0.5, HISTORY_DAYS), minutes=rng.randint(0, 59)
            )
            ack_after = dt.timedelta(minutes=rng.choice([1, 2, 3, 4, 6, 9, 14, 22]))
            resolved_after = ack_after + dt.timedelta(minutes=rng.randint(3, 90))
            if kind == "CheckoutHighErrorRate" and index % 2:
                resolved_after = dt.timedelta(minutes=rng.randint(1, 4))  # flapping
                ack_after = None  # type: ignore[assignment]
            group = AlertGroup(
                integration_id=integration.id,
                team_id=integration.team_id,
                entity_id=entity_ids.get(entity),
                group_key=f"demo:{kind}:{index}",
                accepting=False,
                status="resolved",
                severity=severity,
                summary=summary.format(n=rng.randint(3, 19)),
                kind=kind,
                runbook_url=runbook,
                labels={"alertname": kind, "severity": severity},
                alert_count=rng.randint(1, 4),
                opened_by="demo",
                created_at=opened,
                last_alert_at=opened,
                acknowledged_at=opened + ack_after if ack_after else None,
                resolved_at=opened + resolved_after,
            )
            who = frontline[(opened.isocalendar().week) % 2]
            if ack_after:
                group.acknowledged_by_user_id = who
            session.add(group)
            session.flush()
            session.add(
                Alert(
                    integration_id=integration.id,
                    group_id=group.id,
                    dedup_key=f"demo-{kind}-{index}",
                    status="resolved",
                    severity=severity,
                    summary=group.summary,
                    source="prometheus",
                    kind=kind,
                    labels=group.labels,
                    annotations={"runbook_url": runbook} if runbook else {},
                    created_at=opened,
                    last_seen_at=opened,
                    resolved_at=group.resolved_at,
                )
            )
            entries = [
                ("opened", None, {"summary": group.summary}, opened),
                ("notified", who, {"tier": 1, "tier_name": "Frontline"}, opened),
            ]
            if ack_after:
                entries.append(("acknowledged", who, {"via": "email link"}, opened + ack_after))
            else:
                entries.append(
                    (
                        "escalated",
                        None,
                        {"tier": 2, "tier_name": "Application SRE"},
                        opened + dt.timedelta(minutes=10),
                    )
                )
            entries.append(("resolved", None, {"by": "sender"}, opened + resolved_after))
            for what, actor, detail, at in entries:
                session.add(
                    AlertGroupLog(
                        group_id=group.id, at=at, what=what, actor_user_id=actor, detail=detail
                    )
                )
            session.add(
                Delivery(
                    group_id=group.id,
                    user_id=who,
                    channel="inbox",
                    status="sent",
                    error="inbox",
                    at=opened,
                )
            )
            if not ack_after or ack_after > dt.timedelta(minutes=5):
                session.add(
                    Delivery(
                        group_id=group.id,
                        user_id=who,
                        channel="email",
                        status="sent",
                        error="email",
                        at=opened + dt.timedelta(minutes=5),
                    )
                )


def _firing_now(session: Session, integration: Integration, now: dt.datetime) -> None:
    """One group firing now on payments-gateway, through the real path (its escalation starts
    when a worker runs)."""
    snapshot = integrations.snapshot_of(integration, "service:default/payments-gateway")
    alert = IncomingAlert(
        action="trigger",
        dedup_key="demo-gateway-5xx",
        summary="Card authorisations fail for 4 % of requests",
        severity="critical",
        source="prometheus",
        received_format="alertmanager",
        labels={
            "alertname": "PaymentsGatewayErrors",
            "severity": "page",
            "service": "payments-gateway",
        },
        annotations={"runbook_url": "https://runbooks.example.com/payments/gateway-errors"},
        runbook_url="https://runbooks.example.com/payments/gateway-errors",
        group_key='{}:{alertname="PaymentsGatewayErrors"}',
    )
    store.write_in(session, [store.Submission(snapshot, [alert])], now=now)
