"""The event consumer's batch form (`engine.handle_events`, with its set-based enrolment
`engine.enrol_many`) makes the same enrolments and changes as `handle_event` on each event in
turn, on both databases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction

from yutang.core.clock import FrozenClock, use_clock
from yutang.events.models import Event
from yutang.journeys import engine
from yutang.journeys.models import Enrollment
from yutang.journeys.tests.helpers import T0, customer, event, live, setup

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
SEND = [{"id": "m", "type": "send_message", "content": "hi"}]
VIP = {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}


class _Undo(Exception):
    pass


def _world(*, conditioned: bool) -> tuple[list[Event], Any, Any]:
    brand, admin = setup()
    with use_clock(FrozenClock(T0 - 3 * DAY)):
        added = live(
            admin, SEND, trigger={"type": "event", "event": "contact.added"},
            goal={"event": "order.paid", "within_days": 3},
        )  # fmt: skip
        first = live(
            admin, SEND, holdout_percent=50,
            trigger={"type": "event", "event": "order.paid", "first_order_only": True},
        )  # fmt: skip
        clicked = live(
            admin, SEND, trigger={"type": "event", "event": "link.clicked"},
            entry={"reentry": "after_days", "after_days": 2},
        )  # fmt: skip
        live(
            admin, SEND, trigger={"type": "event", "event": "contact.added", "where": {"x": "1"}},
            entry={"reentry": "always"},
        )  # fmt: skip
        if conditioned:
            live(
                admin, SEND, trigger={"type": "event", "event": "link.clicked"},
                entry={"reentry": "always", "condition": VIP},
            )  # fmt: skip
    people = [customer(brand, attributes={"vip": i % 2 == 0}) for i in range(12)]
    # Whether a first order is held out hashes the journey's and the customer's ids, which
    # depend on what ran before on the database: two more people, one the first-order
    # journey holds out and one it does not, make sure both paths run.
    held: dict[bool, Any] = {}
    while len(held) < 2:
        extra = customer(brand)
        held.setdefault(engine.in_holdout(first.pk, extra.pk, 50), extra)
    people += [held[True], held[False]]
    # Histories: people[8] already went through the new-contact journey; people[9] entered
    # the click journey yesterday; people[10] already ordered once.
    with use_clock(FrozenClock(T0 - 2 * DAY)):
        engine.enrol(journey=added, customer=people[8], at=T0 - 2 * DAY)
        engine.enrol(journey=clicked, customer=people[9], at=T0 - DAY)
        event(brand, people[10], "order.paid", T0 - 2 * DAY, order_id="o0", amount_fen=1,
              source="shop")  # fmt: skip
    start = Event.objects.filter(brand=brand).order_by("-pk").values_list("pk", flat=True)[0]
    at = T0
    script: list[tuple[int, str, dict[str, Any]]] = [
        (0, "contact.added", {"carrier": "sandbox"}),
        (1, "contact.added", {"carrier": "sandbox", "x": "1"}),
        (2, "link.clicked", {"link": "https://x.invalid"}),
        (
            0,
            "order.paid",
            {"order_id": "o1", "amount_fen": 100, "source": "shop"},
        ),  # goal and first order
        (2, "link.clicked", {"link": "https://x.invalid"}),  # again: after_days says no
        (3, "order.paid", {"order_id": "o2", "amount_fen": 100, "source": "shop"}),
        (3, "order.paid", {"order_id": "o3", "amount_fen": 100, "source": "shop"}),  # not the first
        (1, "contact.deleted", {"carrier": "sandbox"}),  # exits the new-contact journey
        (6, "contact.deleted", {"carrier": "sandbox"}),  # no open enrolment: changes nothing
        (1, "contact.added", {"carrier": "sandbox", "x": "1"}),  # after the exit: re-enrols
        (5, "contact.deleted", {"carrier": "sandbox"}),  # before being added: nothing to end
        (1, "contact.deleted", {"carrier": "sandbox"}),  # ends the new enrolment too
        (9, "consent.changed", {"purpose": "marketing", "status": "withdrawn"}),  # exits
        (9, "link.clicked", {"link": "https://x.invalid"}),  # after that exit: re-entry rule
        (4, "link.clicked", {"link": "https://x.invalid"}),
        (5, "contact.added", {"carrier": "sandbox"}),
        (6, "message.received", {"carrier": "sandbox", "text": "好"}),  # changes nothing
        (7, "contact.added", {"carrier": "sandbox", "x": "1"}),
        (8, "contact.added", {"carrier": "sandbox"}),  # entered before: never again
        (9, "link.clicked", {"link": "https://x.invalid"}),  # entered yesterday: not within 2 days
        (
            10,
            "order.paid",
            {"order_id": "o4", "amount_fen": 100, "source": "shop"},
        ),  # not the first
        (11, "link.clicked", {"link": "https://x.invalid"}),
        (11, "contact.added", {"carrier": "sandbox"}),
        (4, "order.paid", {"order_id": "o5", "amount_fen": 100, "source": "shop"}),
        (12, "order.paid", {"order_id": "o6", "amount_fen": 100, "source": "shop"}),  # held out
        (13, "order.paid", {"order_id": "o7", "amount_fen": 100, "source": "shop"}),  # enrolled
    ]
    with use_clock(FrozenClock(at)):
        for n, (who, type_, props) in enumerate(script):
            event(brand, people[who], type_, at + dt.timedelta(seconds=n), **props)
    events = list(Event.objects.filter(brand=brand, pk__gt=start).order_by("pk"))
    return events, people, added


def _rows(events: list[Event], people: list[Any]) -> list[tuple[Any, ...]]:
    index = {f"event:{e.pk}": n for n, e in enumerate(events)}
    who = {p.pk: n for n, p in enumerate(people)}
    rows = Enrollment.objects.filter(customer_id__in=list(who)).select_related("journey")
    out = []
    for r in rows.order_by("pk"):
        out.append((
            r.journey.name, who[r.customer_id], r.state, r.current_step, r.next_due_at,
            r.entered_at, r.exited_at, r.exit_reason, r.converted_at, r.is_holdout,
            index.get(r.source, r.source),
        ))  # fmt: skip
    return out


@pytest.mark.parametrize("conditioned", [False, True])
def test_the_batch_enrols_and_changes_what_one_event_at_a_time_does(conditioned):
    events, people, _added = _world(conditioned=conditioned)
    now = T0  # enrolled before the goal events happen
    results = []
    for batch in (True, False):
        try:
            with transaction.atomic(), use_clock(FrozenClock(now)):
                if batch:
                    engine.handle_events(events)
                else:
                    for e in events:
                        engine.handle_event(e)
                results.append(_rows(events, people))
                raise _Undo
        except _Undo:
            pass
    batched, one_by_one = results
    assert batched == one_by_one
    enrolled = [r for r in batched if isinstance(r[-1], int)]
    assert len(enrolled) >= 8  # the script enrols through every path it means to
    assert any(r[2] == "converted" for r in batched)
    exited = [(r[1], r[7]) for r in batched if r[2] == "exited"]
    assert sorted(exited) == [
        (1, "contact_deleted"), (1, "contact_deleted"), (1, "contact_deleted"),
        (9, "consent_withdrawn"),
    ]  # fmt: skip
    held_out = {r[1] for r in batched if r[9]}
    assert 12 in held_out and 13 not in held_out  # the extra first orders: held out, enrolled
    assert any(r[1] == 13 and r[2] == "active" for r in batched)


def test_enrol_many_answers_as_enrol_does():
    _events, people, journey = _world(conditioned=False)
    items = [(journey, p.pk, "api") for p in people[7:10]] + [(journey, people[7].pk, "api")]
    with use_clock(FrozenClock(T0)):
        answers = engine.enrol_many(items=items, at=T0)
    assert [a.status for a in answers] == [
        "enrolled", "already_enrolled", "enrolled", "already_enrolled",
    ]  # fmt: skip
    assert (
        answers[0].enrollment_id == Enrollment.objects.get(journey=journey, customer=people[7]).pk
    )
