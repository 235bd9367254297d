"""REST shapes of the overview, and the one function that turns an Overview into them: the API,
the console's charts and KPI cards, and the CSV/XLSX export all read this dict, so a number
can never differ between them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from yutang.analytics.sections import Section
from yutang.analytics.services import Figures, Overview, Ratio


class OverviewQuery(Schema):
    model_config = ConfigDict(populate_by_name=True)

    start: dt.date = Field(alias="from", description="First day (brand time zone), YYYY-MM-DD")
    end: dt.date = Field(alias="to", description="Last day, inclusive")
    store: str | None = Field(None, description="Store id or code", max_length=32)
    channel: str | None = Field(None, description="First-touch channel code", max_length=64)
    granularity: Literal["day", "week", "month"] | None = None


class ExportQuery(OverviewQuery):
    format: Literal["csv", "xlsx"] = "csv"
    table: Literal["kpis", "series", "carriers", "sources"] = Field(
        "kpis", description="CSV only: which table (XLSX has them all, one sheet each)"
    )


class RatioOut(Schema):
    numerator: int
    denominator: int
    rate: float | None


class FiguresOut(Schema):
    start: dt.date
    end: dt.date
    contacts_opening: int
    contacts_held: int
    gross_adds: int
    re_adds: int
    deletions: int
    removals: int
    net_growth: int
    deletion_rate: RatioOut
    new_people: int
    first_order_cohort: int
    first_orders_3d: int
    first_order_pending: int
    first_order_rate: RatioOut
    buyers: int
    repeat_buyers: int
    repurchase_rate: RatioOut
    orders: int
    gmv_fen: int
    refunds_fen: int
    net_gmv_fen: int
    messages_sent: int
    marketing_sent: int
    marketing_share: RatioOut


class CarrierOut(Schema):
    carrier: str
    opening: int
    gross_adds: int
    deletions: int
    removals: int
    closing: int
    deletion_rate: RatioOut


class SourceOut(Schema):
    source: str
    orders: int
    buyers: int
    gmv_fen: int


class ColumnOut(Schema):
    key: str
    label: str
    kind: str


class SectionOut(Schema):
    key: str
    title: str
    status: Literal["ok", "unavailable", "error"]
    message: str
    columns: list[ColumnOut]
    rows: list[dict[str, Any]]
    note: str


class StoreRef(Schema):
    id: int
    code: str
    name: str


class OverviewOut(Schema):
    brand_id: int
    time_zone: str
    start: dt.date
    end: dt.date
    granularity: str
    store: StoreRef | None
    channel: str | None
    as_of: dt.datetime
    totals: FiguresOut
    people_held: int
    gmv_per_contact_fen: int | None
    carriers: list[CarrierOut]
    sources: list[SourceOut]
    series: list[FiguresOut]
    sections: list[SectionOut]


def _ratio(r: Ratio) -> dict[str, Any]:
    return {"numerator": r.numerator, "denominator": r.denominator, "rate": r.rate}


def figures_dict(f: Figures) -> dict[str, Any]:
    return {
        "start": f.start,
        "end": f.end,
        "contacts_opening": f.contacts_opening,
        "contacts_held": f.contacts_held,
        "gross_adds": f.gross_adds,
        "re_adds": f.re_adds,
        "deletions": f.deletions,
        "removals": f.removals,
        "net_growth": f.net_growth,
        "deletion_rate": _ratio(f.deletion_rate),
        "new_people": f.new_people,
        "first_order_cohort": f.first_order_cohort,
        "first_orders_3d": f.first_orders_3d,
        "first_order_pending": f.first_order_pending,
        "first_order_rate": _ratio(f.first_order_rate),
        "buyers": f.buyers,
        "repeat_buyers": f.repeat_buyers,
        "repurchase_rate": _ratio(f.repurchase_rate),
        "orders": f.orders,
        "gmv_fen": f.gmv_fen,
        "refunds_fen": f.refunds_fen,
        "net_gmv_fen": f.net_gmv_fen,
        "messages_sent": f.messages_sent,
        "marketing_sent": f.marketing_sent,
        "marketing_share": _ratio(f.marketing_share),
    }


def section_dict(s: Section) -> dict[str, Any]:
    return {
        "key": s.key,
        "title": str(s.title),
        "status": s.status,
        "message": s.message,
        "columns": [{"key": c.key, "label": str(c.label), "kind": c.kind} for c in s.columns],
        "rows": s.table.rows if s.table is not None else [],
        "note": str(s.table.note) if s.table is not None else "",
    }


def overview_dict(o: Overview) -> dict[str, Any]:
    """The overview as the API returns it (dates as date objects; JSON-encode with Django's
    encoder or Ninja)."""
    return {
        "brand_id": o.brand.pk,
        "time_zone": o.brand.time_zone,
        "start": o.start,
        "end": o.end,
        "granularity": o.granularity,
        "store": (
            {"id": o.store.pk, "code": o.store.code, "name": o.store.name} if o.store else None
        ),
        "channel": o.channel,
        "as_of": o.as_of,
        "totals": figures_dict(o.totals),
        "people_held": o.people_held,
        "gmv_per_contact_fen": o.gmv_per_contact_fen,
        "carriers": [
            {
                "carrier": p.carrier,
                "opening": p.opening,
                "gross_adds": p.gross_adds,
                "deletions": p.deletions,
                "removals": p.removals,
                "closing": p.closing,
                "deletion_rate": _ratio(p.deletion_rate),
            }
            for p in o.carriers
        ],
        "sources": [
            {"source": s.source, "orders": s.orders, "buyers": s.buyers, "gmv_fen": s.gmv_fen}
            for s in o.sources
        ],
        "series": [figures_dict(f) for f in o.series],
        "sections": [section_dict(s) for s in o.sections],
    }
