"""Worker claim loops and the lease that keeps them to one worker on SQLite."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection

from yutang.core import clock
from yutang.core.models import Lease
from yutang.core.worker import (
    LEASE_TTL,
    LOOPS_LEASE,
    acquire_lease,
    register_loop,
    release_lease,
    run_loops_once,
)

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


def test_a_lease_has_one_holder_until_it_expires_or_is_released():
    frozen = clock.FrozenClock(T0)
    with clock.use_clock(frozen):
        assert acquire_lease("nightly", "a", dt.timedelta(seconds=60))
        assert not acquire_lease("nightly", "b", dt.timedelta(seconds=60))
        assert acquire_lease("nightly", "a", dt.timedelta(seconds=60)), "the holder renews"
        frozen.advance(dt.timedelta(seconds=61))
        assert acquire_lease("nightly", "b", dt.timedelta(seconds=60)), "expired: taken over"
        assert not acquire_lease("nightly", "a", dt.timedelta(seconds=60))
        release_lease("nightly", "b")
        assert acquire_lease("nightly", "a", dt.timedelta(seconds=60))
    assert Lease.objects.get(name="nightly").holder == "a"


def test_loops_run_every_registered_loop_and_survive_a_broken_one():
    calls: list[str] = []

    def good() -> int:
        calls.append("good")
        return 2

    def broken() -> int:
        raise RuntimeError("boom")

    register_loop("test.good", good)
    register_loop("test.broken", broken)
    try:
        assert run_loops_once("w1") == 2
        assert calls == ["good"]
        if connection.vendor == "sqlite":
            with clock.use_clock(clock.FrozenClock(clock.now())):
                assert run_loops_once("w2") is None, "w1 holds the SQLite loops lease"
            release_lease(LOOPS_LEASE, "w1")
            assert run_loops_once("w2") == 2
            assert LEASE_TTL.total_seconds() == 60
    finally:
        from yutang.core import worker

        worker._LOOPS.pop("test.good")
        worker._LOOPS.pop("test.broken")


@pytest.mark.django_db(transaction=True)
def test_worker_batch_runs_event_consumers(capsys):
    from tests.factories import make_brand
    from yutang.events import consumers
    from yutang.events.services import ingest_events

    seen: list[int] = []
    consumers.register_consumer("test.worker", lambda event: seen.append(event.pk))
    try:
        brand = make_brand()
        with clock.use_clock(clock.FrozenClock(T0)):
            ingest_events(
                brand=brand,
                items=[
                    {
                        "type": "link.clicked",
                        "occurred_at": T0.isoformat(),
                        "idempotency_key": f"w{n}",
                        "identities": [{"kind": "external", "value": f"P{n}"}],
                        "properties": {"link": "x"},
                    }
                    for n in range(3)
                ],
            )
        call_command("worker", "--batch")
        assert len(seen) == 3
        # Every registered consumer (journeys.events too, once installed) reads the 3 events.
        handled = 3 * len(consumers.registered())
        assert f"Claim loops handled {handled} items." in capsys.readouterr().out
    finally:
        consumers.unregister_consumer("test.worker")
