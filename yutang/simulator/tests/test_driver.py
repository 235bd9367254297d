from __future__ import annotations

import pytest
from django.db.models import Sum

from yutang.commerce.models import Order, Refund
from yutang.core.models import Brand
from yutang.customers.models import Customer
from yutang.events.models import Event
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import SimulationResult, simulate

pytestmark = pytest.mark.django_db


def tiny(name: str, **overrides: object):
    scenario = load_scenario(name).with_overrides(days=12, scale=0.05)
    if overrides:
        scenario = scenario.model_validate({**scenario.model_dump(), **overrides})
    return scenario


def brand_id(result: SimulationResult) -> int:
    assert result.brand_id is not None
    return result.brand_id


def counts(brand: Brand) -> dict[str, int]:
    events = Event.objects.filter(brand=brand)
    return {
        t: events.filter(type=t).count()
        for t in (
            "contact.added",
            "contact.deleted",
            "group.joined",
            "group.left",
            "link.clicked",
            "message.received",
            "message.sent",
            "order.paid",
            "order.refunded",
        )
    }


def test_the_database_matches_the_simulators_own_tallies() -> None:
    scenario = tiny("fashion-300k", record_touches=True)
    result = simulate(scenario=scenario)
    brand = Brand.objects.get(pk=brand_id(result))
    s = {k: round(sum(v)) for k, v in result.series.items()}
    c = counts(brand)
    assert c["contact.added"] == s["adds"] == result.outcome.adds > 0
    assert Customer.objects.filter(brand=brand).count() == s["adds"]
    assert c["contact.deleted"] == s["deletions"]
    assert c["group.joined"] == s["group_joins"]
    assert c["group.left"] == s["group_leaves"]
    assert c["message.sent"] == s["marketing_touches"] + s["service_touches"] > 0
    assert Order.objects.filter(brand=brand).count() == c["order.paid"] == s["orders"] > 0
    assert Order.objects.filter(brand=brand).aggregate(t=Sum("amount_fen"))["t"] == s["gmv_fen"]
    assert Refund.objects.filter(order__brand=brand).count() == c["order.refunded"] == s["refunds"]
    # Clicks and replies are one event per person and day, carrying the count.
    clicks = Event.objects.filter(brand=brand, type="link.clicked")
    assert sum(e.properties["count"] for e in clicks) == s["clicks"]
    # Events carry simulated time, inside the scenario's dates.
    first, last = scenario.start_date, result.dates[-1]
    times = Event.objects.filter(brand=brand).values_list("occurred_at", flat=True)
    assert all(
        first.isoformat() <= t.astimezone(brand.tz).date().isoformat() <= last.isoformat()
        for t in times
    )
    # Everything has an idempotency key from the simulator.
    assert (
        not Event.objects.filter(brand=brand, source="simulator")
        .exclude(idempotency_key__startswith="sim:")
        .exists()
    )


def test_rerunning_the_same_days_changes_nothing() -> None:
    scenario = tiny("steady")
    result = simulate(scenario=scenario)
    brand = Brand.objects.get(pk=brand_id(result))
    before = (counts(brand), Customer.objects.filter(brand=brand).count())
    again = simulate(scenario=scenario, brand=brand)
    assert (counts(brand), Customer.objects.filter(brand=brand).count()) == before
    assert again.customers_by_person == result.customers_by_person


def test_store_scenarios_post_orders_to_their_stores() -> None:
    result = simulate(scenario=tiny("coffee-stores"))
    brand = Brand.objects.get(pk=brand_id(result))
    orders = Order.objects.filter(brand=brand)
    assert orders.count() == result.outcome.orders > 0
    assert set(orders.values_list("store__code", flat=True)) <= {
        "sh001",
        "sh002",
        "sh003",
        "sh004",
        "sh005",
    }
    assert not orders.filter(store__isnull=True).exists()
