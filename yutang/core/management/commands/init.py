"""`yutang init`: migrate, then make sure a brand and its admin exist. Safe to run again."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from yutang.core import sample_data, services
from yutang.core.errors import YutangError
from yutang.core.models import Brand, Staff
from yutang.core.permissions import Role


class Command(BaseCommand):
    help = "Migrate the database and create a brand with an admin (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--brand",
            default="",
            help="Brand name (default: the first brand, or 'My brand' on an empty database)",
        )
        parser.add_argument("--time-zone", default="Asia/Shanghai")
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument(
            "--admin-password",
            default=None,
            help="Password for a new admin (default: generated and printed)",
        )
        parser.add_argument(
            "--sample-data",
            action="store_true",
            help="Fill the brand with a small, clearly labelled sample data set",
        )
        parser.add_argument("--skip-migrate", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            services.validate_time_zone(opts["time_zone"])
        except YutangError as exc:
            raise CommandError(f"--time-zone: {exc.message}") from exc
        if not opts["skip_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("Database migrated.")
        try:
            with transaction.atomic():
                self._init(opts)
        except YutangError as exc:
            raise CommandError(f"{exc.field or 'init'}: {exc.message}") from exc

    def _init(self, opts: dict[str, Any]) -> None:
        name = opts["brand"] or (sample_data.BRAND_NAME if opts["sample_data"] else "")
        brand = Brand.objects.filter(name=name).first() if name else Brand.objects.first()
        if brand is None:
            brand = services.create_brand(
                name=name or "My brand", time_zone=opts["time_zone"],
                is_sample=opts["sample_data"],
            )  # fmt: skip
            self.stdout.write(f"Created brand {brand.name!r} (id {brand.pk}).")
        else:
            self.stdout.write(f"Brand {brand.name!r} (id {brand.pk}) exists.")

        username = opts["admin_username"]
        login_file = Path(settings.VAR_DIR) / "demo-login.txt"
        user = get_user_model().objects.filter(username=username).first()
        admin = Staff.objects.filter(brand=brand, user=user).first() if user else None
        password = None
        if admin is None:
            password = opts["admin_password"] or (None if user else secrets.token_urlsafe(12))
            created = services.create_staff(
                actor=None, brand=brand, username=username, display_name="Admin",
                role=Role.BRAND_ADMIN, password=password if user is None else None,
            )  # fmt: skip
            admin = created.staff
            self.stdout.write(f"Created brand admin {username!r}.")
            if user is not None:
                password = None  # an existing user keeps their own password
        else:
            self.stdout.write(f"Brand admin {username!r} exists; password unchanged.")

        if opts["sample_data"]:
            made = sample_data.ensure(brand=brand)
            self.stdout.write(
                "Sample data (labelled 示例 / Sample): "
                + (", ".join(f"{v} {k}" for k, v in made.items()) if made else "already present")
            )
            if settings.IS_PRODUCTION:
                pass  # a production machine never keeps a password in a file
            elif password is not None:
                login_file.parent.mkdir(parents=True, exist_ok=True)
                login_file.write_text(f"{username}\n{password}\n")
                login_file.chmod(0o600)
            elif login_file.exists():
                password = self._remembered_password(login_file, username)

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Log in at http://127.0.0.1:8000 with"))
        self.stdout.write(f"  username: {username}")
        if password:
            self.stdout.write(f"  password: {password}")
        else:
            self.stdout.write(
                f"  password: (unchanged; reset with `yutang changepassword {username}`)"
            )

    def _remembered_password(self, login_file: Path, username: str) -> str | None:
        """The demo password saved by an earlier run, only if it still logs this admin in."""
        saved_username, _, rest = login_file.read_text().partition("\n")
        saved_password = rest.split("\n")[0]
        user = get_user_model().objects.filter(username=username).first()
        if saved_username != username or user is None or not saved_password:
            return None
        if not user.check_password(saved_password):
            self.stdout.write(
                f"The password saved in {login_file} no longer works: it was changed since."
            )
            return None
        return saved_password
