"""The operations overview: pool, adds, deletions, first orders, repurchase, GMV — computed from
the event log with a fixed number of aggregate queries, in the brand's time zone, within the
caller's scope. Every figure is defined in docs/metrics.md; this module is that document in
code.

Queries (whatever the period or the data size):

1. contacts: every contact event up to the period end, each with the previous event of the same
   contact (a window ``LAG``), summed per bucket and carrier into adds, re-adds, deletions and
   removals — the pool at any moment is the running sum of those transitions;
2. people in the pool at the period end (a window ``LEAD``: the contact's last event);
3. new people of the period (first ``contact.added`` ever) and whether they paid within 72 hours;
4. orders, GMV, refunds, buyers, repeat buyers and messages per bucket;
5. the same for the whole period (distinct buyers do not add up across buckets);
6. orders by source.

Plus the lookups of the caller's stores and of the store filter."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import connection
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    DateField,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    TextField,
    Value,
    When,
    Window,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Lag, Lead, Trunc

from yutang.analytics.sections import Section, SectionContext, build_sections
from yutang.core import clock
from yutang.core.errors import N_, NotFound, ValidationFailed
from yutang.core.models import Brand, Staff, Store
from yutang.core.permissions import Action, Scope, require
from yutang.customers.models import Customer
from yutang.events.models import Event

Granularity = Literal["day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "week", "month")

ADDED, DELETED, REMOVED = "contact.added", "contact.deleted", "contact.removed"
PAID, REFUNDED, SENT = "order.paid", "order.refunded", "message.sent"
FIRST_ORDER_WINDOW = dt.timedelta(hours=72)
#: Most buckets a series may have (a year by day is 366).
MAX_BUCKETS = 400
#: Longest period: ten years, by month.
MAX_DAYS = 3660


@dataclass(frozen=True)
class Ratio:
    """A rate with the two counts it comes from; ``rate`` is None when nothing is counted."""

    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


@dataclass
class Figures:
    """The figures of one bucket of the series, or of the whole period."""

    start: dt.date
    end: dt.date  # inclusive
    contacts_opening: int = 0
    contacts_held: int = 0  # at the end
    gross_adds: int = 0
    re_adds: int = 0
    deletions: int = 0
    removals: int = 0
    new_people: int = 0
    first_order_cohort: int = 0  # new people whose 72 hours have passed
    first_orders_3d: int = 0  # of those, who paid within the 72 hours
    first_order_pending: int = 0  # new people still inside their 72 hours
    buyers: int = 0
    repeat_buyers: int = 0
    orders: int = 0
    gmv_fen: int = 0
    refunds_fen: int = 0
    messages_sent: int = 0
    marketing_sent: int = 0

    @property
    def net_growth(self) -> int:
        return self.gross_adds - self.deletions - self.removals

    @property
    def deletion_rate(self) -> Ratio:
        return Ratio(self.deletions, self.contacts_opening + self.gross_adds)

    @property
    def first_order_rate(self) -> Ratio:
        return Ratio(self.first_orders_3d, self.first_order_cohort)

    @property
    def repurchase_rate(self) -> Ratio:
        return Ratio(self.repeat_buyers, self.buyers)

    @property
    def net_gmv_fen(self) -> int:
        return self.gmv_fen - self.refunds_fen

    @property
    def marketing_share(self) -> Ratio:
        return Ratio(self.marketing_sent, self.messages_sent)


@dataclass
class CarrierPool:
    carrier: str
    opening: int = 0
    gross_adds: int = 0
    deletions: int = 0
    removals: int = 0

    @property
    def closing(self) -> int:
        return self.opening + self.gross_adds - self.deletions - self.removals

    @property
    def deletion_rate(self) -> Ratio:
        return Ratio(self.deletions, self.opening + self.gross_adds)


@dataclass
class SourceRow:
    source: str
    orders: int
    buyers: int
    gmv_fen: int


@dataclass
class Overview:
    brand: Brand
    start: dt.date
    end: dt.date
    granularity: Granularity
    store: Store | None
    channel: str | None
    as_of: dt.datetime
    totals: Figures
    people_held: int
    carriers: list[CarrierPool]
    sources: list[SourceRow]
    series: list[Figures]
    sections: list[Section] = field(default_factory=list)

    @property
    def gmv_per_contact_fen(self) -> int | None:
        held = self.totals.contacts_held
        return round(self.totals.gmv_fen / held) if held else None


# --- Period and scope ---------------------------------------------------------------------------


def default_granularity(start: dt.date, end: dt.date) -> Granularity:
    days = (end - start).days + 1
    return "day" if days <= 62 else "week" if days <= 190 else "month"


def bucket_start(day: dt.date, granularity: Granularity) -> dt.date:
    if granularity == "day":
        return day
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())  # ISO weeks start on Monday
    return day.replace(day=1)


def _next_bucket(day: dt.date, granularity: Granularity) -> dt.date:
    if granularity == "day":
        return day + dt.timedelta(days=1)
    if granularity == "week":
        return day + dt.timedelta(days=7)
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def bucket_starts(start: dt.date, end: dt.date, granularity: Granularity) -> list[dt.date]:
    starts, day = [], bucket_start(start, granularity)
    while day <= end:
        starts.append(day)
        day = _next_bucket(day, granularity)
    return starts


def _check_period(start: Any, end: Any, granularity: Any) -> Granularity:
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise ValidationFailed(
                N_("{name} must be a date (YYYY-MM-DD)."), params={"name": name}, field=name
            )
    if end < start:
        raise ValidationFailed(N_("The period ends before it starts."), field="end")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailed(
            N_("The period is longer than {MAX_DAYS} days."),
            params={"MAX_DAYS": MAX_DAYS},
            field="end",
        )
    if granularity is None:
        granularity = default_granularity(start, end)
    if granularity not in GRANULARITIES:
        raise ValidationFailed(N_("granularity must be day, week or month."), field="granularity")
    if len(bucket_starts(start, end, granularity)) > MAX_BUCKETS:
        raise ValidationFailed(
            N_(
                "Too many {granularity}s for one chart (at most {MAX_BUCKETS}); "
                "choose a coarser granularity."
            ),
            params={"granularity": granularity, "MAX_BUCKETS": MAX_BUCKETS},
            field="granularity",
        )
    return granularity


def _midnight(day: dt.date, brand: Brand) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=brand.tz).astimezone(dt.UTC)


@dataclass(frozen=True)
class _Scope:
    brand: Brand
    store: Store | None
    channel: str | None
    store_ids: list[int] | None  # None: every store of the brand (and customers without one)

    def event_q(self) -> Q:
        q = Q(brand_id=self.brand.pk)
        if self.store_ids is not None:
            q &= Q(customer__owner_store_id__in=self.store_ids)
        if self.store is not None:
            q &= Q(customer__owner_store_id=self.store.pk)
        if self.channel is not None:
            q &= Q(customer__source_channel=self.channel)
        return q

    def customers(self) -> QuerySet[Customer]:
        qs = Customer.objects.filter(brand_id=self.brand.pk, merged_into__isnull=True)
        if self.store_ids is not None:
            qs = qs.filter(owner_store_id__in=self.store_ids)
        if self.store is not None:
            qs = qs.filter(owner_store_id=self.store.pk)
        if self.channel is not None:
            qs = qs.filter(source_channel=self.channel)
        return qs


def _scope(
    actor: Staff | None, brand: Brand | None, store: Store | str | int | None, channel: str | None
) -> _Scope:
    """Brand-wide roles see every customer of the brand *in aggregate* — franchise stores'
    customers included, as docs/permissions.md allows — and store roles their stores' only.
    ``actor=None`` is the command line, acting for the whole ``brand``."""
    store_ids: list[int] | None = None
    if actor is not None:
        scope = require(actor, Action.ANALYTICS_VIEW)
        brand = actor.brand
        if scope is not Scope.BRAND:
            store_ids = actor.store_ids
    if brand is None:
        raise ValidationFailed(N_("Say which brand."), field="brand")
    found: Store | None = None
    if store is not None and store != "":
        stores = (
            Store.objects.for_actor(actor, Action.STORE_VIEW)
            if actor is not None
            else Store.objects.filter(brand=brand)
        )
        if isinstance(store, Store):
            found = stores.filter(pk=store.pk).first()
        elif isinstance(store, int) or (isinstance(store, str) and store.isdigit()):
            found = stores.filter(Q(pk=int(store)) | Q(code=str(store))).order_by("pk").first()
        else:
            found = stores.filter(code=store).first()
        if found is None:
            raise NotFound(N_("No such store: {store}."), params={"store": store}, field="store")
    if channel is not None:
        channel = channel.strip()
        if len(channel) > 64:
            raise ValidationFailed(N_("channel is at most 64 characters."), field="channel")
        channel = channel or None
    return _Scope(brand=brand, store=found, channel=channel, store_ids=store_ids)


# --- Queries ------------------------------------------------------------------------------------


class LocalBucket(Trunc):
    """The local day, week (from Monday) or month an instant falls in.

    On SQLite, Django truncates time-zone-aware values in a Python function called once per
    row (~60 µs each: 60 s for a million events). When the brand's UTC offset is the same on
    every day of the period (Asia/Shanghai always is), SQLite's own date functions with that
    fixed offset give the same dates about ten times faster; otherwise (daylight saving time)
    the exact Django function is used. PostgreSQL always uses its own time-zone conversion."""

    def __init__(self, granularity: Granularity, brand: Brand, start: dt.date, end: dt.date):
        super().__init__("occurred_at", granularity, output_field=DateField(), tzinfo=brand.tz)
        self.fixed_offset_minutes = _fixed_offset_minutes(brand, start, end)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        if self.fixed_offset_minutes is None:
            return self.as_sql(compiler, connection)
        sql, params = compiler.compile(self.lhs)
        shift = f"'{self.fixed_offset_minutes:+d} minutes'"  # an int: nothing to escape
        if self.kind == "day":
            return f"date({sql}, {shift})", params
        if self.kind == "week":
            return f"date({sql}, {shift}, '-6 days', 'weekday 1')", params
        return f"strftime('%%Y-%%m-01', {sql}, {shift})", params


def _fixed_offset_minutes(brand: Brand, start: dt.date, end: dt.date) -> int | None:
    offsets = {
        _midnight(start + dt.timedelta(days=n), brand).astimezone(brand.tz).utcoffset()
        for n in range(0, (end - start).days + 2)
    }
    if len(offsets) != 1:
        return None
    (offset,) = offsets
    assert offset is not None
    return int(offset.total_seconds() // 60)


def _bucket(granularity: Granularity, brand: Brand, start: dt.date, end: dt.date) -> Trunc:
    return LocalBucket(granularity, brand, start, end)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):  # PostgreSQL's date_trunc, read without converters
        return value.date()
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _run(sql: str, params: Any) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _contact_events(scope: _Scope, end_at: dt.datetime) -> QuerySet[Event]:
    """Every contact event up to the end, keyed by its contact: (customer, carrier, account)."""
    return (
        Event.objects.filter(scope.event_q(), type__in=[ADDED, DELETED, REMOVED])
        .filter(occurred_at__lt=end_at)
        .annotate(
            carrier=Coalesce(KT("properties__carrier"), Value(""), output_field=TextField()),
            account=Coalesce(KT("properties__account_id"), Value(""), output_field=TextField()),
        )
        .order_by()
    )


def _contact_window() -> dict[str, Any]:
    return {
        "partition_by": [F("customer_id"), F("carrier"), F("account")],
        "order_by": [F("occurred_at").asc(), F("id").asc()],
    }


def _contact_transitions(
    scope: _Scope,
    start_at: dt.datetime,
    end_at: dt.datetime,
    granularity: Granularity,
    period: tuple[dt.date, dt.date],
) -> list[tuple[dt.date | None, str, int, int, int, int]]:
    """(bucket or None for before the period, carrier, adds, re-adds, deletions, removals).

    A contact is held after an add and not held after a deletion or removal; only changes of
    that state count, so a repeated add of a held contact, or a deletion of a contact the log
    never saw added, changes nothing."""
    inner = (
        _contact_events(scope, end_at)
        .annotate(
            prev=Window(Lag("type"), **_contact_window()),
            bucket=Case(
                When(occurred_at__lt=start_at, then=Value(None, output_field=DateField())),
                default=_bucket(granularity, scope.brand, *period),
                output_field=DateField(),
            ),
        )
        .values("type", "prev", "carrier", "bucket")
    )
    sql, params = inner.query.sql_with_params()
    is_add = f"t.type = '{ADDED}' AND (t.prev IS NULL OR t.prev <> '{ADDED}')"
    rows = _run(
        f"""SELECT t.bucket, t.carrier,
            SUM(CASE WHEN {is_add} THEN 1 ELSE 0 END),
            SUM(CASE WHEN {is_add} AND t.prev IS NOT NULL THEN 1 ELSE 0 END),
            SUM(CASE WHEN t.type = '{DELETED}' AND t.prev = '{ADDED}' THEN 1 ELSE 0 END),
            SUM(CASE WHEN t.type = '{REMOVED}' AND t.prev = '{ADDED}' THEN 1 ELSE 0 END)
        FROM ({sql}) t GROUP BY t.bucket, t.carrier""",  # noqa: S608 - constants and Django's SQL
        params,
    )
    return [(_as_date(b), c, int(a), int(r), int(d), int(m)) for b, c, a, r, d, m in rows]


def _people_held(scope: _Scope, end_at: dt.datetime) -> int:
    """People with at least one contact whose last event before the end is an add."""
    inner = (
        _contact_events(scope, end_at)
        .annotate(next=Window(Lead("type"), **_contact_window()))
        .values("customer_id", "type", "next")
    )
    sql, params = inner.query.sql_with_params()
    rows = _run(
        f"""SELECT COUNT(DISTINCT t.customer_id) FROM ({sql}) t
        WHERE t.next IS NULL AND t.type = '{ADDED}'""",  # noqa: S608
        params,
    )
    return int(rows[0][0] or 0)


def _new_people(
    scope: _Scope,
    start_at: dt.datetime,
    end_at: dt.datetime,
    granularity: Granularity,
    as_of: dt.datetime,
    period: tuple[dt.date, dt.date],
) -> list[dict[str, Any]]:
    """Per bucket: people first added in it, and of those whose 72 hours are over, who paid."""
    earlier_add = Event.objects.filter(customer_id=OuterRef("customer_id"), type=ADDED).filter(
        Q(occurred_at__lt=OuterRef("occurred_at"))
        | Q(occurred_at=OuterRef("occurred_at"), id__lt=OuterRef("id"))
    )
    paid_in_window = Event.objects.filter(
        customer_id=OuterRef("customer_id"),
        type=PAID,
        occurred_at__gte=OuterRef("occurred_at"),
        occurred_at__lte=ExpressionWrapper(
            OuterRef("occurred_at") + Value(FIRST_ORDER_WINDOW), output_field=DateTimeField()
        ),
    )
    matured = Q(occurred_at__lte=as_of - FIRST_ORDER_WINDOW)
    return list(
        Event.objects.filter(scope.event_q(), type=ADDED)
        .filter(occurred_at__gte=start_at, occurred_at__lt=end_at)
        .annotate(is_repeat=Exists(earlier_add))
        .filter(is_repeat=False)
        .annotate(
            converted=Exists(paid_in_window), bucket=_bucket(granularity, scope.brand, *period)
        )
        .order_by()
        .values("bucket")
        .annotate(
            people=Count("id"),
            cohort=Count("id", filter=matured),
            converted_count=Count("id", filter=matured & Q(converted=True)),
        )
    )


def _order_events(scope: _Scope, start_at: dt.datetime, end_at: dt.datetime) -> QuerySet[Event]:
    earlier_order = Event.objects.filter(customer_id=OuterRef("customer_id"), type=PAID).filter(
        Q(occurred_at__lt=OuterRef("occurred_at"))
        | Q(occurred_at=OuterRef("occurred_at"), id__lt=OuterRef("id"))
    )
    return (
        Event.objects.filter(scope.event_q(), type__in=[PAID, REFUNDED, SENT])
        .filter(occurred_at__gte=start_at, occurred_at__lt=end_at)
        .annotate(
            amount=Cast(KT("properties__amount_fen"), BigIntegerField()),
            message_kind=Cast(KT("properties__kind"), TextField()),
            is_repeat=Case(
                When(type=PAID, then=Exists(earlier_order)),
                default=Value(False),
                output_field=BooleanField(),
            ),
        )
        .order_by()
    )


def _order_figures() -> dict[str, Any]:
    paid = Q(type=PAID)
    return {
        "orders": Count("id", filter=paid),
        "gmv": Sum("amount", filter=paid),
        "refunds": Sum("amount", filter=Q(type=REFUNDED)),
        "buyers": Count("customer_id", filter=paid, distinct=True),
        "repeat_buyers": Count("customer_id", filter=paid & Q(is_repeat=True), distinct=True),
        "sent": Count("id", filter=Q(type=SENT)),
        "marketing": Count("id", filter=Q(type=SENT, message_kind="marketing")),
    }


def _apply_orders(figures: Figures, row: dict[str, Any]) -> None:
    figures.orders = row["orders"] or 0
    figures.gmv_fen = int(row["gmv"] or 0)
    figures.refunds_fen = int(row["refunds"] or 0)
    figures.buyers = row["buyers"] or 0
    figures.repeat_buyers = row["repeat_buyers"] or 0
    figures.messages_sent = row["sent"] or 0
    figures.marketing_sent = row["marketing"] or 0


# --- The overview -------------------------------------------------------------------------------


def overview(
    *,
    actor: Staff | None,
    start: dt.date,
    end: dt.date,
    store: Store | str | int | None = None,
    channel: str | None = None,
    granularity: Granularity | None = None,
    brand: Brand | None = None,
    with_sections: bool = True,
) -> Overview:
    """The operations overview for the days ``start``..``end`` (inclusive, in the brand's time
    zone), for the actor's scope, optionally one store (id or code) and one first-touch
    channel. ``actor=None`` (the command line) needs ``brand`` and sees the whole brand."""
    chosen = _check_period(start, end, granularity)
    scope = _scope(actor, brand, store, channel)
    tz_brand = scope.brand
    start_at, end_at = _midnight(start, tz_brand), _midnight(end + dt.timedelta(days=1), tz_brand)
    as_of = clock.now()

    starts = bucket_starts(start, end, chosen)
    series = [
        Figures(start=max(s, start), end=min(_next_bucket(s, chosen) - dt.timedelta(days=1), end))
        for s in starts
    ]
    by_start = dict(zip(starts, series, strict=True))
    totals = Figures(start=start, end=end)

    carriers: dict[str, CarrierPool] = {}
    for bucket, carrier, adds, re_adds, deletions, removals in _contact_transitions(
        scope, start_at, end_at, chosen, (start, end)
    ):
        pool = carriers.setdefault(carrier, CarrierPool(carrier))
        net = adds - deletions - removals
        if bucket is None:
            pool.opening += net
            continue
        pool.gross_adds += adds
        pool.deletions += deletions
        pool.removals += removals
        figures = by_start[bucket]
        figures.gross_adds += adds
        figures.re_adds += re_adds
        figures.deletions += deletions
        figures.removals += removals
        totals.gross_adds += adds
        totals.re_adds += re_adds
        totals.deletions += deletions
        totals.removals += removals
    held = sum(p.opening for p in carriers.values())
    totals.contacts_opening = held
    for figures in series:
        figures.contacts_opening = held
        held += figures.net_growth
        figures.contacts_held = held
    totals.contacts_held = held

    for row in _new_people(scope, start_at, end_at, chosen, as_of, (start, end)):
        figures = by_start[_as_date(row["bucket"])]  # type: ignore[index]
        for target in (figures, totals):
            target.new_people += row["people"]
            target.first_order_cohort += row["cohort"]
            target.first_orders_3d += row["converted_count"]
            target.first_order_pending += row["people"] - row["cohort"]

    orders = _order_events(scope, start_at, end_at)
    for row in (
        orders.annotate(bucket=_bucket(chosen, tz_brand, start, end))
        .values("bucket")
        .annotate(**_order_figures())
    ):
        _apply_orders(by_start[_as_date(row["bucket"])], row)  # type: ignore[index]
    _apply_orders(totals, orders.aggregate(**_order_figures()))
    sources = [
        SourceRow(
            source=row["order_source"] or "",
            orders=row["orders"],
            buyers=row["buyers"],
            gmv_fen=int(row["gmv"] or 0),
        )
        for row in orders.filter(type=PAID)
        .values(order_source=KT("properties__source"))
        .annotate(orders=Count("id"), buyers=Count("customer_id", distinct=True), gmv=Sum("amount"))
        .order_by("-gmv", "order_source")
    ]

    result = Overview(
        brand=tz_brand,
        start=start,
        end=end,
        granularity=chosen,
        store=scope.store,
        channel=scope.channel,
        as_of=as_of,
        totals=totals,
        people_held=_people_held(scope, end_at),
        carriers=sorted(carriers.values(), key=lambda p: (-p.closing, p.carrier)),
        sources=sources,
        series=series,
    )
    if with_sections:
        result.sections = build_sections(
            SectionContext(
                actor=actor,
                brand=tz_brand,
                start=start,
                end=end,
                start_at=start_at,
                end_at=end_at,
                store=scope.store,
                channel=scope.channel,
                customers=scope.customers(),
            )
        )
    return result


def channel_choices(*, actor: Staff) -> list[str]:
    """The first-touch channels of the customers in the actor's scope, for the filter."""
    scope = _scope(actor, None, None, None)
    return list(
        scope.customers()
        .exclude(source_channel="")
        .order_by("source_channel")
        .values_list("source_channel", flat=True)
        .distinct()[:200]
    )
