"""Property test: on random data and random rule trees, the SQL query and the in-memory
evaluator choose exactly the same customers (on whichever database the suite runs)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_brand, make_store
from yutang.customers.models import Customer
from yutang.segments import rules
from yutang.segments.models import CustomerRfm
from yutang.segments.tests.builders import (
    aggregate,
    carrier_account,
    consent,
    contact,
    customer,
    event,
    identity,
    tag,
    tag_customer,
)

# 00:20 in Shanghai: windows and "days ago" cut right through recent events.
NOW = dt.datetime(2026, 3, 9, 16, 20, tzinfo=dt.UTC)
CITIES = ["上海", "北京", "", "a%b"]
CHANNELS = ["live", "package_card", ""]
CATEGORIES = ["护肤", "彩妆", "母婴"]
STAGES = list(rules.LIFECYCLE_STAGES)


def _moment(rng: random.Random) -> dt.datetime:
    # Times cluster around local midnights so day boundaries are exercised.
    days = rng.randint(0, 40)
    minutes = rng.choice([-25, -5, 5, 25, rng.randint(-720, 720)])
    return NOW - dt.timedelta(days=days, minutes=minutes + 20)


def build_world(seed: int) -> tuple[Any, dict[str, list[int]]]:
    rng = random.Random(seed)
    brand = make_brand()
    stores = [make_store(brand), make_store(brand)]
    tags = [tag(brand, f"t{i}") for i in range(3)]
    accounts = [carrier_account(brand, "wecom"), carrier_account(brand, "wecom"),
                carrier_account(brand, "official_account")]  # fmt: skip
    for _ in range(rng.randint(3, 9)):
        attrs: dict[str, Any] = {}
        if rng.random() < 0.7:
            attrs["age"] = rng.choice([18, 25, 30, 30.5, 41, "30", True])
        if rng.random() < 0.6:
            attrs["skin"] = rng.choice(["dry", "oily", "dry oily", 3])
        if rng.random() < 0.5:
            attrs["vip"] = rng.choice([True, False, "true"])
        c = customer(
            brand,
            city=rng.choice(CITIES),
            gender=rng.choice(["female", "male", "unknown"]),
            source_channel=rng.choice(CHANNELS),
            owner_store=rng.choice([None, *stores]),
            lifecycle_stage=rng.choice(["", *STAGES]),
            attributes=attrs,
        )
        for t in tags:
            if rng.random() < 0.4:
                tag_customer(c, t)
        if rng.random() < 0.5:
            identity(c, rng.choice(["wecom_external_userid", "phone"]))
        # No contact, or some held and some lost (deleted), on one or more accounts.
        for account in rng.sample(accounts, rng.randint(0, len(accounts))):
            contact(c, account, rng.choice(["active", "lost"]))
        if rng.random() < 0.5:
            consent(c, "marketing", rng.choice(["granted", "withdrawn"]), rng.choice(["", "wecom"]))
        if rng.random() < 0.7:
            # Counters by hand; the latest times come from the events below, folded into the
            # aggregate as ingestion does (event conditions may read them).
            aggregate(c, order_count=rng.randint(0, 5), paid_fen=rng.randint(0, 90_000),
                      refunded_fen=rng.randint(0, 5_000))  # fmt: skip
        if rng.random() < 0.6:
            CustomerRfm.objects.create(
                customer=c, brand=brand, recency=rng.randint(1, 5), frequency=rng.randint(1, 5),
                monetary=rng.randint(1, 5), rfm_class=rng.choice(rules.RFM_CLASSES), computed_at=NOW,
            )  # fmt: skip
        for _ in range(rng.randint(0, 6)):
            kind = rng.choice(
                ["order.paid", "link.clicked", "message.sent", "group.joined", "group.left"]
            )
            props: dict[str, Any] = {}
            if kind == "order.paid":
                props = {"amount_fen": rng.choice([100, 2500, 9900, "12"]),
                         "category": rng.choice(CATEGORIES)}  # fmt: skip
            elif kind.startswith("group."):
                props = {"group_id": rng.choice(["g1", "g2"])}
            elif kind == "link.clicked":
                props = {"link": rng.choice(["a", "b"])}
            event(c, kind, _moment(rng), **props)
    ids = {
        "tags": [t.pk for t in tags],
        "stores": [s.pk for s in stores],
        "accounts": [a.pk for a in accounts],
    }
    return brand, ids


def num_cmp(values: st.SearchStrategy[int]) -> st.SearchStrategy[dict[str, Any]]:
    single = st.fixed_dictionaries(
        {"op": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), "value": values}
    )
    between = st.tuples(values, values).map(lambda p: {"op": "between", "value": [min(p), max(p)]})
    return st.one_of(single, between)


def leaf(ids: dict[str, list[int]]) -> st.SearchStrategy[dict[str, Any]]:
    window = st.one_of(st.none(), st.integers(1, 45).map(lambda d: {"days": d}))
    prop_filter = st.one_of(
        st.sampled_from(CATEGORIES).map(lambda v: {"property": "category", "op": "eq", "value": v}),
        st.integers(0, 10_000).map(lambda v: {"property": "amount_fen", "op": "gte", "value": v}),
        st.just({"property": "link", "op": "exists"}),
    )

    def with_window(d: dict[str, Any], w: Any) -> dict[str, Any]:
        return {**d, "window": w} if w else d

    return st.one_of(
        st.builds(lambda op, v: {"kind": "profile", "field": "city", "op": op, "value": v},
                  st.sampled_from(["eq", "ne", "contains"]), st.sampled_from(["上海", "北京", "%", "a"])),
        st.just({"kind": "profile", "field": "city", "op": "exists"}),
        num_cmp(st.integers(15, 45)).map(lambda c: {"kind": "attribute", "key": "age", "type": "number", **c}),
        st.builds(lambda op, v: {"kind": "attribute", "key": "skin", "op": op, "value": v},
                  st.sampled_from(["eq", "ne", "contains"]), st.sampled_from(["dry", "oily", "y"])),
        st.booleans().map(lambda v: {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": v}),
        st.builds(lambda t, m: {"kind": "tag", "tag_ids": t, "match": m},
                  st.lists(st.sampled_from(ids["tags"]), min_size=1, max_size=3), st.sampled_from(["any", "all"])),
        st.sampled_from(["wecom_external_userid", "phone"]).map(lambda k: {"kind": "identity", "identity_kind": k}),
        st.builds(lambda c, s: {"kind": "consent", "purpose": "marketing", "carrier": c, "status": s},
                  st.sampled_from(["", "wecom"]), st.sampled_from(["granted", "withdrawn", "unset"])),
        st.builds(lambda s: {"kind": "owner", "owner": "store", "ids": s},
                  st.lists(st.sampled_from(ids["stores"]), min_size=1, max_size=2)),
        st.just({"kind": "owner", "owner": "store", "op": "none"}),
        st.lists(st.sampled_from(CHANNELS[:2]), min_size=1).map(lambda c: {"kind": "channel", "channels": c}),
        st.lists(st.sampled_from(STAGES), min_size=1, max_size=3).map(lambda s: {"kind": "lifecycle", "stages": s}),
        st.lists(st.sampled_from(rules.RFM_CLASSES), min_size=1, max_size=3).map(lambda c: {"kind": "rfm", "classes": c}),
        st.builds(lambda s, o, v: {"kind": "rfm", "score": s, "op": o, "value": v},
                  st.sampled_from(["recency", "frequency", "monetary"]),
                  st.sampled_from(["eq", "gte", "lt"]), st.integers(1, 5)),
        st.builds(lambda f, c: {"kind": "aggregate", "field": f, **c},
                  st.sampled_from(["order_count", "net_fen", "paid_fen"]), num_cmp(st.integers(0, 5) | st.integers(0, 90_000))),
        st.builds(lambda f, c: {"kind": "aggregate", "field": f, **c},
                  st.sampled_from(["days_since_last_order", "days_since_last_touch", "days_since_last_click"]),
                  num_cmp(st.integers(0, 40))),
        st.builds(lambda t, f, w, c: with_window({"kind": "event", "type": t, "filters": f, **c}, w),
                  st.sampled_from(["order.paid", "link.clicked", "message.sent"]),
                  st.lists(prop_filter, max_size=2), window, num_cmp(st.integers(0, 3))),
        st.builds(lambda w, c: with_window({"kind": "event", "type": "order.paid", "measure": "sum",
                                            "property": "amount_fen", **c}, w),
                  window, num_cmp(st.integers(0, 12_000))),
        st.builds(lambda m, f, w, c: with_window({"kind": "event", "type": "order.paid", "measure": m, "filters": f, **c}, w),
                  st.sampled_from(["first", "last"]), st.lists(prop_filter, max_size=1), window, num_cmp(st.integers(0, 40))),
        st.builds(lambda d, c: {"kind": "touches", "window": {"days": d}, **c}, st.integers(1, 40), num_cmp(st.integers(0, 3))),
        st.sampled_from(["g1", "g2"]).map(lambda g: {"kind": "group", "group_id": g}),
        st.builds(lambda c, a, s: {"kind": "carrier", **c, **a, "status": s},
                  st.sampled_from([{}, {"carrier": "wecom"}, {"carrier": "official_account"}, {"carrier": "sms"}]),
                  st.one_of(st.just({}), st.lists(st.sampled_from(ids["accounts"]), min_size=1, max_size=2).map(lambda a: {"account_ids": a})),
                  st.sampled_from(["held", "lost", "none"])),
    )  # fmt: skip


def tree(ids: dict[str, list[int]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf(ids),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda c: {"and": c}),
            st.lists(children, min_size=1, max_size=3).map(lambda c: {"or": c}),
            children.map(lambda c: {"not": c}),
        ),
        max_leaves=6,
    )


@pytest.mark.django_db
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(seed=st.integers(0, 2**32), data=st.data())
def test_sql_and_memory_agree(seed, data):
    with transaction.atomic():
        brand, ids = build_world(seed)
        ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=NOW)
        everyone = list(Customer.objects.filter(brand=brand))
        for _ in range(6):
            rule = data.draw(tree(ids))
            node = rules.parse_rule(rule)
            in_sql = set(
                Customer.objects.filter(brand=brand)
                .filter(rules.compile_rule(node, ctx))
                .values_list("pk", flat=True)
            )
            in_memory = {
                c.pk for c in everyone if rules.evaluate(node, rules.load_facts(c, node), ctx)
            }
            assert in_sql == in_memory, rule
        transaction.set_rollback(True)
