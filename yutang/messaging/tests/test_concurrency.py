"""Caps hold under concurrency: two delivery workers and an API broadcast racing on the same
customers (threads with their own PostgreSQL connections) never exceed a cap."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from tests.factories import Api, make_staff
from yutang.carriers.models import SandboxDelivery
from yutang.core.clock import FrozenClock, use_clock
from yutang.messaging import services
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
