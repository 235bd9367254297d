"""The `yutang` command: init, check, worker, serve — as real processes where it matters."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from tests.factories import make_brand
from yutang.core.models import AuditLog, Brand, CarrierAccount, Staff, Store, WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[3]


def test_cli_maps_check_to_yutang_check():
    from yutang.cli import ALIASES

    assert ALIASES["check"] == "yutang_check"


def database_env() -> dict[str, str]:
    """Environment for a child process that uses this test run's database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        url = f"postgresql://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUTANG_")}
    return {**env, "YUTANG_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}


def yutang(*args: str) -> list[str]:
    return [sys.executable, "-m", "yutang.cli", *args]


@pytest.mark.django_db
def test_init_is_idempotent_and_prints_the_login(capsys, tmp_path, settings):
    settings.VAR_DIR = tmp_path
    call_command("init", "--sample-data", "--skip-migrate")
    first = capsys.readouterr().out
    assert "Created brand '示例品牌 Sample Brand'" in first
    password = first.split("password: ")[1].split()[0]
    counts = [m.objects.count() for m in (Brand, Store, Staff, CarrierAccount, AuditLog)]
    assert counts[:4] == [1, 3, 7, 3]

    call_command("init", "--sample-data", "--skip-migrate")
    second = capsys.readouterr().out
    assert "exists; password unchanged" in second and "already present" in second
    assert f"password: {password}" in second  # the demo's login is printed again
    assert [m.objects.count() for m in (Brand, Store, Staff, CarrierAccount, AuditLog)] == counts
    assert Brand.objects.get().is_sample
    from django.test import Client

    assert Client().login(username="admin", password=password)


@pytest.mark.django_db
def test_init_reprints_the_demo_password_only_while_it_still_works(capsys, tmp_path, settings):
    settings.VAR_DIR = tmp_path
    call_command("init", "--sample-data", "--skip-migrate")
    password = capsys.readouterr().out.split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-by-the-owner-1")
    admin.save()

    call_command("init", "--sample-data", "--skip-migrate")
    out = capsys.readouterr().out
    assert password not in out
    assert "no longer works: it was changed since" in out
    assert "password: (unchanged; reset with `yutang changepassword admin`)" in out


@pytest.mark.django_db
def test_init_never_writes_the_login_file_in_production(capsys, tmp_path, settings):
    settings.VAR_DIR = tmp_path
    settings.IS_PRODUCTION = True
    call_command("init", "--sample-data", "--skip-migrate")
    out = capsys.readouterr().out
    assert "password: " in out  # printed once to whoever ran it
    assert not (tmp_path / "demo-login.txt").exists()


@pytest.mark.django_db
def test_init_refuses_an_unknown_time_zone(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    with pytest.raises(CommandError) as refused:
        call_command("init", "--time-zone", "Mars/X", "--skip-migrate")
    assert str(refused.value) == (
        "--time-zone: Unknown time zone 'Mars/X'; use an IANA name such as Asia/Shanghai."
    )
    assert not Brand.objects.exists() and not Staff.objects.exists()


@pytest.mark.django_db
def test_init_without_sample_data_makes_a_plain_brand(capsys):
    call_command(
        "init",
        "--brand",
        "Acme 女装",
        "--admin-username",
        "boss",
        "--admin-password",
        "a-long-chosen-password",
        "--skip-migrate",
    )
    out = capsys.readouterr().out
    assert "password: a-long-chosen-password" in out
    brand = Brand.objects.get(name="Acme 女装")
    assert not brand.is_sample and Store.objects.count() == 0
    assert Staff.objects.get(user__username="boss").role == "brand_admin"


@pytest.mark.django_db
def test_check_reports_configuration_database_and_workers(capsys):
    call_command("yutang_check")
    out = capsys.readouterr().out
    assert "database:      reachable" in out
    assert "migrations:    up to date" in out
    assert "workers:       none seen" in out
    from yutang.core.worker import beat

    beat("w-test")
    call_command("yutang_check")
    assert "workers:       1 running" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_worker_runs_enqueued_tasks_in_batch_mode():
    from django_tasks_db.models import DBTaskResult

    from yutang.core.tests.tasks_for_tests import rename_brand

    brand = make_brand("before")
    result = rename_brand.enqueue(brand.pk, "after")
    assert DBTaskResult.objects.ready().count() == 1
    call_command("worker", "--batch")
    brand.refresh_from_db()
    assert brand.name == "after"
    assert DBTaskResult.objects.get(pk=result.id).status == "SUCCESSFUL"
    assert not WorkerHeartbeat.objects.exists(), "a stopped worker removes its heartbeat"


@pytest.mark.django_db(transaction=True)
def test_worker_process_is_seen_by_check_and_stops_cleanly_on_sigterm():
    env = database_env()
    with subprocess.Popen(
        yutang("worker", "--worker-id", "proc-1"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as worker:
        _stop_after_check(worker, env)
    assert not WorkerHeartbeat.objects.filter(worker_id="proc-1").exists()


def _stop_after_check(worker: subprocess.Popen[str], env: dict[str, str]) -> None:
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            if "started" in line:
                break
        check = subprocess.run(
            yutang("check"),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "workers:       1 running" in check.stdout
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.django_db(transaction=True)
def test_serve_runs_gunicorn_with_static_files_and_debug_off(tmp_path):
    port = free_port()
    env = {**database_env(), "YUTANG_STATIC_ROOT": str(tmp_path / "static")}
    with subprocess.Popen(
        yutang("serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        _exercise_server(server, port, tmp_path)


def _exercise_server(server: subprocess.Popen[str], port: int, tmp_path: Path) -> None:
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if "Booting worker" in line:
                break
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            login = client.get("/login/")
            assert login.status_code == 200 and "鱼塘" in login.text
            css = client.get("/static/vendor/bootstrap/bootstrap.min.css")
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
            assert (tmp_path / "static" / "vendor" / "htmx" / "htmx.min.js").exists()
            missing = client.get("/no-such-page/")
            assert missing.status_code == 404 and "Traceback" not in missing.text
            assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "Yutang API"
    finally:
        server.terminate()
        server.wait(timeout=30)
