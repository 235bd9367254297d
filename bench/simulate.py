"""Simulator benchmark (issue 8): a simulated year of the seed-003 scenario.

    .venv/bin/python bench/simulate.py [--scale 1.0] [--days 365] [--model-only]
                                       [--database sqlite|postgresql]

Defaults: the full 300,000-contact year (`fashion-300k.yaml`, scale 1.0) driven through the
real services into a fresh SQLite file under a temporary directory (or, with
`--database postgresql`, a fresh database `bench_simulate` on YUTANG_BENCH_POSTGRES_URL's
server, default postgresql://postgres@127.0.0.1:5432/). `--scale 0.1` is the demo-scale
year (≈ 30,000 contacts; goal ≤ 2 minutes); `--model-only` times the NumPy model alone.
Prints wall time, CPU time, peak memory (ru_maxrss; with --tracemalloc also the peak of
Python allocations, which slows the run, so time it without)
and the outcome. Goals: demo scale ≤ 2 minutes, full scale ≤ 20 minutes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--model-only", action="store_true")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="Also trace Python allocations (slower)"
    )
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-simulate-")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="yutang.settings")
    server = os.environ.get("YUTANG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/")
    if args.database == "postgresql":
        import psycopg

        with psycopg.connect(server.rstrip("/") + "/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_simulate")
            conn.execute("CREATE DATABASE bench_simulate")
        env["YUTANG_DATABASE_URL"] = server.rstrip("/") + "/bench_simulate"
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
        if args.tracemalloc:
            tracemalloc.start()
        wall, cpu = time.perf_counter(), time.process_time()
        result = simulate(scenario=scenario, drive=not args.model_only)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mode = "model only" if args.model_only else f"driven into {args.database}"
        print(f"fashion-300k scale {args.scale}, {args.days} days, {mode}")
        traced = f", tracemalloc peak {traced_peak / 2**20:.0f} MiB" if args.tracemalloc else ""
        print(f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB{traced}")
        print(table(result))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.database == "postgresql":
            import psycopg

            with psycopg.connect(server.rstrip("/") + "/postgres", autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS bench_simulate")


if __name__ == "__main__":
    sys.exit(main())
