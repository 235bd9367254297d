"""The portrait's segmentation on the console page and over REST: the predicted next purchase
from real orders and products' usage cycles, and the matching segments in a number of queries
that does not grow with the number of segments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import Api, console_client, make_brand, make_staff
from yutang.commerce import services as commerce
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.segments import scoring
from yutang.segments import services as segments
from yutang.segments.models import Segment
from yutang.segments.tests.builders import (
    T0,
    aggregate,
    carrier_account,
    contact,
    customer,
    event,
    tag,
    tag_customer,
)

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
SHANGHAI_TZ = dt.timezone(dt.timedelta(hours=8))
# 00:30 on 2 March in Shanghai, still 1 March in UTC: the prediction counts brand days.
PAID_AT = dt.datetime(2026, 3, 2, 0, 30, tzinfo=SHANGHAI_TZ)


def _order(brand, person, external_id: str, skus: list[str]) -> None:
    commerce.post_order(
        brand=brand, actor=None, source="tmall", external_id=external_id, paid_at=PAID_AT,
        amount_fen=9900, customer_id=person.pk, items=[{"sku": s, "qty": 1} for s in skus],
    )  # fmt: skip


def _portrait(client, person) -> str:
    response = client.get(f"/customers/{person.pk}/")
    assert response.status_code == 200
    return str(response.content.decode())


def test_predicted_next_purchase_from_the_usage_cycle_on_the_page_and_the_api():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    commerce.upsert_product(actor=None, brand=brand, sku="CREAM", name="面霜", price_fen=9900,
                            usage_cycle_days=30)  # fmt: skip
    commerce.upsert_product(actor=None, brand=brand, sku="SERUM", name="精华", price_fen=9900,
                            usage_cycle_days=45)  # fmt: skip
    commerce.upsert_product(actor=None, brand=brand, sku="BAG", name="袋子", price_fen=100)
    cream, both, bag_only = customer(brand), customer(brand), customer(brand)
    api, client = Api(admin), console_client(admin)
    with use_clock(FrozenClock(T0)):
        _order(brand, cream, "o1", ["CREAM", "BAG"])
        _order(brand, both, "o2", ["CREAM", "SERUM"])
        _order(brand, bag_only, "o3", ["BAG"])

        # 2 March (brand day) + 30 days; the longest cycle of the order; else the default 60.
        assert api.get(f"/customers/{cream.pk}/segmentation").json()["predicted_next_purchase"] == (
            "2026-04-01"
        )
        assert 'data-testid="next-purchase">2026-04-01<' in _portrait(client, cream)
        assert api.get(f"/customers/{both.pk}/segmentation").json()["predicted_next_purchase"] == (
            "2026-04-16"
        )
        assert 'data-testid="next-purchase">2026-04-16<' in _portrait(client, both)
        assert api.get(f"/customers/{bag_only.pk}/segmentation").json()[
            "predicted_next_purchase"
        ] == ("2026-05-01")

        # No usable cycle: the products have none and the brand has no default.
        scoring.update_settings(actor=admin, default_cycle_days=None)
        body = api.get(f"/customers/{bag_only.pk}/segmentation").json()
        assert body["predicted_next_purchase"] is None
        assert 'data-testid="next-purchase">—<' in _portrait(client, bag_only)
        # Nor does a customer without orders get one.
        nobody = customer(brand)
        assert (
            api.get(f"/customers/{nobody.pk}/segmentation").json()["predicted_next_purchase"]
            is None
        )


def _count(call: Any) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as queries:
        result = call()
    return len(queries.captured_queries), result


def test_matching_segments_in_a_number_of_queries_that_does_not_grow():
    """Static and dynamic segments of many condition kinds: the portrait page and the API
    take the same number of queries with 3 segments as with 12, and list exactly the
    segments the customer is in."""
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    vip = tag(brand, "VIP")
    person = customer(brand, city="上海")
    # No order.paid event: the aggregate's counters only (its latest times follow the log).
    aggregate(person, order_count=2, paid_fen=19_800)
    event(person, "link.clicked", T0 - DAY, link="a")
    contact(person, carrier_account(brand, "wecom"))
    other = customer(brand, city="北京")
    tag_customer(other, vip)

    def dynamic(name: str, rule: dict[str, Any]) -> Segment:
        return segments.create_segment(actor=admin, name=name, kind="dynamic", rule=rule)

    def static(name: str, members: list[int]) -> Segment:
        segment = segments.create_segment(actor=admin, name=name, kind="static")
        segments._replace_members(segment, set(members))
        return segment

    api, client = Api(admin), console_client(admin)

    def both() -> tuple[int, int, list[str], str]:
        with use_clock(FrozenClock(T0)):
            page_queries, page = _count(lambda: _portrait(client, person))
            api_queries, response = _count(
                lambda: api.get(f"/customers/{person.pk}/segmentation").json()
            )
        return page_queries, api_queries, [s["name"] for s in response["segments"]], page

    dynamic("上海", {"kind": "profile", "field": "city", "op": "eq", "value": "上海"})
    static("名单甲", [person.pk])
    # journeys' repurchase_due reads the brand's cycles when it compiles (two queries of its
    # own per such condition); one of them is here from the start.
    dynamic("即将复购", {"kind": "repurchase_due", "lead_days": 3, "window_days": 7})
    both()  # the first request creates the brand's segment settings and warms caches
    few_page, few_api, names, _ = both()
    assert names == ["上海", "名单甲"]

    dynamic("近7天点击", {"kind": "event", "type": "link.clicked", "window": {"days": 7}})
    dynamic("复购", {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 2})
    dynamic("企微好友", {"kind": "carrier", "carrier": "wecom"})
    dynamic("企微已删", {"kind": "carrier", "carrier": "wecom", "status": "lost"})
    dynamic("VIP", {"kind": "tag", "tag_ids": [vip.pk]})
    dynamic("非VIP且未流失", {"and": [{"not": {"kind": "tag", "tag_ids": [vip.pk]}},
                                     {"not": {"kind": "lifecycle", "stages": ["lost"]}}]})  # fmt: skip
    dynamic("北京或无单", {"or": [{"kind": "profile", "field": "city", "op": "eq", "value": "北京"},
                                  {"not": {"kind": "event", "type": "order.paid"}}]})  # fmt: skip
    static("名单乙", [other.pk])
    static("名单丙", [person.pk, other.pk])
    many_page, many_api, names, page = both()
    assert Segment.objects.filter(brand=brand).count() == 12
    assert names == [
        "上海", "名单甲", "近7天点击", "复购", "企微好友", "非VIP且未流失", "北京或无单", "名单丙",
    ]  # fmt: skip
    assert (many_page, many_api) == (few_page, few_api)
    assert "企微好友</a>" in page and "企微已删</a>" not in page and "名单乙</a>" not in page


def test_matching_segments_agree_with_each_segment_s_members_and_scope():
    """The one-query answer is each segment's own member test, for every customer."""
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    people = [customer(brand, city=city) for city in ("上海", "北京", "")]
    contact(people[0], carrier_account(brand, "wecom"), "lost")
    rules_by_name = {
        "上海": {"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
        "无城市": {"not": {"kind": "profile", "field": "city", "op": "exists"}},
        "企微已删": {"kind": "carrier", "status": "lost"},
        "从未添加": {"kind": "carrier", "status": "none"},
    }
    made = [
        segments.create_segment(actor=admin, name=n, kind="dynamic", rule=r)
        for n, r in rules_by_name.items()
    ]
    for person in people:
        expected = {s.pk for s in made if segments.brand_members(s).filter(pk=person.pk).exists()}
        assert segments.dynamic_segments_matching(customer=person, segments=made) == expected
    names = {s.pk: s.name for s in made}
    found = [
        {names[pk] for pk in segments.dynamic_segments_matching(customer=p, segments=made)}
        for p in people
    ]
    assert found == [{"上海", "企微已删"}, {"从未添加"}, {"无城市", "从未添加"}]
    assert segments.dynamic_segments_matching(customer=people[0], segments=[]) == set()
