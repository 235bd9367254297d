"""Import benchmark (issue 3): a Youzan-layout customer CSV and a Tmall/Taobao-layout order CSV
of N rows each, imported end to end with `run_import` (what `yutang import customers|orders
FILE` and the worker run), on SQLite and PostgreSQL, with the process's resident memory
sampled after every committed chunk and its peak (max RSS) at the end.

    .venv/bin/python bench/import.py [--rows N] [--kinds customers,orders]
        [--backends sqlite,postgresql] [--baseline-rows B] [--row-by-row] [--reimport]
        [--tracemalloc]

Rows are applied a chunk of 1,000 at a time: customers through one BatchResolver per chunk,
orders through one `commerce.services.post_orders` call per chunk. In the same run, and
against the same database, `--baseline-rows B` (default 2,000; 0 to skip) imports the first
B rows of each file row by row (the chunk importer turned off: each row its own
`post_orders` batch of one, as orders went before chunking) as the in-run baseline;
`--row-by-row` turns the chunk importer off for the main run too. `--reimport` imports the
same file a second time and reports that run too (it must change nothing).

Memory: VmRSS from /proc/self/status after each chunk, and the process's max RSS
(getrusage); `--tracemalloc` also reports the peak of Python allocations during the import
(slower: run it on two file sizes to show the peak does not grow with the file).

Default: 1,000,000 rows. Every backend runs in its own child process per file against a
fresh database (a SQLite file in a temporary directory, or a PostgreSQL database
bench_import), created before and dropped after. The files are written (streamed) before the
timed part; the timed part is the import alone. The machine's load average is printed before
and after each backend.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

HEADER = ["客户姓名", "手机号", "性别", "生日", "省份", "城市", "标签", "来源渠道"]
#: A Tmall/Taobao seller-centre order export (订单报表), as docs/import.md describes it.
ORDER_HEADER = ["订单编号", "买家会员名", "买家应付货款", "买家实际支付金额", "邮费", "订单状态",
                "订单创建时间", "订单付款时间", "收货人姓名", "联系手机", "宝贝标题", "宝贝种类",
                "商家编码", "宝贝总数量", "店铺名称", "退款金额"]  # fmt: skip


def write_orders(path: Path, rows: int) -> None:
    """A Tmall order export: order numbers behind the `="…"` guard Taobao writes, buyers
    with a Taobao name and a phone each placing ~3 orders (repeat buyers within and across
    chunks), one order in 50 unpaid (skipped), one in 500 with a negative amount (rejected),
    one in 40 partly refunded (退款金额 20.00: a refund and an order.refunded event each; the
    others say 0.00, as the export does)."""
    buyers = max(1, rows // 3)
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(ORDER_HEADER)
        for n in range(rows):
            b = (n * 7919) % buyers
            paid = n % 50 != 49
            amount = "-5.00" if n % 500 == 250 else f"{59 + n % 400}.{n % 100:02d}"
            day, minute = 1 + n % 28, n % 60
            out.writerow(
                [f'="{3_100_000_000_000_000 + n}"', f"tb_buyer{b}", amount, amount,
                 "0.00" if n % 3 else "8.00", "交易成功" if paid else "等待买家付款",
                 f"2026-05-{day:02d} 10:{minute:02d}:00",
                 f"2026-05-{day:02d} 10:{minute:02d}:30" if paid else "", f"买家{b}",
                 f"15{b:09d}"[:11], "精华液 30ml", "1", f"SKU-{n % 40}", str(1 + n % 3),
                 "旗舰店", "20.00" if paid and n % 40 == 7 else "0.00"]
            )  # fmt: skip


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


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    common.django_setup(args._url, args._workdir / "var")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from yutang.core.services import create_brand
    from yutang.customers import imports
    from yutang.customers.imports import create_import, run_import

    kind = args._kind
    if args.row_by_row:
        imports._CHUNK_IMPORTERS.pop(kind, None)
    path = args._workdir / f"{kind}-{args.rows}.csv"
    if not path.exists():
        (write_orders if kind == "orders" else write_file)(path, args.rows)
    filename = "tmall-orders.csv" if kind == "orders" else "youzan.csv"
    brand = create_brand(name=f"Bench import {kind} {time.time_ns()}")
    with path.open("rb") as upload:
        job = create_import(actor=None, brand=brand, kind=kind, upload=upload, filename=filename)
    samples: list[tuple[int, float]] = []

    def progress(j: Any) -> None:
        samples.append((j.rows_done, rss_mib()))
        if len(samples) % 50 == 0:
            print(f"    {j.rows_done:,} rows, RSS {samples[-1][1]:.0f} MiB", flush=True)

    if args.tracemalloc:
        tracemalloc.start()
    started, cpu0 = time.perf_counter(), time.process_time()
    job = run_import(job.pk, on_progress=progress)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    held: list[tuple[str, float]] = []
    if args.tracemalloc:
        # What is still allocated after the import, by the file that allocated it: the
        # process-wide identity caches (bounded LRUs in customers/identities.py) grow with
        # the number of distinct buyers up to their bound; per-row import state would show
        # up under customers/imports.py or commerce/.
        snapshot = tracemalloc.take_snapshot()
        for stat in snapshot.statistics("filename")[:6]:
            name = stat.traceback[0].filename
            held.append(("/".join(Path(name).parts[-3:]), stat.size / 2**20))
    tracemalloc.stop()
    from yutang.customers import identities

    caches = {
        "normalized": identities._normalized.cache_info().currsize,
        "e164": identities._e164.cache_info().currsize,
    }
    from yutang.commerce.models import Refund

    out = {
        "kind": kind,
        "refunds": Refund.objects.filter(brand=brand).count(),
        "rows": job.rows_done,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "created": job.created,
        "unchanged": job.unchanged,
        "skipped": job.skipped,
        "rejected": job.rejected,
        "status": job.status,
        "rss_first": samples[min(2, len(samples) - 1)][1] if samples else 0,
        "rss_last": samples[-1][1] if samples else 0,
        "rss_max": max_rss_mib(),
        "tracemalloc_peak": peak,
        "held": held,
        "caches": caches,
    }
    if args.reimport:
        with path.open("rb") as upload:
            again = create_import(
                actor=None, brand=brand, kind=kind, upload=upload, filename=filename
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


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _run_child(
    args: argparse.Namespace, url: str, workdir: Path, kind: str, rows: int, row_by_row: bool
) -> tuple[dict[str, Any] | None, dict[str, float]]:
    out = workdir / f"{kind}-{rows}-{row_by_row}.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--_child", "--_url", url,
        "--_workdir", str(workdir), "--_out", str(out), "--rows", str(rows), "--_kind", kind,
    ]  # fmt: skip
    cmd += ["--row-by-row"] if row_by_row else []
    cmd += ["--reimport"] if args.reimport and not row_by_row else []
    cmd += ["--tracemalloc"] if args.tracemalloc else []
    with common.CpuMonitor() as cpu:
        proc = subprocess.run(cmd, env=dict(os.environ), check=False)
    if proc.returncode or not out.exists():
        return None, cpu.usage()
    return json.loads(out.read_text()), cpu.usage()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="customers,orders")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--baseline-rows", type=int, default=2000)
    parser.add_argument("--row-by-row", action="store_true", help="turn the chunk importer off")
    parser.add_argument("--reimport", action="store_true", help="import the same file again")
    parser.add_argument("--tracemalloc", action="store_true", help="peak Python allocations")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_kind", default="customers", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args)
        return 0
    common.print_machine_info()
    print(f"  rows        {args.rows:,} per file (Youzan customers; Tmall orders)")
    print(f"  mode        {'row by row' if args.row_by_row else 'chunks of 1,000'}")
    print(f"  baseline    first {args.baseline_rows:,} rows of each file, row by row")
    results = []
    held_lines: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="yutang-bench-import-"))
    for backend in args.backends.split(","):
        print(f"\n== {backend} (load {load()}) ==", flush=True)
        with common.temp_database(backend, "bench_import", workdir) as url:
            for kind in args.kinds.split(","):
                runs = [(args.rows, args.row_by_row)]
                if args.baseline_rows:
                    runs.insert(0, (args.baseline_rows, True))
                for rows, row_by_row in runs:
                    label = "row by row" if row_by_row else "chunks"
                    print(f"  {kind}, {rows:,} rows, {label} (load {load()})", flush=True)
                    r, usage = _run_child(args, url, workdir, kind, rows, row_by_row)
                    if r is None:
                        results.append([backend, kind, label, "FAILED", *[""] * 9])
                        continue
                    peak = r.get("tracemalloc_peak")
                    held_lines.append(
                        f"{backend} {kind} {rows:,} rows: identity caches {r['caches']}; held "
                        "after the import (MiB, by file): "
                        + ", ".join(f"{name} {mib:.1f}" for name, mib in r["held"])
                    )
                    results.append(
                        [
                            backend, kind, label, common.fmt_int(r["rows"]), f"{r['seconds']:.1f}",
                            common.fmt_int(common.rate(r["rows"], r["seconds"])),
                            f"{r['cpu_seconds']:.1f}",
                            common.fmt_int(common.rate(r["rows"], r["cpu_seconds"])),
                            f"{common.fmt_int(r['created'])} / {common.fmt_int(r['skipped'])} / "
                            f"{common.fmt_int(r['rejected'])}"
                            + (f" ({common.fmt_int(r['refunds'])} refunds)" * bool(r["refunds"])),
                            f"{r['rss_first']:.0f} → {r['rss_last']:.0f} (max {r['rss_max']:.0f})",
                            "—" if peak is None else f"{peak:.1f}",
                            f"{usage['other_share']:.0%}",
                            _reimport(r.get("reimport")),
                        ]
                    )  # fmt: skip
        print(f"  load after {backend}: {load()}", flush=True)
    print()
    for line in held_lines:
        print(line)
    common.print_table(
        [
            "backend",
            "file",
            "path",
            "rows",
            "seconds",
            "rows/s",
            "CPU s (importer)",
            "rows/CPU s",
            "created / skipped / rejected",
            "RSS MiB",
            "tracemalloc peak MiB",
            "other CPU",
            "re-import",
        ],
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
