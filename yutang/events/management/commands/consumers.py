"""`yutang consumers`: the event-log consumers, their offsets and failures; run or replay."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.events import consumers
from yutang.events.models import ConsumerFailure, ConsumerOffset, Event


class Command(BaseCommand):
    help = "Show event-log consumers (offsets, failures, parked); run a pass or replay parked."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", action="store_true", help="Run one pass of every consumer")
        parser.add_argument(
            "--replay", metavar="CONSUMER", help="Retry this consumer's parked events"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["replay"]:
            if opts["replay"] not in consumers.registered():
                raise CommandError(f"--replay: no consumer named {opts['replay']!r}.")
            count = consumers.replay_parked(consumer=opts["replay"])
            self.stdout.write(f"{count} parked events queued for retry.")
        if opts["run"]:
            self.stdout.write(f"Handled {consumers.run_all()} events.")
        last = Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        names = consumers.registered()
        if not names:
            self.stdout.write("No consumers are registered yet.")
        for name in names:
            offset = (
                ConsumerOffset.objects.filter(name=name).values_list("position", flat=True).first()
                or 0
            )
            failing = ConsumerFailure.objects.filter(consumer=name, parked=False).count()
            parked = ConsumerFailure.objects.filter(consumer=name, parked=True).count()
            self.stdout.write(
                f"{name}: at event {offset} of {last}; {failing} retrying, {parked} parked"
            )
        for failure in consumers.park_report()[:20]:
            first_line = failure.error.splitlines()[0] if failure.error else ""
            self.stdout.write(
                f"  parked: {failure.consumer} event {failure.event_id} "
                f"({failure.attempts} attempts): {first_line}"
            )
