"""The goal rate is measured the same way for treated and held-out customers: a goal event
within the window after entry counts, whether the enrolment is still open, completed or
exited (intent to treat). Figures checked against hand-computed Wilson and Newcombe
intervals."""

from __future__ import annotations

import datetime as dt

import pytest

from yutang.analytics.providers.journeys import journey_conversions
from yutang.analytics.sections import SectionContext
from yutang.core.clock import FrozenClock, use_clock
from yutang.customers.models import Customer
from yutang.events.models import Event
from yutang.journeys import engine, services
from yutang.journeys.models import Enrollment
from yutang.journeys.tests.helpers import T0, customer, event, live, setup

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def _paid(brand, who, at, n):
    with use_clock(FrozenClock(at)):
        event(brand, who, "order.paid", at, order_id=f"o{who.pk}-{n}", source="shop", amount_fen=1)


def test_treated_and_holdout_convert_alike_with_hand_computed_intervals():
    brand, admin = setup()
    j = live(
        admin,
        [
            {"id": "hi", "type": "send_message", "content": "hi"},
            {"id": "w", "type": "wait", "hours": 12},
        ],
        holdout_percent=30,
        goal={"event": "order.paid", "within_days": 3},
    )
    treated: list[Customer] = []
    held: list[Customer] = []
    while len(treated) < 20 or len(held) < 10:
        c = customer(brand)
        group = held if engine.in_holdout(j.pk, c.pk, 30) else treated
        if len(group) < (10 if group is held else 20):
            group.append(c)
    with use_clock(FrozenClock(T0)):
        results = services.enrol_customers(
            actor=admin, journey_id=j.pk, customer_ids=[c.pk for c in treated + held]
        )
    assert [r.status for r in results] == ["enrolled"] * 20 + ["holdout"] * 10
    # Treated: 4 order while their enrolment is open (6 h), 8 after it completed (12 h) but
    # within the 3-day window, 3 too late (day 5), 5 never. Held out: 3 within, 2 too late.
    plan = [(c, T0 + 6 * HOUR) for c in treated[:4]]
    plan += [(c, T0 + DAY) for c in treated[4:12]]
    plan += [(c, T0 + 5 * DAY) for c in treated[12:15]]
    plan += [(c, T0 + 2 * DAY) for c in held[:3]]
    plan += [(c, T0 + 4 * DAY) for c in held[3:5]]
    now = T0
    for n, (who, at) in enumerate(sorted(plan, key=lambda p: p[1])):
        engine.fast_forward(start=now, until=at)
        _paid(brand, who, at, n)
        now = at
    engine.fast_forward(start=now, until=T0 + 10 * DAY)

    rows = Enrollment.objects.filter(journey=j)
    assert rows.filter(state="converted").count() == 4  # reached the goal while open
    assert rows.filter(state="completed").count() == 16
    assert rows.filter(state="completed", converted_at__isnull=False).count() == 8
    assert {e.converted_at for e in rows.filter(customer__in=treated[4:12])} == {T0 + DAY}

    goal = services.journey_metrics(actor=admin, journey_id=j.pk)["goal"]
    assert goal["treated"] == {"n": 20, "converted": 12, "rate": 0.6, "ci95": [0.3866, 0.7812]}
    assert goal["holdout"] == {"n": 10, "converted": 3, "rate": 0.3, "ci95": [0.1078, 0.6032]}
    assert goal["uplift"] == 0.3
    assert goal["uplift_ci95"] == [-0.0708, 0.5642]

    # The dashboard's journeys section reads the same conversions.
    everyone = Customer.objects.filter(brand=brand)
    ctx = SectionContext(
        actor=None, brand=brand, start=(T0 - DAY).date(), end=(T0 + DAY).date(),
        start_at=T0 - DAY, end_at=T0 + DAY, store=None, channel=None, customers=everyone,
    )  # fmt: skip
    (row,) = journey_conversions(ctx).rows
    assert (row["entered"], row["converted"], row["rate"]) == (20, 12, 0.6)
    assert (row["holdout"], row["holdout_rate"]) == (10, 0.3)


def test_all_convert_on_day_one_gives_no_negative_uplift():
    """The audit's reproduction: a one-step journey whose every customer orders on day 1
    used to report treated 0/n against holdout n/n (uplift -1)."""
    brand, admin = setup()
    people = [customer(brand) for _ in range(40)]
    j = live(
        admin,
        [{"id": "hi", "type": "send_message", "content": "hi"}],
        holdout_percent=50,
        goal={"event": "order.paid", "within_days": 3},
    )
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[p.pk for p in people])
    engine.fast_forward(start=T0, until=T0 + HOUR)
    states = set(Enrollment.objects.filter(journey=j).values_list("state", flat=True))
    assert states == {"completed", "holdout"}
    for n, who in enumerate(people):
        _paid(brand, who, T0 + DAY, n)
    engine.fast_forward(start=T0 + DAY, until=T0 + 2 * DAY)
    goal = services.journey_metrics(actor=admin, journey_id=j.pk)["goal"]
    held = goal["holdout"]["n"]
    assert 0 < held < 40
    assert goal["treated"]["converted"] == goal["treated"]["n"] == 40 - held
    assert goal["holdout"]["converted"] == held
    assert goal["uplift"] == 0.0


def test_an_exited_enrolment_still_counts_its_goal_and_a_replay_changes_nothing():
    brand, admin = setup()
    c = customer(brand)
    j = live(
        admin,
        [{"id": "x", "type": "exit"}],
        goal={"event": "order.paid", "within_days": 3},
    )
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[c.pk])
    engine.fast_forward(start=T0, until=T0 + HOUR)
    _paid(brand, c, T0 + 2 * DAY, 1)
    _paid(brand, c, T0 + 2 * DAY + HOUR, 2)  # a second order keeps the first moment
    engine.fast_forward(start=T0 + 2 * DAY, until=T0 + 3 * DAY)
    e = Enrollment.objects.get()
    assert (e.state, e.exit_reason, e.converted_at) == ("exited", "exit_step", T0 + 2 * DAY)
    first = Event.objects.filter(type="order.paid").order_by("id").first()
    assert first is not None
    engine.handle_event(first)
    assert Enrollment.objects.get().converted_at == T0 + 2 * DAY
