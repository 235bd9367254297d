"""`yutang demo`: a browsable demo brand — a simulated year of fashion-300k — then serve it.

Steps: migrate; `yutang init --sample-data` (the sample brand, its admin and login); on day
one the brand imports its Tmall members and creates its ERP's API token (demo_data); run the
fashion-300k scenario at the demo scale into that brand through the real services, printing
the simulated date and counts; a parcel-card contact's cashback claim queues a merge for
review (demo_data); serve the console on http://127.0.0.1:8000. A second run finds
the simulated events and reuses them; `--fresh` empties the database and starts over."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core import sample_data
from yutang.core.errors import YutangError
from yutang.core.models import Brand
from yutang.events.models import Event
from yutang.simulator import demo_data
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import DayProgress, run_key, simulate

SCENARIO = "fashion-300k"
#: 0.004 of fashion-300k ≈ 1,450 contacts added over a year, driven through the real services
#: (live codes, sandbox callbacks, journeys, the outbox, segments); measured in
#: docs/simulator.md — with the batched paths it costs the CPU that 0.002 cost before.
DEFAULT_SCALE = 0.004
DEFAULT_DAYS = 365


class Command(BaseCommand):
    help = "Build (or reuse) a simulated year of the fashion-300k brand and serve the console."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--scale",
            type=float,
            default=DEFAULT_SCALE,
            help=f"Share of fashion-300k's reach (default {DEFAULT_SCALE}; 0.1 ≈ 30,000 contacts)",
        )
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
        parser.add_argument(
            "--fresh", action="store_true", help="Empty the database first and build again"
        )
        parser.add_argument("--no-serve", action="store_true", help="Build, then stop")
        parser.add_argument("--bind", default="127.0.0.1:8000")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["days"] < 1:
            raise CommandError("--days: must be ≥ 1.")
        if not 0 < opts["scale"] <= 10:
            raise CommandError("--scale: must be > 0 and ≤ 10.")
        if opts["fresh"] and settings.IS_PRODUCTION:
            raise CommandError("--fresh: refused on a production machine (it empties the DB).")
        try:
            scenario = load_scenario(SCENARIO).with_overrides(
                days=opts["days"], seed=None, scale=opts["scale"]
            )
        except YutangError as exc:
            raise CommandError(exc.message) from None
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        if opts["fresh"]:
            call_command("flush", interactive=False, verbosity=0)
            (Path(settings.VAR_DIR) / "demo-login.txt").unlink(missing_ok=True)
            self.stdout.write("--fresh: the database was emptied.")
        login = io.StringIO()
        call_command(
            "init", "--sample-data", "--skip-migrate", "--time-zone", scenario.time_zone,
            stdout=login,
        )  # fmt: skip
        brand = Brand.objects.get(name=sample_data.BRAND_NAME)
        # Day one: the brand imports its Tmall members and creates its ERP's API token.
        job, token = demo_data.at_start(brand=brand, start=scenario.start_date)
        self.stdout.write(
            f"Imported {job.filename}: {job.created} created, {job.rejected} rejected; "
            f"API token {token.name!r} (ytk_{token.prefix}…)."
        )
        key = run_key(scenario)
        if Event.objects.filter(brand=brand, idempotency_key__startswith=f"sim:{key}:").exists():
            self.stdout.write(
                f"Reusing the simulated {scenario.name} already in {brand.name!r} "
                "(`yutang demo --fresh` builds it again)."
            )
        else:
            self.stdout.write(
                f"Simulating {scenario.name} into {brand.name!r}: {scenario.days} days from "
                f"{scenario.start_date}, seed {scenario.seed}, scale {scenario.scale}"
            )
            result = simulate(scenario=scenario, brand=brand, progress=self._progress)
            self.stdout.write("")
            o = result.outcome
            self.stdout.write(
                f"Simulated: pool {o.pool:,}, adds {o.adds:,}, deletions {o.deletions:,}, "
                f"orders {o.orders:,}, GMV ¥{o.gmv_fen / 100:,.0f}."
            )
        candidate = demo_data.claim_cashback(brand=brand)
        if candidate is not None:
            self.stdout.write(
                f"Merge review: customers #{candidate.first_id} and #{candidate.second_id} "
                f"({candidate.reason})."
            )
        self.stdout.write(f"Demo ready in {time.monotonic() - started:.0f} s.\n")
        self.stdout.write(login.getvalue().split("\n\n", 1)[-1].rstrip("\n"))
        if not opts["no_serve"]:
            call_command("serve", bind=opts["bind"])

    def _progress(self, p: DayProgress) -> None:
        if p.day % 7 and p.day != p.days:
            return
        line = (
            f"{p.date} day {p.day}/{p.days}: pool {p.pool:,} adds {p.adds:,} "
            f"deletions {p.deletions:,} orders {p.orders:,} GMV ¥{p.gmv_fen / 100:,.0f}"
        )
        if self.stdout.isatty():
            self.stdout.write("\r" + line, ending="")
        else:
            self.stdout.write(line)
        self.stdout.flush()
