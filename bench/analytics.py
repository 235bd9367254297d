"""Operations overview benchmark (issue 8): how long `analytics.services.overview` takes for a
month and for a year on a brand with ~300,000 contacts and ~1,000,000 events, on SQLite and
PostgreSQL.

    .venv/bin/python bench/analytics.py [--contacts N] [--backends sqlite,postgresql] [--repeat R]

Defaults: 300,000 contacts (about 1,000,000 events), both backends, 3 timed runs per case.
Each backend runs in its own child process (`--_child BACKEND`) against its own fresh database
(a SQLite file under a `tempfile.mkdtemp()` directory, or a PostgreSQL database named
bench_analytics), created before and dropped after.

The data is written fast and raw (`bulk_create` of customers and events; no identity
resolution, no aggregates, no Order rows — the overview reads only customers and the event
log), from a seeded generator over 2025-11-01 .. 2026-11-01 (Asia/Shanghai):

- every customer is added once (85% WeCom on one of 60 staff accounts, 15% official account);
  8% delete us 0–60 days later, a fifth of those add back later;
- orders: 55% of customers buy, 1–4 orders each (first within 0–20 days of adding, repeats
  every 20–90 days), 4% of orders partly refunded;
- messages: 0–3 `message.sent` per customer, 30% marketing;
- customers belong to one of 10 stores (2 franchise) and one of 7 first-touch channels.

Timed: the whole `overview()` call (its fixed set of queries and the Python around them) for
March 2026 by day and for 2025-11-01..2026-10-31 by month, brand-wide (brand admin), for one
store, and for one channel; the median of `--repeat` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tempfile
import zoneinfo
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SEED = 20261125
DEFAULT_CONTACTS = 300_000
BACKENDS = ("sqlite", "postgresql")
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
START = dt.datetime(2025, 11, 1, tzinfo=TZ)
END = dt.datetime(2026, 11, 1, tzinfo=TZ)
NOW = END + dt.timedelta(days=5)
CHANNELS = ["douyin_live", "xhs_note", "tmall_card", "store_qr", "kol_post", "feed_ad", "weibo"]
SOURCES = ["tmall", "taobao", "jd", "mini_program", "youzan", "store_pos"]
BATCH = 5000


def generate(
    contacts: int,
) -> tuple[list[dict[str, Any]], list[tuple[int, str, dt.datetime, dict]]]:
    """(customers, events as (customer index, type, occurred_at, properties))."""
    rng = random.Random(SEED)
    span = (END - START).total_seconds()
    people: list[dict[str, Any]] = []
    events: list[tuple[int, str, dt.datetime, dict]] = []

    def at(moment: dt.datetime) -> dt.datetime | None:
        return moment if moment < END else None

    for i in range(contacts):
        joined = START + dt.timedelta(seconds=rng.random() * span * 0.97)
        people.append(
            {"store": rng.randrange(10), "channel": rng.choice(CHANNELS), "created": joined}
        )
        if rng.random() < 0.85:
            contact = {"carrier": "wecom", "account_id": f"staff-{rng.randrange(60)}"}
        else:
            contact = {"carrier": "official_account"}
        events.append((i, "contact.added", joined, dict(contact, channel=people[i]["channel"])))
        if rng.random() < 0.08:
            gone = at(joined + dt.timedelta(days=rng.random() * 60))
            if gone:
                events.append((i, "contact.deleted", gone, dict(contact)))
                if rng.random() < 0.2:
                    back = at(gone + dt.timedelta(days=rng.random() * 30))
                    if back:
                        events.append((i, "contact.added", back, dict(contact)))
        if rng.random() < 0.55:
            paid = joined + dt.timedelta(days=rng.random() * 20)
            for n in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                if paid >= END:
                    break
                fen = rng.randrange(2900, 59900)
                order_id = f"O{i}-{n}"
                source = rng.choice(SOURCES)
                paid_props = {"order_id": order_id, "source": source, "amount_fen": fen}
                events.append((i, "order.paid", paid, paid_props))
                if rng.random() < 0.04:
                    refunded = at(paid + dt.timedelta(days=rng.random() * 10))
                    if refunded:
                        events.append((i, "order.refunded", refunded,
                                       {"order_id": order_id, "refund_id": f"R{order_id}",
                                        "amount_fen": fen // 2}))  # fmt: skip
                paid += dt.timedelta(days=20 + rng.random() * 70)
        for n in range(rng.randrange(4)):
            sent = at(joined + dt.timedelta(days=rng.random() * 90))
            if sent:
                kind = "marketing" if rng.random() < 0.3 else "service"
                events.append((i, "message.sent", sent, {"carrier": "wecom",
                               "message_id": f"M{i}-{n}", "kind": kind}))  # fmt: skip
    return people, events


def child(args: argparse.Namespace) -> dict[str, Any]:
    common.django_setup(args._url, args._workdir)
    from django.core.management import call_command
    from django.db import connection

    from yutang.analytics import services
    from yutang.core import services as core
    from yutang.core.clock import FrozenClock, use_clock
    from yutang.core.models import Staff, Store
    from yutang.customers.models import Customer
    from yutang.events.models import Event

    call_command("migrate", verbosity=0)
    result: dict[str, Any] = {"backend": connection.vendor}
    with common.timer() as t:
        people, raw = generate(args.contacts)
    result["generate_s"] = t.seconds
    with use_clock(FrozenClock(NOW)):
        brand = core.create_brand(name="Bench brand")
        stores = [
            core.create_store(
                actor=None,
                brand=brand,
                code=f"S{n:02d}",
                name=f"Store {n}",
                kind="franchise" if n >= 8 else "direct",
            )
            for n in range(10)
        ]
        admin = core.create_staff(
            actor=None, brand=brand, username="bench.admin", display_name="Admin",
            role="brand_admin", store_ids=[], password="bench-password-123",
        ).staff  # fmt: skip
    with common.timer() as t:
        ids: list[int] = []
        for start in range(0, len(people), BATCH):
            rows = [
                Customer(
                    brand=brand,
                    owner_store=stores[p["store"]],
                    source_channel=p["channel"],
                    created_at=p["created"],
                    updated_at=p["created"],
                )
                for p in people[start : start + BATCH]
            ]
            ids += [c.pk for c in Customer.objects.bulk_create(rows)]
        received = NOW
        for start in range(0, len(raw), BATCH):
            Event.objects.bulk_create(
                Event(
                    brand=brand,
                    customer_id=ids[i],
                    type=kind,
                    occurred_at=when,
                    received_at=received,
                    source="bench",
                    idempotency_key=f"b{start + n}",
                    properties=props,
                )
                for n, (i, kind, when, props) in enumerate(raw[start : start + BATCH])
            )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
    result["load_s"] = t.seconds
    result["customers"] = len(people)
    result["events"] = len(raw)
    result["types"] = {
        k: sum(1 for e in raw if e[1] == k)
        for k in (
            "contact.added",
            "contact.deleted",
            "order.paid",
            "order.refunded",
            "message.sent",
        )
    }
    admin = Staff.objects.select_related("brand").get(pk=admin.pk)
    cases: list[tuple[str, dt.date, dt.date, dict[str, Any]]] = [
        ("month (Mar 2026, by day)", dt.date(2026, 3, 1), dt.date(2026, 3, 31), {}),
        ("year (Nov 2025–Oct 2026, by month)", dt.date(2025, 11, 1), dt.date(2026, 10, 31), {}),
        ("month, one store", dt.date(2026, 3, 1), dt.date(2026, 3, 31), {"store": "S03"}),
        ("year, one store", dt.date(2025, 11, 1), dt.date(2026, 10, 31), {"store": "S03"}),
        ("year, one channel", dt.date(2025, 11, 1), dt.date(2026, 10, 31),
         {"channel": "xhs_note"}),
    ]  # fmt: skip
    timings = []
    with use_clock(FrozenClock(NOW)):
        for label, start_day, end_day, filters in cases:
            seconds = []
            for run in range(args.repeat + 1):
                with common.timer() as t:
                    o = services.overview(actor=admin, start=start_day, end=end_day, **filters)
                if run:
                    seconds.append(t.seconds)
            timings.append(
                {
                    "case": label,
                    "median_s": statistics.median(seconds),
                    "min_s": min(seconds),
                    "contacts_held": o.totals.contacts_held,
                    "gmv_fen": o.totals.gmv_fen,
                    "deletion_rate": o.totals.deletion_rate.rate,
                }
            )
    result["timings"] = timings
    assert Store.objects.filter(brand=brand).count() == 10
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        args._out.write_text(json.dumps(child(args), default=str))
        return 0
    common.print_machine_info()
    results = []
    for backend in args.backends.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="bench-analytics-"))
        try:
            with common.temp_database(backend, "bench_analytics", workdir) as url:
                out = workdir / "result.json"
                cmd = [sys.executable, __file__, "--_child", backend, "--_url", url,
                       "--_workdir", str(workdir), "--_out", str(out),
                       "--contacts", str(args.contacts), "--repeat", str(args.repeat)]  # fmt: skip
                with common.CpuMonitor() as cpu:
                    subprocess.run(cmd, check=True)
                result = json.loads(out.read_text())
                result["cpu"] = cpu.usage()
                results.append(result)
        except Exception as exc:  # an unreachable PostgreSQL skips its figures
            print(f"{backend}: skipped ({type(exc).__name__}: {exc})", flush=True)
    for r in results:
        took = f"generated in {r['generate_s']:.0f} s, loaded in {r['load_s']:.0f} s"
        print(
            f"\n== {r['backend']}: {r['customers']:,} customers, {r['events']:,} events ({took}) =="
        )
        print(f"   event types: {r['types']}")
        print(f"   other processes used {r['cpu']['other_share']:.0%} of the machine")
        common.print_table(
            ["case", "median s", "min s", "contacts held", "GMV ¥", "deletion rate"],
            [[t["case"], f"{t['median_s']:.2f}", f"{t['min_s']:.2f}", f"{t['contacts_held']:,}",
              f"{t['gmv_fen'] / 100:,.0f}", f"{(t['deletion_rate'] or 0) * 100:.1f}%"]
             for t in r["timings"]],
            markdown=True,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
