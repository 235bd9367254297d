"""Per-customer aggregates: one fold over events, used both incrementally (as events arrive)
and to rebuild from the log, so the two cannot disagree."""

from __future__ import annotations

import datetime as dt
import json
import operator
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction

from yutang.core import bulk
from yutang.core.db import AGGREGATE_WRITES, lock_brand, pipeline
from yutang.events.models import CustomerAggregate, Event

TOUCH_WINDOW_DAYS = 30
AGGREGATE_FIELDS = [
    "first_order_at",
    "last_order_at",
    "order_count",
    "paid_fen",
    "refunded_fen",
    "last_contact_added_at",
    "last_contact_deleted_at",
    "last_inbound_at",
    "last_click_at",
    "last_touch_at",
    "touch_count",
    "touches_by_day",
    "event_count",
    "last_event_at",
]
#: Columns of the upsert, in order (aggregate fields by their kind of value).
COLUMNS = [
    ("customer_id", "int"),
    ("brand_id", "int"),
    *(
        (name, "json" if name == "touches_by_day" else "time" if name.endswith("_at") else "int")
        for name in AGGREGATE_FIELDS
    ),
]
TIME_FIELDS = {
    "contact.added": "last_contact_added_at",
    "contact.deleted": "last_contact_deleted_at",
    "message.received": "last_inbound_at",
    "link.clicked": "last_click_at",
}


def _later(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    return b if a is None or b > a else a


def _earlier(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    return b if a is None or b < a else a


class _Figures:
    """A batch's figures for one customer: the fields of CustomerAggregate, without the
    cost of a model instance."""

    __slots__ = ("customer_id", "brand_id", *AGGREGATE_FIELDS)

    def __init__(self, customer_id: int, brand_id: int) -> None:
        # Spelled out (a loop of setattr over AGGREGATE_FIELDS cost more than the fold).
        self.customer_id, self.brand_id = customer_id, brand_id
        self.first_order_at = self.last_order_at = None
        self.order_count = self.paid_fen = self.refunded_fen = 0
        self.last_contact_added_at = self.last_contact_deleted_at = None
        self.last_inbound_at = self.last_click_at = self.last_touch_at = None
        self.touch_count = 0
        self.touches_by_day: dict[str, int] = {}
        self.event_count = 0
        self.last_event_at = None


#: A _Figures' row for the upsert, in COLUMNS order.
_row = operator.attrgetter("customer_id", "brand_id", *AGGREGATE_FIELDS)


def _blank(customer_id: int, brand_id: int) -> Any:
    return _Figures(customer_id, brand_id)


def fold(agg: CustomerAggregate, event: Event, tz: zoneinfo.ZoneInfo) -> None:
    """Add one event to an aggregate. Order-independent: sums, minima and maxima only."""
    _fold(agg, event.type, event.occurred_at, event.properties, tz)


def _fold(
    agg: Any, kind: str, at: dt.datetime, properties: dict[str, Any], tz: zoneinfo.ZoneInfo
) -> None:
    agg.event_count += 1
    agg.last_event_at = _later(agg.last_event_at, at)
    if kind == "order.paid":
        agg.order_count += 1
        agg.paid_fen += int(properties.get("amount_fen", 0))
        agg.first_order_at = _earlier(agg.first_order_at, at)
        agg.last_order_at = _later(agg.last_order_at, at)
    elif kind == "order.refunded":
        agg.refunded_fen += int(properties.get("amount_fen", 0))
    elif kind == "message.sent":
        agg.touch_count += 1
        agg.last_touch_at = _later(agg.last_touch_at, at)
        day = at.astimezone(tz).date().isoformat()
        days = agg.touches_by_day
        if not days:  # the first touch (always so for a batch's first touch of a customer)
            agg.touches_by_day = {day: 1}
        elif day in days:  # a day kept is within the window, and the newest day stays
            agg.touches_by_day = {**days, day: days[day] + 1}
        else:
            agg.touches_by_day = _merge_days(days, {day: 1})
    elif kind in TIME_FIELDS:
        setattr(agg, TIME_FIELDS[kind], _later(getattr(agg, TIME_FIELDS[kind]), at))


def _merge_days(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Two per-day touch counts added up, kept to the TOUCH_WINDOW_DAYS days up to the
    latest (the same result whatever order the touches came in)."""
    days = dict(a)
    for day, n in b.items():
        days[day] = days.get(day, 0) + n
    if not days:
        return days
    newest = dt.date.fromisoformat(max(days))
    oldest_kept = (newest - dt.timedelta(days=TOUCH_WINDOW_DAYS - 1)).isoformat()
    return {d: n for d, n in sorted(days.items()) if d >= oldest_kept}


def touches_in_last(agg: CustomerAggregate, days: int, today: dt.date) -> int:
    """Touches on the `days` calendar days ending today (brand time zone)."""
    first = (today - dt.timedelta(days=days - 1)).isoformat()
    last = today.isoformat()
    return sum(n for d, n in agg.touches_by_day.items() if first <= d <= last)


#: How each aggregate field combines a batch's figures with the stored ones.
COMBINE = {
    "first_order_at": "min",
    "last_order_at": "max",
    "order_count": "add",
    "paid_fen": "add",
    "refunded_fen": "add",
    "last_contact_added_at": "max",
    "last_contact_deleted_at": "max",
    "last_inbound_at": "max",
    "last_click_at": "max",
    "last_touch_at": "max",
    "touch_count": "add",
    "touches_by_day": "replace_json_unless_empty",  # merged under a row lock, see write_figures
    "event_count": "add",
    "last_event_at": "max",
}

#: One event as the aggregates see it: (customer id, type, occurred_at, properties).
Fact = tuple[int, str, dt.datetime, dict[str, Any]]


def apply_events(events: Sequence[Event], tz: zoneinfo.ZoneInfo) -> None:
    """Fold freshly stored events into their customers' aggregates (see `apply_facts`)."""
    if events:
        apply_facts(
            events[0].brand_id,
            [(e.customer_id, e.type, e.occurred_at, e.properties) for e in events],
            tz,
        )


def apply_facts(brand_id: int, facts: Iterable[Fact], tz: zoneinfo.ZoneInfo) -> None:
    """Fold freshly stored events into their customers' aggregates without reading them:
    `fold_facts`, then `write_figures`."""
    write_figures(brand_id, fold_facts(brand_id, facts, tz))


#: A batch's figures per customer (see `fold_facts`).
Figures = dict[int, Any]


def fold_facts(brand_id: int, facts: Iterable[Fact], tz: zoneinfo.ZoneInfo) -> Figures:
    """Each customer's figures for these events alone, folded in memory (the same `fold` a
    rebuild uses). Reads and writes nothing: ingestion folds a batch before it takes the
    brand's aggregate lock, which then covers only `write_figures`."""
    by_customer: dict[int, Any] = {}
    for customer_id, kind, at, properties in facts:
        agg = by_customer.get(customer_id)
        if agg is None:
            agg = by_customer[customer_id] = _blank(customer_id, brand_id)
        _fold(agg, kind, at, properties, tz)
    return by_customer


def write_figures(brand_id: int, by_customer: Figures) -> None:
    """Combine a batch's figures (`fold_facts`) with the stored rows in one multi-row upsert
    (counts add up, first times take the minimum, last times the maximum, in SQL). Only the
    per-day touch counts need the stored value: those rows (customers touched in this batch)
    are read under a row lock and merged here. The read and the upsert are two statements,
    so concurrent writers of one brand are serialised from here to their commit: this takes
    the brand's AGGREGATE_WRITES lock (in the read's round trip). Inside a caller's
    transaction it adds no savepoint of its own (two round trips): an error rolls back the
    caller's transaction."""
    if not by_customer:
        return
    with transaction.atomic(savepoint=False):
        touched = sorted(c for c, agg in by_customer.items() if agg.touches_by_day)
        stored: list[tuple[Any, ...]] = []
        with pipeline():
            lock_brand(brand_id, AGGREGATE_WRITES)
            if touched:
                stored = bulk.lookup(
                    CustomerAggregate._meta.db_table,
                    ["customer_id", "touches_by_day"],
                    where={},
                    key="customer_id",
                    values=touched,
                    for_update=True,
                    binary=True,
                )
        for customer_id, days in stored:
            if isinstance(days, str):  # SQLite hands JSON back as text
                days = json.loads(days)
            agg = by_customer[customer_id]
            agg.touches_by_day = _merge_days(days, agg.touches_by_day)
        bulk.upsert_combining(
            CustomerAggregate._meta.db_table,
            COLUMNS,
            [_row(agg) for agg in by_customer.values()],
            conflict="customer_id",
            combine=COMBINE,
            staged=True,
            binary=True,
        )


def write(rows: Sequence[CustomerAggregate]) -> None:
    """Insert or overwrite these aggregate rows in one multi-row upsert (INSERT … ON CONFLICT
    DO UPDATE). Django's bulk_update measured slower than per-row UPDATEs (its CASE
    expressions cost more than the round trips they save); an upsert costs neither."""
    bulk.insert_rows(
        CustomerAggregate._meta.db_table,
        COLUMNS,
        [
            (agg.customer_id, agg.brand_id, *(getattr(agg, name) for name in AGGREGATE_FIELDS))
            for agg in rows
        ],
        conflict="customer_id",
        update=AGGREGATE_FIELDS,
    )


def recompute(customer_ids: Iterable[int], tz: zoneinfo.ZoneInfo, brand_id: int) -> None:
    """Rebuild these customers' aggregates from the log."""
    ids = sorted(set(customer_ids))
    with transaction.atomic():
        CustomerAggregate.objects.filter(customer_id__in=ids).delete()
        fresh: dict[int, CustomerAggregate] = {}
        for event in (
            Event.objects.filter(customer_id__in=ids).order_by("id").iterator(chunk_size=2000)
        ):
            agg = fresh.setdefault(
                event.customer_id,
                CustomerAggregate(customer_id=event.customer_id, brand_id=brand_id),
            )
            fold(agg, event, tz)
        CustomerAggregate.objects.bulk_create(fresh.values())


def as_dict(agg: CustomerAggregate | None) -> dict[str, Any]:
    fields = [f.name for f in CustomerAggregate._meta.fields if f.name not in ("customer", "brand")]
    if agg is None:
        return {}
    return {name: getattr(agg, name) for name in fields}
