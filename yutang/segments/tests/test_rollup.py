"""The per-customer property counts (segments.rollup) stay equal to a recount of the log
through inserts, updates, re-pointed customers and deletes, and the rule conditions that read
them give the same answer as the in-memory evaluator over the events."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.db import connection

from tests.factories import make_brand
from yutang.core.models import Brand
from yutang.events.models import Event
from yutang.segments import rollup
from yutang.segments.models import EventNumber, EventPropertyCount
from yutang.segments.tests.builders import T0, customer, event
from yutang.segments.tests.test_rules import match

pytestmark = pytest.mark.django_db


@pytest.fixture
def brand() -> Brand:
    return make_brand()


def counted() -> Counter[tuple[int, int, str, str, str]]:
    return Counter(
        {
            (r.brand_id, r.customer_id, r.type, r.key, r.value): r.events
            for r in EventPropertyCount.objects.all()
        }
    )


def numbers() -> set[tuple[int, int, int, str, str, dt.datetime, float]]:
    return {
        (r.event_id, r.brand_id, r.customer_id, r.type, r.key, r.occurred_at, r.value)
        for r in EventNumber.objects.all()
    }


def renumber() -> set[tuple[int, int, int, str, str, dt.datetime, float]]:
    """What EventNumber must hold, from the log."""
    out = set()
    for e in Event.objects.all():
        for key in rollup.NUMBERS.get(e.type, ()):
            value = e.properties.get(key) if isinstance(e.properties, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.add((e.pk, e.brand_id, e.customer_id, e.type, key, e.occurred_at, float(value)))
    return out


def recount() -> Counter[tuple[int, int, str, str, str]]:
    """What the table must hold, counted in Python from the log."""
    out: Counter[tuple[int, int, str, str, str]] = Counter()
    for e in Event.objects.all():
        for key in rollup.TEXTS.get(e.type, ()):
            value = e.properties.get(key) if isinstance(e.properties, dict) else None
            if isinstance(value, str) and 1 <= len(value) <= rollup.MAX_VALUE:
                out[(e.brand_id, e.customer_id, e.type, key, value)] += 1
    return out


def test_triggers_keep_counts_equal_to_the_log(brand):
    a, b = customer(brand), customer(brand)
    other = customer(make_brand())
    e1 = event(a, "order.paid", T0, category="护肤", amount_fen=100)
    event(a, "order.paid", T0, category="护肤", amount_fen=2.5)
    event(a, "order.paid", T0, amount_fen=True)  # not a number
    event(a, "order.paid", T0, amount_fen="12")  # not a number
    event(a, "order.paid", T0, category="彩妆")
    event(a, "order.paid", T0, category=5)  # not text: never matches a text filter
    event(a, "order.paid", T0, category="")  # empty: no rule value is empty
    event(a, "order.paid", T0, category="x" * 201)  # longer than any rule value
    event(a, "link.clicked", T0, category="护肤")  # a type that is not counted
    e2 = event(b, "order.paid", T0, category="护肤")
    event(other, "order.paid", T0, category="护肤")
    assert counted() == recount()
    assert numbers() == renumber()
    assert {row[-1] for row in numbers()} == {100.0, 2.5}
    assert counted()[(brand.pk, a.pk, "order.paid", "category", "护肤")] == 2
    assert (brand.pk, a.pk, "order.paid", "category", "x" * 201) not in counted()

    # An edit of the properties, a re-pointed customer (a merge), a changed type, deletes.
    Event.objects.filter(pk=e1.pk).update(properties={"category": "彩妆"})
    Event.objects.filter(pk=e2.pk).update(customer=a)
    Event.objects.filter(type="link.clicked").update(type="order.paid")
    Event.objects.filter(pk=e1.pk).update(occurred_at=T0 - dt.timedelta(days=3))
    Event.objects.filter(properties__amount_fen="12").update(properties={"amount_fen": 12})
    assert counted() == recount()
    assert numbers() == renumber()
    assert {row[-1] for row in numbers()} == {2.5, 12.0}  # e1 lost its amount above
    assert counted()[(brand.pk, a.pk, "order.paid", "category", "护肤")] == 3
    assert (brand.pk, b.pk, "order.paid", "category", "护肤") not in counted()
    Event.objects.filter(customer=a, properties__category="护肤").delete()
    assert counted() == recount()
    assert numbers() == renumber()
    assert (brand.pk, a.pk, "order.paid", "category", "护肤") not in counted()
    b.delete()
    a.delete()
    assert numbers() == renumber() == set()
    assert counted() == recount() == Counter({(other.brand_id, other.pk, "order.paid",
                                               "category", "护肤"): 1})  # fmt: skip


def test_rebuild_recounts_after_a_load_that_bypassed_the_triggers(brand):
    a = customer(brand)
    event(a, "order.paid", T0, category="护肤", amount_fen=990)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {rollup.TABLE}")
        cursor.execute(f"DELETE FROM {rollup.NUMBER_TABLE}")
    assert counted() != recount()
    rollup.rebuild()
    assert counted() == recount()
    assert numbers() == renumber()


def test_conditions_read_the_counts_and_agree_with_memory(brand):
    once, twice, mixed, none = (customer(brand) for _ in range(4))
    event(once, "order.paid", T0, category="护肤")
    for _ in range(2):
        event(twice, "order.paid", T0, category="护肤")
    event(mixed, "order.paid", T0, category="护肤")
    event(mixed, "order.paid", T0, category="彩妆")
    event(mixed, "order.paid", T0, category=["护肤"])  # not text
    skincare = {"property": "category", "op": "eq", "value": "护肤"}
    both = {"property": "category", "op": "in", "value": ["护肤", "彩妆", "护肤"]}
    rule = {"kind": "event", "type": "order.paid", "filters": [skincare]}
    assert match(brand, {**rule, "op": "gt", "value": 1}) == {twice.pk}
    assert match(brand, rule) == {once.pk, twice.pk, mixed.pk}
    assert match(brand, {**rule, "op": "eq", "value": 0}) == {none.pk}
    assert match(brand, {**rule, "op": "lt", "value": 2}) == {once.pk, mixed.pk, none.pk}
    assert match(brand, {"not": {**rule, "op": "gt", "value": 1}}) == {once.pk, mixed.pk, none.pk}
    in_rule = {"kind": "event", "type": "order.paid", "filters": [both], "op": "gte", "value": 2}
    assert match(brand, in_rule) == {twice.pk, mixed.pk}
    assert match(brand, {**in_rule, "op": "ne", "value": 2}) == {once.pk, none.pk}
    # The compiled query reads the counts, not the log.
    from yutang.customers.models import Customer
    from yutang.segments import rules

    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)
    sql = str(Customer.objects.filter(rules.compile_rule(rules.parse_rule(rule), ctx)).query)
    assert rollup.TABLE in sql and "events_event" not in sql
    windowed = {**rule, "window": {"days": 7}}
    sql = str(Customer.objects.filter(rules.compile_rule(rules.parse_rule(windowed), ctx)).query)
    assert rollup.TABLE not in sql


def test_sums_read_the_typed_numbers_and_agree_with_memory(brand):
    day = dt.timedelta(days=1)
    big, small, old, odd, none = (customer(brand) for _ in range(5))
    event(big, "order.paid", T0, amount_fen=30_000)
    event(big, "order.paid", T0 - 2 * day, amount_fen=25_000.5)
    event(small, "order.paid", T0, amount_fen=100)
    event(old, "order.paid", T0 - 40 * day, amount_fen=90_000)
    event(odd, "order.paid", T0, amount_fen="90000")  # text: adds nothing
    event(odd, "order.paid", T0, amount_fen=True)
    spent = {"kind": "event", "type": "order.paid", "measure": "sum", "property": "amount_fen"}
    month = {**spent, "window": {"days": 30}}
    assert match(brand, {**month, "op": "gte", "value": 50_000}) == {big.pk}
    assert match(brand, {**spent, "op": "gte", "value": 50_000}) == {big.pk, old.pk}
    assert match(brand, {**month, "op": "eq", "value": 0}) == {old.pk, odd.pk, none.pk}
    assert match(brand, {**month, "op": "between", "value": [1, 55_000.5]}) == {big.pk, small.pk}
    assert match(brand, {"not": {**month, "op": "lt", "value": 100}}) == {big.pk, small.pk}
    from yutang.customers.models import Customer
    from yutang.segments import rules

    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)
    rule = rules.parse_rule({**month, "op": "gte", "value": 1})
    sql = str(Customer.objects.filter(rules.compile_rule(rule, ctx)).query)
    assert rollup.NUMBER_TABLE in sql and "events_event" not in sql
