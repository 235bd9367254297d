"""The `yutang worker` process: the Django Tasks database worker for one-off jobs, plus a
heartbeat that `yutang check` reads. Later issues add claim loops (outbox, journeys, event
consumers, scheduler) here."""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.db import close_old_connections, connection

from yutang.core import clock
from yutang.core.models import WorkerHeartbeat

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
