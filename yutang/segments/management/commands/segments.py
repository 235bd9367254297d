"""`yutang segments list|preview|export|refresh`: segments from scripts and cron."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core.errors import YutangError
from yutang.core.models import Brand
from yutang.segments import services
from yutang.segments.models import Segment


class Command(BaseCommand):
    help = "List, preview, export and refresh segments of a brand."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--brand", type=int, default=None, help="Brand id (default: the only brand)"
        )
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Every segment with its kind and last member count")
        preview = sub.add_parser("preview", help="Count a segment's or a rule's customers")
        preview.add_argument("segment", nargs="?", type=int, help="Segment id")
        preview.add_argument("--rule", default=None, help="A rule as JSON, or @file.json")
        export = sub.add_parser("export", help="Write a segment's members to CSV or XLSX")
        export.add_argument("segment", type=int)
        export.add_argument("--output", "-o", required=True, help="File to write (.csv or .xlsx)")
        export.add_argument(
            "--unmasked", action="store_true", help="Write phone numbers in full (audited)"
        )
        refresh = sub.add_parser("refresh", help="Materialise dynamic segments now")
        refresh.add_argument("segment", nargs="?", type=int, help="One segment (default: all due)")

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
        brand = brands[0]
        try:
            getattr(self, f"do_{opts['action']}")(brand, opts)
        except YutangError as exc:
            where = "" if exc.message.startswith("$") else f"{exc.field or opts['action']}: "
            raise CommandError(f"{where}{exc.message}") from exc

    def do_list(self, brand: Brand, opts: dict[str, Any]) -> None:
        for s in Segment.objects.filter(brand=brand):
            refreshed = s.refreshed_at.isoformat() if s.refreshed_at else "never"
            self.stdout.write(f"{s.pk}\t{s.kind}\t{s.member_count}\t{refreshed}\t{s.name}")

    def do_preview(self, brand: Brand, opts: dict[str, Any]) -> None:
        if opts["rule"]:
            text = opts["rule"]
            if text.startswith("@"):
                text = Path(text[1:]).read_text()
            try:
                rule = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CommandError(f"--rule: not valid JSON ({exc})") from exc
        elif opts["segment"]:
            segment = services.brand_segment(brand=brand, segment_id=opts["segment"])
            if segment.kind != Segment.Kind.DYNAMIC:
                self.stdout.write(f"{services.brand_members(segment).count()} customers")
                return
            rule = segment.rule
        else:
            raise CommandError("preview: give a segment id or --rule.")
        count, ms = services.count_for_brand(brand=brand, rule=rule)
        self.stdout.write(f"{count} customers ({ms} ms)")

    def do_export(self, brand: Brand, opts: dict[str, Any]) -> None:
        output = Path(opts["output"])
        format = output.suffix.lstrip(".").lower()
        segment = services.brand_segment(brand=brand, segment_id=opts["segment"])
        with output.open("wb") as out:
            services.export_for_brand(
                segment=segment, format=format, out=out, clear=opts["unmasked"]
            )
        self.stdout.write(f"Wrote {output}")

    def do_refresh(self, brand: Brand, opts: dict[str, Any]) -> None:
        if opts["segment"]:
            segment = services.brand_segment(brand=brand, segment_id=opts["segment"])
            r = services.refresh_segment(segment=segment)
            self.stdout.write(f"{segment.name}: {r.members} members, +{r.entered} -{r.exited}")
            return
        self.stdout.write(f"{services.refresh_due_segments()} segments refreshed")
