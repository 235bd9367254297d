"""`engine.event_types`: the event types the journeys consumer reads (the consumer passes
over the rest without loading them), from the live triggers and every version's goals, exit
rules and waits; every type when a condition can hold after any event."""

from __future__ import annotations

from typing import Any

import pytest

from yutang.journeys import engine, services
from yutang.journeys.tests.helpers import live, setup
from yutang.segments import services as segments

pytestmark = pytest.mark.django_db
SEND = [{"id": "m", "type": "send_message", "content": "hi"}]
NO_EXITS = {"contact_deleted": False, "consent_withdrawn": False}
VIP = {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}


def test_the_types_follow_triggers_goals_exits_and_waits():
    _brand, admin = setup()
    assert engine.event_types() == set(), "no journey: nothing to read"
    live(admin, SEND, trigger={"type": "event", "event": "contact.added"}, exit_rules=NO_EXITS)
    assert engine.event_types() == {"contact.added"}
    wait: list[dict[str, Any]] = [
        {"id": "w", "type": "wait_event", "event": "link.clicked", "timeout": {"days": 1}},
        *SEND,
    ]
    paused = live(
        admin, wait, trigger={"type": "event", "event": "order.refunded"},
        goal={"event": "order.paid", "within_days": 3},
    )  # fmt: skip
    both = {"contact.added", "order.refunded", "link.clicked", "order.paid"}
    assert engine.event_types() == both | {"contact.deleted", "consent.changed"}
    # Paused: no one enters through its trigger, but its enrolments still wait, convert, exit.
    services.set_status(actor=admin, journey_id=paused.pk, status="paused")
    assert engine.event_types() == (both - {"order.refunded"}) | {
        "contact.deleted",
        "consent.changed",
    }
    confirm = [{**SEND[0], "wait_for_confirmation": {"timeout": {"hours": 2}}}]
    segment = segments.create_segment(actor=admin, name="VIP", kind="dynamic", rule=VIP)
    live(
        admin, confirm, trigger={"type": "segment", "segment_id": segment.pk},
        exit_rules=NO_EXITS,
    )  # fmt: skip
    found = engine.event_types()
    assert found is not None
    assert {"segment.entered", *engine.CONFIRMED_EVENTS} <= found


@pytest.mark.parametrize("where", ["trigger", "exit_rules"])
def test_a_condition_reads_every_event(where):
    _brand, admin = setup()
    if where == "trigger":
        live(admin, SEND, trigger={"type": "condition", "condition": VIP})
    else:
        live(
            admin, SEND, trigger={"type": "event", "event": "contact.added"},
            exit_rules={"condition": VIP},
        )  # fmt: skip
    assert engine.event_types() is None
