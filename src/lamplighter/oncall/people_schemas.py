"""What the API accepts and answers for escalation policies, contact methods and notification
rules. A Slack or webhook address and a webhook's signing secret go in, and never come out:
answers carry only a masked ``hint`` (``https://hooks.slack.com/…/XXXX``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from lamplighter.core.schemas import ReadModel, WriteModel

MAX_TIERS = 10
MAX_TARGETS = 20
MAX_DELAY_MINUTES = 1440  # a day
MAX_REPEAT = 9
TargetType = Literal["schedule", "user", "team"]
ContactKindName = Literal["email", "slack", "webhook", "inbox"]


# -- escalation policies ---------------------------------------------------------------------------
class TargetIn(WriteModel):
    """Who a tier notifies: whoever is on call in a schedule, one person, or a whole team."""

    type: TargetType
    id: int = Field(ge=1, le=2**31 - 1)


class TierIn(WriteModel):
    name: str = Field(default="", max_length=100, description='e.g. "Frontline"; default Tier N')
    delay_minutes: int = Field(
        ge=0,
        le=MAX_DELAY_MINUTES,
        description="Minutes to wait for an acknowledgement before the next tier (after the "
        "last tier: before the chain repeats).",
    )
    targets: list[TargetIn] = Field(min_length=1, max_length=MAX_TARGETS)


class EscalationPolicyCreate(WriteModel):
    team: str = Field(min_length=1, max_length=63, description="The owning team's slug")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    tiers: list[TierIn] = Field(min_length=1, max_length=MAX_TIERS)
    repeat: int = Field(default=0, ge=0, le=MAX_REPEAT, description="Times the chain runs again")
    is_team_default: bool | None = Field(
        default=None,
        description="The team's default policy (clears it on the team's others); unset: "
        "default when the team has none yet.",
    )


class EscalationPolicyUpdate(WriteModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    tiers: list[TierIn] | None = Field(default=None, min_length=1, max_length=MAX_TIERS)
    repeat: int | None = Field(default=None, ge=0, le=MAX_REPEAT)
    is_team_default: bool | None = None


class TargetRead(ReadModel):
    type: TargetType
    id: int


class TierRead(ReadModel):
    name: str
    delay_minutes: int
    targets: list[TargetRead]


class EscalationPolicyRead(ReadModel):
    id: int
    team: str
    team_id: int
    name: str
    description: str
    tiers: list[TierRead]
    repeat: int
    is_team_default: bool
    created_at: dt.datetime
    updated_at: dt.datetime


# -- contact methods -------------------------------------------------------------------------------
# The URLs a webhook or Slack method takes, stated exactly as contacts.py checks them: printable
# ASCII, no credentials, a port that exists.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = rf"^https?://[A-Za-z0-9.-]+(:{_PORT})?(/[!-~]*)?$"
SLACK_PATH = r"[A-Za-z0-9._~%/-]+"
SLACK_PATTERN = rf"^https://hooks\.slack\.com/{SLACK_PATH}$"
Label = Annotated[str, Field(max_length=100)]
Secret = Annotated[
    SecretStr,
    Field(
        min_length=16,
        max_length=200,
        description="The HMAC-SHA256 key deliveries are signed with (never shown again).",
    ),
]


class EmailForm(WriteModel):
    kind: Literal["email"]
    label: Label = ""
    address: str = Field(max_length=320, json_schema_extra={"format": "email"})


class SlackForm(WriteModel):
    kind: Literal["slack"]
    label: Label = ""
    address: str = Field(
        max_length=2000, pattern=SLACK_PATTERN, description="The Slack incoming-webhook URL"
    )


class WebhookForm(WriteModel):
    kind: Literal["webhook"]
    label: Label = ""
    address: str = Field(max_length=2000, pattern=URL_PATTERN, description="Where to POST")
    secret: Secret


class InboxForm(WriteModel):
    kind: Literal["inbox"]
    label: Label = ""


def _one_form_per_kind(schema: dict[str, Any]) -> None:
    """Document the form each kind takes; the body is read as one flat model, so that its
    errors name ``body.address`` and ``body.secret`` whatever the kind (a tagged union would
    put the kind in every location: ``body.webhook.secret``)."""
    forms = [form.model_json_schema() for form in (EmailForm, SlackForm, WebhookForm, InboxForm)]
    schema.clear()
    schema.update(title="ContactMethodCreate", oneOf=forms)


class ContactMethodCreate(WriteModel):
    """A way to reach you: the service checks that ``address`` and ``secret`` suit ``kind``."""

    model_config = ConfigDict(json_schema_extra=_one_form_per_kind)

    kind: ContactKindName
    label: Label = ""
    address: str | None = Field(default=None, max_length=2000)
    secret: Secret | None = None


class ContactMethodUpdate(WriteModel):
    label: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, min_length=1, max_length=2000)
    secret: SecretStr | None = Field(default=None, min_length=16, max_length=200)


class ContactMethodRead(ReadModel):
    id: int
    user_id: int
    kind: ContactKindName
    label: str
    hint: str = Field(description="The address, masked when it is a secret")
    signed: bool = Field(description="Deliveries carry an HMAC signature (webhooks)")
    created_at: dt.datetime


class ContactTestRead(ReadModel):
    contact_method_id: int
    result: str = Field(description='What was done, e.g. "webhook 200"')


# -- notification rules ----------------------------------------------------------------------------
class NotificationRuleCreate(WriteModel):
    contact_method_id: int = Field(ge=1, le=2**31 - 1)
    delay_minutes: int = Field(
        default=0, ge=0, le=MAX_DELAY_MINUTES, description="Minutes after you are notified"
    )


class NotificationRuleRead(ReadModel):
    id: int
    contact_method_id: int
    delay_minutes: int
    contact_method: ContactMethodRead
    created_at: dt.datetime
