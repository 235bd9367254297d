"""The gate's history read against the database (SQLite and PostgreSQL): the touches the
batch read keeps (`gate.touches_needed`, `core.bulk.lookup_since_any` over the covering index
`message_customer_passed`) are those a one-by-one read of every touch gives, minus the ones no
rule compares, and the decisions are the same as on every touch."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from yutang.core.clock import FrozenClock, use_clock
from yutang.messaging import delivery, gate, services
from yutang.messaging.models import Message
from yutang.messaging.policy import PolicySettings
from yutang.messaging.tests.helpers import NOON, setup

pytestmark = pytest.mark.django_db

TEXTS = ["春季新品", "会员日", "新品到店", "周末特卖", "积分提醒"]


def _history(brand, account, customers, rnd):
    n = 0
    for c in customers:
        for _ in range(14):
            n += 1
            m = services.enqueue_message(
                brand=brand,
                customer=c,
                account=account,
                kind=rnd.choice(["marketing", "service"]),
                content={"type": "text", "text": rnd.choice(TEXTS)},
                cause=rnd.choice(["journey", "broadcast", "welcome"]),
                idempotency_key=f"old-{n}",
            )
            if rnd.random() < 0.85:  # the rest never passed (blocked, queued)
                Message.objects.filter(pk=m.pk).update(
                    status="sent",
                    carrier=rnd.choice(["sandbox", "sms"]),
                    passed_at=NOON - dt.timedelta(minutes=rnd.randrange(10 * 24 * 60)),
                )


def _every_touch(customer_id: int, since: dt.datetime) -> list[gate.Touch]:
    """One customer's touches, read one by one through the ORM (the slow, plain path)."""
    return [
        gate.Touch(*row)
        for row in Message.objects.filter(customer_id=customer_id, passed_at__gte=since)
        .order_by("id")
        .values_list("passed_at", "kind", "carrier", "content_hash", "cause")
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"platform_limits": {}},
        {"platform_limits": {"sms": {"per_day": 2}}, "marketing_per_day": 3},
        {"marketing_per_day": 2, "marketing_per_week": 5, "duplicate_window_days": 3},
    ],
)
def test_the_batch_reads_the_touches_a_rule_compares_and_decides_as_on_every_touch(settings):
    rnd = random.Random(11)
    with use_clock(FrozenClock(NOON)):
        brand, account, customers = setup(4)
        _history(brand, account, customers, rnd)
    hashes = sorted(set(Message.objects.values_list("content_hash", flat=True)))
    policy = PolicySettings.model_validate({"quiet_hours_enabled": False, **settings})
    for kinds in (["marketing"], ["marketing", "service"]):
        candidates = [
            gate.Candidate(
                customer_id=rnd.choice(customers).pk,
                account_id=account.pk,
                carrier=rnd.choice(["sandbox", "sms"]),
                kind=rnd.choice(kinds),
                content_hash=rnd.choice(hashes[:2]),
                cause="journey",
            )
            for _ in range(12)
        ]
        ctx = delivery.load_context(
            brand=brand,
            candidates=candidates,
            now=NOON,
            adapters=delivery.Adapters(),
            policy=policy,
        )
        assert ctx.history_since is not None
        needed = ctx.needed
        assert (needed is None) == ("service" in {c.kind for c in candidates})
        full = gate.GateContext(
            now=NOON,
            tz=ctx.tz,
            policy=policy,
            recipients=ctx.recipients,
            consents=ctx.consents,
        )
        read = everything = 0
        assert {c.customer_id for c in candidates} == {c.pk for c in customers}
        for c in customers:
            every = _every_touch(c.pk, ctx.history_since)
            full.touches[c.pk] = list(every)
            kept = [
                t
                for t in every
                if needed is None
                or t.kind == "marketing"
                or t.content_hash in needed.hashes
                or t.carrier in needed.carriers
            ]
            assert sorted(ctx.touches.get(c.pk, [])) == sorted(kept)
            read, everything = read + len(kept), everything + len(every)
        assert (read < everything) == (needed is not None)
        for cnd in candidates:
            d = gate.evaluate(cnd, ctx)
            assert d == gate.evaluate(cnd, full), cnd
            if d.outcome == "pass":
                ctx.record(cnd)
                full.record(cnd)


def test_lookup_since_any_keeps_the_rows_matching_any_pair():
    from yutang.core import bulk

    rnd = random.Random(3)
    with use_clock(FrozenClock(NOON)):
        brand, account, customers = setup(3)
        _history(brand, account, customers, rnd)
    ids = [c.pk for c in customers]
    since = NOON - dt.timedelta(days=6)
    columns = ["id", "kind", "carrier", "content_hash"]
    table = Message._meta.db_table
    every = bulk.lookup_since(
        table, columns, key="customer_id", values=ids, since=("passed_at", since)
    )
    h = every[0][3]
    cases = [
        [("kind", ["marketing"])],
        [("kind", ["marketing"]), ("content_hash", [h]), ("carrier", ["sms"])],
        [("kind", ["marketing"]), ("carrier", [])],  # a pair without values matches nothing
        [("carrier", [])],
    ]
    for any_of in cases:
        got = bulk.lookup_since_any(
            table, columns, key="customer_id", values=ids, since=("passed_at", since), any_of=any_of
        )
        want = [
            row
            for row in every
            if any(row[columns.index(name)] in values for name, values in any_of)
        ]
        assert sorted(got) == sorted(want), any_of
    assert sorted(
        bulk.lookup_since_any(
            table, columns, key="customer_id", values=ids, since=("passed_at", since)
        )
    ) == sorted(every)
    assert len(every) == Message.objects.filter(customer_id__in=ids, passed_at__gte=since).count()
