"""A callback's receipts: one statement for all its facts, a replay handled once, a key
repeated inside one callback counted once (the first), keys cut to the column's length."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pytest

from tests.factories import make_account, make_brand
from yutang.carriers import inbound
from yutang.carriers import services as carriers
from yutang.carriers.models import InboundReceipt
from yutang.core.clock import FrozenClock, use_clock

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def seen() -> Iterator[list[inbound.InboundFact]]:
    """The facts every sink was handed, in order (a sink of this test, removed after it)."""
    got: list[inbound.InboundFact] = []

    def sink(fact: inbound.InboundFact) -> None:
        got.append(fact)

    def batch(facts: Sequence[inbound.InboundFact]) -> None:
        got.extend(facts)

    inbound.register_inbound_sink(sink, batch=batch)
    try:
        with use_clock(FrozenClock(NOON)):
            yield got
    finally:
        inbound._SINKS.remove(sink)
        del inbound._BATCH_SINKS[sink]


def test_fresh_facts_in_order_replays_and_repeats_once(seen) -> None:
    brand = make_brand()
    account = make_account(brand)

    def receipt(n: int, status: str = "delivered") -> inbound.DeliveryReceipt:
        return inbound.DeliveryReceipt(
            brand_id=brand.pk,
            account_id=account.pk,
            carrier_message_id=f"unknown-{n}",
            status=status,  # type: ignore[arg-type]
            occurred_at=NOON,
        )

    long = "k" * 200
    first = [
        ("b", receipt(1)),
        ("a", receipt(2)),
        ("b", receipt(3)),  # repeated inside the callback: the first wins
        (long + "-x", receipt(4)),
        (long + "-y", receipt(5)),  # the same key once cut to 200 characters
    ]
    assert carriers.publish_facts(account=account, facts=first) == 3
    assert seen == [receipt(1), receipt(2), receipt(4)]
    seen.clear()

    second = [("a", receipt(6)), ("c", receipt(7, "read")), ("d", receipt(8)), ("c", receipt(9))]
    assert carriers.publish_facts(account=account, facts=second) == 2
    assert seen == [receipt(7, "read"), receipt(8)]
    seen.clear()
    assert carriers.publish_facts(account=account, facts=[]) == 0
    assert seen == []

    rows = InboundReceipt.objects.filter(account=account).order_by("dedupe_key")
    assert [(r.dedupe_key, r.kind, r.brand_id, r.received_at) for r in rows] == [
        (key, "DeliveryReceipt", brand.pk, NOON) for key in ["a", "b", "c", "d", long]
    ]
    # Another account may use the same keys.
    other = make_account(brand)
    assert carriers.publish_facts(account=other, facts=[("a", receipt(10))]) == 1
