"""Background work of the customers app."""

from __future__ import annotations

from django_tasks import task


@task()
def run_import_task(job_id: int) -> str:
    """customers.run_import: import a stored file; idempotent (a finished job is left alone)."""
    from yutang.customers.imports import run_import

    return run_import(job_id).status
