"""Regression tests for problems found in review of the customer data platform."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import Api, make_brand, make_staff, make_store
from yutang.commerce.services import post_order, post_refund
from yutang.core import clock
from yutang.core.permissions import Role
from yutang.customers import services
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Customer, MergeCandidate
from yutang.events.aggregates import as_dict
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import ingest_events, rebuild_aggregates

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.UTC)


def ident(kind, value):
    return normalize_identity(kind, value)


def resolve(brand, *ids, **profile):
    return services.resolve_customer(brand=brand, identities=list(ids), source="t", profile=profile)


def test_unmerge_keeps_attributes_and_later_profile_edits():
    brand = make_brand()
    services.define_attribute(actor=None, brand=brand, key="vip", label="VIP", type="boolean")
    a = resolve(brand, ident("phone", "13800000001"), display_name="A").customer
    b = resolve(brand, ident("external", "B"), city="杭州", attributes={"vip": True}).customer
    with clock.use_clock(clock.FrozenClock(T0)):
        merge = services.merge_customers(brand=brand, keep=a, absorb=b, actor=None, reason="t")
    a.refresh_from_db()
    assert (a.city, a.attributes) == ("杭州", {"vip": True})
    a.display_name = "A (edited after merge)"
    a.save()
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(hours=1))):
        services.unmerge(actor=None, brand=brand, merge_id=merge.pk)
    a.refresh_from_db()
    assert (a.display_name, a.city, a.attributes) == ("A (edited after merge)", "", {})
    # and the pair merges again cleanly
    again = resolve(brand, ident("phone", "13800000001"), ident("external", "B"))
    assert again.merges and isinstance(again.customer.attributes, dict)


def test_events_of_one_batch_follow_a_merge_made_by_a_later_event():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("external", "B")).customer
    results = ingest_events(
        brand=brand,
        items=[
            {
                "type": "consent.changed",
                "occurred_at": T0.isoformat(),
                "idempotency_key": "c1",
                "identities": [{"kind": "external", "value": "B"}],
                "properties": {"purpose": "marketing", "status": "withdrawn"},
            },
            {
                "type": "link.clicked",
                "occurred_at": T0.isoformat(),
                "idempotency_key": "c2",
                "identities": [
                    {"kind": "external", "value": "B"},
                    {"kind": "phone", "value": "13800000001"},
                ],
                "properties": {"link": "x"},
            },
        ],
    )
    assert {r.customer_id for r in results} == {a.pk}
    assert set(Event.objects.values_list("customer_id", flat=True)) == {a.pk}
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert not services.has_consent(a, purpose="marketing", carrier="wecom")


def test_a_withdrawal_received_after_the_merge_survives_unmerge_even_if_said_before():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("external", "B")).customer
    for customer, key in ((a, "g1"), (b, "g2")):
        ingest_events(
            brand=brand,
            items=[
                {
                    "type": "consent.changed",
                    "occurred_at": T0.isoformat(),
                    "idempotency_key": key,
                    "customer_id": customer.pk,
                    "properties": {"purpose": "marketing", "status": "granted"},
                }
            ],
        )
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=1))):
        merge = services.merge_customers(brand=brand, keep=a, absorb=b, actor=None, reason="t")
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=2))):
        # said on day 0.5, arrives on day 2
        ingest_events(
            brand=brand,
            items=[
                {
                    "type": "consent.changed",
                    "occurred_at": (T0 + dt.timedelta(hours=12)).isoformat(),
                    "idempotency_key": "w",
                    "customer_id": a.pk,
                    "properties": {"purpose": "marketing", "status": "withdrawn"},
                }
            ],
        )
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=3))):
        services.unmerge(actor=None, brand=brand, merge_id=merge.pk)
    assert not services.has_consent(a, purpose="marketing", carrier="sms")
    assert not services.has_consent(b, purpose="marketing", carrier="sms")


def test_open_reviews_follow_the_survivor():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("taobao_buyer", "tb")).customer
    resolve(brand, ident("external", "B"), ident("taobao_buyer", "tb"))  # b gets external B
    c = resolve(brand, ident("wechat_unionid", "u")).customer
    resolve(brand, ident("wechat_unionid", "u"), ident("taobao_buyer", "tb"))  # candidate (b, c)
    assert MergeCandidate.objects.filter(status="open").count() == 1
    services.merge_customers(brand=brand, keep=a, absorb=b, actor=None, reason="t")
    candidate = MergeCandidate.objects.get(status="open")
    assert {candidate.first_id, candidate.second_id} == {a.pk, c.pk}


def test_franchise_customers_are_never_auto_merged_across_owners():
    brand = make_brand()
    franchise = make_store(brand, kind="franchise")
    hq = resolve(brand, ident("external", "HQ-1")).customer
    theirs = resolve(brand, ident("phone", "13800000009"), owner_store_id=franchise.pk).customer
    result = resolve(brand, ident("external", "HQ-1"), ident("phone", "13800000009"))
    assert not result.merges and result.candidates
    theirs.refresh_from_db()
    assert theirs.merged_into_id is None and hq.pk != theirs.pk


def test_store_roles_cannot_create_or_move_customers_out_of_their_stores():
    brand = make_brand()
    mine, other = make_store(brand), make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[mine])
    customer = resolve(brand, ident("phone", "13800000001"), owner_store_id=mine.pk).customer
    api = Api(advisor)
    assert (
        api.post(
            "/customers", {"identities": [{"kind": "phone", "value": "13800000002"}]}
        ).status_code
        == 403
    )
    moved = api.patch(f"/customers/{customer.pk}", {"owner_store_id": other.pk})
    assert moved.status_code == 422 and moved.json()["field"] == "owner_store_id"
    customer.refresh_from_db()
    assert customer.owner_store_id == mine.pk
    assert api.patch(f"/customers/{customer.pk}", {"display_name": None}).status_code == 422


def test_refund_recorded_while_merged_goes_back_with_its_order():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("external", "B")).customer
    post_order(
        brand=brand,
        actor=None,
        source="tmall",
        external_id="T1",
        paid_at=T0,
        amount_fen=800,
        customer_id=b.pk,
    )
    merge = services.merge_customers(brand=brand, keep=a, absorb=b, actor=None, reason="t")
    post_refund(
        brand=brand,
        actor=None,
        source="tmall",
        order_external_id="T1",
        external_id="R1",
        amount_fen=400,
        refunded_at=T0 + dt.timedelta(days=1),
    )
    services.unmerge(actor=None, brand=brand, merge_id=merge.pk)
    b_agg = CustomerAggregate.objects.get(customer=b)
    assert (b_agg.paid_fen, b_agg.refunded_fen) == (800, 400)
    assert not CustomerAggregate.objects.filter(customer=a, refunded_fen__gt=0).exists()
    incremental = {x.customer_id: as_dict(x) for x in CustomerAggregate.objects.filter(brand=brand)}
    rebuild_aggregates(brand=brand)
    assert incremental == {
        x.customer_id: as_dict(x) for x in CustomerAggregate.objects.filter(brand=brand)
    }


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"identities": "13800000001"}, "identities"),
        ({"identities": [{"kind": "phone", "value": 13800000001}]}, "identities.0"),
        ({"identities": ["13800000001"]}, "identities.0"),
        ({"customer_id": "abc"}, "customer_id"),
        ({"customer_id": [1]}, "customer_id"),
        ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at"),
        ({"type": "custom." + "x" * 80}, "type"),
        ({"source": ["x"]}, "source"),
        (
            {"type": "profile.updated", "properties": {"birthday": "1990-02-30"}},
            "properties.birthday",
        ),
    ],
)
def test_hostile_event_items_are_rejected_one_by_one(item, field):
    brand = make_brand()
    base = {
        "type": "link.clicked",
        "occurred_at": T0.isoformat(),
        "idempotency_key": "h",
        "identities": [{"kind": "phone", "value": "13800000001"}],
        "properties": {"link": "x"},
    }
    good = {**base, "idempotency_key": "ok"}
    bad = {**base, **item}
    if bad["type"] == "profile.updated":
        bad["properties"] = item["properties"]
    results = ingest_events(brand=brand, items=[bad, good, "not an object"])  # type: ignore[list-item]
    assert [r.status for r in results] == ["rejected", "stored", "rejected"]
    assert results[0].error is not None and results[0].error["field"] == field


def test_an_order_the_log_would_refuse_is_not_stored():
    brand = make_brand()
    future = clock.now() + dt.timedelta(days=2)
    from yutang.commerce.models import Order
    from yutang.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        post_order(
            brand=brand,
            actor=None,
            source="tmall",
            external_id="F1",
            paid_at=future,
            amount_fen=1,
            identities=[{"kind": "phone", "value": "13800000001"}],
        )
    assert err.value.field == "paid_at"
    with pytest.raises(ValidationFailed):
        post_order(
            brand=brand,
            actor=None,
            source="tmall",
            external_id="F2",
            paid_at=T0,
            amount_fen=10**13,
            identities=[{"kind": "phone", "value": "13800000001"}],
        )
    assert not Order.objects.exists() and not Customer.objects.exists()
