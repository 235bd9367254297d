"""Each condition kind, nesting, NOT with missing data, windows across the brand's midnight,
JSON-path errors, hostile strings, and the registry. Every check runs the rule both ways
(one SQL query and the in-memory evaluator) and asserts the same answer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.core.errors import ValidationFailed
from yutang.core.models import Brand
from yutang.customers.models import Customer
from yutang.segments import rules
from yutang.segments.models import CustomerRfm
from yutang.segments.tests.builders import (
    T0,
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

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def match(brand: Brand, rule: dict[str, Any], now: dt.datetime = T0) -> set[int]:
    """The customers matching `rule`, asserting that SQL and memory agree."""
    node = rules.parse_rule(rule)
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=now)
    everyone = Customer.objects.filter(brand=brand, merged_into__isnull=True)
    in_sql = set(everyone.filter(rules.compile_rule(node, ctx)).values_list("pk", flat=True))
    in_memory = {c.pk for c in everyone if rules.evaluate(node, rules.load_facts(c, node), ctx)}
    assert in_sql == in_memory, rule
    return in_sql


@pytest.fixture
def brand() -> Brand:
    return make_brand()


def test_profile_fields_and_missing_values(brand):
    sh = customer(brand, city="上海", gender="female", birthday=dt.date(1990, 5, 1))
    bj = customer(brand, city="北京", gender="male")
    blank = customer(brand, city="")
    assert match(brand, {"kind": "profile", "field": "city", "op": "eq", "value": "上海"}) == {
        sh.pk
    }
    # ne is false for a missing value; NOT (eq) includes it.
    assert match(brand, {"kind": "profile", "field": "city", "op": "ne", "value": "上海"}) == {
        bj.pk
    }
    assert match(
        brand, {"not": {"kind": "profile", "field": "city", "op": "eq", "value": "上海"}}
    ) == {bj.pk, blank.pk}
    assert match(brand, {"kind": "profile", "field": "city", "op": "exists"}) == {sh.pk, bj.pk}
    assert match(
        brand, {"kind": "profile", "field": "city", "op": "in", "value": ["北京", "广州"]}
    ) == {bj.pk}
    assert match(
        brand, {"kind": "profile", "field": "birthday", "op": "lt", "value": "1991-01-01"}
    ) == {sh.pk}
    assert match(brand, {"kind": "profile", "field": "gender", "op": "eq", "value": "male"}) == {
        bj.pk
    }


def test_attributes_are_typed(brand):
    a = customer(
        brand, attributes={"age": 30, "vip": True, "skin": "dry oily", "since": "2024-01-05"}
    )
    b = customer(brand, attributes={"age": "40", "vip": "yes", "skin": 7})
    c = customer(brand, attributes={})
    num = {"kind": "attribute", "key": "age", "type": "number"}
    assert match(brand, {**num, "op": "gte", "value": 18}) == {a.pk}  # "40" is text, not 40
    assert match(brand, {**num, "op": "between", "value": [30, 31]}) == {a.pk}
    assert match(brand, {"not": {**num, "op": "gte", "value": 18}}) == {b.pk, c.pk}
    boolean = {"kind": "attribute", "key": "vip", "type": "boolean"}
    assert match(brand, {**boolean, "op": "eq", "value": True}) == {a.pk}
    assert match(brand, {**boolean, "op": "ne", "value": True}) == set()
    d = customer(brand, attributes={"age": 30.5, "vip": False})
    assert match(brand, {**boolean, "op": "eq", "value": False}) == {d.pk}
    assert match(brand, {**boolean, "op": "ne", "value": False}) == {a.pk}
    assert match(brand, {**boolean, "op": "exists"}) == {a.pk, d.pk}  # a true or false value
    assert match(brand, {**num, "op": "exists"}) == {a.pk, d.pk}
    assert match(brand, {**num, "op": "eq", "value": 30}) == {a.pk}
    assert match(brand, {**num, "op": "ne", "value": 30}) == {d.pk}  # not "40", not missing
    assert match(brand, {**num, "op": "lt", "value": 30.5}) == {a.pk}
    assert match(brand, {"not": {**num, "op": "between", "value": [30, 30.4]}}) == {
        b.pk, c.pk, d.pk
    }  # fmt: skip
    text = {"kind": "attribute", "key": "skin"}
    assert match(brand, {**text, "op": "contains", "value": "oil"}) == {a.pk}
    assert match(brand, {**text, "op": "contains", "value": "OIL"}) == set()  # case-sensitive
    assert match(brand, {**text, "op": "exists"}) == {a.pk}
    date = {"kind": "attribute", "key": "since", "type": "date"}
    assert match(brand, {**date, "op": "gte", "value": "2024-01-01"}) == {a.pk}


def test_tags_identities_consent_owner_channel_lifecycle(brand):
    store = make_store(brand)
    staff = make_staff(brand)
    t1, t2 = tag(brand, "护肤"), tag(brand, "母婴")
    a = customer(brand, source_channel="package_card", owner_store=store, lifecycle_stage="repeat")
    b = customer(brand, source_channel="live", owner_staff=staff, lifecycle_stage="engaged")
    tag_customer(a, t1)
    tag_customer(a, t2)
    tag_customer(b, t1)
    identity(a, "wecom_external_userid")
    identity(b, "wechat_openid", namespace="wx-oa-1")
    consent(a, "marketing", "withdrawn")
    consent(b, "marketing", "granted", carrier="wecom")
    assert match(brand, {"kind": "tag", "tag_ids": [t1.pk, t2.pk], "match": "all"}) == {a.pk}
    assert match(brand, {"kind": "tag", "tag_ids": [t2.pk, t1.pk]}) == {a.pk, b.pk}
    assert match(brand, {"kind": "identity", "identity_kind": "wecom_external_userid"}) == {a.pk}
    assert match(
        brand, {"kind": "identity", "identity_kind": "wechat_openid", "namespace": "wx-oa-1"}
    ) == {b.pk}
    assert (
        match(brand, {"kind": "identity", "identity_kind": "wechat_openid", "namespace": "other"})
        == set()
    )
    cons = {"kind": "consent", "purpose": "marketing"}
    assert match(brand, {**cons, "status": "withdrawn"}) == {a.pk}
    assert match(brand, {**cons, "status": "unset"}) == {b.pk}
    assert match(brand, {**cons, "carrier": "wecom", "status": "granted"}) == {b.pk}
    assert match(brand, {"kind": "owner", "owner": "store", "ids": [store.pk]}) == {a.pk}
    assert match(brand, {"kind": "owner", "owner": "store", "op": "none"}) == {b.pk}
    assert match(brand, {"not": {"kind": "owner", "owner": "staff", "ids": [staff.pk]}}) == {a.pk}
    assert match(brand, {"kind": "channel", "channels": ["live"]}) == {b.pk}
    assert match(brand, {"kind": "lifecycle", "stages": ["repeat", "loyal"]}) == {a.pk}


def test_carriers_held_now_not_identities_ever_had(brand):
    """`carrier` reads the contacts held now; `identity` stays true after a deletion."""
    wecom_a, wecom_b = carrier_account(brand, "wecom"), carrier_account(brand, "wecom")
    oa = carrier_account(brand, "official_account")
    holds_both = customer(brand)  # two WeCom staff, one deleted: still holds WeCom
    contact(holds_both, wecom_a)
    contact(holds_both, wecom_b, "lost")
    deleted_all = customer(brand)  # deleted every WeCom staff member, follows the account
    contact(deleted_all, wecom_a, "lost")
    contact(deleted_all, oa)
    identity(deleted_all, "wecom_external_userid")
    never = customer(brand)
    wecom = {"kind": "carrier", "carrier": "wecom"}
    assert match(brand, wecom) == {holds_both.pk}
    assert match(brand, {**wecom, "status": "held"}) == {holds_both.pk}
    assert match(brand, {**wecom, "status": "lost"}) == {deleted_all.pk}
    assert match(brand, {**wecom, "status": "none"}) == {never.pk}
    assert match(brand, {"not": wecom}) == {deleted_all.pk, never.pk}
    assert match(brand, {"kind": "identity", "identity_kind": "wecom_external_userid"}) == {
        deleted_all.pk
    }
    assert match(brand, {"kind": "carrier", "carrier": "official_account"}) == {deleted_all.pk}
    # Any carrier: held by both; lost by nobody (each still holds one); one account only.
    assert match(brand, {"kind": "carrier"}) == {holds_both.pk, deleted_all.pk}
    assert match(brand, {"kind": "carrier", "status": "lost"}) == set()
    assert match(brand, {"kind": "carrier", "account_ids": [wecom_b.pk], "status": "lost"}) == {
        holds_both.pk
    }
    assert match(brand, {"kind": "carrier", "account_ids": [wecom_a.pk]}) == {holds_both.pk}
    # Another brand's contacts never count.
    other = make_brand()
    stranger = customer(other)
    contact(stranger, carrier_account(other, "wecom"))
    assert match(brand, wecom) == {holds_both.pk}
    assert rules.trigger_types(rules.parse_rule(wecom)) == {"contact.added", "contact.deleted"}


def test_rfm_condition(brand):
    a = customer(brand)
    b = customer(brand)
    customer(brand)  # no RFM row: never matches, NOT includes it
    CustomerRfm.objects.create(customer=a, brand=brand, recency=5, frequency=4, monetary=5,
                               rfm_class="important_value", computed_at=T0)  # fmt: skip
    CustomerRfm.objects.create(customer=b, brand=brand, recency=1, frequency=2, monetary=1,
                               rfm_class="general_retain", computed_at=T0)  # fmt: skip
    assert match(brand, {"kind": "rfm", "classes": ["important_value"]}) == {a.pk}
    assert match(brand, {"kind": "rfm", "score": "recency", "op": "lte", "value": 2}) == {b.pk}
    assert len(match(brand, {"not": {"kind": "rfm", "classes": ["general_retain"]}})) == 2


def test_aggregates_missing_row_counts_as_zero(brand):
    buyer = customer(brand)
    none = customer(brand)  # no aggregate row at all
    aggregate(
        buyer, order_count=3, paid_fen=50_000, refunded_fen=10_000, last_order_at=T0 - 70 * DAY
    )
    agg = {"kind": "aggregate"}
    assert match(brand, {**agg, "field": "order_count", "op": "gte", "value": 2}) == {buyer.pk}
    assert match(brand, {**agg, "field": "order_count", "op": "eq", "value": 0}) == {none.pk}
    assert match(brand, {**agg, "field": "net_fen", "op": "eq", "value": 40_000}) == {buyer.pk}
    # days since the last order: missing for someone who never ordered.
    assert match(brand, {**agg, "field": "days_since_last_order", "op": "gt", "value": 60}) == {
        buyer.pk
    }
    assert match(
        brand, {"not": {**agg, "field": "days_since_last_order", "op": "lte", "value": 60}}
    ) == {buyer.pk, none.pk}


def test_event_count_sum_first_last_with_filters(brand):
    a = customer(brand)
    b = customer(brand)
    c = customer(brand)
    for days, category, amount in [(1, "护肤", 100), (5, "护肤", 250), (40, "彩妆", 900)]:
        event(a, "order.paid", T0 - days * DAY, category=category, amount_fen=amount)
    event(b, "order.paid", T0 - 3 * DAY, category="护肤", amount_fen="oops")
    event(b, "link.clicked", T0 - 2 * DAY, link="https://x")
    event(b, "link.clicked", T0 - 13 * DAY, link="https://y")
    skin = [{"property": "category", "op": "eq", "value": "护肤"}]
    paid = {"kind": "event", "type": "order.paid"}
    assert match(brand, {**paid, "filters": skin, "op": "gt", "value": 1}) == {a.pk}
    assert match(brand, {**paid, "filters": skin}) == {a.pk, b.pk}
    assert match(
        brand, {**paid, "measure": "sum", "property": "amount_fen", "op": "gte", "value": 300,
                "window": {"days": 30}}
    ) == {a.pk}  # fmt: skip
    # sum = 0 matches people with no events and those whose amounts are not numbers.
    assert match(
        brand, {**paid, "measure": "sum", "property": "amount_fen", "op": "eq", "value": 0}
    ) == {b.pk, c.pk}
    assert match(brand, {**paid, "op": "eq", "value": 0, "window": {"days": 60}}) == {c.pk}
    assert match(brand, {**paid, "measure": "first", "op": "gte", "value": 30}) == {a.pk}
    assert match(brand, {**paid, "measure": "last", "op": "between", "value": [0, 2]}) == {a.pk}
    clicks = {"kind": "event", "type": "link.clicked", "op": "gte", "value": 2}
    assert match(brand, {**clicks, "window": {"days": 14}}) == {b.pk}
    assert match(brand, {**clicks, "window": {"days": 13}}) == set()
    # "no order.paid in 60 days"
    assert match(brand, {"not": {**paid, "window": {"days": 60}}}) == {c.pk}


def test_touches_and_group_membership(brand):
    a = customer(brand)
    b = customer(brand)
    for days in (0, 1, 6):
        event(a, "message.sent", T0 - days * DAY, carrier="wecom", message_id=f"m{days}")
    event(b, "message.sent", T0 - 8 * DAY, carrier="wecom", message_id="m")
    event(a, "group.joined", T0 - 10 * DAY, group_id="g1")
    event(a, "group.left", T0 - 5 * DAY, group_id="g1")
    event(b, "group.joined", T0 - 10 * DAY, group_id="g1")
    event(b, "group.left", T0 - 9 * DAY, group_id="g2")
    assert match(brand, {"kind": "touches", "window": {"days": 7}, "op": "gte", "value": 3}) == {
        a.pk
    }
    assert match(brand, {"kind": "touches", "window": {"days": 7}, "op": "eq", "value": 0}) == {
        b.pk
    }
    assert match(brand, {"kind": "group", "group_id": "g1"}) == {b.pk}
    assert match(brand, {"kind": "group", "group_id": "g2"}) == set()


def test_nesting(brand):
    t = tag(brand, "VIP")
    a = customer(brand, city="上海")
    b = customer(brand, city="北京")
    c = customer(brand, city="上海")
    tag_customer(c, t)
    event(b, "link.clicked", T0 - DAY, link="l")
    rule = {
        "or": [
            {"and": [
                {"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
                {"not": {"kind": "tag", "tag_ids": [t.pk]}},
            ]},
            {"kind": "event", "type": "link.clicked", "window": {"days": 7}},
        ]
    }  # fmt: skip
    assert match(brand, rule) == {a.pk, b.pk}
    assert match(brand, {"not": rule}) == {c.pk}


def test_windows_follow_the_brand_day_not_utc(brand):
    """Brand time Asia/Shanghai (UTC+8). It is 00:30 on 10 March in Shanghai; an event at
    23:50 on 9 March Shanghai time is yesterday there, though the same UTC day."""
    now = dt.datetime(2026, 3, 9, 16, 30, tzinfo=dt.UTC)  # 2026-03-10 00:30 +08:00
    late = customer(brand)
    early = customer(brand)
    event(late, "link.clicked", dt.datetime(2026, 3, 9, 15, 50, tzinfo=dt.UTC), link="x")  # 23:50
    event(early, "link.clicked", dt.datetime(2026, 3, 9, 16, 10, tzinfo=dt.UTC), link="x")  # 00:10
    clicked = {"kind": "event", "type": "link.clicked"}
    assert match(brand, {**clicked, "window": {"days": 1}}, now) == {early.pk}
    assert match(brand, {**clicked, "window": {"days": 2}}, now) == {early.pk, late.pk}
    assert match(brand, {**clicked, "measure": "last", "op": "eq", "value": 1}, now) == {late.pk}
    # A brand in UTC sees both on the same day.
    brand.time_zone = "UTC"
    brand.save()
    assert match(brand, {**clicked, "window": {"days": 1}}, now) == {early.pk, late.pk}
    # The same rule a day later: both fall out of a one-day window, no new event needed.
    assert match(brand, {**clicked, "window": {"days": 1}}, now + DAY) == set()


HOSTILE = [
    "'; DROP TABLE customers_customer; --",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
    "x' || (SELECT 1) || '",
    "$.a[0]",
    "🙂 护肤",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_match_literally(brand, text):
    target = customer(brand, city=text, source_channel=text[:64], attributes={"note": text})
    other = customer(brand, city="x", source_channel="x", attributes={"note": "x"})
    event(target, "custom.hostile", T0, value=text)
    event(target, "group.joined", T0, group_id=text)
    identity(target, "wechat_openid", namespace=text[:64])
    consent(target, "marketing", "granted", carrier=text[:32])
    rules_to_try = [
        {"kind": "profile", "field": "city", "op": "eq", "value": text},
        {"kind": "profile", "field": "city", "op": "in", "value": [text]},
        {"kind": "profile", "field": "city", "op": "contains", "value": text},
        {"kind": "attribute", "key": "note", "op": "eq", "value": text},
        {"kind": "attribute", "key": "note", "op": "contains", "value": text},
        {"kind": "channel", "channels": [text[:64]]},
        {"kind": "event", "type": "custom.hostile",
         "filters": [{"property": "value", "op": "eq", "value": text}]},
        {"kind": "event", "type": "custom.hostile",
         "filters": [{"property": "value", "op": "contains", "value": text}]},
        {"kind": "group", "group_id": text},
        {"kind": "identity", "identity_kind": "wechat_openid", "namespace": text[:64]},
        {"kind": "consent", "purpose": "marketing", "carrier": text[:32], "status": "granted"},
    ]  # fmt: skip
    for rule in rules_to_try:
        assert match(brand, rule) == {target.pk}, rule
    assert Customer.objects.filter(brand=brand).count() == 2
    assert other.pk not in match(brand, {"or": rules_to_try})


def test_hostile_keys_are_refused_with_the_path(brand):
    with pytest.raises(ValidationFailed) as caught:
        rules.parse_rule({"kind": "attribute", "key": "a') OR 1=1 --", "op": "exists"})
    assert caught.value.field == "$.key"
    with pytest.raises(ValidationFailed) as caught:
        rules.parse_rule(
            {"and": [{"kind": "event", "type": "x",
                      "filters": [{"property": 'a"b', "op": "exists"}]}]}
        )  # fmt: skip
    assert caught.value.field == "$.and[0].filters[0].property"


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        (
            {
                "and": [
                    {"kind": "channel", "channels": ["a"]},
                    {"kind": "lifecycle", "stages": ["lost"]},
                    {"kind": "event", "type": "link.clicked", "window": {"days": 5000}},
                ]
            },
            "$.and[2].window.days",
            "must be between 1 and 3650",
        ),
        ({"or": []}, "$.or", "must be a non-empty list"),
        ({"not": {"kind": "nope"}}, "$.not.kind", "unknown condition kind 'nope'"),
        ({"kind": "tag", "tag_ids": [1], "colour": "red"}, "$.colour", "unknown field"),
        ({"kind": "event"}, "$.type", "is required"),
        ({"kind": "event", "type": "order.paid", "measure": "sum"}, "$.property", "sum needs"),
        ({"kind": "event", "type": "x", "op": "between", "value": 3}, "$.value", "[low, high]"),
        (
            {"kind": "rfm", "score": "recency", "op": "gte", "value": 9},
            "$.value",
            "between 1 and 5",
        ),
        ({"kind": "lifecycle", "stages": ["vip"]}, "$.stages[0]", "Input should be"),
        (
            {"and": [{"not": {"kind": "carrier", "carrier": "wechat", "status": "held"}}]},
            "$.and[0].not.carrier",
            "Input should be",
        ),
        (
            {"or": [{"kind": "carrier", "status": "deleted"}]},
            "$.or[0].status",
            "Input should be 'held', 'lost' or 'none'",
        ),
        ({"kind": "carrier", "account_ids": [0]}, "$.account_ids[0]", "greater than or equal"),
        ({"kind": "carrier", "held": True}, "$.held", "unknown field"),
        ({"and": [{"kind": "channel", "channels": ["a"]}], "or": []}, "$", "only the key"),
        ("customers", "$", "must be an object"),
    ],
)
def test_validation_errors_name_the_json_path(rule, path, message):
    with pytest.raises(ValidationFailed) as caught:
        rules.parse_rule(rule)
    assert caught.value.field == path
    assert caught.value.message.startswith(f"{path}: ")
    assert message in caught.value.message


def test_limits_on_depth_and_size():
    deep: dict[str, Any] = {"kind": "channel", "channels": ["a"]}
    for _ in range(rules.MAX_DEPTH):
        deep = {"not": deep}
    with pytest.raises(ValidationFailed, match="nest at most"):
        rules.parse_rule(deep)
    wide = {"or": [{"and": [{"kind": "channel", "channels": ["a"]}] * 100}] * 4}
    with pytest.raises(ValidationFailed, match="at most 300 nodes"):
        rules.parse_rule(wide)


def test_round_trip_to_json():
    rule = {"not": {"and": [{"kind": "tag", "tag_ids": [3], "match": "all"},
                            {"kind": "touches", "window": {"days": 7}, "op": "lt", "value": 2}]}}  # fmt: skip
    again = rules.to_json(rules.parse_rule(rule))
    assert rules.parse_rule(again) == rules.parse_rule(rule)
    assert again["not"]["and"][1]["window"] == {"days": 7}


class BirthdayMonth(rules.Condition):
    """A condition kind registered from outside the compiler, as later apps do."""

    kind: str = "birthday_month"
    month: int

    def compile(self, ctx):
        from django.db.models import Q

        return Q(birthday__month=self.month)

    def evaluate(self, facts, ctx):
        b = facts.customer.birthday
        return b is not None and b.month == self.month


def test_registered_condition_kinds_compile_and_evaluate(brand):
    rules.register_condition("birthday_month", BirthdayMonth)
    try:
        may = customer(brand, birthday=dt.date(1990, 5, 3))
        customer(brand, birthday=dt.date(1990, 6, 3))
        customer(brand)
        assert match(brand, {"kind": "birthday_month", "month": 5}) == {may.pk}
        assert "birthday_month" in rules.condition_kinds()
    finally:
        rules._KINDS.pop("birthday_month")


def test_latest_times_the_compiler_reads_are_the_ones_the_fold_keeps(brand):
    """rules.LAST_AT / FIRST_AT name, per event type, the aggregate column that
    events.aggregates.fold sets to the latest (earliest) occurred_at of that type."""
    from yutang.events import aggregates
    from yutang.events.models import CustomerAggregate, Event

    for table, pick in ((rules.LAST_AT, max), (rules.FIRST_AT, min)):
        for kind, column in table.items():
            agg = CustomerAggregate(brand_id=brand.pk)
            times = [T0 - 3 * DAY, T0 - 9 * DAY, T0 - DAY]
            for at in times:
                aggregates.fold(agg, Event(type=kind, occurred_at=at, properties={}), brand.tz)
            assert getattr(agg, column) == pick(times), (kind, column)
            other = CustomerAggregate(brand_id=brand.pk)
            aggregates.fold(other, Event(type="x.other", occurred_at=T0, properties={}), brand.tz)
            assert getattr(other, column) is None, (kind, column)


def test_aggregate_tests_of_a_group_read_the_aggregates_once(brand):
    """ "Ordered before and no order in 60 days", "last order > 60 days ago and no touch in
    7 days": the group's aggregate figures and the event conditions the aggregate answers
    become one subquery on it, never a scan of the log; customers without an aggregate row
    keep NOT's meaning."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    lapsed = customer(brand)
    event(lapsed, "order.paid", T0 - 70 * DAY, amount_fen=100)
    recent = customer(brand)
    event(recent, "order.paid", T0 - 70 * DAY, amount_fen=100)
    event(recent, "order.paid", T0 - 5 * DAY, amount_fen=100)
    touched = customer(brand)
    event(touched, "order.paid", T0 - 90 * DAY, amount_fen=100)
    event(touched, "message.sent", T0 - 2 * DAY, carrier="wecom", message_id="m1")
    clicker = customer(brand)  # an aggregate row without orders
    event(clicker, "link.clicked", T0 - 2 * DAY, link="l")
    nobody = customer(brand)  # no aggregate row at all
    no_order_60d = {"and": [
        {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1},
        {"not": {"kind": "event", "type": "order.paid", "window": {"days": 60}}}]}  # fmt: skip
    lapsed_untouched = {"and": [
        {"kind": "aggregate", "field": "days_since_last_order", "op": "gt", "value": 60},
        {"not": {"kind": "touches", "window": {"days": 7}, "op": "gte", "value": 1}}]}  # fmt: skip
    quiet = {"or": [
        {"not": {"kind": "event", "type": "order.paid", "window": {"days": 60}}},
        {"kind": "event", "type": "link.clicked", "measure": "last", "op": "gt", "value": 30}]}  # fmt: skip
    assert match(brand, no_order_60d) == {lapsed.pk, touched.pk}
    assert match(brand, lapsed_untouched) == {lapsed.pk}
    assert match(brand, quiet) == {lapsed.pk, touched.pk, clicker.pk, nobody.pk}
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)
    for rule in (no_order_60d, lapsed_untouched, quiet):
        q = rules.compile_rule(rules.parse_rule(rule), ctx)
        with CaptureQueriesContext(connection) as queries:
            list(Customer.objects.filter(brand=brand).filter(q).values_list("pk", flat=True))
        sql = queries.captured_queries[-1]["sql"]
        assert sql.count('"events_customeraggregate"') == 1, sql
        assert '"events_event"' not in sql, sql


def test_a_lone_recent_days_since_reads_the_window_of_the_log(brand):
    """ "Clicked within 14 days" (days_since_last_click lte / lt) alone reads the window's
    events from the log's (brand, type, occurred_at) index rather than every aggregate row;
    with another aggregate test of its group, negated, or as "more than N days ago" it stays
    on the aggregate. The answers equal the aggregate's (memory reads the aggregate), also
    across the brand's midnight."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    local_midnight = dt.datetime.combine(
        (T0.astimezone(brand.tz) - 14 * DAY).date(), dt.time.min, tzinfo=brand.tz
    )
    inside = customer(brand)  # clicked 5 minutes after the window's first local midnight
    event(inside, "link.clicked", local_midnight + dt.timedelta(minutes=5), link="a")
    outside = customer(brand)  # 5 minutes before it: 15 days ago in Shanghai
    event(outside, "link.clicked", local_midnight - dt.timedelta(minutes=5), link="a")
    event(outside, "message.received", T0 - DAY)
    both = customer(brand)  # an old and a recent click
    event(both, "link.clicked", T0 - 40 * DAY, link="a")
    event(both, "link.clicked", T0 - DAY, link="b")
    event(both, "order.paid", T0 - 3 * DAY, amount_fen=100)
    customer(brand)  # no aggregate row
    recent = {"kind": "aggregate", "field": "days_since_last_click", "op": "lte", "value": 14}
    assert match(brand, recent) == {inside.pk, both.pk}
    assert match(brand, {**recent, "op": "lt", "value": 15}) == {inside.pk, both.pk}
    assert match(brand, {**recent, "value": 13}) == {both.pk}
    assert match(
        brand, {"kind": "aggregate", "field": "days_since_last_inbound", "op": "lte", "value": 3}
    ) == {outside.pk}
    assert match(
        brand, {"kind": "aggregate", "field": "days_since_last_order", "op": "lte", "value": 3}
    ) == {both.pk}
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)

    def tables(rule: dict[str, Any]) -> tuple[int, int]:
        q = rules.compile_rule(rules.parse_rule(rule), ctx)
        with CaptureQueriesContext(connection) as queries:
            list(Customer.objects.filter(brand=brand).filter(q).values_list("pk", flat=True))
        sql = queries.captured_queries[-1]["sql"]
        return sql.count('"events_event"'), sql.count('"events_customeraggregate"')

    assert tables(recent) == (1, 0)
    assert tables({"and": [recent, {"kind": "tag", "tag_ids": [1]}]}) == (1, 0)
    # Negated, "more than 14 days ago", between, or merged with another aggregate test: the
    # aggregate row answers (a window of the log does not give the latest time).
    for rule in (
        {"not": recent},
        {**recent, "op": "gt"},
        {**recent, "op": "between", "value": [0, 14]},
        {**recent, "value": rules.LOG_WINDOW_MAX_DAYS + 1},
        {"and": [recent, {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1}]},
        {"kind": "aggregate", "field": "days_since_last_event", "op": "lte", "value": 14},
    ):
        assert tables(rule) == (0, 1), rule
    assert match(brand, {"not": recent}) == set(
        Customer.objects.filter(brand=brand)
        .exclude(pk__in=[inside.pk, both.pk])
        .values_list("pk", flat=True)
    )


def test_city_and_gender_compile_to_plain_columns_the_index_answers(brand):
    """A profile eq / in compiles to a plain comparison of the column (a value is never "",
    so "" still never matches), which customers' partial index on (brand, city, gender, id)
    answers alone on PostgreSQL: a count reads no customer row."""
    from django.db import connection

    sh = customer(brand, city="上海", gender="female")
    customer(brand, city="上海", gender="male")
    customer(brand, city="", gender="female")
    rule = {"and": [{"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
                    {"kind": "profile", "field": "gender", "op": "in", "value": ["female", "x"]}]}  # fmt: skip
    assert match(brand, rule) == {sh.pk}
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)
    qs = Customer.objects.filter(brand=brand, merged_into__isnull=True).filter(
        rules.compile_rule(rules.parse_rule(rule), ctx)
    )
    sql, params = qs.order_by().values_list("pk").query.sql_with_params()
    assert "NULLIF" not in sql.upper(), sql
    if connection.vendor != "postgresql":
        return
    from django.db import transaction

    with transaction.atomic(), connection.cursor() as cursor:
        # The table is tiny here: leave the planner only this index or reading every row.
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'customers_customer'"
            " AND indexname NOT IN ('customers_customer_pkey', 'customer_seg_city_gender')"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN SELECT count(*) FROM ({sql}) AS s", params)
        plan = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    used = [i for i, line in enumerate(plan) if "Index Only Scan using customer_seg_city" in line]
    assert used, plan
    assert "Index Cond" in plan[used[0] + 1] and "city = " in plan[used[0] + 1], plan


@pytest.mark.django_db(transaction=True)
def test_rule_queries_group_by_sorting_for_their_duration_only():
    """services.rule_query() turns hash aggregation (and JIT) off on PostgreSQL for the
    rule's transaction only: a grouped event condition sorts its window's customer ids."""
    from django.db import connection

    from yutang.segments import services

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL settings")

    def show(name: str) -> str:
        with connection.cursor() as cursor:
            cursor.execute(f"SHOW {name}")
            return str(cursor.fetchone()[0])

    with services.rule_query():
        assert (show("enable_hashagg"), show("jit"), show("work_mem")) == ("off", "off", "128MB")
    assert show("enable_hashagg") == "on"


def test_memberships_of_a_group_are_one_set_of_ids(brand):
    """The positive memberships of an AND / OR group (tags, event windows, grouped counts…)
    compile to one membership test over their ids combined with INTERSECT / UNION, nested
    groups included, so each customer is probed once; other parts (columns, negations) stay
    beside it. The answers equal the in-memory evaluator's on both databases."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    t1, t2, t3 = tag(brand, "t1"), tag(brand, "t2"), tag(brand, "t3")
    inbound = customer(brand, source_channel="live")
    event(inbound, "message.received", T0 - 2 * DAY)
    engaged = customer(brand)  # 3 touches in 30 days and a click in 14
    for days in (1, 5, 20):
        event(engaged, "message.sent", T0 - days * DAY, carrier="wecom", message_id=f"m{days}")
    event(engaged, "link.clicked", T0 - 3 * DAY, link="a")
    touched_only = customer(brand)  # 3 touches, no click
    for days in (1, 2, 3):
        event(touched_only, "message.sent", T0 - days * DAY, carrier="wecom", message_id="m")
    both_tags = customer(brand, source_channel="sms")
    tag_customer(both_tags, t2)
    tag_customer(both_tags, t3)
    one_tag = customer(brand, source_channel="sms")
    tag_customer(one_tag, t2)
    tag_customer(one_tag, t1)
    customer(brand)  # nothing
    engaged_recently = {"or": [
        {"kind": "event", "type": "message.received", "measure": "last", "op": "lte", "value": 7},
        {"and": [{"kind": "touches", "window": {"days": 30}, "op": "gte", "value": 3},
                 {"kind": "aggregate", "field": "days_since_last_click", "op": "lte", "value": 14}]}]}  # fmt: skip
    tags_all = {"kind": "tag", "tag_ids": [3, 2], "match": "all"}
    tags_all = {**tags_all, "tag_ids": [t3.pk, t2.pk]}
    mixed = {"and": [
        {"or": [{"kind": "channel", "channels": ["live"]}, tags_all]},
        {"not": {"kind": "tag", "tag_ids": [t1.pk]}},
        {"or": [{"kind": "tag", "tag_ids": [t2.pk]},
                {"kind": "event", "type": "message.received", "window": {"days": 7}}]}]}  # fmt: skip
    assert match(brand, engaged_recently) == {inbound.pk, engaged.pk}
    assert match(brand, tags_all) == {both_tags.pk}
    assert match(brand, mixed) == {inbound.pk, both_tags.pk}
    assert match(brand, {"not": engaged_recently}) == set(
        Customer.objects.filter(brand=brand)
        .exclude(pk__in=[inbound.pk, engaged.pk])
        .values_list("pk", flat=True)
    )
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)

    def sql_of(rule: dict[str, Any]) -> str:
        q = rules.compile_rule(rules.parse_rule(rule), ctx)
        with CaptureQueriesContext(connection) as queries:
            list(Customer.objects.filter(brand=brand).filter(q).values_list("pk", flat=True))
        return str(queries.captured_queries[-1]["sql"])

    postgresql = connection.vendor == "postgresql"
    probe = "EXISTS (SELECT 1" if postgresql else '"id" IN ('
    # PostgreSQL intersects with semi joins (no sort of every part's rows), SQLite INTERSECT.
    both = "_p.id IN (SELECT * FROM" if postgresql else " INTERSECT "
    sql = sql_of(engaged_recently)
    assert sql.count(probe) == 1, sql
    assert (sql.count(" UNION ALL "), sql.count(both)) == (1, 1), sql
    sql = sql_of(tags_all)
    assert (sql.count(probe), sql.count(both)) == (1, 1), sql
    sql = sql_of(mixed)  # the OR's tags-all set, the negated tag, the OR of two memberships
    assert (sql.count(probe), sql.count(" UNION ALL "), sql.count(both)) == (3, 1, 1), sql


def test_members_from_other_tables_are_checked_against_the_live_customers_index(brand):
    """A rule whose members come from another table (here clicks grouped per customer)
    checks them against customers' partial index on the live customers' (brand, id) alone on
    PostgreSQL: no customer row is read. A merged customer never counts."""
    from django.db import connection, transaction

    twice, once, merged = customer(brand), customer(brand), customer(brand)
    for c, times in ((twice, 2), (once, 1), (merged, 2)):
        for n in range(times):
            event(c, "link.clicked", T0 - (n + 1) * DAY, link="a")
    Customer.objects.filter(pk=merged.pk).update(merged_into=twice)
    rule = {
        "kind": "event",
        "type": "link.clicked",
        "window": {"days": 14},
        "op": "gte",
        "value": 2,
    }
    assert match(brand, rule) == {twice.pk}
    if connection.vendor != "postgresql":
        return
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)
    qs = Customer.objects.filter(brand=brand, merged_into__isnull=True).filter(
        rules.compile_rule(rules.parse_rule(rule), ctx)
    )
    sql, params = qs.order_by().values_list("pk").query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        # The table is tiny here: leave the planner only this index, the primary key or
        # reading every row (customer_seg_city_gender would do as well for these ids).
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'customers_customer'"
            " AND indexname NOT IN ('customers_customer_pkey', 'customer_seg_live')"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN SELECT count(*) FROM ({sql}) AS s", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    assert "Index Only Scan using customer_seg_live on customers_customer" in plan, plan


def test_aggregate_tests_join_the_aggregates_like_a_table(brand):
    """A group's test of the aggregate row has no OFFSET 0 fence on PostgreSQL (the aggregate
    holds one row per customer, so the planner may pull it up and join it in parallel); the
    event log's windows keep theirs. Same answers either way, with and without a row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    buyer = customer(brand)
    event(buyer, "order.paid", T0 - 90 * DAY, amount_fen=100)
    recent = customer(brand)
    event(recent, "order.paid", T0 - DAY, amount_fen=100)
    nobody = customer(brand)  # no aggregate row
    lapsed = {
        "and": [
            {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1},
            {"not": {"kind": "event", "type": "order.paid", "window": {"days": 60}}},
        ]
    }
    assert match(brand, lapsed) == {buyer.pk}
    assert match(brand, {"not": lapsed}) == {recent.pk, nobody.pk}
    assert match(brand, {"kind": "aggregate", "field": "order_count", "op": "lt", "value": 1}) == {
        nobody.pk
    }
    ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=T0)

    def sql_of(rule: dict) -> str:
        """The SQL that listing the rule's members runs."""
        q = rules.compile_rule(rules.parse_rule(rule), ctx)
        with CaptureQueriesContext(connection) as queries:
            list(Customer.objects.filter(brand=brand).filter(q).values_list("pk", flat=True))
        return queries.captured_queries[-1]["sql"]

    sql = sql_of(lapsed)
    assert '"events_customeraggregate"' in sql
    assert "OFFSET 0" not in sql
    clicked = {
        "kind": "event",
        "type": "link.clicked",
        "window": {"days": 14},
        "op": "gte",
        "value": 2,
    }
    fenced = "OFFSET 0" in sql_of(clicked)
    assert fenced == (connection.vendor == "postgresql")
