"""Caps hold under concurrency: two delivery workers and an API broadcast racing on the same
customers (threads with their own PostgreSQL connections) never exceed a cap."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter

import pytest
from django.db import connection, connections

from tests.factories import Api, make_staff
from yutang.carriers.models import SandboxDelivery
from yutang.core.clock import FrozenClock, use_clock
from yutang.messaging import gate, services
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import NOON, setup


@pytest.mark.django_db(transaction=True)
def test_two_workers_and_an_api_broadcast_never_exceed_the_daily_cap():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has a single writer; the race needs PostgreSQL")
    with use_clock(FrozenClock(NOON)):  # the clock is process-wide: every thread sees it
        race()


def race() -> None:
    brand, account, customers = setup(20)
    admin = make_staff(brand)
    ids = [c.pk for c in customers]
    # Three journeys queued each customer already; a customer's messages are next to each
    # other in the claim order, so concurrent small batches decide the same customer at once.
    for c in customers:
        for wave in range(3):
            services.enqueue_message(
                brand=brand,
                customer=c,
                account=account,
                kind="marketing",
                content={"text": f"wave {wave}"},
                cause="journey",
                idempotency_key=f"w{wave}-{c.pk}",
            )
    api = Api(admin)
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(40):
                deliver_due_messages(limit=2)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def broadcaster() -> None:
        try:
            start.wait()
            for n in range(3):
                r = api.post(
                    "/broadcasts",
                    {
                        "account_id": account.pk,
                        "kind": "marketing",
                        "content": {"text": f"api {n}"},
                        "customer_ids": ids,
                    },
                )
                assert r.status_code == 201, r.content
                deliver_due_messages(limit=3)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker),
        threading.Thread(target=worker),
        threading.Thread(target=broadcaster),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    while deliver_due_messages():
        pass
    per_customer = Counter(
        Message.objects.filter(kind="marketing", passed_at__isnull=False).values_list(
            "customer_id", flat=True
        )
    )
    assert set(per_customer.values()) == {1}  # the daily cap is 1, whoever won the race
    assert len(per_customer) == 20
    assert SandboxDelivery.objects.count() == 20
    assert Message.objects.filter(status="blocked", rule="frequency").count() == 6 * 20 - 20


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_overshoot_an_accounts_marketing_share():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has a single writer; the race needs PostgreSQL")
    with use_clock(FrozenClock(NOON)):
        share_race()


def share_race() -> None:
    import datetime as dt

    brand, account, customers = setup(30)
    # Broadcasts are the account's posts (the share's default scope).
    # 40 service posts in the window: marketing may pass while (marketing + 1) stays within
    # 20% of (posts + 1), i.e. exactly 10 more marketing posts (10 of 50 posts).
    earlier = NOON - dt.timedelta(hours=1)
    Message.objects.bulk_create(
        [
            Message(
                brand=brand,
                customer=customers[0],
                account=account,
                carrier="sandbox",
                kind="service",
                content={"text": f"订单 {n}"},
                content_hash=f"service-{n}",
                cause="broadcast",
                status="sent",
                idempotency_key=f"earlier-{n}",
                due_at=earlier,
                passed_at=earlier,
                sent_at=earlier,
                created_at=earlier,
            )
            for n in range(40)
        ]
    )
    for c in customers:  # one each: the frequency caps never stop these
        services.enqueue_message(
            brand=brand,
            customer=c,
            account=account,
            kind="marketing",
            content={"text": "春季上新"},
            cause="broadcast",
            idempotency_key=f"spring-{c.pk}",
        )
    # Each worker stops at every decision that reaches the holdout hook, with its batch's
    # counts loaded, until the other worker is there too: the two decide in lockstep, also
    # when a pass decides again under its locks (delivery.decide). Without the account's lock
    # both pass 10 with the same counts, 20 together; with it the second waits for the first
    # to commit (the rendezvous times out once and is broken from then on) and then sees the
    # 10 the first let through.
    rendezvous = threading.Barrier(2)

    def meet(candidate: gate.Candidate) -> bool:
        with contextlib.suppress(threading.BrokenBarrierError):
            rendezvous.wait(timeout=3)
        return False  # holds nobody out

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait()
            deliver_due_messages(limit=15)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    gate.register_holdout(meet)
    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        gate.unregister_holdout(meet)
    assert not errors, errors
    while deliver_due_messages():
        pass
    marketing = Message.objects.filter(kind="marketing")
    assert marketing.filter(passed_at__isnull=False).count() == 10
    assert marketing.filter(status="blocked", rule="marketing_share").count() == 20
    assert SandboxDelivery.objects.count() == 10
