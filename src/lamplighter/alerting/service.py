"""What other domains use of alerting (DESIGN.md: they import only ``service``).

On-call reads alert groups, writes their timeline, and acts on them for the people it
notified (the signed acknowledge/resolve links)."""

from lamplighter.alerting.groups import (
    acknowledge,
    detail,
    entity_ref,
    get,
    get_many,
    log_entries,
    may_act,
    read,
    resolve,
    responders,
)
from lamplighter.alerting.models import AlertGroup, AlertStatus

__all__ = [
    "AlertGroup",
    "AlertStatus",
    "acknowledge",
    "detail",
    "entity_ref",
    "get",
    "get_many",
    "log_entries",
    "may_act",
    "read",
    "resolve",
    "responders",
]
