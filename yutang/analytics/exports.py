"""The overview as tables: KPI definitions shared by the console cards and the exports, and
CSV / XLSX writers. Everything reads the dict of ``schemas.overview_dict`` — the API's answer."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

Kind = Literal["int", "fen", "rate"]


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str | Promise
    kind: Kind
    read: Callable[[dict[str, Any]], Any]
    ratio: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda o: None


def _total(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda o: o["totals"][name]


def _rate(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda o: o["totals"][name]["rate"]


def _ratio(name: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    return lambda o: o["totals"][name]


KPIS: list[Kpi] = [
    Kpi("contacts_held", _("Contacts held"), "int", _total("contacts_held")),
    Kpi("people_held", _("People in the pool"), "int", lambda o: o["people_held"]),
    Kpi("gross_adds", _("Gross adds"), "int", _total("gross_adds")),
    Kpi("deletions", _("Deletions"), "int", _total("deletions")),
    Kpi("deletion_rate", _("Deletion rate"), "rate", _rate("deletion_rate"),
        _ratio("deletion_rate")),
    Kpi("net_growth", _("Net growth"), "int", _total("net_growth")),
    Kpi("new_people", _("New people"), "int", _total("new_people")),
    Kpi("first_order_rate", _("First order within 3 days"), "rate", _rate("first_order_rate"),
        _ratio("first_order_rate")),
    Kpi("repurchase_rate", _("Repurchase rate"), "rate", _rate("repurchase_rate"),
        _ratio("repurchase_rate")),
    Kpi("gmv_fen", _("GMV"), "fen", _total("gmv_fen")),
    Kpi("net_gmv_fen", _("GMV after refunds"), "fen", _total("net_gmv_fen")),
    Kpi("gmv_per_contact_fen", _("GMV per contact held"), "fen",
        lambda o: o["gmv_per_contact_fen"]),
    Kpi("orders", _("Orders"), "int", _total("orders")),
    Kpi("buyers", _("Buyers"), "int", _total("buyers")),
    Kpi("messages_sent", _("Messages sent"), "int", _total("messages_sent")),
    Kpi("marketing_share", _("Marketing share of messages"), "rate",
        _rate("marketing_share"), _ratio("marketing_share")),
]  # fmt: skip


def format_value(value: Any, kind: str) -> str:
    """How the console shows a number (tests format the API's numbers the same way)."""
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if kind == "fen":
        return f"¥{value / 100:,.2f}"
    if kind == "int":
        return f"{value:,}"
    return str(value)


def kpi_cards(data: dict[str, Any]) -> list[dict[str, Any]]:
    cards = []
    for kpi in KPIS:
        value = kpi.read(data)
        ratio = kpi.ratio(data)
        cards.append(
            {
                "key": kpi.key,
                "label": kpi.label,
                "value": value,
                "shown": format_value(value, kpi.kind),
                "ratio": ratio,
            }
        )
    return cards


# --- Tables -------------------------------------------------------------------------------------

SERIES_COLUMNS = [
    "start", "end", "contacts_opening", "contacts_held", "gross_adds", "re_adds", "deletions",
    "removals", "net_growth", "deletion_rate", "new_people", "first_order_cohort",
    "first_orders_3d", "first_order_pending", "first_order_rate", "buyers", "repeat_buyers",
    "repurchase_rate", "orders", "gmv_fen", "refunds_fen", "net_gmv_fen", "messages_sent",
    "marketing_sent", "marketing_share",
]  # fmt: skip


def _flat(value: Any) -> Any:
    if isinstance(value, dict) and "rate" in value:
        return value["rate"]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def tables(data: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Every table of the overview: name -> (header, rows)."""
    out: dict[str, tuple[list[str], list[list[Any]]]] = {
        "kpis": (
            ["metric", "label", "value", "numerator", "denominator"],
            [
                [k.key, str(k.label), k.read(data)]
                + ([r["numerator"], r["denominator"]] if (r := k.ratio(data)) else ["", ""])
                for k in KPIS
            ],
        ),
        "series": (
            SERIES_COLUMNS,
            [[_flat(f[c]) for c in SERIES_COLUMNS] for f in data["series"]],
        ),
        "carriers": (
            [
                "carrier",
                "opening",
                "gross_adds",
                "deletions",
                "removals",
                "closing",
                "deletion_rate",
            ],
            [
                [
                    _flat(p[c])
                    for c in (
                        "carrier",
                        "opening",
                        "gross_adds",
                        "deletions",
                        "removals",
                        "closing",
                        "deletion_rate",
                    )
                ]
                for p in data["carriers"]
            ],
        ),
        "sources": (
            ["source", "orders", "buyers", "gmv_fen"],
            [[s["source"], s["orders"], s["buyers"], s["gmv_fen"]] for s in data["sources"]],
        ),
    }
    for section in data["sections"]:
        if section["status"] == "ok":
            keys = [c["key"] for c in section["columns"]]
            out[f"section_{section['key']}"] = (
                keys,
                [[_flat(row.get(k)) for k in keys] for row in section["rows"]],
            )
    return out


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula (channel or carrier names come from
    integrations) is quoted the way Excel does."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def to_csv(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _safe(v) for v in row])
    # UTF-8 with BOM: Excel reads BOM-less UTF-8 as GBK.
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def to_xlsx(data: dict[str, Any]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    for name, (header, rows) in tables(data).items():
        sheet = workbook.create_sheet(title=name[:31])
        sheet.append(header)
        for row in rows:
            sheet.append([_safe(v) for v in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def export(data: dict[str, Any], *, format: str, table: str = "kpis") -> tuple[bytes, str, str]:
    """(content, content type, file name) of the overview in ``format`` (csv: one table)."""
    stem = f"overview-{data['start']}-{data['end']}"
    if format == "xlsx":
        return (
            to_xlsx(data),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            f"{stem}.xlsx",
        )
    header, rows = tables(data)[table]
    return to_csv(header, rows), "text/csv; charset=utf-8", f"{stem}-{table}.csv"


def export_overview(
    *, actor: Any, format: str, table: str = "kpis", **filters: Any
) -> tuple[bytes, str, str]:
    """The overview export for the API and console: needs ``analytics.export``."""
    from yutang.analytics import services
    from yutang.analytics.schemas import overview_dict
    from yutang.core.errors import N_, ValidationFailed
    from yutang.core.permissions import Action, require

    if actor is not None:
        require(actor, Action.ANALYTICS_EXPORT)
    if format not in ("csv", "xlsx"):
        raise ValidationFailed(N_("format must be csv or xlsx."), field="format")
    data = overview_dict(services.overview(actor=actor, **filters))
    if format == "csv" and table not in tables(data):
        raise ValidationFailed(
            N_("table must be one of {tables}."),
            params={"tables": ", ".join(tables(data))},
            field="table",
        )
    return export(data, format=format, table=table)
