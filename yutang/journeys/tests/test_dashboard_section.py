"""The operations dashboard's "journeys" section: per journey, the customers in scope who
entered in the period and how many of them reached the goal (held-out customers apart)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import make_staff, make_store
from yutang.analytics import services as analytics
from yutang.analytics.providers.journeys import journey_conversions
from yutang.analytics.sections import SectionContext
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.customers.models import Customer
from yutang.journeys import engine, services
from yutang.journeys.models import Enrollment
from yutang.journeys.tests.helpers import T0, customer, event, live, setup

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def context(brand, customers, start_at, end_at) -> SectionContext:
    return SectionContext(
        actor=None, brand=brand, start=start_at.date(), end=end_at.date(),
        start_at=start_at, end_at=end_at, store=None, channel=None, customers=customers,
    )  # fmt: skip


def test_entered_in_the_period_and_reached_the_goal_per_journey():
    brand, admin = setup()
    store = make_store(brand)
    people = [customer(brand, owner_store=store if i < 3 else None) for i in range(6)]
    welcome = live(admin, [{"id": "w", "type": "wait", "days": 10}],
                   goal={"event": "order.paid", "within_days": 3})  # fmt: skip
    other = live(admin, [{"id": "w", "type": "wait", "days": 10}])
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(
            actor=admin, journey_id=welcome.pk, customer_ids=[p.pk for p in people[:4]]
        )
        services.enrol_customers(actor=admin, journey_id=other.pk, customer_ids=[people[5].pk])
    paid = {"amount_fen": 100, "source": "tmall"}
    with use_clock(FrozenClock(T0 + DAY)):
        for who in people[:2]:  # within the goal window
            event(brand, who, "order.paid", T0 + DAY, order_id=f"o{who.pk}", **paid)
    engine.fast_forward(start=T0 + DAY, until=T0 + DAY + dt.timedelta(minutes=1))
    with use_clock(FrozenClock(T0 + 4 * DAY)):  # too late for the goal
        event(brand, people[2], "order.paid", T0 + 4 * DAY, order_id="late", **paid)
    engine.fast_forward(start=T0 + 4 * DAY, until=T0 + 4 * DAY + dt.timedelta(minutes=1))
    with use_clock(FrozenClock(T0 + 5 * DAY)):  # entered after the period
        services.enrol_customers(actor=admin, journey_id=welcome.pk, customer_ids=[people[4].pk])
    everyone = Customer.objects.filter(brand=brand)
    table = journey_conversions(context(brand, everyone, T0 - DAY, T0 + 2 * DAY))
    rows = {r["journey"]: r for r in table.rows}
    assert set(rows) == {welcome.name, other.name}
    w = rows[welcome.name]
    assert (w["entered"], w["converted"], w["holdout"]) == (4, 2, 0)
    assert w["rate"] == 0.5 and w["holdout_rate"] is None
    assert (rows[other.name]["entered"], rows[other.name]["converted"]) == (1, 0)
    assert [c.key for c in table.columns][:4] == ["journey", "entered", "converted", "rate"]

    # scope: only the store's customers (people 0–2; 0 and 1 converted)
    mine = Customer.objects.filter(owner_store=store)
    (only,) = journey_conversions(context(brand, mine, T0 - DAY, T0 + 2 * DAY)).rows
    assert (only["journey"], only["entered"], only["converted"]) == (welcome.name, 3, 2)
    # a period nobody entered in
    assert journey_conversions(context(brand, everyone, T0 + 6 * DAY, T0 + 7 * DAY)).rows == []
    assert Enrollment.objects.filter(journey=welcome).count() == 5


def test_the_overview_shows_the_section_for_a_store_manager_within_their_stores():
    brand, admin = setup()
    store = make_store(brand)
    mine = customer(brand, owner_store=store)
    theirs = customer(brand)
    journey = live(admin, [{"id": "w", "type": "wait", "days": 1}])
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(
            actor=admin, journey_id=journey.pk, customer_ids=[mine.pk, theirs.pk]
        )
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[store])
    with use_clock(FrozenClock(T0 + DAY)):
        overview = analytics.overview(
            actor=manager, start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 2)
        )
    (section,) = [s for s in overview.sections if s.key == "journeys"]
    assert section.status == "ok"
    assert section.table is not None
    assert [(r["journey"], r["entered"]) for r in section.table.rows] == [(journey.name, 1)]
