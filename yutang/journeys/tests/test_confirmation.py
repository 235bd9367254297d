"""A send step that waits for staff confirmation (WeCom: every message to a customer is a
mass-message task the member confirms in the app; the outbox's ``pending_confirmation``):
confirmed → the step's next; expired, failed or blocked, or still unconfirmed at the timeout
→ ``on_timeout``. Real WeCom adapter against the local WeCom test server, both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from tests.factories import make_staff
from yutang.carriers.models import CarrierContact
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.errors import ValidationFailed
from yutang.core.permissions import Role
from yutang.journeys import definition as defs
from yutang.journeys import engine, services
from yutang.journeys.models import Enrollment, StaffTask, StepRun
from yutang.journeys.tests.helpers import live
from yutang.messaging import services as messaging
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests import helpers as msg

pytestmark = pytest.mark.django_db

NOON = msg.NOON  # 10:00 in Shanghai: no quiet hours
HOUR = dt.timedelta(hours=1)


def steps(timeout_hours: int) -> list[dict[str, Any]]:
    return [
        {"id": "m", "type": "send_message", "content": "新品到了 {name}",
         "wait_for_confirmation": {"timeout": {"hours": timeout_hours}, "on_timeout": "call"}},
        {"id": "ok", "type": "add_tag", "group": "journey", "name": "confirmed", "next": "end"},
        {"id": "call", "type": "create_task", "title": "call {name}"},
        {"id": "end", "type": "exit"},
    ]  # fmt: skip


@pytest.fixture
def wecom() -> Iterator[tuple[WeComTestServer, FrozenClock]]:
    frozen = FrozenClock(NOON)
    cache.clear()
    with use_clock(frozen), WeComTestServer(clock=frozen) as running:
        running.add_staff("zhangsan")
        yield running, frozen
    cache.clear()


def start(server: WeComTestServer, timeout_hours: int) -> tuple[Any, Any, Message]:
    """A WeCom contact enrolled in a journey whose message is now waiting for the member."""
    from yutang.carriers.tests.test_wecom_adapter import connect, post

    account = connect(server)
    post(account, server, server.add_customer(userid="zhangsan", external_userid="wm-c-1"))
    who = CarrierContact.objects.get().customer
    msg.grant(who, "marketing")
    admin = make_staff(account.brand, Role.BRAND_ADMIN)
    journey = live(admin, steps(timeout_hours))
    services.enrol_customers(actor=admin, journey_id=journey.pk, customer_ids=[who.pk])
    assert engine.run_due_once(journey_ids=[journey.pk]) == 1
    e = Enrollment.objects.get(journey=journey)
    assert (e.state, e.current_step, e.next_due_at) == ("waiting", "m", NOON + HOUR)
    assert deliver_due_messages() == 1
    m = Message.objects.get(cause="journey")
    assert m.status == "pending_confirmation"
    assert len(server.group_msgs) == 1  # the mass-message task for the member to confirm
    return admin, journey, m


def runs(journey: Any) -> list[tuple[str, str]]:
    return list(
        StepRun.objects.filter(enrollment__journey=journey)
        .order_by("id")
        .values_list("step_id", "outcome")
    )


def test_the_journey_waits_for_the_confirmation_then_goes_on(wecom):
    server, frozen = wecom
    admin, journey, m = start(server, timeout_hours=48)
    frozen.advance(3 * HOUR)
    engine.fast_forward(until=frozen.now())  # hourly checks: still pending, no StepRun
    assert runs(journey) == [("m", "confirming")]
    assert messaging.confirm_message(message_id=m.pk) is True
    assert messaging.confirm_message(message_id=m.pk) is False  # once
    # The message.sent event reaches the journey through the event log.
    engine.fast_forward(until=frozen.now() + dt.timedelta(minutes=1))
    assert runs(journey) == [
        ("m", "confirming"), ("m", "confirmed"), ("ok", "tagged"), ("end", "exit_step"),
    ]  # fmt: skip
    assert not StaffTask.objects.exists()
    metrics = services.journey_metrics(actor=admin, journey_id=journey.pk)
    assert metrics["confirmations"]["confirmed"] == 1
    assert metrics["confirmations"]["rate"] == 1.0
    staff_row = metrics["confirmations"]["by_staff"][0]
    assert (staff_row["confirmed"], staff_row["asked"]) == (1, 1)


def test_no_confirmation_by_the_timeout_takes_the_timeout_branch(wecom):
    server, frozen = wecom
    admin, journey, m = start(server, timeout_hours=6)
    engine.fast_forward(start=NOON, until=NOON + 7 * HOUR)
    assert runs(journey) == [
        ("m", "confirming"), ("m", "timeout"), ("call", "task_created"), ("end", "exit_step"),
    ]  # fmt: skip
    (task,) = StaffTask.objects.all()
    assert task.created_at == NOON + 6 * HOUR  # at the deadline, not at a later check
    # A confirmation after the timeout changes nothing.
    assert messaging.confirm_message(message_id=m.pk) is True
    engine.fast_forward(start=NOON + 7 * HOUR, until=NOON + 8 * HOUR)
    assert len(runs(journey)) == 4
    metrics = services.journey_metrics(actor=admin, journey_id=journey.pk)
    assert (metrics["confirmations"]["timeout"], metrics["confirmations"]["rate"]) == (1, 0.0)


def test_a_message_that_expires_unconfirmed_takes_the_timeout_branch_at_once(wecom):
    server, frozen = wecom
    _, journey, m = start(server, timeout_hours=72)
    half = dt.timedelta(minutes=30)
    engine.fast_forward(start=NOON, until=NOON + 24 * HOUR + half)
    frozen.set(NOON + 24 * HOUR + half)
    deliver_due_messages()  # messaging expires it (confirm_timeout_hours: 24)
    m.refresh_from_db()
    assert m.status == "expired"
    engine.fast_forward(start=NOON + 24 * HOUR + half, until=NOON + 27 * HOUR)
    assert runs(journey)[:3] == [("m", "confirming"), ("m", "not_sent"), ("call", "task_created")]
    assert StaffTask.objects.get().created_at == NOON + 25 * HOUR  # the first check after expiry


def test_the_timeout_branch_must_name_a_step():
    with pytest.raises(ValidationFailed) as caught:
        defs.parse(
            {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "m",
                        "type": "send_message",
                        "content": "x",
                        "wait_for_confirmation": {"timeout": {"hours": 1}, "on_timeout": "nope"},
                    },
                ],
            }
        )
    assert caught.value.field == "$.steps[0].wait_for_confirmation.on_timeout"
    with pytest.raises(ValidationFailed) as zero:
        defs.parse(
            {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "m",
                        "type": "send_message",
                        "content": "x",
                        "wait_for_confirmation": {"timeout": {}},
                    },
                ],
            }
        )
    assert zero.value.field == "$.steps[0].wait_for_confirmation.timeout"


def test_the_console_builder_sets_kind_and_confirmation_wait_and_shows_confirmation_rates(wecom):
    from tests.factories import console_client

    server, frozen = wecom
    admin, journey, m = start(server, timeout_hours=48)
    messaging.confirm_message(message_id=m.pk)
    engine.fast_forward(until=frozen.now() + dt.timedelta(minutes=1))
    client = console_client(admin)
    page = client.get(f"/journeys/{journey.pk}/").content.decode()
    assert (
        'data-testid="m-confirmations"' in page
        and "zhangsan" not in page.split("m-confirmations")[0]
    )
    assert "员工确认" in page and "等待员工确认" in page  # metrics block and the flow's badge
    # a service message that waits up to 2 days for the member, else goes to "call"
    added = client.post(
        f"/journeys/{journey.pk}/edit/",
        {"op": "add", "id": "care", "type": "send_message", "content": "天冷了注意保暖",
         "kind": "service", "wait_for_confirmation": "1", "days": "2", "on_timeout": "call"},
    )  # fmt: skip
    assert added.status_code == 302
    journey.refresh_from_db()
    care = next(s for s in journey.draft["steps"] if s["id"] == "care")
    assert care["kind"] == "service"
    assert care["wait_for_confirmation"] == {
        "timeout": {"days": 2, "hours": 0, "minutes": 0},
        "on_timeout": "call",
    }
    bad = client.post(
        f"/journeys/{journey.pk}/edit/",
        {"op": "add", "id": "oops", "type": "send_message", "content": "x",
         "wait_for_confirmation": "1", "days": "1", "on_timeout": "nowhere"},
    )  # fmt: skip
    assert bad.status_code == 422 and "on_timeout" in bad.content.decode()
