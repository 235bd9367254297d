"""Set-based resolution of a batch gives exactly what resolving its events one by one gives;
the weak-identity rule under the review policy."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.factories import make_brand
from yutang.core import clock
from yutang.customers.models import Customer, Identity, MergeCandidate
from yutang.events.aggregates import as_dict
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import ingest_events

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, 4, 0, tzinfo=dt.UTC)
KINDS = ["phone", "external", "taobao_buyer", "wecom_external_userid"]


def _value(kind: str, n: int) -> str:
    return f"1380000000{n}" if kind == "phone" else f"{kind}-{n}"


def _item(n: int, identities: list[tuple[str, int]], paid: int) -> dict:
    return {
        "type": "order.paid",
        "occurred_at": (T0 + dt.timedelta(hours=n)).isoformat(),
        "idempotency_key": f"k{n}",
        "identities": [{"kind": k, "value": _value(k, v)} for k, v in identities],
        "properties": {"order_id": f"o{n}", "source": "tmall", "amount_fen": paid},
    }


def _outcome(brand) -> dict:
    """Everything resolution decides, named by identities instead of ids (which differ
    between two brands): the people, each event's person, open reviews, aggregates."""
    people: dict[int, set[tuple[str, str]]] = {}
    for row in Identity.objects.filter(brand=brand):
        people.setdefault(row.customer_id, set()).add((row.kind, row.value))
    person = {pk: frozenset(ids) for pk, ids in people.items()}
    live = set(
        Customer.objects.filter(brand=brand, merged_into__isnull=True).values_list("pk", flat=True)
    )
    aggregates = {
        person.get(a.customer_id): {
            k: v for k, v in as_dict(a).items() if k not in ("brand_id", "customer_id")
        }
        for a in CustomerAggregate.objects.filter(brand=brand)
    }
    return {
        "people": sorted(sorted(p) for p in person.values()),
        "customers": len(live),
        "events": {
            e.idempotency_key: person.get(e.customer_id) for e in Event.objects.filter(brand=brand)
        },
        "reviews": sorted(
            sorted([sorted(person.get(c.first_id, ())), sorted(person.get(c.second_id, ()))])
            for c in MergeCandidate.objects.filter(brand=brand, status="open")
        ),
        "aggregates": aggregates,
    }


records = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 3)), min_size=1, max_size=3),
        st.integers(1, 1000),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],  # no slow shrinking
)
@given(records=records, policy=st.sampled_from(["auto", "review"]), replay=st.booleans())
def test_one_batch_resolves_exactly_like_one_event_at_a_time(records, policy, replay):
    items = [_item(n, ids, paid) for n, (ids, paid) in enumerate(records)]
    if replay:
        items.append(items[0])  # an in-batch duplicate
    batch, sequential = make_brand(merge_policy=policy), make_brand(merge_policy=policy)
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=30))):
        together = ingest_events(brand=batch, items=items)
        one_by_one = [ingest_events(brand=sequential, items=[item])[0] for item in items]
    assert [r.status for r in together] == [r.status for r in one_by_one]
    assert _outcome(batch) == _outcome(sequential)


def test_known_strong_identity_in_a_batch_with_a_new_one_costs_no_per_event_queries(
    django_assert_max_num_queries,
):
    brand = make_brand()
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=30))):
        ingest_events(brand=brand, items=[_item(n, [("external", n)], 1) for n in range(50)])
        items = [
            _item(100 + n, [("external", n), ("wecom_external_userid", n)], 1) for n in range(50)
        ]
        items += [_item(200 + n, [("external", 50 + n)], 1) for n in range(50)]
        with django_assert_max_num_queries(13):
            results = ingest_events(brand=brand, items=items)
    assert {r.status for r in results} == {"stored"}
    assert Customer.objects.filter(brand=brand).count() == 100
    assert Identity.objects.filter(brand=brand).count() == 150


def test_weak_match_does_not_hand_strong_identities_over_under_review():
    """A Taobao buyer id is shared by a household: under the review policy a record known
    only through it starts its own customer and waits for a person's decision."""
    brand = make_brand(merge_policy="review")
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=30))):
        (first,) = ingest_events(brand=brand, items=[_item(1, [("taobao_buyer", 1)], 10)])
        (second,) = ingest_events(
            brand=brand, items=[_item(2, [("taobao_buyer", 1), ("phone", 2)], 20)]
        )
    assert first.customer_id != second.customer_id
    weak_owner = Identity.objects.get(brand=brand, kind="phone").customer_id
    assert weak_owner == second.customer_id
    assert Identity.objects.get(brand=brand, kind="taobao_buyer").customer_id == first.customer_id
    (candidate,) = MergeCandidate.objects.filter(brand=brand, status="open")
    assert {candidate.first_id, candidate.second_id} == {first.customer_id, second.customer_id}


def test_weak_match_with_only_weak_news_attaches_and_auto_policy_attaches_strong():
    review, auto = make_brand(merge_policy="review"), make_brand(merge_policy="auto")
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=30))):
        for brand in (review, auto):
            ingest_events(brand=brand, items=[_item(1, [("taobao_buyer", 1)], 10)])
        (weak,) = ingest_events(
            brand=review, items=[_item(2, [("taobao_buyer", 1), ("wecom_external_userid", 1)], 1)]
        )
        (strong,) = ingest_events(
            brand=auto, items=[_item(2, [("taobao_buyer", 1), ("phone", 1)], 1)]
        )
    assert weak.customer_id is not None and strong.customer_id is not None
    assert Customer.objects.filter(brand=review).count() == 1
    assert Identity.objects.filter(customer_id=weak.customer_id).count() == 2
    assert Customer.objects.filter(brand=auto).count() == 1
    assert Identity.objects.filter(customer_id=strong.customer_id).count() == 2
    assert not MergeCandidate.objects.filter(brand__in=[review, auto]).exists()
