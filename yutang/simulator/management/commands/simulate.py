"""`yutang simulate SCENARIO.yaml`: run a scenario against the real system and report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core.errors import YutangError
from yutang.simulator import report
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import DayProgress, SimulationResult, simulate


class Command(BaseCommand):
    help = "Simulate a private domain from a scenario file, driving the real system."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", help="A scenario YAML file or a shipped name (steady)")
        parser.add_argument("--days", type=int, help="Simulated days (default: the scenario's)")
        parser.add_argument("--seed", type=int, help="Random seed (default: the scenario's)")
        parser.add_argument("--scale", type=float, help="Scale reach and targets (0.1 = 10%%)")
        parser.add_argument("--report", type=Path, help="Write a self-contained HTML report")
        parser.add_argument("--compare", help="A second scenario, run on the same seed")
        parser.add_argument(
            "--model-only",
            action="store_true",
            help="Run the model without writing to the database (fast what-ifs)",
        )
        parser.add_argument(
            "--outbox-touches",
            action="store_true",
            help="Driven: send the plan's own touches through the outbox and its gate too",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        for name in ("days", "seed"):
            if opts[name] is not None and opts[name] < (1 if name == "days" else 0):
                raise CommandError(f"--{name}: must be ≥ {1 if name == 'days' else 0}.")
        if opts["scale"] is not None and not 0 < opts["scale"] <= 10:
            raise CommandError("--scale: must be > 0 and ≤ 10.")
        try:
            first = load_scenario(opts["scenario"])
            second = load_scenario(opts["compare"]) if opts["compare"] else None
        except YutangError as exc:
            raise CommandError(exc.message) from None
        seed = opts["seed"] if opts["seed"] is not None else first.seed
        results: list[SimulationResult] = []
        for scenario in [first, *([second] if second else [])]:
            scenario = scenario.with_overrides(days=opts["days"], seed=seed, scale=opts["scale"])
            if opts["outbox_touches"]:
                scenario = scenario.model_copy(update={"touches_through_outbox": True})
            self.stdout.write(
                f"Simulating {scenario.name}: {scenario.days} days from {scenario.start_date}, "
                f"seed {scenario.seed}, scale {scenario.scale}"
                + (" (model only)" if opts["model_only"] else "")
            )
            started = time.monotonic()
            result = simulate(
                scenario=scenario, drive=not opts["model_only"], progress=self._progress
            )
            self.stdout.write("")
            elapsed = time.monotonic() - started
            where = f" into brand {result.brand_id}" if result.brand_id else ""
            self.stdout.write(f"Done in {elapsed:.1f} s{where}.\n")
            self.stdout.write(report.table(result) + "\n")
            results.append(result)
        if len(results) == 2:
            self.stdout.write("\nDifference (first minus second):\n")
            self.stdout.write(report.comparison(results[0], results[1]) + "\n")
        if opts["report"]:
            report.write_html(opts["report"], results)
            self.stdout.write(f"Report written to {opts['report']}.")

    def _progress(self, p: DayProgress) -> None:
        if p.day % 7 and p.day != p.days:
            return
        width = 30
        filled = width * p.day // p.days
        line = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {p.date} day {p.day}/{p.days} "
            f"pool {p.pool:,} adds {p.adds:,} deletions {p.deletions:,} "
            f"orders {p.orders:,} GMV ¥{p.gmv_fen / 100:,.0f}"
        )
        stream = self.stdout if sys.stdout.isatty() else None
        if stream is not None:
            stream.write(line, ending="")
        elif p.day % 28 == 0 or p.day == p.days:
            self.stdout.write(line.lstrip("\r"))
