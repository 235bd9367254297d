"""Event ingestion: idempotent, per-event results, resolution; aggregates equal a rebuild."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_brand
from yutang.core import clock
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Customer
from yutang.events.aggregates import as_dict, touches_in_last
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import ingest_events, rebuild_aggregates

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, 4, 0, tzinfo=dt.UTC)


def ev(key, type_="link.clicked", at=T0, phone="13800000001", **props):
    props = props or {"link": "abc"}
    return {
        "type": type_,
        "occurred_at": at.isoformat(),
        "idempotency_key": key,
        "identities": [{"kind": "phone", "value": phone}],
        "properties": props,
    }


def test_batch_reports_stored_duplicate_and_rejected_per_event():
    brand = make_brand()
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(hours=1))):
        results = ingest_events(
            brand=brand,
            items=[
                ev("k1"),
                ev("k1"),
                ev("k2", "no.such.type"),
                ev("k3", "order.paid", order_id="O1", source="tmall", amount_fen=-5),
                {**ev("k4"), "occurred_at": "yesterday"},
                ev("k5", "custom.sample_requested", sku="S1"),
                {**ev("k6"), "identities": [{"kind": "phone", "value": "12"}]},
            ],
        )
    got = [(r.status, r.error["field"] if r.error else None) for r in results]
    assert got == [
        ("stored", None),
        ("duplicate", None),
        ("rejected", "type"),
        ("rejected", "properties.amount_fen"),
        ("rejected", "occurred_at"),
        ("stored", None),
        ("rejected", "identities.0.value"),
    ]
    assert Event.objects.filter(brand=brand).count() == 2
    again = ingest_events(
        brand=brand, items=[ev("k1"), ev("k5", "custom.sample_requested", sku="S1")]
    )
    assert [r.status for r in again] == ["duplicate", "duplicate"]
    assert Event.objects.filter(brand=brand).count() == 2


def test_events_resolve_identities_and_create_customers():
    brand = make_brand()
    ingest_events(
        brand=brand,
        items=[
            ev("a", phone="13800000001"),
            {
                **ev("b"),
                "identities": [
                    {"kind": "phone", "value": "13800000001"},
                    {"kind": "wecom_external_userid", "value": "wmX"},
                ],
            },
            {**ev("c"), "identities": [{"kind": "wecom_external_userid", "value": "wmX"}]},
        ],
    )
    assert Customer.objects.filter(brand=brand).count() == 1
    assert Event.objects.filter(brand=brand).values("customer").distinct().count() == 1


def test_consent_and_profile_events_take_effect_at_once():
    brand = make_brand()
    ingest_events(
        brand=brand,
        items=[
            ev("p", "profile.updated", display_name="小林", city="上海"),
            ev(
                "c",
                "consent.changed",
                purpose="marketing",
                status="withdrawn",
                carrier="wecom",
                proof="退订",
            ),
        ],
    )
    customer = Customer.objects.get(brand=brand)
    assert (customer.display_name, customer.city) == ("小林", "上海")
    assert not customers.has_consent(customer, purpose="marketing", carrier="wecom")
    bad = ingest_events(brand=brand, items=[ev("x", "profile.updated", shoe_size=38)])
    assert bad[0].status == "rejected"
    assert bad[0].error == {
        "code": "invalid",
        "message": "properties.shoe_size: Extra inputs are not permitted",
        "field": "properties.shoe_size",
    }


def test_touch_windows_in_brand_time_zone():
    brand = make_brand()
    # 2026-03-01 23:30 in Shanghai is 15:30 UTC; it counts for March 1st there.
    late = dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC)
    ingest_events(
        brand=brand,
        items=[
            ev("t1", "message.sent", at=late, carrier="wecom", message_id="m1"),
            ev(
                "t2",
                "message.sent",
                at=late + dt.timedelta(hours=1),
                carrier="wecom",
                message_id="m2",
            ),
        ],
    )
    agg = CustomerAggregate.objects.get()
    assert agg.touches_by_day == {"2026-03-01": 1, "2026-03-02": 1}
    assert touches_in_last(agg, 1, dt.date(2026, 3, 2)) == 1
    assert touches_in_last(agg, 7, dt.date(2026, 3, 2)) == 2


KINDS = [
    "order.paid",
    "order.refunded",
    "message.sent",
    "message.received",
    "link.clicked",
    "contact.added",
    "contact.deleted",
]
event_spec = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, 3),
    st.integers(0, 60),
    st.integers(1, 50_000),
    st.integers(0, 9),
)


def _item(kind, person, day, amount, key):
    props = {
        "order.paid": {"order_id": f"o{key}", "source": "tmall", "amount_fen": amount},
        "order.refunded": {"order_id": f"o{key}", "refund_id": f"r{key}", "amount_fen": amount},
        "message.sent": {"carrier": "wecom", "message_id": f"m{key}"},
        "message.received": {"carrier": "wecom"},
        "link.clicked": {"link": "L"},
        "contact.added": {"carrier": "wecom"},
        "contact.deleted": {"carrier": "wecom"},
    }[kind]
    return {
        "type": kind,
        "occurred_at": (T0 + dt.timedelta(days=day, hours=key)).isoformat(),
        "idempotency_key": f"{kind}-{person}-{key}",
        "identities": [{"kind": "external", "value": f"P{person}"}],
        "properties": props,
    }


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(event_spec, max_size=8), min_size=1, max_size=5),
    merges=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=2),
)
def test_incremental_aggregates_equal_a_rebuild(batches, merges):
    """Random batches (with duplicate keys and out-of-order times), then merges and an
    unmerge: the incrementally kept aggregates equal those rebuilt from the log."""
    brand = make_brand()
    for batch in batches:
        ingest_events(brand=brand, items=[_item(*spec) for spec in batch])
    done = []
    for a, b in merges:
        keep = customers.find_by_identity(
            brand=brand, identity=normalize_identity("external", f"P{a}")
        )
        absorb = customers.find_by_identity(
            brand=brand, identity=normalize_identity("external", f"P{b}")
        )
        if keep and absorb and keep.pk != absorb.pk:
            done.append(
                customers.merge_customers(
                    brand=brand, keep=keep, absorb=absorb, actor=None, reason="t"
                )
            )
    if done:
        customers.unmerge(actor=None, brand=brand, merge_id=done[-1].pk)
    if batches[0]:
        ingest_events(brand=brand, items=[_item(*batches[0][0])])  # a replayed duplicate
    incremental = {a.customer_id: as_dict(a) for a in CustomerAggregate.objects.filter(brand=brand)}
    rebuild_aggregates(brand=brand)
    rebuilt = {a.customer_id: as_dict(a) for a in CustomerAggregate.objects.filter(brand=brand)}
    assert incremental == rebuilt
    paid = sum(
        e.properties["amount_fen"] for e in Event.objects.filter(brand=brand, type="order.paid")
    )
    assert sum(a["paid_fen"] for a in rebuilt.values()) == paid


def test_every_aggregate_field_is_written_back():
    """apply_events writes AGGREGATE_FIELDS in bulk; a field missing there would be lost."""
    from yutang.events.aggregates import AGGREGATE_FIELDS

    model_fields = {f.name for f in CustomerAggregate._meta.fields} - {"customer", "brand"}
    assert set(AGGREGATE_FIELDS) == model_fields
    from yutang.events.aggregates import COMBINE

    assert set(COMBINE) == model_fields  # and each says how a batch combines with the row


def test_hot_path_writers_name_every_column():
    """Events and identities are written from column lists, not model instances; a field
    added to the model but not to the list would silently keep its database default."""
    from yutang.customers.models import Identity
    from yutang.customers.services import IDENTITY_COLUMNS
    from yutang.events.services import EVENT_COLUMNS

    for model, columns in ((Event, EVENT_COLUMNS), (Identity, IDENTITY_COLUMNS)):
        fields = {f.column for f in model._meta.concrete_fields if not f.primary_key}
        assert {name for name, _ in columns} == fields


def test_a_batch_adds_to_aggregates_stored_by_earlier_batches():
    """Aggregates are combined in the database (counts add up, first/last times take the
    minimum/maximum, touch days merge): nothing of an earlier batch is lost."""
    brand = make_brand()
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=40))):
        ingest_events(
            brand=brand,
            items=[
                ev("p1", "order.paid", at=T0, order_id="O1", source="tmall", amount_fen=100),
                ev("s1", "message.sent", at=T0, carrier="wecom", message_id="m1"),
            ],
        )
        ingest_events(
            brand=brand,
            items=[
                ev(
                    "p2",
                    "order.paid",
                    at=T0 - dt.timedelta(days=2),
                    order_id="O2",
                    source="jd",
                    amount_fen=50,
                ),
                ev(
                    "s2",
                    "message.sent",
                    at=T0 + dt.timedelta(days=35),
                    carrier="wecom",
                    message_id="m2",
                ),
                ev("c1", "link.clicked", at=T0 + dt.timedelta(days=1)),
            ],
        )
    agg = CustomerAggregate.objects.get(customer__brand=brand)
    assert (agg.order_count, agg.paid_fen, agg.event_count, agg.touch_count) == (2, 150, 5, 2)
    assert agg.first_order_at == T0 - dt.timedelta(days=2)
    assert agg.last_order_at == T0
    assert agg.last_click_at == T0 + dt.timedelta(days=1)
    # The first touch fell out of the 30-day window the second one opened.
    assert list(agg.touches_by_day) == [(T0 + dt.timedelta(days=35)).date().isoformat()]
    incremental = as_dict(agg)
    rebuild_aggregates(brand=brand)
    assert as_dict(CustomerAggregate.objects.get(customer__brand=brand)) == incremental
