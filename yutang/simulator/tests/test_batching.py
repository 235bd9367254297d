"""The driven simulator's speed comes from batched paths (a callback's facts handled
set-based, consumers handling a window at once, a day's adds routed and its orders posted
in one call each). They must not change what happens: the same
seed driven through the one-by-one paths gives the same outcome, row for row, and two
batched runs of the same seed are identical."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Count

from yutang.acquisition import services as acquisition
from yutang.acquisition.models import ContactAdd
from yutang.carriers import inbound
from yutang.commerce import services as commerce
from yutang.commerce.models import Order
from yutang.core.models import Brand
from yutang.customers.models import CustomerTag
from yutang.events import consumers
from yutang.events.models import Event
from yutang.journeys.models import Enrollment
from yutang.messaging.models import Message
from yutang.simulator.driver import SystemDriver
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import SimulationResult, simulate

pytestmark = pytest.mark.django_db


def scenario() -> Any:
    return load_scenario("fashion-300k").with_overrides(days=10, scale=0.01, seed=7)


def rows(result: SimulationResult) -> dict[str, Any]:
    assert result.brand_id is not None
    brand = Brand.objects.get(pk=result.brand_id)

    def tally(qs: Any, *fields: str) -> list[tuple[Any, ...]]:
        return sorted(
            tuple(r[f] for f in (*fields, "n")) for r in qs.values(*fields).annotate(n=Count("pk"))
        )

    return {
        "series": result.series,
        "outcome": result.outcome,
        "events": tally(Event.objects.filter(brand=brand), "type"),
        "enrollments": tally(
            Enrollment.objects.filter(brand=brand),
            "journey__name",
            "state",
            "exit_reason",
            "current_step",
        ),
        "messages": tally(Message.objects.filter(brand=brand), "cause", "kind", "status"),
        "adds": tally(ContactAdd.objects.filter(brand=brand), "channel__code", "is_first_touch"),
        "tags": tally(CustomerTag.objects.filter(customer__brand=brand), "tag__name", "source"),
        "orders": tally(
            Order.objects.filter(brand=brand), "amount_fen", "staff__display_name", "channel"
        ),
        "routed": tally(ContactAdd.objects.filter(brand=brand), "account__external_id"),
    }


def post_orders_one_by_one(driver: SystemDriver) -> None:
    orders, driver._orders = driver._orders, []
    for order in orders:
        commerce.post_order(
            brand=driver.brand, actor=None, source=order.source, external_id=order.external_id,
            paid_at=order.paid_at, amount_fen=order.amount_fen, discount_fen=order.discount_fen,
            customer_id=order.customer_id, store_code=order.store_code,
        )  # fmt: skip


def test_batched_paths_give_the_one_by_one_outcome(monkeypatch) -> None:
    batched = rows(simulate(scenario=scenario()))
    # The driver's own batches: routing a day's adds, posting a day's orders.
    monkeypatch.setattr(
        acquisition,
        "assign_accounts",
        lambda *, items: [acquisition.assign_account(live_code=c, at=at) for c, at in items],
    )
    monkeypatch.setattr(SystemDriver, "_post_orders", post_orders_one_by_one)
    monkeypatch.setattr(inbound, "_BATCH_SINKS", {})
    monkeypatch.setattr(inbound, "_CONTACT_ADDED_BATCHES", {})
    monkeypatch.setattr(inbound, "_WELCOME_BATCHES", {})
    # The consumers one event at a time, and every event (not only the types they declare).
    for name in ("journeys.events", "segments.auto_tags"):
        one = consumers._CONSUMERS[name]
        monkeypatch.setitem(consumers._CONSUMERS, name, consumers.Consumer(one.name, one.handler))
    one_by_one = rows(simulate(scenario=scenario()))
    assert batched == one_by_one
    assert batched["outcome"].adds > 0 and batched["enrollments"] and batched["tags"]
    assert batched["orders"] and batched["routed"]


def test_same_seed_driven_twice_gives_identical_outputs() -> None:
    a, b = rows(simulate(scenario=scenario())), rows(simulate(scenario=scenario()))
    assert a == b
    assert a["outcome"].adds > 0
