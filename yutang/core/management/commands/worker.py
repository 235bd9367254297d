"""`yutang worker`: runs background work. See yutang/core/worker.py."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker

from yutang.core.worker import (
    LOOPS_LEASE,
    Heartbeat,
    LoopRunner,
    beat,
    drain_loops,
    loop_names,
    release_lease,
    stop_beating,
)


class Command(BaseCommand):
    help = "Run a Yutang worker: background tasks and the claim loops."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", default="default", help="Comma-separated, or '*' for all")
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="Seconds to wait when there is nothing to do",
        )
        parser.add_argument("--batch", action="store_true", help="Run what is due now, then exit")
        parser.add_argument("--max-tasks", type=int, default=None)
        parser.add_argument("--worker-id", default=None)

    def handle(self, *args: Any, **opts: Any) -> None:
        worker_id = opts["worker_id"] or get_random_string(32)
        beat(worker_id)
        heartbeat = Heartbeat(worker_id)
        loops = LoopRunner(worker_id, interval=opts["interval"])
        self.stdout.write(
            f"Yutang worker {worker_id} started (queues: {opts['queues']}; "
            f"loops: {', '.join(loop_names()) or 'none'})."
        )
        if opts["batch"]:
            handled = drain_loops(worker_id)
            release_lease(LOOPS_LEASE, worker_id)
            self.stdout.write(f"Claim loops handled {handled} items.")
        else:
            heartbeat.start()
            loops.start()
        worker = Worker(
            queue_names=opts["queues"].split(","),
            interval=opts["interval"],
            batch=opts["batch"],
            backend_name="default",
            startup_delay=not opts["batch"],
            max_tasks=opts["max_tasks"],
            worker_id=worker_id,
            excluded_queue_names=[],
        )
        worker.configure_signals()
        try:
            worker.run()
        finally:
            loops.stop()
            if loops.is_alive():
                loops.join(timeout=30)
            heartbeat.stop()
            with contextlib.suppress(Exception):
                stop_beating(worker_id)
            self.stdout.write(f"Yutang worker {worker_id} stopped.")
