"""Customer import benchmark (issue 3): a Youzan-layout CSV of N rows imported end to end with
`run_import` (what `yutang import customers FILE` and the worker run), on SQLite and
PostgreSQL, with the process's resident memory sampled after every committed chunk.

    .venv/bin/python bench/import.py [--rows N] [--backends sqlite,postgresql] [--row-by-row]

Rows are applied a chunk of 1,000 at a time (one BatchResolver per chunk); `--row-by-row`
turns the chunk importer off, for the before/after comparison in one run. `--reimport`
imports the same file a second time and reports that run too (it must change nothing).

Default: 1,000,000 rows. Every backend runs in its own child process against a fresh
database (a SQLite file in a temporary directory, or a PostgreSQL database bench_import),
created before and dropped after. The file is written (streamed) before the timed part; the
timed part is the import alone. Memory: VmRSS from /proc/self/status after each chunk; flat
means the last sample is close to the first one taken after warm-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

HEADER = ["客户姓名", "手机号", "性别", "生日", "省份", "城市", "标签", "来源渠道"]


def write_file(path: Path, rows: int) -> None:
    """A Youzan customer export: distinct phones, a few tags, one row in 500 invalid."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for n in range(rows):
            birthday = "1990-02-30" if n % 500 == 499 else f"19{70 + n % 30}-0{1 + n % 9}-1{n % 9}"
            out.writerow(
                [f"客户{n}", f"13{n % 10}{n:08d}"[:11], "女" if n % 2 else "男", birthday,
                 "浙江", "杭州", "护肤,彩妆" if n % 3 == 0 else "", "小红书"]
            )  # fmt: skip


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(args: argparse.Namespace) -> None:
    common.django_setup(args._url, args._workdir / "var")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from yutang.core.services import create_brand
    from yutang.customers import imports
    from yutang.customers.imports import create_import, run_import

    if args.row_by_row:
        imports._CHUNK_IMPORTERS.pop("customers", None)

    path = args._workdir / "customers.csv"
    write_file(path, args.rows)
    brand = create_brand(name="Bench import")
    with path.open("rb") as upload:
        job = create_import(
            actor=None, brand=brand, kind="customers", upload=upload, filename="youzan.csv"
        )
    samples: list[tuple[int, float]] = []

    def progress(j: Any) -> None:
        samples.append((j.rows_done, rss_mib()))
        if len(samples) % 50 == 0:
            print(f"    {j.rows_done:,} rows, RSS {samples[-1][1]:.0f} MiB", flush=True)

    started, cpu0 = time.perf_counter(), time.process_time()
    job = run_import(job.pk, on_progress=progress)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    out = {
        "rows": job.rows_done,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "created": job.created,
        "rejected": job.rejected,
        "status": job.status,
        "rss_first": samples[min(2, len(samples) - 1)][1] if samples else 0,
        "rss_last": samples[-1][1] if samples else 0,
        "rss_max": max((m for _, m in samples), default=0),
    }
    if args.reimport:
        with path.open("rb") as upload:
            again = create_import(
                actor=None, brand=brand, kind="customers", upload=upload, filename="youzan.csv"
            )
        started = time.perf_counter()
        again = run_import(again.pk)
        out["reimport"] = {
            "seconds": time.perf_counter() - started,
            "created": again.created,
            "updated": again.updated,
            "unchanged": again.unchanged,
            "rejected": again.rejected,
        }
    args._out.write_text(json.dumps(out))


def _reimport(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    return (f"{r['seconds']:.1f} s: {r['created']} created, {r['updated']} updated, "
            f"{r['unchanged']:,} unchanged, {r['rejected']:,} rejected")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--row-by-row", action="store_true", help="turn the chunk importer off")
    parser.add_argument("--reimport", action="store_true", help="import the same file again")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args)
        return 0
    common.print_machine_info()
    print(f"  rows        {args.rows:,} (Youzan customer layout, one row in 500 invalid)")
    print(f"  mode        {'row by row' if args.row_by_row else 'chunks of 1,000 (BatchResolver)'}")
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="yutang-bench-import-"))
    for backend in args.backends.split(","):
        print(f"\n== {backend} ==", flush=True)
        out = workdir / f"{backend}.json"
        with common.temp_database(backend, "bench_import", workdir) as url:
            cmd = [
                sys.executable, str(Path(__file__).resolve()), "--_child", "--_url", url,
                "--_workdir", str(workdir), "--_out", str(out), "--rows", str(args.rows),
            ]  # fmt: skip
            cmd += ["--row-by-row"] if args.row_by_row else []
            cmd += ["--reimport"] if args.reimport else []
            with common.CpuMonitor() as cpu:
                proc = subprocess.run(cmd, env=dict(os.environ), check=False)
        if proc.returncode or not out.exists():
            results.append([backend, "FAILED", "", "", "", "", "", "", "", ""])
            continue
        r = json.loads(out.read_text())
        usage = cpu.usage()
        results.append(
            [
                backend, common.fmt_int(r["rows"]), f"{r['seconds']:.1f}",
                common.fmt_int(common.rate(r["rows"], r["seconds"])), f"{r['cpu_seconds']:.1f}",
                common.fmt_int(r["created"]),
                common.fmt_int(r["rejected"]),
                f"{r['rss_first']:.0f} → {r['rss_last']:.0f} (max {r['rss_max']:.0f})",
                f"{usage['other_share']:.0%}",
                _reimport(r.get("reimport")),
            ]
        )  # fmt: skip
    print()
    common.print_table(
        [
            "backend",
            "rows",
            "seconds",
            "rows/s",
            "CPU s (importer)",
            "created",
            "rejected",
            "RSS MiB",
            "other CPU",
            "re-import",
        ],
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
