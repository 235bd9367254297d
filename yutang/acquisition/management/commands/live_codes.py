"""`yutang live_codes sync [--live-code ID]`: write the WeCom contact ways of live codes now
(what the worker loop `acquisition.carrier_sync` does every round), printing one line per
code: id, status, members."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.acquisition import services
from yutang.acquisition.models import LiveCode


class Command(BaseCommand):
    help = "Live codes: `live_codes sync [--live-code ID]` writes their WeCom contact ways."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sync = sub.add_parser("sync", help="Create or rewrite the WeCom contact ways")
        sync.add_argument("--live-code", type=int, default=None, help="Only this live code id")

    def handle(self, *args: Any, **opts: Any) -> None:
        codes = LiveCode.objects.filter(is_active=True, members__account__kind="wecom")
        if opts["live_code"] is not None:
            codes = LiveCode.objects.filter(pk=opts["live_code"])
            if not codes.exists():
                raise CommandError(f"--live-code: no live code {opts['live_code']}.")
        failed = 0
        for code in codes.distinct().order_by("id"):
            result = services.sync_live_code_carrier(live_code=code)
            failed += result.status == "error"
            members = ",".join(result.user_ids) or "-"
            line = f"{code.pk}\t{result.status}\t{members}"
            self.stdout.write(f"{line}\t{result.message}" if result.message else line)
        if failed:
            raise CommandError(f"{failed} live code(s) failed to sync; see the lines above.")
