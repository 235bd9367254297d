"""Event-log consumers: in order, at least once, failures isolated, backoff, parking."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.db import connection as db_connection

from tests.factories import make_brand
from yutang.core import clock
from yutang.events import consumers
from yutang.events.models import ConsumerFailure, ConsumerOffset, Event
from yutang.events.services import ingest_events

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def seen():
    log: list[int] = []
    yield log
    for name in list(consumers.registered()):
        if name.startswith("test."):
            consumers.unregister_consumer(name)


def store(brand, n, at=T0, kind="link.clicked", **props):
    with clock.use_clock(clock.FrozenClock(at)):
        ingest_events(
            brand=brand,
            items=[
                {
                    "type": kind,
                    "occurred_at": at.isoformat(),
                    "idempotency_key": f"{kind}-{at.isoformat()}-{i}",
                    "identities": [{"kind": "external", "value": f"P{i}"}],
                    "properties": props or {"link": "l"},
                }
                for i in range(n)
            ],
        )


def test_consumer_reads_in_order_from_its_offset_after_the_lag(seen):
    brand = make_brand()
    consumers.register_consumer("test.log", lambda e: seen.append(e.pk))
    store(brand, 3)
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(seconds=1))):
        assert consumers.run_consumer("test.log").handled == 0, "younger than the lag"
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(seconds=10))):
        assert consumers.run_consumer("test.log", batch=2).handled == 2
        assert consumers.run_consumer("test.log", batch=2).handled == 1
        assert consumers.run_consumer("test.log").handled == 0
    assert seen == sorted(Event.objects.values_list("pk", flat=True))
    assert ConsumerOffset.objects.get(name="test.log").position == seen[-1]


def test_type_filter_skips_other_events_but_moves_the_offset(seen):
    brand = make_brand()
    consumers.register_consumer("test.orders", lambda e: seen.append(e.pk), types={"order.paid"})
    store(brand, 2)
    store(
        brand,
        1,
        at=T0 + dt.timedelta(seconds=1),
        kind="order.paid",
        order_id="o",
        source="tmall",
        amount_fen=1,
    )
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(minutes=1))):
        consumers.run_consumer("test.orders")
    assert seen == list(Event.objects.filter(type="order.paid").values_list("pk", flat=True))
    assert ConsumerOffset.objects.get(name="test.orders").position == Event.objects.latest("pk").pk


def test_types_from_a_function_are_asked_at_each_pass(seen):
    """A consumer whose interest follows its configuration: the function is asked at each
    pass; only events of the types it names reach the handlers (batch and one by one), the
    others are passed over; None means every event."""
    brand = make_brand()
    wanted: dict[str, set[str] | None] = {"types": {"order.paid"}}
    batches: list[list[str]] = []
    consumers.register_consumer(
        "test.dynamic",
        lambda e: seen.append(e.pk),
        types=lambda: wanted["types"],
        batch_handler=lambda events: batches.append([e.type for e in events]),
    )
    order = {"order_id": "o", "source": "tmall", "amount_fen": 1}
    store(brand, 2)
    store(brand, 1, at=T0 + dt.timedelta(seconds=1), kind="order.paid", **order)
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(minutes=1))):
        assert consumers.run_consumer("test.dynamic").handled == 1
    assert batches == [["order.paid"]]
    assert ConsumerOffset.objects.get(name="test.dynamic").position == Event.objects.latest("pk").pk
    wanted["types"] = set()  # nothing wanted: the window is passed over, the handler not called
    store(brand, 1, at=T0 + dt.timedelta(minutes=2), kind="link.clicked")
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(minutes=3))):
        passed = consumers.run_consumer("test.dynamic")
        assert (passed.handled, passed.passed_over) == (0, 1)
        # Not idle: a pass that only moved past other types counts (fast_forward and the
        # worker run passes until one does nothing).
        store(brand, 2, at=T0 + dt.timedelta(minutes=2, seconds=1), kind="link.clicked")
        assert consumers.run_consumer("test.dynamic", batch=1).passed_over == 1
        with pytest.MonkeyPatch.context() as patch:  # this consumer alone
            patch.setattr(
                consumers, "_CONSUMERS", {"test.dynamic": consumers._CONSUMERS["test.dynamic"]}
            )
            assert consumers.run_all(batch=1) == 1, "passed over one: not idle"
            assert consumers.run_all() == 0
    assert batches == [["order.paid"]]
    assert ConsumerOffset.objects.get(name="test.dynamic").position == Event.objects.latest("pk").pk
    wanted["types"] = None  # every event again
    store(brand, 2, at=T0 + dt.timedelta(minutes=4), kind="link.clicked")
    store(brand, 1, at=T0 + dt.timedelta(minutes=4, seconds=1), kind="order.paid", **order)
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(minutes=5))):
        assert consumers.run_consumer("test.dynamic").handled == 3
    assert batches[-1] == ["link.clicked", "link.clicked", "order.paid"]
    assert seen == [], "the batch handler took every window"


def test_a_failing_event_is_retried_with_backoff_then_parked_without_stopping_others(seen):
    brand = make_brand()
    store(brand, 3)
    bad = Event.objects.order_by("pk")[1].pk
    fixed = {"yes": False}

    def handler(event):
        if event.pk == bad and not fixed["yes"]:
            raise RuntimeError("boom")
        seen.append(event.pk)

    consumers.register_consumer("test.flaky", handler)
    now = T0 + dt.timedelta(minutes=1)
    frozen = clock.FrozenClock(now)
    with clock.use_clock(frozen):
        first = consumers.run_consumer("test.flaky")
        assert (first.handled, first.failed) == (2, 1)
        assert bad not in seen and len(seen) == 2
        failure = ConsumerFailure.objects.get(event_id=bad)
        assert failure.next_attempt_at == now + dt.timedelta(seconds=30)
        assert "RuntimeError: boom" in failure.error
        assert consumers.run_consumer("test.flaky").retried == 0, "not due yet"
        for attempt in range(2, consumers.MAX_ATTEMPTS + 1):
            frozen.advance(consumers.backoff(attempt - 1))
            assert consumers.run_consumer("test.flaky").retried == 1
        failure.refresh_from_db()
        assert failure.parked and failure.attempts == consumers.MAX_ATTEMPTS
        frozen.advance(dt.timedelta(days=1))
        assert consumers.run_consumer("test.flaky").retried == 0, "parked events wait for a person"
        fixed["yes"] = True
        assert consumers.replay_parked(consumer="test.flaky") == 1
        assert consumers.run_consumer("test.flaky").handled == 1
    assert sorted(seen) == sorted(Event.objects.values_list("pk", flat=True))
    assert not ConsumerFailure.objects.exists()


def test_handler_writes_roll_back_with_a_failure_so_the_retry_is_clean(seen):
    """At least once: a handler's partial writes never survive its failure."""
    from yutang.customers import services as customers

    brand = make_brand()
    store(brand, 1)
    tag = customers.create_tag(actor=None, brand=brand, group="行为", name="点过链接")
    attempts = {"n": 0}

    def handler(event):
        customers.set_tags(actor=None, customer=event.customer, add=[tag.pk], source="rule")
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("crash after writing")

    consumers.register_consumer("test.tagger", handler)
    frozen = clock.FrozenClock(T0 + dt.timedelta(minutes=1))
    with clock.use_clock(frozen):
        consumers.run_consumer("test.tagger")
        event = Event.objects.get()
        assert not event.customer.customer_tags.exists()
        frozen.advance(dt.timedelta(minutes=1))
        consumers.run_consumer("test.tagger")
    assert list(event.customer.customer_tags.values_list("tag_id", flat=True)) == [tag.pk]


def test_consumers_command_reports_offsets_and_parked(seen, capsys):
    from django.core.management import call_command

    consumers.register_consumer("test.cmd", lambda e: seen.append(e.pk))
    call_command("consumers")
    assert "test.cmd: at event 0" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_an_event_committed_late_with_a_lower_id_is_not_skipped(seen):
    """A long transaction stores an event (lower id) and commits after a quick one stored
    and committed a later event: the consumer must not move past the slow one's id."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids always follow commit order")
    slow_brand, quick_brand = make_brand(), make_brand()
    consumers.register_consumer("test.late", lambda e: seen.append(e.pk))
    stored, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            with transaction.atomic():
                store(slow_brand, 1)
                stored.set()
                release.wait(timeout=30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            stored.set()
        finally:
            db_connection.close()

    worker = threading.Thread(target=slow)
    worker.start()
    assert stored.wait(timeout=30)
    store(quick_brand, 1, at=T0 + dt.timedelta(seconds=1))
    later = T0 + dt.timedelta(minutes=1)
    with clock.use_clock(clock.FrozenClock(later)):
        consumers.run_consumer("test.late")
    quick_id = Event.objects.get(brand=quick_brand).pk
    assert seen == [], "the quick event waits for the older transaction still running"
    release.set()
    worker.join(timeout=30)
    assert not errors
    slow_id = Event.objects.get(brand=slow_brand).pk
    assert slow_id < quick_id
    with clock.use_clock(clock.FrozenClock(later)):
        consumers.run_consumer("test.late")
    assert sorted(seen) == [slow_id, quick_id]
