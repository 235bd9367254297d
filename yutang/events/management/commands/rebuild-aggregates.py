"""`yutang rebuild-aggregates [--brand ID]`: recompute per-customer aggregates from the log."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from yutang.core.models import Brand
from yutang.events.services import rebuild_aggregates


class Command(BaseCommand):
    help = "Recompute every customer's aggregates from the event log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--brand", type=int, default=None, help="Only this brand id")

    def handle(self, *args: Any, **opts: Any) -> None:
        brands = (
            Brand.objects.all() if opts["brand"] is None else Brand.objects.filter(pk=opts["brand"])
        )
        for brand in brands:
            count = rebuild_aggregates(brand=brand)
            self.stdout.write(f"{brand.name}: rebuilt aggregates of {count} customers.")
