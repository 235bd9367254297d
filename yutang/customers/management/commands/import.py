"""`yutang import customers|orders FILE`: import a CSV/XLSX file in this process, with a
progress bar; bad rows go to an error file whose path is printed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core.errors import YutangError
from yutang.core.models import Brand
from yutang.customers.imports import create_import, read_mapping_argument, run_import
from yutang.customers.models import ImportJob


class Command(BaseCommand):
    help = "Import customers or orders from a CSV or XLSX file (UTF-8 or GBK/GB18030)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=["customers", "orders"])
        parser.add_argument("file")
        parser.add_argument(
            "--brand", type=int, default=None, help="Brand id (default: the only brand)"
        )
        parser.add_argument(
            "--mapping", default=None, help="JSON mapping file (see docs/import.md)"
        )
        parser.add_argument(
            "--all-or-nothing", action="store_true", help="Apply no row when any row is bad"
        )
        parser.add_argument("--encoding", default="", help="Override the detected CSV encoding")
        parser.add_argument("--errors", default=None, help="Copy the error file to this path")

    def handle(self, *args: Any, **opts: Any) -> None:
        brands = (
            list(Brand.objects.all()[:2])
            if opts["brand"] is None
            else list(Brand.objects.filter(pk=opts["brand"]))
        )
        if len(brands) != 1:
            raise CommandError(
                "--brand: give the brand id (there is more than one brand, or none)."
            )
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"file: {path} does not exist.")
        try:
            with path.open("rb") as upload:
                job = create_import(
                    actor=None,
                    brand=brands[0],
                    kind=opts["kind"],
                    upload=upload,
                    filename=path.name,
                    mapping_json=read_mapping_argument(opts["mapping"]),
                    all_or_nothing=opts["all_or_nothing"],
                    encoding=opts["encoding"],
                    start=False,  # imported right here, not by a worker
                )
            job = run_import(job.pk, on_progress=self._progress)
        except YutangError as exc:
            raise CommandError(f"{exc.field or opts['kind']}: {exc.message}") from exc
        sys.stderr.write("\n")
        if job.status == ImportJob.Status.FAILED:
            raise CommandError(job.message)
        self.stdout.write(
            f"{job.rows_done} rows: {job.created} created, {job.updated} updated, "
            f"{job.unchanged} unchanged, {job.skipped} skipped, {job.rejected} rejected"
            f" (mapping: {job.mapping_name})."
        )
        if job.message:
            self.stdout.write(job.message)
        if job.error_path:
            target = opts["errors"] or job.error_path
            if opts["errors"]:
                shutil.copyfile(job.error_path, target)
            self.stdout.write(f"Errors (row, column, reason): {target}")

    @staticmethod
    def _progress(job: ImportJob) -> None:
        width = 30
        done = int(job.progress * width)
        sys.stderr.write(
            f"\r[{'#' * done}{'.' * (width - done)}] {job.progress:5.1%} {job.rows_done} rows"
        )
        sys.stderr.flush()
