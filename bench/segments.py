# ruff: noqa: E501  (the segment table and the DuckDB SQL read best unwrapped)
"""Segment benchmark (issue 6): ten representative segments counted and listed on SQLite and
PostgreSQL through the real rule compiler, the same questions asked of DuckDB over the same raw
data in memory (the limit), and the RFM recompute.

    .venv/bin/python bench/segments.py [--scale 1.0] [--backends sqlite,postgresql] [--repeat 3]

Full size (--scale 1): 1,000,000 customers, 10,000,000 orders and 20,000,000 events for one
brand (each order is also an order.paid event; the other half of the events are clicks,
messages sent and received). --scale 0.01 is 10,000 / 100,000 / 200,000.

The generator is deterministic (random.Random(6)); it writes CSV files once, which are loaded
with the fastest raw path of each store: PostgreSQL COPY, SQLite executemany in one
transaction, DuckDB read_csv. Aggregates (CustomerAggregate) are computed by the generator, as
the event log's consumers would have. Each backend runs in its own child process against its
own fresh database (common.temp_database), dropped afterwards. Times are the median of
--repeat runs; every backend must give the same count for each segment (checked).

The ten segments (rule JSON in SEGMENTS below):

 1. shanghai_women      profile city = 上海 AND gender = female
 2. age_25_35_tagged    attribute age (number) between 25 and 35 AND has tag T1
 3. big_spenders        aggregate paid_fen >= 200,000 AND order_count >= 12
 4. lapsed_untouched    days since last order > 60 AND NOT (touches in 7 days >= 1)
 5. clicked_twice_14d   link.clicked at least 2 times in the last 14 days
 6. no_order_60d        ordered before (order_count >= 1) AND NOT order.paid in 60 days
 7. skincare_repeat     order.paid with category = 护肤 more than once
 8. nested_channels     (channel in live/package_card OR tags T2 and T3) AND NOT stage lost
                        AND NOT (attribute vip = true)
 9. spent_500_30d       sum of order.paid amount_fen in the last 30 days >= 50,000
10. engaged_recently    message.received last <= 7 days ago OR (touches in 30 days >= 3 AND
                        days since last click <= 14)

Goals (issue 6): every count <= 1 s on PostgreSQL at full size and within 3x of DuckDB;
RFM for 1M customers <= 10 s.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

FULL = {"customers": 1_000_000, "orders": 10_000_000, "events": 20_000_000}
NOW = dt.datetime(2026, 6, 1, 4, 0, tzinfo=dt.UTC)  # noon in Asia/Shanghai
BRAND_ID = 1
CITIES = ["上海", "北京", "杭州", "广州", "深圳", "成都", "南京", "武汉"]
CHANNELS = ["live", "package_card", "sms", "store", "kol", ""]
CATEGORIES = ["护肤", "彩妆", "母婴", "个护"]
STAGES = ["new_contact", "engaged", "first_order", "repeat", "loyal", "at_risk", "lost"]
OTHER_EVENTS = ["link.clicked", "message.sent", "message.received"]

SEGMENTS: dict[str, dict[str, Any]] = {
    "shanghai_women": {"and": [
        {"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
        {"kind": "profile", "field": "gender", "op": "eq", "value": "female"}]},
    "age_25_35_tagged": {"and": [
        {"kind": "attribute", "key": "age", "type": "number", "op": "between", "value": [25, 35]},
        {"kind": "tag", "tag_ids": [1]}]},
    "big_spenders": {"and": [
        {"kind": "aggregate", "field": "paid_fen", "op": "gte", "value": 200_000},
        {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 12}]},
    "lapsed_untouched": {"and": [
        {"kind": "aggregate", "field": "days_since_last_order", "op": "gt", "value": 60},
        {"not": {"kind": "touches", "window": {"days": 7}, "op": "gte", "value": 1}}]},
    "clicked_twice_14d": {"kind": "event", "type": "link.clicked", "window": {"days": 14},
                          "op": "gte", "value": 2},
    "no_order_60d": {"and": [
        {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1},
        {"not": {"kind": "event", "type": "order.paid", "window": {"days": 60}}}]},
    "skincare_repeat": {"kind": "event", "type": "order.paid", "op": "gt", "value": 1,
                        "filters": [{"property": "category", "op": "eq", "value": "护肤"}]},
    "nested_channels": {"and": [
        {"or": [{"kind": "channel", "channels": ["live", "package_card"]},
                {"kind": "tag", "tag_ids": [2, 3], "match": "all"}]},
        {"not": {"kind": "lifecycle", "stages": ["lost"]}},
        {"not": {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}}]},
    "spent_500_30d": {"kind": "event", "type": "order.paid", "measure": "sum",
                      "property": "amount_fen", "window": {"days": 30}, "op": "gte", "value": 50_000},
    "engaged_recently": {"or": [
        {"kind": "event", "type": "message.received", "measure": "last", "op": "lte", "value": 7},
        {"and": [{"kind": "touches", "window": {"days": 30}, "op": "gte", "value": 3},
                 {"kind": "aggregate", "field": "days_since_last_click", "op": "lte", "value": 14}]}]},
}  # fmt: skip


# --- Deterministic data ----------------------------------------------------------------------


def local_midnight_utc(days_ago: int) -> str:
    """Local (Asia/Shanghai, UTC+8, no DST) midnight `days_ago` days before NOW's local date."""
    local_today = (NOW + dt.timedelta(hours=8)).date()
    day = local_today - dt.timedelta(days=days_ago)
    return (dt.datetime.combine(day, dt.time.min) - dt.timedelta(hours=8)).isoformat() + "+00:00"


def iso(t: dt.datetime) -> str:
    return t.isoformat()


def generate(scale: float, out: Path) -> dict[str, int]:
    """Write customers, tags, orders, events and aggregates as CSV files under `out`."""
    rng = random.Random(6)
    n_customers = max(int(FULL["customers"] * scale), 100)
    n_orders = int(FULL["orders"] * scale)
    n_other = int(FULL["events"] * scale) - n_orders
    files = {name: (out / f"{name}.csv").open("w", newline="") for name in
             ("customers", "customer_tags", "orders", "events", "aggregates")}  # fmt: skip
    w = {name: csv.writer(f) for name, f in files.items()}
    created = iso(NOW - dt.timedelta(days=400))
    agg: list[dict[str, Any]] = [{} for _ in range(n_customers + 1)]
    for cid in range(1, n_customers + 1):
        attrs: dict[str, Any] = {"age": rng.randint(16, 60)}
        if rng.random() < 0.1:
            attrs["vip"] = rng.random() < 0.5
        w["customers"].writerow([
            cid, BRAND_ID, f"客户{cid}", rng.choice(["female", "male", "unknown"]), "",
            rng.choice(CITIES), rng.choice(CHANNELS), json.dumps(attrs, ensure_ascii=False),
            rng.choice(STAGES), created, created,
        ])  # fmt: skip
        for tag_id in rng.sample(range(1, 21), rng.choice([0, 1, 1, 2, 3])):
            w["customer_tags"].writerow([cid, tag_id, "manual", created])
    event_id = 0
    # Orders skew to a minority of heavy buyers, like real brands.
    for oid in range(1, n_orders + 1):
        cid = min(int(rng.paretovariate(1.2)) * 7 % n_customers + 1, n_customers)
        cid = rng.randint(1, n_customers) if rng.random() < 0.5 else cid
        at = NOW - dt.timedelta(seconds=rng.randint(0, 365 * 86400))
        amount = rng.choice([990, 4900, 9900, 19_900, 39_900])
        category = rng.choice(CATEGORIES)
        w["orders"].writerow([oid, BRAND_ID, "tmall", f"o{oid}", cid, iso(at), amount,
                              json.dumps([{"sku": category, "qty": 1}], ensure_ascii=False), iso(at)])  # fmt: skip
        event_id += 1
        props = {
            "order_id": f"o{oid}",
            "source": "tmall",
            "amount_fen": amount,
            "category": category,
        }
        w["events"].writerow([event_id, BRAND_ID, cid, "order.paid", iso(at), iso(at), "bench",
                              f"e{event_id}", json.dumps(props, ensure_ascii=False)])  # fmt: skip
        a = agg[cid]
        a["order_count"] = a.get("order_count", 0) + 1
        a["paid_fen"] = a.get("paid_fen", 0) + amount
        a["first_order_at"] = min(a.get("first_order_at", at), at)
        a["last_order_at"] = max(a.get("last_order_at", at), at)
        a["event_count"] = a.get("event_count", 0) + 1
        a["last_event_at"] = max(a.get("last_event_at", at), at)
    for _ in range(n_other):
        cid = rng.randint(1, n_customers)
        kind = rng.choice(OTHER_EVENTS)
        at = NOW - dt.timedelta(seconds=rng.randint(0, 120 * 86400))
        event_id += 1
        props2: dict[str, Any] = {"link": "https://x.cn/a"} if kind == "link.clicked" else {
            "carrier": "wecom", "message_id": f"m{event_id}"}  # fmt: skip
        w["events"].writerow([event_id, BRAND_ID, cid, kind, iso(at), iso(at), "bench",
                              f"e{event_id}", json.dumps(props2)])  # fmt: skip
        a = agg[cid]
        a["event_count"] = a.get("event_count", 0) + 1
        a["last_event_at"] = max(a.get("last_event_at", at), at)
        field = {"link.clicked": "last_click_at", "message.sent": "last_touch_at",
                 "message.received": "last_inbound_at"}[kind]  # fmt: skip
        a[field] = max(a.get(field, at), at)
        if kind == "message.sent":
            a["touch_count"] = a.get("touch_count", 0) + 1
    for cid in range(1, n_customers + 1):
        a = agg[cid]
        if not a:
            continue
        w["aggregates"].writerow([
            cid, BRAND_ID, iso(a["first_order_at"]) if "first_order_at" in a else "",
            iso(a["last_order_at"]) if "last_order_at" in a else "",
            a.get("order_count", 0), a.get("paid_fen", 0), 0, "", "",
            iso(a["last_inbound_at"]) if "last_inbound_at" in a else "",
            iso(a["last_click_at"]) if "last_click_at" in a else "",
            iso(a["last_touch_at"]) if "last_touch_at" in a else "",
            a.get("touch_count", 0), "{}", a.get("event_count", 0),
            iso(a["last_event_at"]) if "last_event_at" in a else "",
        ])  # fmt: skip
    for f in files.values():
        f.close()
    return {"customers": n_customers, "orders": n_orders, "events": event_id}


COLUMNS = {
    "customers": ("customers_customer", ["id", "brand_id", "display_name", "gender", "province",
                  "city", "source_channel", "attributes", "lifecycle_stage", "created_at", "updated_at"]),
    "customer_tags": ("customers_customertag", ["customer_id", "tag_id", "source", "created_at"]),
    "orders": ("commerce_order", ["id", "brand_id", "source", "external_id", "customer_id", "paid_at",
               "amount_fen", "items", "created_at"]),
    "events": ("events_event", ["id", "brand_id", "customer_id", "type", "occurred_at", "received_at",
               "source", "idempotency_key", "properties"]),
    "aggregates": ("events_customeraggregate", ["customer_id", "brand_id", "first_order_at",
                   "last_order_at", "order_count", "paid_fen", "refunded_fen", "last_contact_added_at",
                   "last_contact_deleted_at", "last_inbound_at", "last_click_at", "last_touch_at",
                   "touch_count", "touches_by_day", "event_count", "last_event_at"]),
}  # fmt: skip
DEFAULTS = {  # NOT NULL columns the CSVs leave out
    "orders": {"discount_fen": 0, "shipping_fen": 0, "refunded_fen": 0, "channel": "", "coupon_code": ""},
}  # fmt: skip


# --- Loading --------------------------------------------------------------------------------


def sqlite_cell(value: str, column: str, is_time: bool) -> Any:
    """Django's SQLite format: empty is NULL except for text columns; times are naive UTC
    'YYYY-MM-DD HH:MM:SS' (ISO with a T and an offset would compare wrongly as text)."""
    if value == "":
        return "" if column in ("display_name", "province", "source_channel") else None
    if is_time:
        return value.replace("T", " ").removesuffix("+00:00")
    return value


def load_django(backend: str, data: Path) -> float:
    """Load the CSVs into the migrated Django database with the raw fast path; seconds."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for name, (table, cols) in COLUMNS.items():
            extra = DEFAULTS.get(name, {})
            all_cols = cols + list(extra)
            path = data / f"{name}.csv"
            if backend == "postgresql":
                if extra:
                    # COPY has no per-column constants: give the columns defaults for the load.
                    for col, value in extra.items():
                        cursor.execute(
                            f"ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT %s", [value]
                        )
                texts = [c for c in cols if c in ("display_name", "province", "source_channel")]
                not_null = f", FORCE_NOT_NULL ({', '.join(texts)})" if texts else ""
                with (
                    cursor.cursor.copy(
                        f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv{not_null})"
                    ) as copy,
                    path.open("rb") as f,
                ):
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
                for col in extra:
                    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT")
            else:
                marks = ", ".join(["?"] * len(all_cols))
                times = {i for i, c in enumerate(cols) if c.endswith("_at")}
                sql = f"INSERT INTO {table} ({', '.join(all_cols)}) VALUES ({marks})"
                with path.open(newline="") as f:
                    rows = ([sqlite_cell(c, col, i in times)
                             for i, (c, col) in enumerate(zip(row, cols, strict=True))]
                            + list(extra.values()) for row in csv.reader(f))  # fmt: skip
                    batch: list[list[Any]] = []
                    for row in rows:
                        batch.append(row)
                        if len(batch) >= 50_000:
                            cursor.executemany(sql, batch)
                            batch = []
                    if batch:
                        cursor.executemany(sql, batch)
        cursor.execute("ANALYZE")
    return time.perf_counter() - started


def run_child(backend: str, scale: float, data: Path, repeat: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-seg-"))
    with common.temp_database(backend, "bench_segments", workdir) as url:
        common.django_setup(url, workdir / "var")
        from django.core.management import call_command
        from django.db import connection, transaction

        call_command("migrate", verbosity=0)
        from yutang.core import clock
        from yutang.core.models import Brand
        from yutang.customers.models import Tag, TagGroup
        from yutang.segments import rules, scoring

        brand = Brand.objects.create(name="Bench", time_zone="Asia/Shanghai")
        assert brand.pk == BRAND_ID
        group = TagGroup.objects.create(brand=brand, name="bench")
        for n in range(1, 21):
            Tag.objects.create(pk=n, brand=brand, group=group, name=f"T{n}")
        if backend == "sqlite":
            with transaction.atomic():
                load_seconds = load_django(backend, data)
        else:
            load_seconds = load_django(backend, data)
        ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=NOW)
        from yutang.customers.models import Customer

        results: dict[str, Any] = {"load_s": load_seconds, "segments": {}}
        for name, rule in SEGMENTS.items():
            node = rules.parse_rule(rule)
            qs = Customer.objects.filter(brand=brand, merged_into__isnull=True).filter(
                rules.compile_rule(node, ctx)
            )
            counts, lists, count = [], [], 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                count = qs.count()
                counts.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                members = list(qs.order_by().values_list("pk", flat=True))
                lists.append(time.perf_counter() - t0)
                assert len(members) == count
            results["segments"][name] = {
                "count": count, "count_s": statistics.median(counts),
                "list_s": statistics.median(lists),
            }  # fmt: skip
        with clock.use_clock(clock.FrozenClock(NOW)):
            t0 = time.perf_counter()
            rfm = scoring.recompute_rfm(brand=brand)
            results["rfm_s"] = time.perf_counter() - t0
            results["rfm_customers"] = rfm.customers
        connection.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return results


# --- DuckDB: the same questions in hand-written SQL over the same CSVs ----------------------

DUCK_SQL: dict[str, str] = {
    "shanghai_women": "SELECT id FROM customers WHERE city = '上海' AND gender = 'female'",
    "age_25_35_tagged": """SELECT c.id FROM customers c WHERE
        TRY_CAST(json_extract(attributes, '$.age') AS DOUBLE) BETWEEN 25 AND 35
        AND json_type(attributes, '$.age') IN ('UBIGINT', 'BIGINT', 'DOUBLE')
        AND id IN (SELECT customer_id FROM customer_tags WHERE tag_id = 1)""",
    "big_spenders": "SELECT customer_id FROM aggregates WHERE paid_fen >= 200000 AND order_count >= 12",
    "lapsed_untouched": f"""SELECT customer_id FROM aggregates
        WHERE last_order_at < TIMESTAMPTZ '{local_midnight_utc(60)}'
        AND customer_id NOT IN (SELECT customer_id FROM events WHERE type = 'message.sent'
            AND occurred_at >= TIMESTAMPTZ '{local_midnight_utc(6)}')""",
    "clicked_twice_14d": f"""SELECT customer_id FROM events WHERE type = 'link.clicked'
        AND occurred_at >= TIMESTAMPTZ '{local_midnight_utc(13)}' GROUP BY customer_id
        HAVING count(*) >= 2""",
    "no_order_60d": f"""SELECT customer_id FROM aggregates WHERE order_count >= 1 AND customer_id
        NOT IN (SELECT customer_id FROM events WHERE type = 'order.paid'
            AND occurred_at >= TIMESTAMPTZ '{local_midnight_utc(59)}')""",
    "skincare_repeat": """SELECT customer_id FROM events WHERE type = 'order.paid'
        AND json_extract_string(properties, '$.category') = '护肤'
        GROUP BY customer_id HAVING count(*) > 1""",
    "nested_channels": """SELECT id FROM customers WHERE
        (source_channel IN ('live', 'package_card')
         OR (id IN (SELECT customer_id FROM customer_tags WHERE tag_id = 2)
             AND id IN (SELECT customer_id FROM customer_tags WHERE tag_id = 3)))
        AND lifecycle_stage <> 'lost'
        AND NOT coalesce(json_extract_string(attributes, '$.vip') = 'true', false)""",
    "spent_500_30d": f"""SELECT customer_id FROM events WHERE type = 'order.paid'
        AND occurred_at >= TIMESTAMPTZ '{local_midnight_utc(29)}' GROUP BY customer_id
        HAVING sum(CAST(json_extract(properties, '$.amount_fen') AS DOUBLE)) >= 50000""",
    "engaged_recently": f"""SELECT customer_id FROM events WHERE type = 'message.received'
            GROUP BY customer_id HAVING max(occurred_at) >= TIMESTAMPTZ '{local_midnight_utc(7)}'
        UNION
        SELECT a.customer_id FROM aggregates a WHERE a.last_click_at >= TIMESTAMPTZ '{local_midnight_utc(14)}'
            AND a.customer_id IN (SELECT customer_id FROM events WHERE type = 'message.sent'
                AND occurred_at >= TIMESTAMPTZ '{local_midnight_utc(29)}'
                GROUP BY customer_id HAVING count(*) >= 3)""",
}  # fmt: skip


def run_duckdb(data: Path, repeat: int) -> dict[str, Any]:
    import duckdb

    db = duckdb.connect(":memory:")
    db.execute("SET TimeZone = 'UTC'")
    started = time.perf_counter()
    for name, (_table, cols) in COLUMNS.items():
        types = {c: "VARCHAR" for c in cols}
        for c in cols:
            if c.endswith("_at"):
                types[c] = "TIMESTAMPTZ"
            elif (c.endswith("_id") and c != "external_id") or c in ("id", "order_count", "paid_fen", "refunded_fen",
                                             "touch_count", "event_count", "amount_fen"):  # fmt: skip
                types[c] = "BIGINT"
        db.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, header=false, columns=?, nullstr='')",
            [str(data / f"{name}.csv"), types],
        )
    results: dict[str, Any] = {"load_s": time.perf_counter() - started, "segments": {}}
    for name, sql in DUCK_SQL.items():
        counts, lists, count = [], [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            row = db.execute(f"SELECT count(*) FROM ({sql})").fetchone()
            counts.append(time.perf_counter() - t0)
            count = int(row[0]) if row else 0
            t0 = time.perf_counter()
            db.execute(sql).fetchall()
            lists.append(time.perf_counter() - t0)
        results["segments"][name] = {
            "count": count, "count_s": statistics.median(counts), "list_s": statistics.median(lists)
        }  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(run_child(args._child, args.scale, Path(args._data), args.repeat)))
        return

    common.print_machine_info()
    data = Path(tempfile.mkdtemp(prefix="bench-seg-data-"))
    t0 = time.perf_counter()
    sizes = generate(args.scale, data)
    print(f"\nGenerated {sizes} in {time.perf_counter() - t0:.1f} s (scale {args.scale})")
    results: dict[str, dict[str, Any]] = {"duckdb": run_duckdb(data, args.repeat)}
    for backend in [b for b in args.backends.split(",") if b]:
        out = subprocess.run(
            [sys.executable, __file__, "--_child", backend, "--_data", str(data),
             "--scale", str(args.scale), "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            print(f"{backend} failed:\n{out.stderr[-3000:]}")
            continue
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    for f in data.iterdir():
        f.unlink()
    data.rmdir()

    backends = [b for b in ("sqlite", "postgresql") if b in results]
    print(
        "\nLoad (s): " + ", ".join(f"{b} {results[b]['load_s']:.1f}" for b in ["duckdb", *backends])
    )
    rows = []
    for name in SEGMENTS:
        duck = results["duckdb"]["segments"][name]
        row: list[Any] = [name, f"{duck['count']:,}", f"{duck['count_s'] * 1000:.0f}"]
        for b in backends:
            seg = results[b]["segments"][name]
            mismatch = "" if seg["count"] == duck["count"] else f" ≠{seg['count']:,}"
            row += [f"{seg['count_s'] * 1000:.0f}{mismatch}", f"{seg['list_s'] * 1000:.0f}",
                    f"{seg['count_s'] / max(duck['count_s'], 1e-6):.1f}x"]  # fmt: skip
        rows.append(row)
    headers = ["segment", "members", "duckdb ms"]
    for b in backends:
        headers += [f"{b} count ms", f"{b} list ms", f"{b}/duckdb"]
    common.print_table(headers, rows)
    for b in backends:
        print(f"RFM recompute on {b}: {results[b]['rfm_s']:.2f} s for "
              f"{results[b]['rfm_customers']:,} scored customers")  # fmt: skip
    if "postgresql" in results:
        worst = max(s["count_s"] for s in results["postgresql"]["segments"].values())
        ratio = max(results["postgresql"]["segments"][n]["count_s"]
                    / max(results["duckdb"]["segments"][n]["count_s"], 1e-6) for n in SEGMENTS)  # fmt: skip
        print(
            f"Goal (full size): every PostgreSQL count <= 1 s: worst {worst:.2f} s "
            f"({'PASS' if worst <= 1 else 'MISS'}); within 3x of DuckDB: worst {ratio:.1f}x "
            f"({'PASS' if ratio <= 3 else 'MISS'}); RFM <= 10 s: {results['postgresql']['rfm_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
