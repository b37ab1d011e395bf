"""The events the ticket journal emits."""

from __future__ import annotations

import pydantic

from lamplighter.core.events import EventPayload, event_type
from lamplighter.tickets.models import Status


@event_type(
    "ticket.created",
    description="A ticket was opened, or resolved work (a self-service run) was journalled.",
    subject="ticket:<id>",
)
class TicketCreated(EventPayload):
    id: int
    type: str
    priority: str | None = None
    resolution: str | None = None


class TicketMoved(EventPayload):
    """A status change; one event type per status (``ticket.done``, ``ticket.triaged`` ...)."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    id: int
    # "from" is a Python keyword: the field is ``from_``, named "from" in JSON.
    from_: str | None = pydantic.Field(default=None, alias="from")
    to: str


for _status in Status:
    event_type(
        f"ticket.{_status.value}",
        description=f"A ticket moved to {_status.value.replace('_', ' ')}.",
        subject="ticket:<id>",
    )(type(f"Ticket{_status.name.title().replace('_', '')}", (TicketMoved,), {}))


@event_type(
    "ticket.updated",
    description="A ticket's title, description, priority, team, assignee or labels changed.",
    subject="ticket:<id>",
)
class TicketUpdated(EventPayload):
    id: int
    changed: list[str] = []


@event_type(
    "ticket.commented",
    description="Someone commented on a ticket; internal: an SRE-only note (no body is sent).",
    subject="ticket:<id>",
)
class TicketCommented(EventPayload):
    id: int
    comment_id: int
    internal: bool = False


@event_type("ticket.work_logged", description="Time was logged on a ticket.", subject="ticket:<id>")
class TicketWorkLogged(EventPayload):
    id: int
    minutes: int


@event_type(
    "ticket.imported",
    description="A ticket history was imported (tickets arrive already closed; no per-ticket events).",
    subject="ticket_import:<digest>",
)
class TicketsImported(EventPayload):
    format: str
    rows: int
    created: int
    skipped_existing: int
    by_type: dict[str, int]
    warnings: dict[str, int]
    ticket_id_ranges: list[tuple[int, int]] = pydantic.Field(
        description="The created tickets' ids as [first, last] runs."
    )


@event_type(
    "ticket_type.saved",
    description="A request type was created or changed.",
    subject="ticket_type:<slug>",
)
class RequestTypeSaved(EventPayload):
    slug: str
    name: str
    is_active: bool
    template_name: str | None
