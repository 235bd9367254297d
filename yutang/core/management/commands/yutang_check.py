"""`yutang check`: what is configured, and whether the database and a worker are reachable.
Exits non-zero when the database is unreachable or Django's system checks fail."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from yutang import __version__
from yutang.core import clock


class Command(BaseCommand):
    help = "Print Yutang's configuration and whether the database and workers are reachable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deploy", action="store_true", help="Also run Django's deploy checks")

    def handle(self, *args: Any, **opts: Any) -> None:
        db = settings.DATABASES["default"]
        engine = db["ENGINE"].rsplit(".", 1)[-1]
        where = (
            db["NAME"] if engine == "sqlite3" else f"{db.get('HOST')}:{db.get('PORT')}/{db['NAME']}"
        )
        self.stdout.write(f"Yutang {__version__}")
        self.stdout.write(f"  environment:   {settings.YUTANG_ENV}")
        self.stdout.write(f"  debug:         {settings.DEBUG}")
        self.stdout.write(f"  secret key:    {self._secret_state('SECRET_KEY')}")
        self.stdout.write(f"  PII key:       {self._secret_state('PII_KEY')}")
        self.stdout.write(f"  time zone:     {settings.TIME_ZONE}")
        self.stdout.write(f"  allowed hosts: {', '.join(settings.ALLOWED_HOSTS)}")
        self.stdout.write(f"  database:      {engine} {where}")
        self.stdout.write(f"  task backend:  {settings.TASKS['default']['BACKEND']}")
        cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        shared = "shared by every process" if cache == "RedisCache" else "per process"
        self.stdout.write(f"  cache:         {cache} ({shared}; YUTANG_CACHE_URL)")

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            self.stdout.write(
                self.style.ERROR(f"  database:      UNREACHABLE ({type(exc).__name__})")
            )
            raise CommandError("The database is unreachable; check YUTANG_DATABASE_URL.") from exc
        self.stdout.write(self.style.SUCCESS("  database:      reachable"))
        if pending:
            self.stdout.write(
                self.style.WARNING(
                    f"  migrations:    {len(pending)} not applied (run `yutang init`)"
                )
            )
            return
        self.stdout.write("  migrations:    up to date")

        from django_tasks_db.models import DBTaskResult

        from yutang.core.models import WorkerHeartbeat

        fresh_after = clock.now() - dt.timedelta(seconds=settings.YUTANG_WORKER_STALE_AFTER)
        workers = list(WorkerHeartbeat.objects.filter(last_seen_at__gte=fresh_after))
        if workers:
            names = ", ".join(f"{w.hostname}:{w.pid}" for w in workers)
            self.stdout.write(
                self.style.SUCCESS(f"  workers:       {len(workers)} running ({names})")
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    "  workers:       none seen in the last "
                    f"{settings.YUTANG_WORKER_STALE_AFTER}s (start one with `yutang worker`)"
                )
            )
        ready = DBTaskResult.objects.ready().count()
        self.stdout.write(f"  tasks waiting: {ready}")
        call_command("check", deploy=opts["deploy"], fail_level="ERROR")

    @staticmethod
    def _secret_state(name: str) -> str:
        value = getattr(settings, name)
        default = getattr(settings, f"DEV_{name}")
        return "development default" if value == default else "set"
