"""Journeys on the real apps: conditions are segments rules (errors name the JSON path inside
the definition), messages go through messaging's outbox and policy gate, the carrier account
is chosen by the documented rule, and the metrics read messaging's Message rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_account, make_staff
from yutang.carriers.models import CarrierContact
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.errors import ValidationFailed
from yutang.core.permissions import Role
from yutang.journeys import engine, integrations, services
from yutang.journeys.models import Enrollment, StepRun
from yutang.journeys.tests.helpers import T0, customer, hold, live, sandbox_account, setup
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests import helpers as msg

pytestmark = pytest.mark.django_db

SEND = [{"id": "m", "type": "send_message", "kind": "marketing", "content": "春季新品 {name}"}]


def enrol_and_run(admin, journey, people, at=T0) -> None:
    with use_clock(FrozenClock(at)):
        services.enrol_customers(
            actor=admin, journey_id=journey.pk, customer_ids=[p.pk for p in people]
        )
        while engine.run_due_once(batch=50, journey_ids=[journey.pk]):
            pass


@pytest.mark.parametrize(
    ("where", "condition", "field"),
    [
        ("trigger", {"kind": "lifecycle", "stages": ["nope"]}, "$.trigger.condition.stages"),
        ("entry", {"and": [{"kind": "aggregate", "field": "order_count", "op": "gte"}]},
         "$.entry.condition.and[0]"),
        ("branch", {"or": [{"kind": "profile"}, {"kind": "mood"}]}, "$.steps[1].condition.or[0]"),
        ("exit", {"not": {"kind": "tag", "tag_ids": []}}, "$.exit_rules.condition.not"),
    ],
)  # fmt: skip
def test_a_bad_condition_names_the_json_path_inside_the_definition(where, condition, field):
    _, admin = setup()
    steps: list[dict[str, Any]] = [
        {"id": "m", "type": "send_message", "content": "x"},
        {"id": "b", "type": "branch", "condition": {}, "then": "m"},
    ]
    definition: dict[str, Any] = {"trigger": {"type": "manual"}, "steps": steps}
    if where == "trigger":
        definition["trigger"] = {"type": "schedule", "time": "10:00", "condition": condition}
    elif where == "entry":
        definition["entry"] = {"condition": condition}
    elif where == "branch":
        steps[1]["condition"] = condition
    else:
        definition["exit_rules"] = {"condition": condition}
    with pytest.raises(ValidationFailed) as caught:
        services.create_journey(actor=admin, name="Bad", definition=definition)
    assert caught.value.field is not None
    assert caught.value.field.startswith(field), caught.value.field


def test_the_account_is_the_owners_held_account_else_the_most_recent_active_contact():
    brand, admin = setup()
    owner = make_staff(brand, Role.BRAND_ADMIN)
    owners_account = make_account(brand, staff=owner)
    other, newest = make_account(brand), make_account(brand)
    a = customer(brand, reachable=False, owner_staff=owner)
    b = customer(brand, reachable=False, owner_staff=owner)
    c = customer(brand, reachable=False)
    hold(a, owners_account, T0 - dt.timedelta(days=30))
    hold(a, newest, T0 - dt.timedelta(days=1))
    for who in (b, c):  # b holds the owner's account no longer
        hold(who, owners_account, T0 - dt.timedelta(days=30))
        hold(who, other, T0 - dt.timedelta(days=10))
        hold(who, newest, T0 - dt.timedelta(days=2))
    CarrierContact.objects.filter(customer=b, account=owners_account).update(status="lost")
    CarrierContact.objects.filter(customer=c, account=newest).update(status="lost")

    assert integrations.account_for(a) == owners_account
    assert integrations.account_for(b) == newest
    assert integrations.account_for(c) == other

    enrol_and_run(admin, live(admin, SEND), [a, b, c])
    sent = dict(Message.objects.values_list("customer_id", "account_id"))
    assert sent == {a.pk: owners_account.pk, b.pk: newest.pk, c.pk: other.pk}
    m = Message.objects.get(customer=a)
    assert (m.cause, m.kind, m.content["text"]) == (
        "journey",
        "marketing",
        f"春季新品 {a.display_name}",
    )


def test_a_customer_without_a_carrier_account_is_skipped_with_the_reason():
    brand, admin = setup()
    reachable, unreachable = customer(brand), customer(brand, reachable=False)
    journey = live(admin, [*SEND, {"id": "t", "type": "create_task", "title": "call {name}"}])
    enrol_and_run(admin, journey, [reachable, unreachable])

    assert list(Message.objects.values_list("customer_id", flat=True)) == [reachable.pk]
    outcomes = dict(
        StepRun.objects.filter(step_id="m").values_list("enrollment__customer_id", "outcome")
    )
    assert outcomes == {reachable.pk: "sent", unreachable.pk: "skipped_no_account"}
    metrics = services.journey_metrics(actor=admin, journey_id=journey.pk)
    assert metrics["messages_queued"] == 1
    assert metrics["messages_skipped_no_account"] == 1
    assert metrics["tasks_created"] == 2  # the journey went on for both
    assert metrics["steps"][0]["outcomes"] == {"sent": 1, "skipped_no_account": 1}


def test_the_policy_gate_decides_and_the_metrics_count_sent_and_blocked_by_rule():
    with use_clock(FrozenClock(msg.NOON)):
        brand, account, (first, second) = msg.setup(2)
        admin = make_staff(brand, Role.BRAND_ADMIN)
        journey = live(admin, [
            {"id": "a", "type": "send_message", "kind": "marketing", "content": "one"},
            {"id": "b", "type": "send_message", "kind": "marketing", "content": "two"},
        ])  # fmt: skip
    msg.grant(second, "marketing", status="withdrawn")
    enrol_and_run(admin, journey, [first, second], at=msg.NOON)
    assert Message.objects.filter(cause="journey").count() == 4
    with use_clock(FrozenClock(msg.NOON)):
        deliver_due_messages()
    outcome = {
        (m.customer_id, m.content["text"]): (m.status, m.rule)
        for m in Message.objects.filter(cause="journey")
    }
    assert outcome[(first.pk, "one")] == ("sent", "")
    assert outcome[(first.pk, "two")] == ("blocked", "frequency")  # one marketing a day
    assert {outcome[(second.pk, t)][1] for t in ("one", "two")} == {"consent"}
    metrics = services.journey_metrics(actor=admin, journey_id=journey.pk)
    assert metrics["messages_sent"] == 1
    assert metrics["messages_blocked"] == 3
    assert metrics["messages_blocked_by_rule"] == {"frequency": 1, "consent": 2}
    assert sum(metrics["messages_by_status"].values()) == metrics["messages_queued"] == 4


def test_messages_are_written_once_when_a_step_replays():
    brand, admin = setup()
    who = customer(brand)
    journey = live(admin, SEND)
    enrol_and_run(admin, journey, [who])
    (m,) = Message.objects.all()
    again = integrations.send_message(
        brand=brand, customer=who, account=sandbox_account(brand), kind="marketing",
        content="other text", journey_id=journey.pk, step_id="m",
        idempotency_key=m.idempotency_key,
    )  # fmt: skip
    assert again.pk == m.pk
    assert Message.objects.count() == 1


@pytest.fixture
def wecom() -> Iterator[tuple[WeComTestServer, FrozenClock]]:
    frozen = FrozenClock(msg.NOON)
    cache.clear()
    with use_clock(frozen), WeComTestServer(clock=frozen) as running:
        running.add_staff("zhangsan")
        yield running, frozen
    cache.clear()


def test_wecom_messages_wait_for_staff_confirmation_and_the_metrics_show_it(wecom):
    from yutang.carriers.tests.test_wecom_adapter import connect, post

    server, _ = wecom
    account = connect(server)
    post(account, server, server.add_customer(userid="zhangsan", external_userid="wm-j-1"))
    who = CarrierContact.objects.get().customer
    msg.grant(who, "marketing")
    admin = make_staff(account.brand, Role.BRAND_ADMIN)
    journey = live(admin, SEND)
    enrol_and_run(admin, journey, [who], at=msg.NOON)
    assert deliver_due_messages() == 1

    m = Message.objects.get(cause="journey")
    assert (m.account_id, m.status) == (account.pk, "pending_confirmation")
    (task,) = server.group_msgs.values()
    assert task.request["external_userid"] == ["wm-j-1"]
    metrics = services.journey_metrics(actor=admin, journey_id=journey.pk)
    assert (metrics["messages_pending_confirmation"], metrics["messages_sent"]) == (1, 0)


def test_a_schedule_trigger_selects_its_customers_with_one_query():
    brand, admin = setup()
    vip = [customer(brand, attributes={"vip": True}) for _ in range(30)]
    for _ in range(20):
        customer(brand, attributes={"vip": False})
    rule = {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}
    assert set(integrations.matching_customers(brand=brand, rule=rule)) == set(vip)
    with CaptureQueriesContext(connection) as queries:
        assert len(list(integrations.matching_customers(brand=brand, rule=rule))) == 30
    assert len(queries) == 1
    with use_clock(FrozenClock(T0 - dt.timedelta(days=1))):
        journey = live(
            admin, SEND, trigger={"type": "schedule", "time": "10:00", "condition": rule}
        )
    engine.fast_forward(start=T0 - dt.timedelta(days=1), until=T0 + dt.timedelta(hours=2))
    enrolled = set(Enrollment.objects.filter(journey=journey).values_list("customer_id", flat=True))
    assert enrolled == {c.pk for c in vip}
