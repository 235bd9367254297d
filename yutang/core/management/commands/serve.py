"""`yutang serve`: the console and API behind gunicorn, static files served by WhiteNoise."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Serve the console and the REST API with gunicorn (production-grade)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("YUTANG_BIND", "127.0.0.1:8000"))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("YUTANG_WEB_WORKERS", "2"))
        )
        parser.add_argument("--threads", type=int, default=4)
        parser.add_argument("--timeout", type=int, default=60)

    def handle(self, *args: Any, **opts: Any) -> None:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            self.stderr.write(self.style.WARNING(
                f"{len(pending)} migrations are not applied; run `yutang init` or `yutang migrate`."
            ))  # fmt: skip
        call_command("collectstatic", interactive=False, verbosity=0)
        connection.close()  # gunicorn forks; children open their own connections

        from gunicorn.app.base import BaseApplication

        from yutang.wsgi import application

        options = {
            "bind": opts["bind"],
            "workers": opts["workers"],
            "threads": opts["threads"],
            "timeout": opts["timeout"],
            "accesslog": "-",
            "errorlog": "-",
            # No request bodies or query strings in the access log: they may hold identifiers.
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        }

        class YutangApplication(BaseApplication):
            def load_config(self) -> None:
                for key, value in options.items():
                    self.cfg.set(key, value)

            def load(self) -> Any:
                return application

        self.stdout.write(
            f"Serving Yutang on http://{opts['bind']} ({settings.YUTANG_ENV}, "
            f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})"
        )
        YutangApplication().run()
