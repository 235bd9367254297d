"""`yutang analytics overview --from D --to D [--store S] [--channel C] [--format table|csv|xlsx]`:
the operations overview for scripts (same numbers as the console and the REST API)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from yutang.analytics import exports, services
from yutang.analytics.schemas import overview_dict
from yutang.core.errors import YutangError
from yutang.core.models import Brand, Staff


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Operations analytics. `overview`: the dashboard's figures for a period."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="what", required=True)
        p = sub.add_parser("overview", help="Pool, adds, deletions, first orders, GMV…")
        p.add_argument("--from", dest="start", required=True, help="First day, YYYY-MM-DD")
        p.add_argument("--to", dest="end", required=True, help="Last day (inclusive)")
        p.add_argument("--store", default=None, help="Store code or id")
        p.add_argument("--channel", default=None, help="First-touch channel code")
        p.add_argument("--granularity", choices=services.GRANULARITIES, default=None)
        p.add_argument("--format", choices=["table", "csv", "xlsx", "json"], default="table")
        p.add_argument(
            "--table",
            default="kpis",
            help="CSV: kpis (default), series, carriers or sources",
        )
        p.add_argument("--output", "-o", default=None, help="Write here (required for xlsx)")
        p.add_argument("--brand", type=int, default=None, help="Brand id (default: the only one)")
        p.add_argument(
            "--as", dest="username", default=None,
            help="See what this staff member sees (their role and stores); default: whole brand",
        )  # fmt: skip

    def handle(self, *args: Any, **opts: Any) -> None:
        brands = (
            list(Brand.objects.all()[:2])
            if opts["brand"] is None
            else list(Brand.objects.filter(pk=opts["brand"]))
        )
        if len(brands) != 1:
            raise CommandError(
                "--brand: give the brand id (there is more than one brand, or none)."
            )
        actor = None
        if opts["username"]:
            actor = (
                Staff.objects.select_related("brand")
                .filter(brand=brands[0], user__username=opts["username"])
                .first()
            )
            if actor is None:
                raise CommandError(f"--as: {opts['username']!r} is not staff of this brand.")
        if opts["format"] == "xlsx" and not opts["output"]:
            raise CommandError("--output: give a file name for the XLSX workbook.")
        filters = {
            "start": _date(opts["start"]),
            "end": _date(opts["end"]),
            "store": opts["store"],
            "channel": opts["channel"],
            "granularity": opts["granularity"],
        }
        try:
            if opts["format"] in ("csv", "xlsx"):
                content, _, _ = exports.export_overview(
                    actor=actor, brand=brands[0], format=opts["format"], table=opts["table"],
                    **filters,
                )  # fmt: skip
                self._write(content, opts["output"])
                return
            data = overview_dict(services.overview(actor=actor, brand=brands[0], **filters))
        except YutangError as exc:
            raise CommandError(f"{_option(exc.field)}: {exc.message}") from exc
        if opts["format"] == "json":
            text = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
            self._write((text + "\n").encode(), opts["output"])
            return
        self._write(self._table(data).encode(), opts["output"])

    def _write(self, content: bytes, output: str | None) -> None:
        if output:
            Path(output).write_bytes(content)
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(content.decode("utf-8"), ending="")

    @staticmethod
    def _table(data: dict[str, Any]) -> str:
        lines = [f"Overview {data['start']} .. {data['end']} ({data['time_zone']})"]
        if data["store"]:
            lines.append(f"Store: {data['store']['code']} {data['store']['name']}")
        if data["channel"]:
            lines.append(f"Channel: {data['channel']}")
        width = max(len(str(k.label)) for k in exports.KPIS)
        for card in exports.kpi_cards(data):
            ratio = card["ratio"]
            extra = f"  ({ratio['numerator']}/{ratio['denominator']})" if ratio else ""
            lines.append(f"  {card['label']!s:<{width}}  {card['shown']:>14}{extra}")
        if data["sources"]:
            lines.append("Orders by source:")
            for s in data["sources"]:
                lines.append(
                    f"  {s['source']:<14} {s['orders']:>8,} orders {s['buyers']:>8,} buyers "
                    f"{exports.format_value(s['gmv_fen'], 'fen'):>16}"
                )
        for section in data["sections"]:
            if section["status"] != "ok":
                lines.append(f"{section['title']}: {section['status']}")
        return "\n".join(lines) + "\n"


def _option(field: str | None) -> str:
    return {"start": "--from", "end": "--to", None: "error"}.get(field, f"--{field}")
