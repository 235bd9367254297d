"""Identity resolution, merges and unmerges, consent never weakened."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_brand, make_staff
from yutang.commerce.services import post_order
from yutang.core import clock
from yutang.core.errors import Conflict, ValidationFailed
from yutang.core.permissions import Role
from yutang.customers import services
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Consent, Customer, CustomerTag, Identity, MergeCandidate, Note
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import ingest_events

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.UTC)


def ident(kind: str, value: str, namespace: str = ""):
    return normalize_identity(kind, value, namespace)


def resolve(brand, *ids):
    return services.resolve_customer(brand=brand, identities=list(ids), source="test")


def test_normalised_phone_resolves_to_one_customer_and_is_encrypted():
    brand = make_brand()
    first = resolve(brand, ident("phone", "138 1234 1234"))
    again = resolve(brand, ident("phone", "+86-13812341234"))
    assert first.created and not again.created
    assert again.customer.pk == first.customer.pk
    row = Identity.objects.get()
    assert "13812341234" not in row.value_encrypted + row.value_hash
    assert (row.value, row.masked) == ("+8613812341234", "138****1234")


def test_identity_kinds_and_namespaces_do_not_collide():
    brand = make_brand()
    a = resolve(brand, ident("external", "12345")).customer
    b = resolve(brand, ident("taobao_buyer", "12345")).customer
    c = resolve(brand, ident("wechat_openid", "o1", "wxapp1")).customer
    d = resolve(brand, ident("wechat_openid", "o1", "wxapp2")).customer
    assert len({a.pk, b.pk, c.pk, d.pk}) == 4
    with pytest.raises(ValidationFailed) as err:
        ident("wechat_openid", "o1")
    assert err.value.field == "identities.namespace"


def test_strong_identities_shared_by_two_customers_merge_automatically():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("wechat_unionid", "u-1")).customer
    result = resolve(brand, ident("phone", "13800000001"), ident("wechat_unionid", "u-1"))
    assert result.customer.pk == a.pk and len(result.merges) == 1
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert set(Identity.objects.filter(customer=a).values_list("kind", flat=True)) == {
        "phone",
        "wechat_unionid",
    }


def test_weak_identity_conflicts_queue_for_review_and_review_policy_queues_everything():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("taobao_buyer", "tb-1")).customer
    result = resolve(brand, ident("phone", "13800000001"), ident("taobao_buyer", "tb-1"))
    assert result.customer.pk == a.pk and not result.merges
    candidate = MergeCandidate.objects.get()
    assert (candidate.first_id, candidate.second_id, candidate.status) == (a.pk, b.pk, "open")

    strict = make_brand(merge_policy="review")
    x = resolve(strict, ident("phone", "13900000001")).customer
    y = resolve(strict, ident("external", "E1")).customer
    queued = resolve(strict, ident("phone", "13900000001"), ident("external", "E1"))
    assert not queued.merges and queued.candidates[0].second_id == y.pk
    assert Customer.objects.get(pk=y.pk).merged_into_id is None and x.pk == queued.customer.pk


def test_reviewer_merges_or_dismisses_a_candidate():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    resolve(brand, ident("phone", "13800000001"))
    resolve(brand, ident("taobao_buyer", "tb-1"))
    resolve(brand, ident("phone", "13800000001"), ident("taobao_buyer", "tb-1"))
    candidate = MergeCandidate.objects.get()
    services.decide_candidate(actor=admin, candidate_id=candidate.pk, merge=True)
    assert Customer.objects.filter(brand=brand, merged_into__isnull=True).count() == 1
    with pytest.raises(Exception):
        services.decide_candidate(actor=admin, candidate_id=candidate.pk, merge=False)


def _state(customer: Customer) -> dict:
    customer.refresh_from_db()
    return {
        "profile": (customer.display_name, customer.city, customer.merged_into_id),
        "identities": sorted(
            Identity.objects.filter(customer=customer).values_list("pk", flat=True)
        ),
        "tags": sorted(
            CustomerTag.objects.filter(customer=customer).values_list("tag_id", "source")
        ),
        "notes": sorted(Note.objects.filter(customer=customer).values_list("pk", flat=True)),
        "consent": sorted(
            Consent.objects.filter(customer=customer).values_list("purpose", "carrier", "status")
        ),
        "events": sorted(Event.objects.filter(customer=customer).values_list("pk", flat=True)),
        "orders": sorted(customer.orders.values_list("external_id", flat=True)),
        "aggregate": CustomerAggregate.objects.filter(customer=customer)
        .values_list("order_count", "paid_fen")
        .first(),
    }


def _consent(brand, customer, purpose, status, at, carrier=""):
    ingest_events(
        brand=brand,
        items=[
            {
                "type": "consent.changed",
                "occurred_at": at,
                "customer_id": customer.pk,
                "idempotency_key": f"c-{customer.pk}-{purpose}-{carrier}-{status}-{at.isoformat()}",
                "properties": {"purpose": purpose, "status": status, "carrier": carrier},
            }
        ],
    )


def test_unmerge_restores_both_customers_exactly():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    with clock.use_clock(clock.FrozenClock(T0)):
        a = services.create_customer(
            actor=admin,
            identities=[{"kind": "phone", "value": "13800000001"}],
            profile={"display_name": "Ann"},
        ).customer
        b = services.create_customer(
            actor=admin, identities=[{"kind": "external", "value": "E-9"}], profile={"city": "杭州"}
        ).customer
        vip = services.create_tag(actor=admin, brand=brand, group="兴趣", name="护肤")
        vip2 = services.create_tag(actor=admin, brand=brand, group="兴趣", name="彩妆")
        services.set_tags(actor=admin, customer=a, add=[vip.pk])
        services.set_tags(actor=admin, customer=b, add=[vip.pk, vip2.pk])
        services.add_note(actor=admin, customer_id=b.pk, body="喜欢小样")
        _consent(brand, a, "marketing", "granted", T0)
        _consent(brand, b, "marketing", "withdrawn", T0 - dt.timedelta(days=1))
        post_order(
            brand=brand,
            actor=admin,
            source="tmall",
            external_id="T1",
            paid_at=T0,
            amount_fen=9900,
            customer_id=b.pk,
        )
        before_a, before_b = _state(a), _state(b)

    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(hours=1))):
        merge = services.manual_merge(actor=admin, keep_id=a.pk, absorb_id=b.pk)
        merged = _state(a)
        assert merged["consent"] == [("marketing", "", "withdrawn")], "stricter consent wins"
        assert merged["orders"] == ["T1"] and merged["aggregate"] == (1, 9900)
        assert merged["profile"] == ("Ann", "杭州", None)
        assert set(t for t, _ in merged["tags"]) == {vip.pk, vip2.pk}

    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(hours=2))):
        services.unmerge(actor=admin, merge_id=merge.pk)
    assert _state(a) == before_a
    assert _state(b) == before_b
    with pytest.raises(Conflict):
        services.unmerge(actor=admin, merge_id=merge.pk)


def test_consent_given_after_the_merge_survives_unmerge_for_both():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    b = resolve(brand, ident("external", "E1")).customer
    _consent(brand, a, "marketing", "granted", T0)
    _consent(brand, b, "marketing", "withdrawn", T0)
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(hours=1))):
        merge = services.merge_customers(brand=brand, keep=a, absorb=b, actor=None, reason="t")
    assert not services.has_consent(a, purpose="marketing", carrier="wecom")
    _consent(brand, a, "marketing", "granted", T0 + dt.timedelta(hours=2))
    assert services.has_consent(a, purpose="marketing", carrier="wecom")
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(hours=3))):
        services.unmerge(actor=None, brand=brand, merge_id=merge.pk)
    assert services.has_consent(a, purpose="marketing", carrier="wecom")
    assert services.has_consent(b, purpose="marketing", carrier="wecom")


def test_carrier_specific_withdrawal_beats_global_grant():
    brand = make_brand()
    a = resolve(brand, ident("phone", "13800000001")).customer
    _consent(brand, a, "marketing", "granted", T0)
    _consent(brand, a, "marketing", "withdrawn", T0, carrier="sms")
    assert services.has_consent(a, purpose="marketing", carrier="wecom")
    assert not services.has_consent(a, purpose="marketing", carrier="sms")
    # an older statement arriving late never overrides a newer one
    _consent(brand, a, "marketing", "granted", T0 - dt.timedelta(days=3), carrier="sms")
    assert not services.has_consent(a, purpose="marketing", carrier="sms")


FACT_KINDS = ["phone", "external", "wechat_unionid"]
facts = st.lists(
    st.lists(st.tuples(st.sampled_from(FACT_KINDS), st.integers(0, 4)), min_size=1, max_size=3),
    min_size=1,
    max_size=7,
)


def _components(records):
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for record in records:
        first = record[0]
        for other in record:
            parent[find(other)] = find(first)
    groups: dict = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return sorted(sorted(g) for g in groups.values())


def _value(kind, n):
    return f"1380000000{n}" if kind == "phone" else f"{kind}-{n}"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=facts, order=st.randoms(use_true_random=False))
def test_any_order_of_the_same_facts_gives_the_same_partition(records, order):
    """Strong identities only: the people are the connected components of the facts,
    whatever order the facts arrive in."""
    shuffled = list(records)
    order.shuffle(shuffled)
    brand = make_brand()
    for record in shuffled:
        resolve(brand, *(ident(k, _value(k, n)) for k, n in record))
    partition: dict[int, set] = {}
    for row in Identity.objects.filter(brand=brand):
        partition.setdefault(row.customer_id, set()).add((row.kind, row.value))
    got = sorted(sorted(g) for g in partition.values())
    want = _components(
        [[(k, normalize_identity(k, _value(k, n)).value) for k, n in r] for r in records]
    )
    assert got == want
    assert Customer.objects.filter(brand=brand, merged_into__isnull=True).count() == len(want)


MIXED_KINDS = ["phone", "external", "taobao_buyer", "wecom_external_userid"]
mixed_facts = st.lists(
    st.lists(st.tuples(st.sampled_from(MIXED_KINDS), st.integers(0, 3)), min_size=1, max_size=3),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=mixed_facts, order=st.randoms(use_true_random=False))
def test_with_weak_identities_the_partition_counts_open_reviews_as_pending_merges(records, order):
    """Weak identities queue merges for review instead of merging, so the partition reached
    depends on arrival order only until the queue is decided: customers plus open review
    pairs always connect exactly the facts' components."""
    shuffled = list(records)
    order.shuffle(shuffled)
    brand = make_brand()
    for record in shuffled:
        resolve(brand, *(ident(k, _value(k, n)) for k, n in record))
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for cand in MergeCandidate.objects.filter(brand=brand, status="open"):
        a = services.survivor(cand.first).pk
        b = services.survivor(cand.second).pk
        parent[find(a)] = find(b)
    groups: dict[int, set] = {}
    for row in Identity.objects.filter(brand=brand):
        groups.setdefault(find(row.customer_id), set()).add((row.kind, row.value))
    got = sorted(sorted(g) for g in groups.values())
    want = _components(
        [[(k, normalize_identity(k, _value(k, n)).value) for k, n in r] for r in records]
    )
    assert got == want
