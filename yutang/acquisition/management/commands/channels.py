"""`yutang channels report --from YYYY-MM-DD --to YYYY-MM-DD [--format csv|xlsx]`: the
channel economics report (docs/acquisition.md) as CSV on stdout or a file."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.acquisition import reports
from yutang.core.errors import YutangError
from yutang.core.models import Brand


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Channel reports: `channels report --from --to [--format csv|xlsx]`."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        report = sub.add_parser("report", help="Channel economics for contacts added in a period")
        report.add_argument("--from", dest="date_from", required=True, help="YYYY-MM-DD")
        report.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD")
        report.add_argument("--format", choices=["csv", "xlsx"], default="csv")
        report.add_argument(
            "--granularity", choices=list(reports.GRANULARITIES), default="none",
            help="Add cohort rows per week or month",
        )  # fmt: skip
        report.add_argument(
            "--brand", type=int, default=None, help="Brand id (default: the only one)"
        )
        report.add_argument("--output", default=None, help="File to write (XLSX needs one)")

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
        if opts["format"] == "xlsx" and not opts["output"]:
            raise CommandError("--output: XLSX is binary; give a file to write it to.")
        try:
            report = reports.channel_report(
                actor=None, brand=brands[0], date_from=_date(opts["date_from"]),
                date_to=_date(opts["date_to"]), granularity=opts["granularity"],
            )  # fmt: skip
        except YutangError as exc:
            raise CommandError(
                f"{exc.field}: {exc.message}" if exc.field else exc.message
            ) from None
        data = reports.export_report(report, opts["format"])
        if opts["output"]:
            Path(opts["output"]).write_bytes(data)
            self.stderr.write(f"Wrote {len(report.rows)} channels to {opts['output']}.")
        else:
            sys.stdout.flush()
            self.stdout.write(data.decode("utf-8-sig"), ending="")
