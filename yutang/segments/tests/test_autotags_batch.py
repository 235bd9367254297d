"""The auto-tag consumer's batch (`autotags.handle_events`) leaves the same tags as
`autotags.handle_event` on each event in order: two copies of one scripted world, one handled
as a batch, the other event by event, compared tag by tag (with the rules evaluated once per
customer and batch, and with a rule that reads tags, which makes the batch go one by one)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import make_brand, make_staff
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand
from yutang.core.permissions import Role
from yutang.customers.models import CustomerTag
from yutang.events.models import Event
from yutang.segments import autotags
from yutang.segments.tests.builders import (
    T0,
    carrier_account,
    contact,
    customer,
    event,
    tag,
    tag_customer,
)

pytestmark = pytest.mark.django_db
MINUTE = dt.timedelta(minutes=1)


def world(brand: Brand, *, reads_tags: bool) -> tuple[list[Event], dict[int, int]]:
    """Rules, customers and a window of events; returns the events and {customer id: index}."""
    admin = make_staff(brand, Role.BRAND_ADMIN)
    twice, clicked, held, vip = (
        tag(brand, "两单"), tag(brand, "点击"), tag(brand, "在册"), tag(brand, "VIP")
    )  # fmt: skip
    two_orders = autotags.create_rule(
        actor=admin, name="two orders", tag_id=twice.pk,
        rule={"kind": "event", "type": "order.paid", "op": "gte", "value": 2},
    )  # fmt: skip
    autotags.create_rule(
        actor=admin, name="clicked in 7 days", tag_id=clicked.pk,
        rule={"kind": "event", "type": "link.clicked", "window": {"days": 7}},
    )  # fmt: skip
    autotags.create_rule(
        actor=admin, name="holds a wecom contact", tag_id=held.pk,
        rule={"kind": "carrier", "carrier": "wecom", "status": "held"},
    )  # fmt: skip
    if reads_tags:
        autotags.create_rule(
            actor=admin, name="vip: two orders and clicked", tag_id=vip.pk,
            rule={"kind": "tag", "tag_ids": [twice.pk, clicked.pk], "match": "all"},
        )  # fmt: skip
    account = carrier_account(brand)
    people = [customer(brand, display_name=f"p{i}") for i in range(6)]
    tag_customer(people[0], twice)  # tagged by hand: keeps the tag
    CustomerTag.objects.create(  # tagged by the rule earlier, no longer matches: loses it
        customer=people[1], tag=twice, source=two_orders.source, created_at=T0
    )
    contact(people[2], account)
    contact(people[3], account, status="lost")
    at = T0
    script = [
        (0, "order.paid"), (2, "order.paid"), (2, "link.clicked"), (2, "order.paid"),
        (1, "link.clicked"), (3, "order.paid"), (4, "message.sent"), (2, "contact.added"),
        (5, "order.paid"), (5, "order.paid"), (3, "link.clicked"), (1, "order.paid"),
    ]  # fmt: skip
    events = []
    for index, kind in script:
        at += MINUTE
        props = {"amount_fen": 100, "order_id": f"o{at:%H%M}", "source": "tmall"}
        events.append(
            event(people[index], kind, at, **(props if kind == "order.paid" else {"link": "x"}))
        )
    return events, {c.pk: i for i, c in enumerate(people)}


def tags_of(brand: Brand, index: dict[int, int]) -> set[tuple[int, str, bool]]:
    """(customer index, tag, whether added by hand) of each tag."""
    return {
        (index[customer_id], name, not source.startswith("auto:"))
        for customer_id, name, source in CustomerTag.objects.filter(
            customer__brand=brand
        ).values_list("customer_id", "tag__name", "source")
    }


@pytest.mark.parametrize("reads_tags", [False, True])
def test_the_batch_leaves_the_tags_one_by_one_leaves(reads_tags):
    batched, single = make_brand(), make_brand()
    with use_clock(FrozenClock(T0 + dt.timedelta(hours=1))):
        events, index = world(batched, reads_tags=reads_tags)
        autotags.handle_events(events)
        events_b, index_b = world(single, reads_tags=reads_tags)
        for e in events_b:
            autotags.handle_event(e)
    got, expected = tags_of(batched, index), tags_of(single, index_b)
    assert got == expected
    assert (0, "两单", True) in got  # the hand-made tag stays
    assert not any(i == 1 and name == "两单" for i, name, _ in got)  # the stale one went
    assert {(2, "两单", False), (2, "点击", False), (5, "两单", False)} <= got
    assert (2, "在册", False) in got and not any(i == 3 and n == "在册" for i, n, _ in got)
    assert any(name == "VIP" for _i, name, _ in got) == reads_tags


def test_the_consumer_reads_the_types_the_active_rules_react_to():
    """`autotags.event_types`: what the consumer reads (it passes over the rest unread)."""
    brand = make_brand()
    assert autotags.event_types() == set(), "no rule: nothing to read"
    world(brand, reads_tags=False)
    assert autotags.event_types() == {"order.paid", "link.clicked", "contact.added",
                                      "contact.deleted"}  # fmt: skip
    other = make_brand()  # another brand's rule counts too (the consumer serves every brand)
    admin = make_staff(other, Role.BRAND_ADMIN)
    autotags.create_rule(
        actor=admin, name="spent", tag_id=tag(other, "spent").pk,
        rule={"kind": "aggregate", "field": "refunded_fen", "op": "gte", "value": 1},
    )  # fmt: skip
    found = autotags.event_types()
    assert found is not None and "order.refunded" in found
    # A rule whose answer may change with any event (or none: a profile field) reads all.
    autotags.create_rule(
        actor=admin, name="named", tag_id=tag(other, "named").pk,
        rule={"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True},
    )  # fmt: skip
    assert autotags.event_types() is None
