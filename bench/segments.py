# ruff: noqa: E501  (the segment table and the DuckDB SQL read best unwrapped)
"""Segment benchmark (issue 6): ten representative segments counted and listed on SQLite and
PostgreSQL through the real rule compiler, the same questions asked of DuckDB over the same raw
data in memory (the limit), and the RFM recompute.

    .venv/bin/python bench/segments.py [--scale 1.0] [--backends sqlite,postgresql] [--repeat 3]
        [--data DIR] [--keep-db]

Full size (--scale 1): 1,000,000 customers, 10,000,000 orders and 20,000,000 events for one
brand (each order is also an order.paid event; the other half of the events are clicks,
messages sent and received). --scale 0.01 is 10,000 / 100,000 / 200,000.

The generator is NumPy, deterministic (default_rng(6), fixed chunk sizes) and fast (the full
size in minutes): events and orders are numbered in time order, as an append-only log fills
up; aggregates (CustomerAggregate, touches_by_day included) are folded from the generated log
as events.aggregates.fold does; identities and tags come with the customers. It writes CSV
files once (reused with --data DIR), loaded with the fastest raw path of each store:
PostgreSQL COPY (FK triggers off), SQLite executemany in one transaction, DuckDB read_csv;
secondary indexes and unique constraints are dropped before and built after the load.
Each backend runs in its own child process against its own fresh database
(common.temp_database), dropped afterwards unless --keep-db. Counts and lists run inside
segments.services.rule_query() like the console and API. Times are the median of --repeat
runs; every backend must give the same count for each segment (checked). RFM is timed twice:
the first computation, and the next night after 0.5% of the buyers ordered again.

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
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.dtypes import StringDType

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


# --- Deterministic data (NumPy) ----------------------------------------------------------------

S = StringDType()
NOW_TS = int(NOW.timestamp())
TZ_OFFSET = 8 * 3600  # Asia/Shanghai, no DST
CHUNK = 1_000_000  # rows generated and written per step (fixed, so the data is deterministic)


def local_midnight_utc(days_ago: int) -> str:
    """Local (Asia/Shanghai, UTC+8, no DST) midnight `days_ago` days before NOW's local date."""
    local_today = (NOW + dt.timedelta(hours=8)).date()
    day = local_today - dt.timedelta(days=days_ago)
    return (dt.datetime.combine(day, dt.time.min) - dt.timedelta(hours=8)).isoformat() + "+00:00"


def _join(*parts: Any) -> Any:
    """Concatenate string arrays (and constants) element-wise."""
    out = parts[0]
    for part in parts[1:]:
        out = np.strings.add(out, part)
    return out


def _text(values: Any) -> Any:
    return np.asarray(values).astype(S)


def _times(epoch_s: Any) -> Any:
    """Naive UTC 'YYYY-MM-DD HH:MM:SS' (Django's SQLite format; PostgreSQL and DuckDB read it in
    a UTC session)."""
    iso = np.datetime_as_string(np.asarray(epoch_s, dtype="datetime64[s]"), unit="s").astype(S)
    return np.strings.replace(iso, "T", " ")


def _opt_times(epoch_s: Any) -> Any:
    """Times where -1 means missing (an empty CSV cell, NULL)."""
    out = _times(np.where(epoch_s < 0, 0, epoch_s))
    return np.where(epoch_s < 0, np.array("", dtype=S), out)


def _write(f: Any, *columns: Any) -> None:
    row = _join(*[x for c in columns for x in (",", c)][1:])
    f.write("\n".join(row.tolist()))
    f.write("\n")


def generate(scale: float, out: Path) -> dict[str, int]:
    """Write customers, tags, identities, orders, events and aggregates as CSV files under
    `out`, with NumPy (seeded, fixed chunk sizes: the same scale gives the same bytes).

    Aggregates are computed from the generated orders and events exactly as
    events.aggregates.fold would (counts, sums, first/last times per type, touches_by_day for
    the 30 local days up to the latest touch), so the aggregate and event-window conditions
    see consistent data."""
    rng = np.random.default_rng(6)
    n = max(int(FULL["customers"] * scale), 100)
    n_orders = int(FULL["orders"] * scale)
    n_other = int(FULL["events"] * scale) - n_orders
    files = {name: (out / f"{name}.csv").open("w", encoding="utf-8") for name in COLUMNS}
    created = NOW_TS - 400 * 86400
    created_s = _times(np.array([created]))[0]

    # Customers, attributes, tags, identities.
    for start in range(1, n + 1, CHUNK):
        ids = np.arange(start, min(start + CHUNK, n + 1))
        m = len(ids)
        id_s = _text(ids)
        age = _text(rng.integers(16, 61, m))
        vip_roll = rng.random(m)
        vip = np.where(
            vip_roll < 0.05, ', ""vip"": true', np.where(vip_roll < 0.1, ', ""vip"": false', "")
        ).astype(S)
        _write(
            files["customers"], id_s, str(BRAND_ID), _join("客户", id_s),
            np.array(["female", "male", "unknown"], dtype=S)[rng.integers(0, 3, m)], "",
            np.array(CITIES, dtype=S)[rng.integers(0, len(CITIES), m)],
            np.array(CHANNELS, dtype=S)[rng.integers(0, len(CHANNELS), m)],
            _join('"{""age"": ', age, vip, '}"'),
            np.array(STAGES, dtype=S)[rng.integers(0, len(STAGES), m)], created_s, created_s,
        )  # fmt: skip
        # 0–3 distinct tags of 20: t0, t0+d1, t0+d1+d2 (mod 20) with 1 <= d1, d2 <= 9.
        how_many = np.array([0, 1, 1, 2, 3])[rng.integers(0, 5, m)]
        t0 = rng.integers(0, 20, m)
        d1 = rng.integers(1, 10, m)
        d2 = rng.integers(1, 10, m)
        for k, tags in enumerate((t0, t0 + d1, t0 + d1 + d2)):
            keep = how_many > k
            _write(files["customer_tags"], id_s[keep], _text(tags[keep] % 20 + 1), "manual",
                   created_s)  # fmt: skip
        # Every customer has a phone; 60% a WeCom contact (what the carriers would have added).
        _write(files["identities"], str(BRAND_ID), id_s, "phone", "", _join("enc:p", id_s),
               _join("hp", id_s), "import", created_s)  # fmt: skip
        wecom = rng.random(m) < 0.6
        _write(files["identities"], str(BRAND_ID), id_s[wecom], "wecom_external_userid", "",
               _join("enc:w", id_s[wecom]), _join("hw", id_s[wecom]), "wecom", created_s)  # fmt: skip

    # Orders (each also an order.paid event) over the last year, skewed to a minority of heavy
    # buyers; clicks, messages sent and received over the last 120 days. Drawn whole, then
    # numbered in time order, as an append-only log and an order table fill up in real life
    # (a window of recent events is a contiguous stretch of the table, not scattered rows).
    heavy = np.minimum(rng.pareto(1.2, n_orders) + 1, 1e15).astype(np.int64) * 7 % n + 1
    order_cid = np.where(rng.random(n_orders) < 0.5, rng.integers(1, n + 1, n_orders), heavy)
    order_at = NOW_TS - rng.integers(0, 365 * 86400 + 1, n_orders)
    amounts = np.array([990, 4900, 9900, 19_900, 39_900])
    order_amount = amounts[rng.integers(0, len(amounts), n_orders)]
    order_category = rng.integers(0, len(CATEGORIES), n_orders).astype(np.int8)
    by_time = np.argsort(order_at, kind="stable")
    order_cid, order_at = order_cid[by_time], order_at[by_time]
    order_amount, order_category = order_amount[by_time], order_category[by_time]
    other_cid = rng.integers(1, n + 1, n_other)
    other_kind = rng.integers(0, len(OTHER_EVENTS), n_other).astype(np.int8)
    other_at = NOW_TS - rng.integers(0, 120 * 86400 + 1, n_other)
    # The log: kind -1 is order.paid (its order's index in `ref`), else an OTHER_EVENTS index.
    ev_at = np.concatenate([order_at, other_at])
    by_time = np.argsort(ev_at, kind="stable")
    ev_at = ev_at[by_time]
    ev_cid = np.concatenate([order_cid, other_cid])[by_time]
    ev_kind = np.concatenate([np.full(n_orders, -1, np.int8), other_kind])[by_time]
    ev_ref = np.concatenate([np.arange(n_orders), np.zeros(n_other, np.int64)])[by_time]
    del heavy, other_cid, other_kind, other_at, by_time

    categories = np.array(CATEGORIES, dtype=S)
    for start in range(0, n_orders, CHUNK):
        part = slice(start, min(start + CHUNK, n_orders))
        oid_s = _text(np.arange(part.start + 1, part.stop + 1))
        at_s = _times(order_at[part])
        _write(files["orders"], oid_s, str(BRAND_ID), "tmall", _join("o", oid_s),
               _text(order_cid[part]), at_s, _text(order_amount[part]), "0", "0", "0",
               _join('"[{""sku"": ""', categories[order_category[part]], '"", ""qty"": 1}]"'),
               "", "", at_s)  # fmt: skip
    kinds = np.array(["order.paid", *OTHER_EVENTS], dtype=S)
    n_events = n_orders + n_other
    for start in range(0, n_events, CHUNK):
        part = slice(start, min(start + CHUNK, n_events))
        eid_s, at_s = _text(np.arange(part.start + 1, part.stop + 1)), _times(ev_at[part])
        kind, ref = ev_kind[part], ev_ref[part]
        props = np.where(
            kind == -1,
            _join('"{""order_id"": ""o', _text(ref + 1), '"", ""source"": ""tmall"", ""amount_fen"": ',
                  _text(order_amount[ref]), ', ""category"": ""', categories[order_category[ref]],
                  '""}"'),
            np.where(
                kind == 0,
                np.array('"{""link"": ""https://x.cn/a""}"', dtype=S),
                _join('"{""carrier"": ""wecom"", ""message_id"": ""m', eid_s, '""}"'),
            ),
        )  # fmt: skip
        _write(files["events"], eid_s, str(BRAND_ID), _text(ev_cid[part]), kinds[kind + 1],
               at_s, at_s, "bench", _join("e", eid_s), props, "0")  # fmt: skip

    # Per-customer aggregates, folded from the log as events.aggregates.fold does.
    order_count = np.bincount(order_cid, minlength=n + 1)
    paid = np.bincount(order_cid, weights=order_amount, minlength=n + 1).astype(np.int64)
    event_count = np.bincount(ev_cid, minlength=n + 1)
    first_order = np.full(n + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_order, order_cid, order_at)
    last: dict[str, Any] = {}
    for name, (cids, ats) in {
        "order": (order_cid, order_at),
        "event": (ev_cid, ev_at),
        **{k: (ev_cid[ev_kind == i], ev_at[ev_kind == i]) for i, k in enumerate(OTHER_EVENTS)},
    }.items():
        last[name] = np.full(n + 1, -1, np.int64)
        np.maximum.at(last[name], cids, ats)
    sent = ev_kind == OTHER_EVENTS.index("message.sent")
    touch_count = np.bincount(ev_cid[sent], minlength=n + 1)
    touch_cids = [ev_cid[sent]]
    touch_days = [(ev_at[sent] + TZ_OFFSET) // 86400]

    # touches_by_day: {"YYYY-MM-DD": n} for the 30 local days up to each customer's latest touch.
    by_day = np.full(n + 1, "{}", dtype=object)
    if touch_cids:
        tc, td = np.concatenate(touch_cids), np.concatenate(touch_days)
        newest = (last["message.sent"][tc] + TZ_OFFSET) // 86400
        keep = td >= newest - 29
        pairs, counts = np.unique(tc[keep] * 100_000 + td[keep], return_counts=True)
        pc, pd = pairs // 100_000, pairs % 100_000
        day_s = np.datetime_as_string(pd.astype("datetime64[D]")).astype(S)
        items = _join('""', day_s, '"": ', _text(counts)).tolist()
        bounds = np.flatnonzero(np.diff(pc)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(pc)], strict=True):
            by_day[pc[a]] = '"{' + ", ".join(items[a:b]) + '}"'
    has = np.flatnonzero(event_count[1:]) + 1
    first_order[first_order == np.iinfo(np.int64).max] = -1
    _write(
        files["aggregates"], _text(has), str(BRAND_ID), _opt_times(first_order[has]),
        _opt_times(last["order"][has]), _text(order_count[has]), _text(paid[has]), "0", "", "",
        _opt_times(last["message.received"][has]), _opt_times(last["link.clicked"][has]),
        _opt_times(last["message.sent"][has]), _text(touch_count[has]),
        by_day[has].astype(S), _text(event_count[has]), _opt_times(last["event"][has]),
    )  # fmt: skip
    for f in files.values():
        f.close()
    return {"customers": n, "orders": n_orders, "events": n_events}


COLUMNS = {
    "customers": ("customers_customer", ["id", "brand_id", "display_name", "gender", "province",
                  "city", "source_channel", "attributes", "lifecycle_stage", "created_at", "updated_at"]),
    "customer_tags": ("customers_customertag", ["customer_id", "tag_id", "source", "created_at"]),
    "identities": ("customers_identity", ["brand_id", "customer_id", "kind", "namespace",
                   "value_encrypted", "value_hash", "source", "created_at"]),
    "orders": ("commerce_order", ["id", "brand_id", "source", "external_id", "customer_id", "paid_at",
               "amount_fen", "discount_fen", "shipping_fen", "refunded_fen", "items", "channel",
               "coupon_code", "created_at"]),
    "events": ("events_event", ["id", "brand_id", "customer_id", "type", "occurred_at", "received_at",
               "source", "idempotency_key", "properties", "txid"]),
    "aggregates": ("events_customeraggregate", ["customer_id", "brand_id", "first_order_at",
                   "last_order_at", "order_count", "paid_fen", "refunded_fen", "last_contact_added_at",
                   "last_contact_deleted_at", "last_inbound_at", "last_click_at", "last_touch_at",
                   "touch_count", "touches_by_day", "event_count", "last_event_at"]),
}  # fmt: skip
#: Text columns whose empty cell is "" rather than NULL.
TEXT_COLUMNS = {"display_name", "province", "source_channel", "namespace", "channel", "coupon_code"}


# --- Loading --------------------------------------------------------------------------------


def _pg_secondary(cursor: Any, table: str) -> list[str]:
    """Drop the secondary indexes and unique constraints of `table`; the statements that
    recreate them."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'u'",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS ("
        "  SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        [table],
    )
    indexes = cursor.fetchall()
    for name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    return [f'ALTER TABLE {table} ADD CONSTRAINT "{n}" {d}' for n, d in constraints] + [
        d for _, d in indexes
    ]


def _sqlite_secondary(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s"
        " AND sql IS NOT NULL",
        [table],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in found]


def load_django(backend: str, data: Path) -> dict[str, float]:
    """Load the CSVs into the migrated Django database with the raw fast path: secondary
    indexes and unique constraints are dropped first and built after the load (PostgreSQL:
    COPY with FK triggers off, then VACUUM ANALYZE; SQLite: executemany in one transaction).
    Returns seconds for the rows, the indexes and the statistics."""
    from django.db import connection, transaction

    from yutang.segments import rollup

    times = {}
    started = time.perf_counter()
    rebuild: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        # The per-customer property counts are recounted once after the load, not per row.
        for statement in rollup.uninstall_statements(backend):
            cursor.execute(statement)
        if backend == "postgresql":
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.execute("SET session_replication_role = replica")  # no FK triggers per row
        for name, (table, cols) in COLUMNS.items():
            path = data / f"{name}.csv"
            if backend == "postgresql":
                rebuild += _pg_secondary(cursor, table)
                texts = [c for c in cols if c in TEXT_COLUMNS]
                not_null = f", FORCE_NOT_NULL ({', '.join(texts)})" if texts else ""
                with (
                    cursor.cursor.copy(
                        f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv{not_null})"
                    ) as copy,
                    path.open("rb") as f,
                ):
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
                if "id" in cols:
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
            else:
                rebuild += _sqlite_secondary(cursor, table)
                nullable = [i for i, c in enumerate(cols) if c not in TEXT_COLUMNS]
                sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                with path.open(newline="", encoding="utf-8") as f:
                    batch: list[list[Any]] = []
                    for row in csv.reader(f):
                        for i in nullable:
                            if row[i] == "":
                                row[i] = None  # type: ignore[call-overload]
                        batch.append(row)
                        if len(batch) >= 100_000:
                            cursor.executemany(sql, batch)
                            batch = []
                    if batch:
                        cursor.executemany(sql, batch)
        times["rows_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for statement in rebuild:
            cursor.execute(statement)
        times["indexes_s"] = time.perf_counter() - started
        started = time.perf_counter()
        rollup.install()
        rollup.rebuild()
        times["rollup_s"] = time.perf_counter() - started
        if backend == "postgresql":
            # Back to normal for everything measured after the load: RFM's writes must pay
            # their foreign-key checks as in production (until session 7 they ran in replica
            # mode, without them).
            cursor.execute("RESET session_replication_role")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if backend == "postgresql":
            for table in [*(t for t, _ in COLUMNS.values()), rollup.TABLE, rollup.NUMBER_TABLE]:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
        else:
            cursor.execute("ANALYZE")
    times["analyze_s"] = time.perf_counter() - started
    return times


def run_child(
    backend: str, scale: float, data: Path, repeat: int, keep_db: bool = False
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-seg-"))
    with common.temp_database(backend, "bench_segments", workdir, keep=keep_db) as url:
        common.django_setup(url, workdir / "var")
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        from yutang.core import clock
        from yutang.core.models import Brand
        from yutang.customers.models import Tag, TagGroup
        from yutang.segments import rules, scoring, services

        brand = Brand.objects.create(name="Bench", time_zone="Asia/Shanghai")
        assert brand.pk == BRAND_ID
        group = TagGroup.objects.create(brand=brand, name="bench")
        for n in range(1, 21):
            Tag.objects.create(pk=n, brand=brand, group=group, name=f"T{n}")
        load = load_django(backend, data)
        ctx = rules.Context(brand_id=brand.pk, tz=brand.tz, now=NOW)
        from yutang.customers.models import Customer

        results: dict[str, Any] = {"load_s": sum(load.values()), "load": load, "segments": {}}
        for name, rule in SEGMENTS.items():
            node = rules.parse_rule(rule)
            qs = Customer.objects.filter(brand=brand, merged_into__isnull=True).filter(
                rules.compile_rule(node, ctx)
            )
            counts, lists, count = [], [], 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                with services.rule_query():  # what the console, API and refresh run in
                    count = qs.count()
                counts.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with services.rule_query():
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
        # The nightly run: a day later, after a day of new orders for 0.5% of the buyers.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE events_customeraggregate SET order_count = order_count + 1,"
                " paid_fen = paid_fen + 9900, last_order_at = %s"
                " WHERE order_count > 0 AND customer_id %% 200 = 0",
                [NOW + dt.timedelta(hours=12)],
            )
        with clock.use_clock(clock.FrozenClock(NOW + dt.timedelta(days=1))):
            t0 = time.perf_counter()
            rfm = scoring.recompute_rfm(brand=brand)
            results["rfm_again_s"] = time.perf_counter() - t0
            results["rfm_again_changed"] = rfm.changed
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
    parser.add_argument(
        "--data",
        default=None,
        help="keep the generated CSVs in this directory and reuse them if already there "
        "(same --scale); default: a temporary directory, removed afterwards",
    )
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="keep the loaded databases (PostgreSQL bench_segments; SQLite in a temp dir) "
        "for EXPLAIN ANALYZE",
    )
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        result = run_child(args._child, args.scale, Path(args.data), args.repeat, args.keep_db)
        print(json.dumps(result))
        return

    common.print_machine_info()
    data = Path(args.data or tempfile.mkdtemp(prefix="bench-seg-data-"))
    data.mkdir(parents=True, exist_ok=True)
    marker = data / f"scale-{args.scale}.done"
    t0 = time.perf_counter()
    if marker.exists():
        print(f"\nReusing the data in {data} (scale {args.scale})")
    else:
        sizes = generate(args.scale, data)
        marker.touch()
        print(f"\nGenerated {sizes} in {time.perf_counter() - t0:.1f} s (scale {args.scale})")
    print(f"load average: {os.getloadavg()}", flush=True)
    results: dict[str, dict[str, Any]] = {"duckdb": run_duckdb(data, args.repeat)}
    for backend in [b for b in args.backends.split(",") if b]:
        out = subprocess.run(
            [sys.executable, __file__, "--_child", backend, "--data", str(data),
             "--scale", str(args.scale), "--repeat", str(args.repeat)]
            + (["--keep-db"] if args.keep_db else []),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            print(f"{backend} failed:\n{out.stderr[-3000:]}")
            continue
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{backend} done; load average: {os.getloadavg()}", flush=True)
    if not args.data:
        shutil.rmtree(data, ignore_errors=True)

    backends = [b for b in ("sqlite", "postgresql") if b in results]
    print(
        "\nLoad (s): " + ", ".join(f"{b} {results[b]['load_s']:.1f}" for b in ["duckdb", *backends])
    )
    for b in backends:
        print(f"  {b}: " + ", ".join(f"{k} {v:.1f}" for k, v in results[b]["load"].items()))
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
        print(f"RFM on {b}: first computation {results[b]['rfm_s']:.2f} s for "
              f"{results[b]['rfm_customers']:,} scored customers; the next night (0.5% of "
              f"buyers ordered again) {results[b]['rfm_again_s']:.2f} s, "
              f"{results[b]['rfm_again_changed']:,} rows rewritten")  # fmt: skip
    if "postgresql" in results:
        worst = max(s["count_s"] for s in results["postgresql"]["segments"].values())
        ratio = max(results["postgresql"]["segments"][n]["count_s"]
                    / max(results["duckdb"]["segments"][n]["count_s"], 1e-6) for n in SEGMENTS)  # fmt: skip
        print(
            f"Goal (full size): every PostgreSQL count <= 1 s: worst {worst:.2f} s "
            f"({'PASS' if worst <= 1 else 'MISS'}); within 3x of DuckDB: worst {ratio:.1f}x "
            f"({'PASS' if ratio <= 3 else 'MISS'}); RFM <= 10 s: {results['postgresql']['rfm_s']:.1f} s first, "
            f"{results['postgresql']['rfm_again_s']:.1f} s nightly"
        )


if __name__ == "__main__":
    main()
