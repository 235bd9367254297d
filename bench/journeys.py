"""Journey engine benchmark (issue 7): enrollments in the shipped new-contact template
fast-forwarded through every step, on SQLite and PostgreSQL, with 1 and 2 worker processes.

    .venv/bin/python bench/journeys.py [--enrollments N] [--backends sqlite,postgresql]
        [--workers 1,2] [--batch 1000] [--baseline N] [--profile]

Default: 20,000 enrollments (a few minutes in all; the issue's goal size is
``--enrollments 1000000``), 7 steps each: welcome, wait start/end, content, wait start/end,
offer; 3 messages. The data (customers, a published journey, enrollments due now, written
with bulk inserts, then VACUUM ANALYZE on PostgreSQL) is set up once per backend and size,
in a template (a bench_journeys_tpl_* database on PostgreSQL, a temp file for SQLite), and
each (backend, workers) run gets a copy of it (``CREATE DATABASE … TEMPLATE …``, a file copy):
the 1- and 2-worker runs start from identical data and set-up is neither timed nor repeated.
Then W child processes each loop `engine.run_due_once(batch=1000)` under a FrozenClock three
days later until nothing is due; the wall time from the first child's start to the last
child's end is timed.
Baseline in the same run (``--baseline N``, default 2,000 enrollments, 0 to skip): one worker
with ``run_due_once(bulk=False)``, one savepoint and one set of queries per enrollment (the
engine before batching, and its fallback when a batch fails).
``--profile``: one PostgreSQL worker under cProfile; prints where the time goes.
Steps/CPU-s: steps per CPU-second used by the workers and the PostgreSQL backends serving
their connections (read from /proc): what the engine does with the CPU it got, whatever the
load; "CPU-s worker+db" shows the split. "Other CPU": the share of the machine other
processes used meanwhile (common.CpuMonitor).
Messages/s counts the outbox rows the steps wrote (delivery is measured by
bench/messaging.py). The CPU used by other processes during each run is printed: the machine
is shared.
SQLite has a single writer: `yutang worker` runs journey steps only in the holder of the loops
lease, so the benchmark runs SQLite with 1 worker only (more are skipped).
Steps/s = StepRun rows / seconds; messages/s = outbox rows / seconds. The result is checked:
every enrollment completed, 7 StepRuns and 3 messages each, no duplicates.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PG_ADMIN_URL,
    REPO,
    CpuMonitor,
    backend_pid,
    create_pg_database,
    django_setup,
    drop_pg_database,
    drop_sqlite_database,
    fmt_int,
    pg_url,
    print_machine_info,
    print_table,
    proc_cpu,
    sqlite_url,
)

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


def setup_data(scale: int) -> dict[str, int]:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from yutang.carriers.models import CarrierContact
    from yutang.core import services as core
    from yutang.core.clock import FrozenClock, use_clock
    from yutang.customers.models import Customer
    from yutang.journeys import services
    from yutang.journeys.models import Enrollment
    from yutang.journeys.tests.helpers import sandbox_account, setup

    with use_clock(FrozenClock(T0)):
        brand, admin = setup()
        journey = services.create_from_template(actor=admin, key="1_new_contact")
        version = services.publish(actor=admin, journey_id=journey.pk)
        account = sandbox_account(brand)
    del core
    # One row of each table written through the ORM (a prototype with every default), then
    # the other scale - 1 copied from it in one INSERT … SELECT per table (a number series
    # on the server): linear, no Python per row, about 20 s per 1,000,000 on PostgreSQL.
    first = Customer.objects.create(brand=brand, display_name="c0", created_at=T0, updated_at=T0)
    # Every customer holds the sandbox account, so each message step writes a Message.
    contact = CarrierContact.objects.create(
        brand=brand, account=account, customer=first, external_hash=f"h{first.pk}",
        external_encrypted="", added_at=T0,
    )  # fmt: skip
    enrollment = Enrollment.objects.create(
        brand=brand, journey=journey, version=version, customer=first, state="active",
        current_step="welcome", next_due_at=T0, entered_at=T0,
    )  # fmt: skip
    _clone(Customer, first.pk, {"display_name": "'c' || n"}, series=scale - 1)
    customers = f"{Customer._meta.db_table} WHERE brand_id = {brand.pk} AND id <> {first.pk}"
    _clone(CarrierContact, contact.pk, {"customer_id": "c.id", "external_hash": "'h' || c.id"},
           rows=customers)  # fmt: skip
    _clone(Enrollment, enrollment.pk, {"customer_id": "c.id"}, rows=customers)
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Statistics and the visibility map go into the template: every copy is planned
            # and vacuumed alike, as a table that has been live for a while would be.
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copy is the file alone
    return {"journey": journey.pk}


def _clone(
    model: Any, proto: int, overrides: dict[str, str], *, series: int = 0, rows: str = ""
) -> None:
    """INSERT … SELECT copies of row `proto` of `model`, in id order: one per n in 1..series
    (``n`` in `overrides`), or one per row of `rows` (``c`` in `overrides`). Overrides are
    SQL expressions by column (the bench's own constants, never input)."""
    from django.db import connection

    qn = connection.ops.quote_name
    table = model._meta.db_table
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
    select = ", ".join(overrides.get(c, f"p.{qn(c)}") for c in columns)
    if series:
        source = (
            f"generate_series(1, {series}) AS s(n)"
            if connection.vendor == "postgresql"
            else f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {series}) SELECT n FROM s) AS s"
        )
        order = "s.n"
    else:
        source, order = f"(SELECT id FROM {rows}) AS c", "c.id"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {select} FROM {qn(table)} AS p, {source} WHERE p.id = {proto} ORDER BY {order}"
        )


def child(url: str, var_dir: str, batch: int, bulk: bool, profile: bool) -> None:
    django_setup(url, var_dir)

    from yutang.core.clock import FrozenClock, use_clock
    from yutang.journeys import engine

    steps = 0
    backend = backend_pid()
    backend_before = proc_cpu(backend)
    cpu_before = time.process_time()

    def loop() -> None:
        nonlocal steps
        with use_clock(FrozenClock(T0 + dt.timedelta(days=3))):
            while True:
                did = engine.run_due_once(batch=batch, bulk=bulk)
                if not did:
                    break
                steps += did

    if profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(loop)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        print(out.getvalue(), file=sys.stderr)
    else:
        loop()
    cpu = time.process_time() - cpu_before
    backend_cpu = proc_cpu(backend) - backend_before
    print(json.dumps({"steps": steps, "cpu": cpu, "backend_cpu": backend_cpu}))


@contextlib.contextmanager
def template(backend: str, scale: int, workdir: Path) -> Iterator[str]:
    """Set up the data of `scale` enrolments once; yields the template's name (PostgreSQL
    database or SQLite file) and drops it afterwards."""
    if backend == "sqlite":
        path = workdir / f"bench_journeys_tpl_{scale}.sqlite3"
        drop_sqlite_database(path)
        name, url = str(path), sqlite_url(path)
    else:
        name = f"bench_journeys_tpl_{scale}_{os.getpid()}"
        url = create_pg_database(name)
    try:
        started = time.perf_counter()
        setup_cmd = [sys.executable, __file__, "--_setup", url, "--enrollments", str(scale),
                     "--_var", str(workdir)]  # fmt: skip
        subprocess.run(setup_cmd, check=True, cwd=REPO)
        print(f"# set up {scale:,} enrollments on {backend} in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        yield name
    finally:
        if backend == "sqlite":
            drop_sqlite_database(Path(name))
        else:
            drop_pg_database(name)


@contextlib.contextmanager
def copy_of(backend: str, tpl: str, name: str, workdir: Path) -> Iterator[str]:
    """A fresh copy of the template for one run; yields its YUTANG_DATABASE_URL."""
    if backend == "sqlite":
        path = workdir / f"{name}.sqlite3"
        drop_sqlite_database(path)
        shutil.copyfile(tpl, path)
        try:
            yield sqlite_url(path)
        finally:
            drop_sqlite_database(path)
        return
    import psycopg

    name = f"{name}_{os.getpid()}"
    drop_pg_database(name)  # checks the bench_ prefix
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


def run(
    backend: str, workers: int, scale: int, workdir: Path, tpl: str, *, batch: int = 1000,
    bulk: bool = True, profile: bool = False,
) -> list[object]:  # fmt: skip
    name = f"bench_journeys_{backend[:2]}_{workers}"
    with copy_of(backend, tpl, name, workdir) as url:
        cmd = [sys.executable, __file__, "--_child", url, "--_var", str(workdir),
               "--batch", str(batch)]  # fmt: skip
        cmd += [] if bulk else ["--_one_by_one"]
        cmd += ["--_profile"] if profile else []
        with CpuMonitor() as cpu:
            started = time.perf_counter()
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
                     for _ in range(workers)]  # fmt: skip
            outs = [p.communicate()[0] for p in procs]
            seconds = time.perf_counter() - started
        assert all(p.returncode == 0 for p in procs), outs
        counts = subprocess.run(
            [sys.executable, __file__, "--_count", url, "--_var", str(workdir)],
            check=True, capture_output=True, text=True, cwd=REPO,
        ).stdout  # fmt: skip
        c = json.loads(counts)
    ok = c["completed"] == scale and c["runs"] == 7 * scale and c["messages"] == 3 * scale
    ok = ok and c["distinct_keys"] == c["messages"]
    reports = [json.loads(o) for o in outs]
    per_worker = [r["steps"] for r in reports]
    worker_cpu = sum(r["cpu"] for r in reports)
    backend_cpu = sum(r["backend_cpu"] for r in reports)
    usage = cpu.usage()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    mode = "batch" if bulk else "one by one"
    return [backend, workers, mode, fmt_int(scale), fmt_int(c["runs"]), f"{seconds:.1f}",
            fmt_int(c["runs"] / seconds), fmt_int(c["runs"] / seconds / workers),
            fmt_int(c["messages"] / seconds), "/".join(fmt_int(s) for s in per_worker),
            fmt_int(c["runs"] / max(worker_cpu + backend_cpu, 1e-9)),
            f"{worker_cpu:.0f}+{backend_cpu:.0f}",
            f"{usage['other_share']:.0%}", f"{load:.2f}",
            "ok" if ok else f"FAIL {c}"]  # fmt: skip


def count(url: str, var_dir: str) -> None:
    django_setup(url, var_dir)
    from yutang.journeys.models import Enrollment, StepRun
    from yutang.messaging.models import Message

    print(json.dumps({
        "completed": Enrollment.objects.filter(state="completed").count(),
        "runs": StepRun.objects.count(),
        "messages": Message.objects.count(),
        "distinct_keys": Message.objects.values("idempotency_key").distinct().count(),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrollments", "--scale", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch", type=int, default=1000, help="enrollments per claim")
    parser.add_argument("--baseline", type=int, default=2_000,
                        help="enrollments of the one-by-one baseline (0: skip)")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="profile one PostgreSQL worker")
    parser.add_argument("--_setup", help=argparse.SUPPRESS)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_count", help=argparse.SUPPRESS)
    parser.add_argument("--_var", help=argparse.SUPPRESS)
    parser.add_argument("--_one_by_one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._setup:
        django_setup(args._setup, args._var)
        setup_data(args.enrollments)
        return
    if args._child:
        child(args._child, args._var, args.batch, not args._one_by_one, args._profile)
        return
    if args._count:
        count(args._count, args._var)
        return
    print_machine_info()
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="yutang-bench-journeys-"))
    if args.profile:
        with template("postgresql", args.enrollments, workdir) as tpl:
            rows.append(run("postgresql", 1, args.enrollments, workdir, tpl, batch=args.batch,
                            profile=True))  # fmt: skip
        print(rows[-1], flush=True)
        return
    for backend in args.backends.split(","):
        if args.baseline:
            with template(backend, args.baseline, workdir) as tpl:
                rows.append(run(backend, 1, args.baseline, workdir, tpl, batch=args.batch,
                                bulk=False))  # fmt: skip
            print(rows[-1], flush=True)
        with template(backend, args.enrollments, workdir) as tpl:
            for workers in [int(w) for w in args.workers.split(",")]:
                if backend == "sqlite" and workers > 1:
                    continue  # single writer: a second worker stands by (see the docstring)
                rows.append(run(backend, workers, args.enrollments, workdir, tpl,
                                batch=args.batch))  # fmt: skip
                print(rows[-1], flush=True)
    print_table(["backend", "workers", "mode", "enrollments", "steps", "seconds", "steps/s",
                 "steps/s/worker", "messages/s", "steps per worker", "steps/CPU-s",
                 "CPU-s worker+db", "other CPU",
                 "load1",
                 "check"], rows, markdown=True)  # fmt: skip


if __name__ == "__main__":
    main()
