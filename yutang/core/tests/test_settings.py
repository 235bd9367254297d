"""Settings come from the environment; production refuses default secrets; SQLite pragmas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

STRONG = "x" * 40


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YUTANG_")}
    return subprocess.run(
        [sys.executable, "-c", "import yutang.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'])"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "YUTANG_SECRET_KEY"),
        (
            {"YUTANG_SECRET_KEY": "yutang-development-secret-key-not-for-production"},
            "YUTANG_SECRET_KEY",
        ),
        ({"YUTANG_SECRET_KEY": STRONG}, "YUTANG_PII_KEY"),
        ({"YUTANG_SECRET_KEY": STRONG, "YUTANG_PII_KEY": "short"}, "YUTANG_PII_KEY"),
    ],
)
def test_production_refuses_default_or_missing_secrets(env, named):
    result = load_settings(YUTANG_ENV="production", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_production_starts_with_real_secrets_and_debug_off():
    result = load_settings(
        YUTANG_ENV="production",
        YUTANG_SECRET_KEY=STRONG,
        YUTANG_PII_KEY=STRONG + "p",
        YUTANG_DEBUG="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.sqlite3"]


def test_development_defaults_and_postgres_url():
    assert load_settings().stdout.split() == ["False", "django.db.backends.sqlite3"]
    pg = load_settings(YUTANG_DATABASE_URL="postgresql://u@db.example:5433/yt")
    assert pg.stdout.split() == ["False", "django.db.backends.postgresql"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"YUTANG_ENV": "staging"}, "YUTANG_ENV"),
        ({"YUTANG_DATABASE_URL": "mysql://x/y"}, "YUTANG_DATABASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    result = load_settings(**env)
    assert result.returncode != 0 and named in result.stderr.splitlines()[-1]


@pytest.mark.django_db
def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite pragmas apply to the SQLite run")
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == 20000


def test_time_zone_defaults_to_shanghai():
    assert os.environ.get("YUTANG_TIME_ZONE", "Asia/Shanghai") == settings.TIME_ZONE
    assert settings.LANGUAGE_CODE == "zh-hans"
