"""Concurrent batches of one brand: the same new people, the same idempotency keys, the same
customers' aggregates, a merge in the middle — nothing is duplicated, lost or deadlocked."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence

import pytest
from django.db import connection

from tests.factories import make_brand
from yutang.customers import services as customers
from yutang.customers.models import Customer, Identity
from yutang.events.aggregates import as_dict
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import EventResult, ingest_events, rebuild_aggregates

KINDS = ["order.paid", "message.sent"]


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


def _run_together(jobs: Sequence[Callable[[], list[EventResult]]]) -> list[list[EventResult]]:
    """Run the jobs in threads released at once (each thread its own connection); return
    their results in order, re-raising the first error."""
    barrier = threading.Barrier(len(jobs))
    out: list[list[EventResult]] = [[] for _ in jobs]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            out[n] = jobs[n]()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return out


def _outcome(brand) -> dict:
    return {
        "customers": Customer.objects.filter(brand=brand, merged_into__isnull=True).count(),
        "identities": Identity.objects.filter(brand=brand).count(),
        "events": Event.objects.filter(brand=brand).count(),
        "aggregates": {
            a.customer_id: as_dict(a) for a in CustomerAggregate.objects.filter(brand=brand)
        },
    }


def _event(key: str, person: str, *, kind: str = "order.paid", hour: int = 0) -> dict:
    props = (
        {"order_id": key, "source": "tmall", "amount_fen": 100}
        if kind == "order.paid"
        else {"carrier": "wecom", "message_id": key}
    )
    return {
        "type": kind,
        "occurred_at": f"2026-03-01T{hour:02d}:00:00+08:00",
        "idempotency_key": key,
        "identities": [{"kind": "external", "value": person}],
        "properties": props,
    }


@pytest.mark.django_db(transaction=True)
def test_writers_racing_on_one_new_identity_end_with_one_customer():
    """Four batches at once, each naming the same person no one knew: one customer with one
    identity, every event on it, aggregates equal to a rebuild."""
    brand = make_brand()
    batches = [
        [_event(f"w{n}-{i}", "NEW-1", kind=KINDS[i % 2], hour=i) for i in range(5)]
        for n in range(4)
    ]
    outcomes = _run_together(
        [functools.partial(ingest_events, brand=brand, items=b) for b in batches]
    )
    customer = Customer.objects.get(brand=brand)
    for results in outcomes:
        assert [r.status for r in results] == ["stored"] * 5
        assert {r.customer_id for r in results} == {customer.pk}
    before = _outcome(brand)
    assert before["identities"] == 1 and before["events"] == 20
    rebuild_aggregates(brand=brand)
    assert _outcome(brand) == before


@pytest.mark.django_db(transaction=True)
def test_the_same_keys_in_concurrent_batches_are_stored_once():
    """The same batch sent three times at once (a client retrying while the first attempt
    is still being written): every key stored once, each event reported stored by exactly
    one attempt and duplicate by the others, aggregates counted once."""
    brand = make_brand()
    items = [_event(f"k{i}", f"P{i % 7}", kind=KINDS[i % 2], hour=i % 24) for i in range(40)]
    outcomes = _run_together([functools.partial(ingest_events, brand=brand, items=items)] * 3)
    for i in range(40):
        statuses = sorted(results[i].status for results in outcomes)
        assert statuses == ["duplicate", "duplicate", "stored"]
    before = _outcome(brand)
    assert before["events"] == 40 and before["customers"] == 7
    assert sum(a["order_count"] for a in before["aggregates"].values()) == 20
    rebuild_aggregates(brand=brand)
    assert _outcome(brand) == before


@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_keep_aggregates_equal_to_a_rebuild():
    """Batches with customers (and touch days) in common, written at once, lose nothing."""
    brand = make_brand()
    batches = [
        [
            _event(f"b{b}-{i}", f"P{(i * (b + 1)) % 11}", kind=KINDS[(i + b) % 2], hour=i % 24)
            for i in range(30)
        ]
        for b in range(4)
    ]
    _run_together([functools.partial(ingest_events, brand=brand, items=b) for b in batches])
    before = _outcome(brand)
    assert before["events"] == 120
    rebuild_aggregates(brand=brand)
    assert _outcome(brand) == before


@pytest.mark.django_db(transaction=True)
def test_a_merge_between_resolving_and_writing_moves_the_events_to_the_survivor():
    """A batch resolves (and commits its customers) before it writes its events; a merge
    that commits in between sends the events to the surviving customer."""
    from django.db import transaction

    from yutang.core import clock
    from yutang.customers.identities import normalize_identity
    from yutang.events import services

    brand = make_brand()
    ingest_events(brand=brand, items=[_event("a0", "A"), _event("b0", "B")])
    item = _event("a1", "A", kind="message.sent")
    now = clock.now()
    valid = [services._validate(brand, 0, item, now)]
    results = [services.EventResult(index=0, status="pending")]
    with transaction.atomic():
        to_store = services._resolve_batch(brand, valid, results, now)

    def find(value: str) -> Customer:
        found = customers.find_by_identity(
            brand=brand, identity=normalize_identity("external", value)
        )
        assert found is not None
        return found

    a, b = find("A"), find("B")
    assert to_store[0][1] == a.pk
    customers.merge_customers(brand=brand, keep=b, absorb=a, actor=None, reason="test")
    with transaction.atomic():
        services._write_batch(brand, to_store, results, now)
    assert results[0].status == "stored" and results[0].customer_id == b.pk
    assert set(Event.objects.filter(brand=brand).values_list("customer_id", flat=True)) == {b.pk}
    before = _outcome(brand)
    rebuild_aggregates(brand=brand)
    assert _outcome(brand) == before
