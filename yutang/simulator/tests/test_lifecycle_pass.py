"""The weekly lifecycle pass the simulator runs (`segments.scoring.recompute_lifecycle`) reads
each chunk of customers by id range: every stage it stores must equal `stage_of` evaluated
customer by customer from the full aggregate row, whatever lies between the chunk's ids
(another brand's customers, merged customers, customers without an aggregate, orders or
carrier contacts)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tests.factories import make_brand
from yutang.carriers.models import CarrierContact
from yutang.commerce.models import Order, Product
from yutang.core.clock import FrozenClock, use_clock
from yutang.customers.models import Customer
from yutang.events.models import CustomerAggregate, Event
from yutang.segments import scoring
from yutang.segments.tests.builders import T0, aggregate, carrier_account, contact, customer

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def _expected(brand, now):
    """Each surviving customer's stage, one customer at a time from the full rows."""
    conf = scoring.settings_for(brand)
    out = {}
    for c in Customer.objects.filter(brand=brand, merged_into__isnull=True):
        agg = CustomerAggregate.objects.filter(customer=c).first()
        cycle = scoring._cycle_days_by_customer(brand, [c.pk]).get(c.pk)
        rows = list(CarrierContact.objects.filter(customer=c).values_list("status", flat=True))
        holds = None if not rows else any(s == CarrierContact.Status.ACTIVE for s in rows)
        out[c.pk] = scoring.stage_of(agg, conf, cycle, now, holds)
    return out


def _world(brand, other, rng):
    Product.objects.create(brand=brand, sku="TEE", name="T", price_fen=100, usage_cycle_days=20)
    Product.objects.create(brand=brand, sku="COAT", name="C", price_fen=100, usage_cycle_days=90)
    Product.objects.create(brand=other, sku="TEE", name="T", price_fen=100, usage_cycle_days=400)
    accounts = {b.pk: carrier_account(b) for b in (brand, other)}
    survivors: list[Customer] = []
    for n in range(40):
        b = brand if rng.random() < 0.7 else other  # the two brands' ids interleave
        c = customer(b, lifecycle_stage=rng.choice(["", *scoring.STAGES]))
        if survivors and rng.random() < 0.1:
            Customer.objects.filter(pk=c.pk).update(merged_into=rng.choice(survivors))
        elif b == brand:
            survivors.append(c)
        if rng.random() < 0.8:

            def when():
                return rng.choice([None, T0 - rng.randint(0, 200) * DAY])

            orders = rng.choice([0, 0, 1, 2, 3, 5])
            aggregate(
                c, order_count=orders, last_order_at=T0 - rng.randint(0, 150) * DAY if orders
                else None, last_inbound_at=when(), last_click_at=when(),
                last_contact_added_at=when(), last_contact_deleted_at=when(),
                touches_by_day={"2026-03-01": 2},
            )  # fmt: skip
        for k in range(rng.choice([0, 1, 2])):
            Order.objects.create(
                brand=b, source="tmall", external_id=f"o{n}-{k}", customer=c,
                paid_at=T0 - rng.randint(0, 150) * DAY, amount_fen=100, created_at=T0,
                items=[{"sku": rng.choice(["TEE", "COAT", "HAT"]), "qty": 1}],
            )  # fmt: skip
        for _ in range(rng.choice([0, 1, 1, 2])):
            contact(c, accounts[b.pk], status=rng.choice(["active", "lost"]))


@pytest.mark.parametrize("chunk", [1, 3, 7, 5000])
def test_lifecycle_pass_by_id_range_equals_stage_of_per_customer(chunk):
    brand, other = make_brand(), make_brand()
    _world(brand, other, random.Random(chunk))
    now = T0 + 3 * DAY
    with use_clock(FrozenClock(now)):
        expected = _expected(brand, now)
        before = dict(
            Customer.objects.filter(brand=brand, merged_into__isnull=True).values_list(
                "pk", "lifecycle_stage"
            )
        )
        others = dict(Customer.objects.filter(brand=other).values_list("pk", "lifecycle_stage"))
        result = scoring.recompute_lifecycle(brand=brand, chunk=chunk)
    got = dict(
        Customer.objects.filter(brand=brand, merged_into__isnull=True).values_list(
            "pk", "lifecycle_stage"
        )
    )
    assert got == expected
    assert len(set(expected.values())) >= 5  # the fixture reaches most stages
    moved = {c for c in expected if before[c] != expected[c]}
    assert result.changed == len(moved) > 0
    logged = Event.objects.filter(brand=brand, type="lifecycle.changed")
    assert {e.customer_id: e.properties["to"] for e in logged} == {c: expected[c] for c in moved}
    # the other brand's customers are untouched
    assert dict(Customer.objects.filter(brand=other).values_list("pk", "lifecycle_stage")) == (
        others
    )
