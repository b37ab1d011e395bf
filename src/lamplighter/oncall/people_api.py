"""On-call REST routes for people: escalation policies, your contact methods and notification
rules, and a test notification through one method. Answers never carry a Slack or webhook URL or
a signing key: only their masked hint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from lamplighter.core import outbound
from lamplighter.core.deps import BoxDep, CurrentActor, Id, PageDep, SessionDep, SettingsDep
from lamplighter.core.errors import Forbidden, LamplighterError
from lamplighter.core.pagination import page_of
from lamplighter.core.schemas import Page
from lamplighter.oncall import contacts, policies
from lamplighter.oncall.people_schemas import (
    ContactMethodCreate,
    ContactMethodRead,
    ContactMethodUpdate,
    ContactTestRead,
    EscalationPolicyCreate,
    EscalationPolicyRead,
    EscalationPolicyUpdate,
    NotificationRuleCreate,
    NotificationRuleRead,
)

router = APIRouter(prefix="/oncall", tags=["oncall"])
NO_CONTENT = status.HTTP_204_NO_CONTENT


class ChannelFailed(LamplighterError):
    """The channel a test went through refused or could not be reached (502: the fault lies
    beyond Lamplighter)."""

    status = 502
    slug = "channel-failed"
    title = "Notification channel failed"


# -- escalation policies ---------------------------------------------------------------------------
@router.get("/escalation-policies", response_model=Page[EscalationPolicyRead])
def list_policies(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    team: Annotated[str | None, Query(max_length=63, description="Owning team's slug")] = None,
) -> Page[EscalationPolicyRead]:
    team_id = (
        policies.team_by_slug(session=session, slug=team, field="query.team").id if team else None
    )
    rows = policies.list_(
        session=session, after_id=page.position, limit=page.limit + 1, team_id=team_id
    )
    items, cursor = page_of(rows, page.limit, lambda p: p.id)
    return Page[EscalationPolicyRead](
        items=[EscalationPolicyRead(**p) for p in policies.read_many(session, items)],
        next_cursor=cursor,
    )


@router.post(
    "/escalation-policies", response_model=EscalationPolicyRead, status_code=status.HTTP_201_CREATED
)
def create_policy(
    body: EscalationPolicyCreate, session: SessionDep, actor: CurrentActor
) -> EscalationPolicyRead:
    """Define a team's escalation policy: tiers of targets (schedules, people, teams), each
    waiting ``delay_minutes`` before the next, the chain repeated ``repeat`` times."""
    team = policies.team_by_slug(session=session, slug=body.team)
    policy = policies.create(
        session=session,
        actor=actor,
        team_id=team.id,
        name=body.name,
        description=body.description,
        tiers=body.tiers,
        repeat=body.repeat,
        is_team_default=body.is_team_default,
    )
    session.commit()
    return EscalationPolicyRead(**policies.read(session, policy))


@router.get("/escalation-policies/{policy_id}", response_model=EscalationPolicyRead)
def read_policy(policy_id: Id, session: SessionDep, actor: CurrentActor) -> EscalationPolicyRead:
    return EscalationPolicyRead(**policies.read(session, policies.get(session, policy_id)))


@router.patch("/escalation-policies/{policy_id}", response_model=EscalationPolicyRead)
def update_policy(
    policy_id: Id, body: EscalationPolicyUpdate, session: SessionDep, actor: CurrentActor
) -> EscalationPolicyRead:
    """Change what the body names; a refused change changes nothing."""
    policy = policies.update(
        session=session,
        actor=actor,
        policy_id=policy_id,
        name=body.name,
        description=body.description,
        tiers=body.tiers,
        repeat=body.repeat,
        is_team_default=body.is_team_default,
    )
    session.commit()
    return EscalationPolicyRead(**policies.read(session, policy))


@router.delete("/escalation-policies/{policy_id}", status_code=NO_CONTENT)
def delete_policy(policy_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    policies.delete(session=session, actor=actor, policy_id=policy_id)
    session.commit()
    return Response(status_code=NO_CONTENT)


# -- your contact methods --------------------------------------------------------------------------
def _me(actor: CurrentActor) -> int:
    if actor.user_id is None:  # the system acts through the service, never through these routes
        raise Forbidden("these routes are for a person signed in")
    return actor.user_id


@router.get("/me/contact-methods", response_model=Page[ContactMethodRead])
def list_contact_methods(
    session: SessionDep, actor: CurrentActor, page: PageDep
) -> Page[ContactMethodRead]:
    """Your contact methods, oldest first; addresses that are secrets only as a hint."""
    rows = contacts.list_methods(
        session=session, user_id=_me(actor), after_id=page.position, limit=page.limit + 1
    )
    items, cursor = page_of(rows, page.limit, lambda m: m.id)
    return Page[ContactMethodRead](
        items=[ContactMethodRead(**contacts.read_method(m)) for m in items], next_cursor=cursor
    )


@router.post(
    "/me/contact-methods", response_model=ContactMethodRead, status_code=status.HTTP_201_CREATED
)
def create_contact_method(
    body: ContactMethodCreate,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    box: BoxDep,
) -> ContactMethodRead:
    """Add a way to reach you: an email address, a Slack incoming-webhook URL, a webhook URL
    with the key its deliveries are signed with (``X-Lamplighter-Signature-256``, as the event
    webhooks), or the in-app inbox."""
    method = contacts.create_method(
        session=session,
        actor=actor,
        user_id=_me(actor),
        kind=body.kind,
        box=box,
        address=body.address,
        label=body.label,
        secret=body.secret.get_secret_value() if body.secret else None,
        policy=outbound.Policy.from_settings(settings),
    )
    session.commit()
    return ContactMethodRead(**contacts.read_method(method))


@router.patch("/me/contact-methods/{method_id}", response_model=ContactMethodRead)
def update_contact_method(
    method_id: Id,
    body: ContactMethodUpdate,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    box: BoxDep,
) -> ContactMethodRead:
    method = contacts.update_method(
        session=session,
        actor=actor,
        user_id=_me(actor),
        method_id=method_id,
        box=box,
        label=body.label,
        address=body.address,
        secret=body.secret.get_secret_value() if body.secret else None,
        policy=outbound.Policy.from_settings(settings),
    )
    session.commit()
    return ContactMethodRead(**contacts.read_method(method))


@router.delete("/me/contact-methods/{method_id}", status_code=NO_CONTENT)
def delete_contact_method(method_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    """Remove a contact method and the notification rules that use it."""
    contacts.delete_method(session=session, actor=actor, user_id=_me(actor), method_id=method_id)
    session.commit()
    return Response(status_code=NO_CONTENT)


@router.post(
    "/me/contact-methods/{method_id}/test",
    response_model=ContactTestRead,
    responses={502: {"description": "The channel refused or could not be reached"}},
)
def test_contact_method(
    method_id: Id, session: SessionDep, actor: CurrentActor, settings: SettingsDep, box: BoxDep
) -> ContactTestRead:
    """Send a test notification through the method now and say what happened; a channel that
    fails answers a 502 problem with its reason (and whether trying later may help)."""
    outcome = contacts.send_test(
        session=session,
        actor=actor,
        user_id=_me(actor),
        method_id=method_id,
        settings=settings,
        box=box,
    )
    session.commit()  # the attempt is audited, and an inbox item kept, either way
    if not isinstance(outcome, str):
        later = "trying again later may work" if outcome.retryable else "fix the method first"
        raise ChannelFailed(f"{outcome.reason} ({later})")
    return ContactTestRead(contact_method_id=method_id, result=outcome)


# -- your notification rules -----------------------------------------------------------------------
@router.get("/me/notification-rules", response_model=Page[NotificationRuleRead])
def list_notification_rules(
    session: SessionDep, actor: CurrentActor, page: PageDep
) -> Page[NotificationRuleRead]:
    """Your rules, soonest first: how long after you are paged each method is used."""
    rows = contacts.list_rules(
        session=session, user_id=_me(actor), after=page.position, limit=page.limit + 1
    )
    items, cursor = page_of(rows, page.limit, lambda pair: contacts.rule_position(pair[0]))
    return Page[NotificationRuleRead](
        items=[NotificationRuleRead(**contacts.read_rule(rule, m)) for rule, m in items],
        next_cursor=cursor,
    )


@router.post(
    "/me/notification-rules",
    response_model=NotificationRuleRead,
    status_code=status.HTTP_201_CREATED,
)
def create_notification_rule(
    body: NotificationRuleCreate, session: SessionDep, actor: CurrentActor
) -> NotificationRuleRead:
    """Add "after ``delay_minutes``, by this method of mine". With no rules at all you are told
    in the in-app inbox and by every email method at once."""
    rule = contacts.create_rule(
        session=session,
        actor=actor,
        user_id=_me(actor),
        contact_method_id=body.contact_method_id,
        delay_minutes=body.delay_minutes,
    )
    session.commit()
    method = contacts.get_method(session=session, method_id=rule.contact_method_id)
    return NotificationRuleRead(**contacts.read_rule(rule, method))


@router.delete("/me/notification-rules/{rule_id}", status_code=NO_CONTENT)
def delete_notification_rule(rule_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    contacts.delete_rule(session=session, actor=actor, user_id=_me(actor), rule_id=rule_id)
    session.commit()
    return Response(status_code=NO_CONTENT)
