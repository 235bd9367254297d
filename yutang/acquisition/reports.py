"""Channel economics: per channel and per cohort of contacts it brought, from reach to first
order and GMV, against what the channel cost. Read-only; the REST API, the console charts,
the CLI export and the tests all read the same numbers from `channel_report`.

Definitions (docs/acquisition.md explains them for people):

- cohort: customers whose *first touch* (first add through any channel) came through the
  channel, with the add's local date in the period;
- reached: reach recorded for the channel with a date in the period;
- added: size of the cohort; add rate = added ÷ reached;
- deleted within N days: cohort customers with a `contact.deleted` event within N days after
  their add; kept after 30 days = added − deleted within 30 days;
- first order within N days: cohort customers with a paid order within N days after the add;
- GMV at N days: paid amount minus refunds of the cohort's orders paid within N days;
- cost: fixed costs dated in the period + cost per reach × reached + cost per added
  contact × added + CPA × (added, or activated within the attribution window) + CPS ×
  GMV within the attribution window (rounded down to the fen);
- cost per added / kept contact = cost ÷ added / kept (rounded to the fen);
- ROI (投产比) = GMV at 180 days ÷ cost;
- LTV/CAC = mean predicted lifetime value of the cohort ÷ cost per added contact, once a
  lifetime-value provider is registered (`register_ltv_provider`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Sum

from yutang.acquisition.models import Channel, ChannelCost, ContactAdd, CpaEvent, ReachRecord
from yutang.core.errors import N_, ValidationFailed
from yutang.core.models import Brand, Staff
from yutang.core.permissions import Action

#: A lifetime-value provider: (brand, customer ids) -> {customer id: predicted LTV in fen}.
LtvProvider = Callable[[Brand, Sequence[int]], dict[int, int]]
_ltv_providers: list[LtvProvider] = []


def register_ltv_provider(provider: LtvProvider) -> None:
    """Called by the lifetime-value issue's AppConfig.ready (a higher floor fills it in)."""
    if provider not in _ltv_providers:
        _ltv_providers.append(provider)


def unregister_ltv_provider(provider: LtvProvider) -> None:
    if provider in _ltv_providers:
        _ltv_providers.remove(provider)


DAY = dt.timedelta(days=1)
GRANULARITIES = ("none", "week", "month")
MAX_DAYS = 731


@dataclass
class Metrics:
    channel_id: int
    channel_code: str
    channel_name: str
    cohort: str
    reached: int = 0
    added: int = 0
    add_rate: float | None = None
    deleted_7d: int = 0
    deleted_30d: int = 0
    kept_30d: int = 0
    first_order_3d: int = 0
    first_order_30d: int = 0
    gmv_30d_fen: int = 0
    gmv_90d_fen: int = 0
    gmv_180d_fen: int = 0
    cost_fen: int = 0
    cost_per_added_fen: int | None = None
    cost_per_kept_fen: int | None = None
    roi: float | None = None
    ltv_cac: float | None = None


@dataclass
class ChannelReport:
    date_from: dt.date
    date_to: dt.date
    rows: list[Metrics]
    cohorts: list[Metrics]
    days: list[str] = field(default_factory=list)
    adds_by_day: dict[str, list[int]] = field(default_factory=dict)
    deletions_by_day: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "date_from": self.date_from.isoformat(),
            "date_to": self.date_to.isoformat(),
            "rows": [asdict(r) for r in self.rows],
            "cohorts": [asdict(r) for r in self.cohorts],
            "days": self.days,
            "adds_by_day": self.adds_by_day,
            "deletions_by_day": self.deletions_by_day,
        }


@dataclass
class _Member:
    customer_id: int
    added_at: dt.datetime
    local_date: dt.date


def _cohort_key(day: dt.date, granularity: str) -> str:
    if granularity == "week":
        monday = day - dt.timedelta(days=day.weekday())
        return monday.isoformat()
    if granularity == "month":
        return day.strftime("%Y-%m")
    return "all"


def _ratio(numerator: int, denominator: int) -> int | None:
    return round(numerator / denominator) if denominator else None


def _metrics(
    channel: Channel,
    cohort: str,
    members: list[_Member],
    *,
    reached: int,
    fixed_cost: int,
    orders: dict[int, list[tuple[dt.datetime, int]]],
    deletions: dict[int, list[dt.datetime]],
    brand: Brand,
) -> Metrics:
    m = Metrics(
        channel_id=channel.pk, channel_code=channel.code, channel_name=channel.name,
        cohort=cohort, reached=reached, added=len(members),
    )  # fmt: skip
    m.add_rate = round(m.added / reached, 4) if reached else None
    window = dt.timedelta(days=channel.attribution_window_days)
    activated = 0
    gmv_window = 0
    for member in members:
        start = member.added_at
        gone = [d for d in deletions.get(member.customer_id, []) if d >= start]
        if any(d < start + 7 * DAY for d in gone):
            m.deleted_7d += 1
        if any(d < start + 30 * DAY for d in gone):
            m.deleted_30d += 1
        paid = [(at, net) for at, net in orders.get(member.customer_id, []) if at >= start]
        if any(at < start + 3 * DAY for at, _ in paid):
            m.first_order_3d += 1
        if any(at < start + 30 * DAY for at, _ in paid):
            m.first_order_30d += 1
        if any(at < start + window for at, _ in paid):
            activated += 1
        m.gmv_30d_fen += sum(net for at, net in paid if at < start + 30 * DAY)
        m.gmv_90d_fen += sum(net for at, net in paid if at < start + 90 * DAY)
        m.gmv_180d_fen += sum(net for at, net in paid if at < start + 180 * DAY)
        gmv_window += sum(net for at, net in paid if at < start + window)
    m.kept_30d = m.added - m.deleted_30d
    actions = m.added if channel.cpa_event == CpaEvent.ADDED else activated
    m.cost_fen = (
        fixed_cost
        + channel.cost_per_reach_fen * reached
        + channel.cost_per_add_fen * m.added
        + channel.cpa_fen * actions
        + gmv_window * channel.cps_bp // 10_000
    )
    m.cost_per_added_fen = _ratio(m.cost_fen, m.added)
    m.cost_per_kept_fen = _ratio(m.cost_fen, m.kept_30d)
    m.roi = round(m.gmv_180d_fen / m.cost_fen, 4) if m.cost_fen else None
    if _ltv_providers and members and m.cost_per_added_fen:
        values = _ltv_providers[-1](brand, [x.customer_id for x in members])
        if values:
            mean_ltv = sum(values.values()) / len(values)
            m.ltv_cac = round(mean_ltv / m.cost_per_added_fen, 4)
    return m


def channel_report(
    *,
    actor: Staff | None,
    brand: Brand | None = None,
    date_from: dt.date,
    date_to: dt.date,
    granularity: str = "none",
    channel_ids: Sequence[int] | None = None,
) -> ChannelReport:
    from yutang.commerce.models import Order
    from yutang.events.models import Event

    if not isinstance(date_from, dt.date) or not isinstance(date_to, dt.date):
        raise ValidationFailed(N_("Give the period as dates."), field="date_from")
    if date_to < date_from:
        raise ValidationFailed(N_("date_to is before date_from."), field="date_to")
    if (date_to - date_from).days >= MAX_DAYS:
        raise ValidationFailed(
            N_("A report covers at most {MAX_DAYS} days."),
            params={"MAX_DAYS": MAX_DAYS},
            field="date_to",
        )
    if granularity not in GRANULARITIES:
        raise ValidationFailed(N_("granularity is none, week or month."), field="granularity")
    if actor is not None:
        brand = actor.brand
        channels = Channel.objects.for_actor(actor, Action.CHANNEL_VIEW).order_by("code")
    elif brand is not None:  # the system itself (the CLI)
        channels = Channel.objects.filter(brand=brand).order_by("code")
    else:
        raise ValidationFailed(N_("Give an actor or a brand."), field="brand")
    tz = brand.tz
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(date_to + DAY, dt.time.min, tzinfo=tz)
    if channel_ids is not None:
        channels = channels.filter(pk__in=list(channel_ids))
    channels_list = list(channels)
    ids = [c.pk for c in channels_list]

    members: dict[int, list[_Member]] = defaultdict(list)
    for channel_id, customer_id, added_at in (
        ContactAdd.objects.filter(
            brand=brand, channel_id__in=ids, is_first_touch=True,
            added_at__gte=start, added_at__lt=end,
        )
        .order_by("added_at", "id")
        .values_list("channel_id", "customer_id", "added_at")
    ):  # fmt: skip
        members[channel_id].append(_Member(customer_id, added_at, added_at.astimezone(tz).date()))
    customer_ids = sorted({x.customer_id for group in members.values() for x in group})

    orders: dict[int, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for customer_id, paid_at, amount, refunded in (
        Order.objects.filter(brand=brand, customer_id__in=customer_ids)
        .order_by("paid_at")
        .values_list("customer_id", "paid_at", "amount_fen", "refunded_fen")
    ):
        orders[customer_id].append((paid_at, amount - refunded))
    deletions: dict[int, list[dt.datetime]] = defaultdict(list)
    for customer_id, occurred_at in Event.objects.filter(
        brand=brand, type="contact.deleted", customer_id__in=customer_ids
    ).values_list("customer_id", "occurred_at"):
        deletions[customer_id].append(occurred_at)

    reach: dict[tuple[int, str], int] = defaultdict(int)
    for channel_id, day, count in ReachRecord.objects.filter(
        channel_id__in=ids, date__gte=date_from, date__lte=date_to
    ).values_list("channel_id", "date", "count"):
        reach[(channel_id, _cohort_key(day, granularity))] += count
        if granularity != "none":
            reach[(channel_id, "all")] += count
    costs: dict[tuple[int, str], int] = defaultdict(int)
    for channel_id, day, amount in ChannelCost.objects.filter(
        channel_id__in=ids, date__gte=date_from, date__lte=date_to
    ).values_list("channel_id", "date", "amount_fen"):
        costs[(channel_id, _cohort_key(day, granularity))] += amount
        if granularity != "none":
            costs[(channel_id, "all")] += amount

    common = {"orders": orders, "deletions": deletions, "brand": brand}
    rows, cohorts = [], []
    for channel in channels_list:
        group = members.get(channel.pk, [])
        rows.append(
            _metrics(
                channel, "all", group, reached=reach[(channel.pk, "all")],
                fixed_cost=costs[(channel.pk, "all")], **common,  # type: ignore[arg-type]
            )
        )  # fmt: skip
        if granularity == "none":
            continue
        keys = sorted(
            {_cohort_key(x.local_date, granularity) for x in group}
            | {k for (cid, k) in reach if cid == channel.pk and k != "all"}
            | {k for (cid, k) in costs if cid == channel.pk and k != "all"}
        )
        for key in keys:
            subset = [x for x in group if _cohort_key(x.local_date, granularity) == key]
            cohorts.append(
                _metrics(
                    channel, key, subset, reached=reach[(channel.pk, key)],
                    fixed_cost=costs[(channel.pk, key)], **common,  # type: ignore[arg-type]
                )
            )  # fmt: skip

    days = [(date_from + n * DAY) for n in range((date_to - date_from).days + 1)]
    day_index = {d: n for n, d in enumerate(days)}
    adds_by_day = {c.code: [0] * len(days) for c in channels_list}
    deletions_by_day = {c.code: [0] * len(days) for c in channels_list}
    code_of = {c.pk: c.code for c in channels_list}
    first_channel: dict[int, str] = {}
    for channel_id, group in members.items():
        for x in group:
            adds_by_day[code_of[channel_id]][day_index[x.local_date]] += 1
            first_channel[x.customer_id] = code_of[channel_id]
    for customer_id, moments in deletions.items():
        for moment in moments:
            local = moment.astimezone(tz).date()
            if customer_id in first_channel and local in day_index:
                deletions_by_day[first_channel[customer_id]][day_index[local]] += 1
    return ChannelReport(
        date_from=date_from, date_to=date_to, rows=rows, cohorts=cohorts,
        days=[d.isoformat() for d in days], adds_by_day=adds_by_day,
        deletions_by_day=deletions_by_day,
    )  # fmt: skip


REPORT_COLUMNS = [
    ("channel_code", "channel"), ("channel_name", "name"), ("cohort", "cohort"),
    ("reached", "reached"), ("added", "added"), ("add_rate", "add_rate"),
    ("deleted_7d", "deleted_7d"), ("deleted_30d", "deleted_30d"), ("kept_30d", "kept_30d"),
    ("first_order_3d", "first_order_3d"), ("first_order_30d", "first_order_30d"),
    ("gmv_30d_fen", "gmv_30d_fen"), ("gmv_90d_fen", "gmv_90d_fen"),
    ("gmv_180d_fen", "gmv_180d_fen"), ("cost_fen", "cost_fen"),
    ("cost_per_added_fen", "cost_per_added_fen"), ("cost_per_kept_fen", "cost_per_kept_fen"),
    ("roi", "roi"), ("ltv_cac", "ltv_cac"),
]  # fmt: skip


def report_table(report: ChannelReport) -> list[list[Any]]:
    """Header plus one line per channel, then per cohort: what CSV and XLSX exports hold."""
    lines: list[list[Any]] = [[label for _, label in REPORT_COLUMNS]]
    for m in [*report.rows, *report.cohorts]:
        values = asdict(m)
        lines.append(["" if values[k] is None else values[k] for k, _ in REPORT_COLUMNS])
    return lines


def sparkline(*, actor: Staff, channel: Channel, days: int, until: dt.date) -> list[int]:
    """First-touch adds per day for the last `days` days up to `until` (channel list)."""
    report = channel_report(
        actor=actor, date_from=until - (days - 1) * DAY, date_to=until, channel_ids=[channel.pk]
    )
    return report.adds_by_day.get(channel.code, [])


def total_reach(channel: Channel) -> int:
    return int(ReachRecord.objects.filter(channel=channel).aggregate(n=Sum("count"))["n"] or 0)


def export_report(report: ChannelReport, fmt: str) -> bytes:
    """The report table as CSV (UTF-8 with BOM, so Excel opens Chinese names) or XLSX."""
    import csv
    import io

    table = report_table(report)
    if fmt == "csv":
        text = io.StringIO()
        csv.writer(text).writerows(table)
        return ("\ufeff" + text.getvalue()).encode()
    if fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "channels"
        for line in table:
            sheet.append(line)
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()
    raise ValidationFailed(N_("format is csv or xlsx."), field="format")
