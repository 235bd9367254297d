"""Concurrent batches that mention the same new people neither deadlock nor duplicate."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.factories import make_brand
from yutang.customers.models import Customer, Identity
from yutang.events.models import Event
from yutang.events.services import ingest_events


def batch(tag: str, order: list[int]) -> list[dict]:
    return [
        {
            "type": "link.clicked",
            "occurred_at": "2026-03-01T10:00:00+08:00",
            "idempotency_key": f"{tag}-{n}",
            "identities": [
                {"kind": "external", "value": f"P{n}"},
                {"kind": "phone", "value": f"1380000{n:04d}"},
            ],
            "properties": {"link": "x"},
        }
        for n in order
    ]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_batches_over_the_same_new_people():
    brand = make_brand()
    people = list(range(60))
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(tag: str, order: list[int]) -> None:
        try:
            barrier.wait(timeout=30)
            ingest_events(brand=brand, items=batch(tag, order))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=("a", people)),
        threading.Thread(target=run, args=("b", list(reversed(people)))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert Event.objects.filter(brand=brand).count() == 120
    assert Customer.objects.filter(brand=brand, merged_into__isnull=True).count() == 60
    assert Identity.objects.filter(brand=brand).count() == 120
