"""`yutang createtoken USERNAME --name NAME [--brand ID]`: print a new API token for a staff
member. The token is shown once and stored only as a hash."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core import services
from yutang.core.errors import YutangError
from yutang.core.models import Staff


class Command(BaseCommand):
    help = "Create an API token for a staff member and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for")
        parser.add_argument(
            "--brand",
            type=int,
            default=None,
            help="Brand id, when the user is staff of several brands",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        roles = Staff.objects.select_related("brand").filter(user__username=opts["username"])
        if opts["brand"] is not None:
            roles = roles.filter(brand_id=opts["brand"])
        found = list(roles)
        if not found:
            raise CommandError(f"username: {opts['username']!r} is not staff of that brand.")
        if len(found) > 1:
            brands = ", ".join(f"{s.brand_id} ({s.brand.name})" for s in found)
            raise CommandError(
                f"--brand: the user is staff of several brands; choose one of {brands}."
            )
        try:
            _, plain = services.create_api_token(actor=None, staff=found[0], name=opts["name"])
        except YutangError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from exc
        self.stdout.write(plain)
