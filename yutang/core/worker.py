"""The `yutang worker` process: the Django Tasks database worker for one-off jobs, the claim
loops that higher floors register (event-log consumers now; outbox delivery, journeys and the
scheduler later), and a heartbeat that `yutang check` reads.

Loops are registered by the apps that own them (`register_loop` in their AppConfig.ready), so
this floor never imports them. Each loop is a function that does one bounded pass and returns
how much work it did; the loop thread sleeps only when a whole round did nothing.

On PostgreSQL any number of workers run the loops (each loop claims its rows with
`SELECT … FOR UPDATE SKIP LOCKED`). On SQLite, which has a single writer, the loops run in one
worker at a time: the holder of the `loops` lease. A second worker says so and waits, taking
over when the holder stops renewing the lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta

from django.db import close_old_connections, connection
from django.db.models import Q

from yutang.core import clock
from yutang.core.models import Lease, WorkerHeartbeat

logger = logging.getLogger("yutang.worker")

HEARTBEAT_SECONDS = 10.0


def beat(worker_id: str) -> None:
    now = clock.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={"hostname": socket.gethostname(), "pid": os.getpid(), "last_seen_at": now},
        create_defaults={
            "hostname": socket.gethostname(), "pid": os.getpid(), "started_at": now,
            "last_seen_at": now,
        },
    )  # fmt: skip


def stop_beating(worker_id: str) -> None:
    WorkerHeartbeat.objects.filter(worker_id=worker_id).delete()


class Heartbeat(threading.Thread):
    """Writes the heartbeat row every HEARTBEAT_SECONDS from its own database connection."""

    def __init__(self, worker_id: str, interval: float = HEARTBEAT_SECONDS):
        super().__init__(name="yutang-heartbeat", daemon=True)
        self.worker_id = worker_id
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                close_old_connections()
                try:
                    beat(self.worker_id)
                except Exception:  # a missed beat is not fatal; the next one retries
                    logger.exception("heartbeat failed")
                self.stopped.wait(self.interval)
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()


# --- Leases ---------------------------------------------------------------------------------


def acquire_lease(name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew the lease unless someone else holds an unexpired one. A conditional
    UPDATE, so two workers racing for it cannot both win."""
    now = clock.now()
    Lease.objects.get_or_create(name=name)
    taken = Lease.objects.filter(
        Q(holder=holder) | Q(holder="") | Q(expires_at__lt=now) | Q(expires_at__isnull=True),
        name=name,
    ).update(holder=holder, expires_at=now + ttl)
    return taken == 1


def release_lease(name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=None)


# --- Claim loops ----------------------------------------------------------------------------

Loop = Callable[[], int]
_LOOPS: dict[str, Loop] = {}
LOOPS_LEASE = "loops"
LEASE_TTL = timedelta(seconds=60)


def register_loop(name: str, loop: Loop) -> None:
    _LOOPS[name] = loop


def loop_names() -> list[str]:
    return sorted(_LOOPS)


def run_loops_once(worker_id: str) -> int | None:
    """One round of every loop; the work done, or None when another worker holds the SQLite
    lease."""
    if connection.vendor == "sqlite" and not acquire_lease(LOOPS_LEASE, worker_id, LEASE_TTL):
        return None
    done = 0
    for name in loop_names():
        try:
            done += _LOOPS[name]()
        except Exception:  # one broken loop must not stop the others
            logger.exception("loop %s failed", name)
    return done


def drain_loops(worker_id: str, max_rounds: int = 1000) -> int:
    """Run rounds until a round does nothing (used by `yutang worker --batch`)."""
    total = 0
    for _ in range(max_rounds):
        done = run_loops_once(worker_id)
        if not done:
            break
        total += done
    return total


class LoopRunner(threading.Thread):
    """Runs the claim loops beside the task worker, from its own database connection."""

    def __init__(self, worker_id: str, interval: float = 1.0):
        super().__init__(name="yutang-loops", daemon=True)
        self.worker_id = worker_id
        self.interval = interval
        self.stopped = threading.Event()
        self.waiting_reported = False

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                close_old_connections()
                try:
                    done = run_loops_once(self.worker_id)
                except Exception:
                    logger.exception("claim loops failed")
                    done = 0
                if done is None:
                    if not self.waiting_reported:
                        logger.warning(
                            "Another worker runs the claim loops on this SQLite database; "
                            "this one runs tasks only and takes over if that worker stops."
                        )
                        self.waiting_reported = True
                    self.stopped.wait(LEASE_TTL.total_seconds() / 4)
                elif done == 0:
                    self.waiting_reported = False
                    self.stopped.wait(self.interval)
        finally:
            if connection.vendor == "sqlite":
                release_lease(LOOPS_LEASE, self.worker_id)
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
