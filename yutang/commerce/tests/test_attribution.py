"""Orders are attributed to the owner store and staff as of their paid time."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.commerce.services import post_order
from yutang.core import clock
from yutang.core.permissions import Role
from yutang.customers import services as customers
from yutang.customers.models import OwnerChange

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 4, 1, 2, 0, tzinfo=dt.UTC)
PHONE = [{"kind": "phone", "value": "13800000077"}]


def _order(brand, external_id, paid_at, **kw):
    return post_order(
        brand=brand,
        actor=None,
        source="tmall",
        external_id=external_id,
        paid_at=paid_at,
        amount_fen=100,
        identities=PHONE,
        **kw,
    ).order


@pytest.fixture
def shop():
    brand = make_brand()
    admin = make_staff(brand)
    first, second = make_store(brand), make_store(brand)
    alice = make_staff(brand, Role.ADVISOR, stores=[first])
    bob = make_staff(brand, Role.ADVISOR, stores=[second])
    with clock.use_clock(clock.FrozenClock(T0)):
        customer = customers.create_customer(
            actor=admin,
            identities=PHONE,
            profile={
                "owner_store_id": first.pk,
                "owner_staff_id": alice.pk,
                "source_channel": "kol",
            },
        ).customer
    return brand, admin, customer, (first, alice), (second, bob)


def test_late_posted_order_counts_for_the_owner_at_paid_time(shop):
    brand, admin, customer, (first, alice), (second, bob) = shop
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=10))):
        customers.update_customer(
            actor=admin, customer_id=customer.pk, owner_store_id=second.pk, owner_staff_id=bob.pk
        )
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=20))):
        before_change = _order(brand, "A", T0 + dt.timedelta(days=5))
        after_change = _order(brand, "B", T0 + dt.timedelta(days=15))
        before_customer = _order(brand, "C", T0 - dt.timedelta(days=3))
    assert (before_change.attributed_store_id, before_change.staff_id) == (first.pk, alice.pk)
    assert (after_change.attributed_store_id, after_change.staff_id) == (second.pk, bob.pk)
    # paid before the customer reached Yutang: the first owner it had
    assert (before_customer.attributed_store_id, before_customer.staff_id) == (first.pk, alice.pk)
    assert {before_change.channel, after_change.channel} == {"kol"}
    assert list(OwnerChange.objects.filter(customer=customer).values_list("reason", flat=True)) == [
        "created",
        "update",
    ]


def test_history_starts_with_the_owner_a_customer_had_before_its_first_change():
    brand = make_brand()
    admin = make_staff(brand)
    store = make_store(brand)
    with clock.use_clock(clock.FrozenClock(T0)):
        customer = customers.create_customer(actor=admin, identities=PHONE, profile={}).customer
    assert not OwnerChange.objects.filter(customer=customer).exists()
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=10))):
        customers.update_customer(actor=admin, customer_id=customer.pk, owner_store_id=store.pk)
        customers.update_customer(actor=admin, customer_id=customer.pk, display_name="王")
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=20))):
        unowned = _order(brand, "A", T0 + dt.timedelta(days=1))
        owned = _order(brand, "B", T0 + dt.timedelta(days=11))
    assert unowned.attributed_store_id is None
    assert owned.attributed_store_id == store.pk
    assert OwnerChange.objects.filter(customer=customer).count() == 2  # name change: no row


def test_merge_that_fills_the_owner_is_history_and_unmerge_takes_it_back(shop):
    brand, admin, owned, (first, alice), _ = shop
    with clock.use_clock(clock.FrozenClock(T0)):
        bare = customers.create_customer(
            actor=admin, identities=[{"kind": "external", "value": "E1"}], profile={}
        ).customer
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=10))):
        merge = customers.merge_customers(
            brand=brand, keep=bare, absorb=owned, actor=admin, reason="t"
        )
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=20))):
        customers.unmerge(actor=admin, merge_id=merge.pk)
    assert customers.owner_at(customer=bare, at=T0 + dt.timedelta(days=5)) == (None, None)
    assert customers.owner_at(customer=bare, at=T0 + dt.timedelta(days=15)) == (first.pk, alice.pk)
    assert customers.owner_at(customer=bare, at=T0 + dt.timedelta(days=25)) == (None, None)
