"""Simulator benchmark (issue 8): a simulated year of the seed-003 scenario.

    .venv/bin/python bench/simulate.py [--scale 0.1] [--days 365] [--model-only]
                                       [--database sqlite|postgresql] [--profile 30]
                                       [--profile-file stats.pstats]

Defaults: the demo-scale year (`fashion-300k.yaml`, scale 0.1, ≈ 30,000 contacts; goal
≤ 2 minutes) driven through the real services — live codes and sandbox callbacks, journeys,
the outbox and its gate, segments — into a fresh SQLite file under a temporary directory (or,
with `--database postgresql`, a fresh database `bench_simulate_<pid>` on YUTANG_BENCH_POSTGRES_URL's
server, default postgresql://postgres@127.0.0.1:5432/). `--scale 1.0` is the full
300,000-contact year (goal ≤ 20 minutes); `--model-only` times the NumPy model alone. The
model-only run of the same scenario is always timed first as the baseline. Prints wall time,
CPU time, peak memory (ru_maxrss; with --tracemalloc also the peak of Python allocations,
which slows the run, so time it without), the time per contact added, and the outcome.
`--profile N` runs the driven part under cProfile and prints the N most expensive functions
(cumulative) and the time by app (yutang.<app>, own time of its functions).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--model-only", action="store_true")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="Also trace Python allocations (slower)"
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile top N")
    parser.add_argument("--profile-file", default="", help="Also save the cProfile stats here")
    parser.add_argument(
        "--every",
        type=int,
        default=0,
        metavar="DAYS",
        help="Print the CPU used so far and the running outcome every DAYS simulated days",
    )
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-simulate-")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="yutang.settings")
    server = os.environ.get("YUTANG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/")
    database = f"bench_simulate_{os.getpid()}"  # concurrent runs never share a database
    if args.database == "postgresql":
        import psycopg

        with psycopg.connect(server.rstrip("/") + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database}")
            conn.execute(f"CREATE DATABASE {database}")
        env["YUTANG_DATABASE_URL"] = server.rstrip("/") + "/" + database
    else:
        env["YUTANG_DATABASE_URL"] = f"sqlite:///{workdir}/bench.db"
    try:
        if not args.model_only:
            subprocess.run([str(ROOT / ".venv/bin/yutang"), "migrate", "-v0"], env=env, check=True)
        os.environ.update(env)
        import django

        django.setup()
        from yutang.simulator.report import table
        from yutang.simulator.scenario import load_scenario
        from yutang.simulator.services import simulate

        scenario = load_scenario("fashion-300k").with_overrides(days=args.days, scale=args.scale)
        base = time.perf_counter()
        baseline = simulate(scenario=scenario, drive=False)
        base = time.perf_counter() - base
        print(f"baseline (model only): {base:.1f} s, {baseline.outcome.adds:,} adds")
        if args.tracemalloc:
            tracemalloc.start()
        profiler = cProfile.Profile() if args.profile and not args.model_only else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        result = simulate(
            scenario=scenario,
            drive=not args.model_only,
            progress=checkpoints(args.every, cpu) if args.every else None,
        )
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mode = "model only" if args.model_only else f"driven into {args.database}"
        print(f"fashion-300k scale {args.scale}, {args.days} days, {mode}")
        traced = f", tracemalloc peak {traced_peak / 2**20:.0f} MiB" if args.tracemalloc else ""
        print(f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB{traced}")
        adds = max(1, result.outcome.adds)
        print(
            f"{wall / adds * 1000:.1f} ms wall, {cpu / adds * 1000:.1f} ms CPU per contact added; "
            f"{wall / base:.0f}× the model-only baseline; load average {os.getloadavg()[0]:.2f}"
        )
        print(table(result))
        if result.brand_id is not None:
            print_stored(result.brand_id)
        if profiler is not None:
            print_profile(profiler, args.profile)
            if args.profile_file:
                profiler.dump_stats(args.profile_file)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.database == "postgresql":
            import psycopg

            with psycopg.connect(server.rstrip("/") + "/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database}")


def checkpoints(every: int, cpu: float) -> Any:
    """A progress callback printing the CPU seconds used since `cpu` and the running
    outcome every `every` days (a run cut short still compares with another's at the same
    day)."""

    def report(p: Any) -> None:
        if p.day % every == 0 or p.day == p.days:
            used = time.process_time() - cpu
            print(
                f"day {p.day}: CPU {used:.1f} s, pool {p.pool:,}, adds {p.adds:,}, "
                f"deletions {p.deletions:,}, orders {p.orders:,}, GMV fen {p.gmv_fen:,}",
                flush=True,
            )

    return report


def print_stored(brand_id: int) -> None:
    """What the run stored, counted (an outcome check beside the table: two runs of the same
    seed must store the same)."""
    from django.db.models import Count

    from yutang.customers.models import CustomerTag
    from yutang.events.models import Event
    from yutang.journeys.models import Enrollment, StepRun
    from yutang.messaging.models import Message

    counts: list[tuple[str, Any, str, tuple[str, ...]]] = [
        ("enrolments", Enrollment, "brand_id", ("state", "exit_reason")),
        ("step runs", StepRun, "enrollment__brand_id", ("outcome",)),
        ("messages", Message, "brand_id", ("status", "kind")),
        ("events", Event, "brand_id", ("type",)),
        ("customer tags", CustomerTag, "customer__brand_id", ("source",)),
    ]
    for label, model, brand, fields in counts:
        rows = (
            model.objects.filter(**{brand: brand_id})
            .values_list(*fields)
            .annotate(n=Count("pk"))
            .order_by(*fields)
        )
        parts = ", ".join(f"{' '.join(str(k) for k in key)}: {n:,}" for *key, n in rows)
        print(f"{label}: {parts}")


def print_profile(profiler: cProfile.Profile, top: int) -> None:
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    by_app: dict[str, float] = {}
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        marker = f"{os.sep}yutang{os.sep}"
        if marker in filename:
            app = filename.split(marker, 1)[1].split(os.sep, 1)[0]
            key = f"yutang.{app}"
        elif "psycopg" in filename or "sqlite3" in name:
            key = "database driver (waiting on queries)"
        elif f"{os.sep}django{os.sep}" in filename:
            key = "django (ORM, SQL compilation)"
        else:
            key = "other"
        by_app[key] = by_app.get(key, 0.0) + tottime
    print("own time by part:")
    for key, seconds in sorted(by_app.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<40} {seconds:8.1f} s  {seconds / max(total, 1e-9):5.1%}")


if __name__ == "__main__":
    sys.exit(main())
