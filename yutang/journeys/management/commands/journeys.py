"""`yutang journeys list|publish|enrol|fast-forward|templates`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core.errors import YutangError
from yutang.core.models import Staff
from yutang.journeys import engine, services


def _staff(username: str, brand_id: int | None) -> Staff:
    qs = Staff.objects.filter(user__username=username, is_active=True).select_related("brand")
    if brand_id is not None:
        qs = qs.filter(brand_id=brand_id)
    found = list(qs[:2])
    if len(found) != 1:
        raise CommandError("Name one active staff member with --as (and --brand if several).")
    return found[0]


class Command(BaseCommand):
    help = "Journeys: list, publish, enrol customers, fast-forward journey time."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("list", "publish", "enrol", "templates"):
            p = sub.add_parser(name)
            p.add_argument("--as", dest="username", required=True)
            p.add_argument("--brand", type=int)
            if name in {"publish", "enrol"}:
                p.add_argument("journey_id", type=int)
            if name == "enrol":
                p.add_argument("--customers", required=True, help="comma-separated ids")
            if name == "templates":
                p.add_argument("--install", help="create a journey from this template key")
        ff = sub.add_parser("fast-forward")
        ff.add_argument("--days", type=float, required=True)
        ff.add_argument("--brand", type=int)
        ff.add_argument("--start", help="ISO time to start from (default: now)")
        ff.add_argument("--batch", type=int, default=engine.BATCH)
        ff.add_argument("--progress", action="store_true", help="print a line per pass")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._handle(options)
        except YutangError as exc:
            raise CommandError(f"{exc.field or ''}: {exc.message}".lstrip(": ")) from None

    def _handle(self, options: dict[str, Any]) -> None:
        action = options["action"]
        if action == "fast-forward":
            from yutang.core import clock

            start = clock.now()
            if options.get("start"):
                try:
                    start = dt.datetime.fromisoformat(options["start"])
                except ValueError:
                    raise CommandError("--start takes an ISO time with a zone.") from None
                if start.tzinfo is None:
                    raise CommandError("--start takes an ISO time with a zone.")

            def progress(done: int) -> None:
                if options["progress"]:
                    self.stdout.write(f"pass {done}")
                    self.stdout.flush()

            result = engine.fast_forward(
                start=start, until=start + dt.timedelta(days=options["days"]),
                brand_id=options.get("brand"), batch=options["batch"], on_pass=progress,
            )  # fmt: skip
            self.stdout.write(f"ran {result.steps} steps up to {result.until.isoformat()}")
            return
        staff = _staff(options["username"], options.get("brand"))
        if action == "list":
            for j in services.list_journeys(actor=staff):
                version = j.live_version.number if j.live_version else "-"
                self.stdout.write(f"{j.pk}\t{j.status}\tv{version}\t{j.name}")
        elif action == "publish":
            published = services.publish(actor=staff, journey_id=options["journey_id"])
            self.stdout.write(f"published version {published.number}")
        elif action == "enrol":
            try:
                ids = [int(x) for x in options["customers"].split(",") if x.strip()]
            except ValueError:
                raise CommandError("--customers takes comma-separated ids.") from None
            results = services.enrol_customers(
                actor=staff, journey_id=options["journey_id"], customer_ids=ids, source="cli"
            )
            for r in results:
                self.stdout.write(f"{r.customer_id}\t{r.status}")
        elif action == "templates":
            if options.get("install"):
                j = services.create_from_template(actor=staff, key=options["install"])
                self.stdout.write(f"created journey {j.pk} {j.name}")
            else:
                for t in services.shipped_templates():
                    self.stdout.write(f"{t['key']}\t{t['name']}")
