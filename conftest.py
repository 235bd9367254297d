"""Test-run wiring shared by every test.

The suite runs once per database backend (`make test` runs it on SQLite, then on PostgreSQL
with YUTANG_DATABASE_URL pointing at YUTANG_TEST_POSTGRES_URL). When PostgreSQL or Chromium
cannot be reached, the tests that need them are skipped with the reason, unless
YUTANG_REQUIRE_POSTGRES=1 / YUTANG_REQUIRE_BROWSER=1 is set, in which case the run fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip


def _required(name: str) -> bool:
    return os.environ.get(name, "") == "1"


def _backend() -> str:
    from django.conf import settings

    return "postgresql" if "postgresql" in settings.DATABASES["default"]["ENGINE"] else "sqlite"


def _postgres_problem() -> str | None:
    if _backend() != "postgresql":
        return None
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
            user=db.get("USER") or None, password=db.get("PASSWORD") or None,
            dbname=db["NAME"], connect_timeout=3,
        ).close()  # fmt: skip
    except Exception as exc:
        return f"PostgreSQL unreachable ({type(exc).__name__}: {str(exc).strip()[:160]})"
    return None


def pytest_report_header(config: pytest.Config) -> str:
    return f"yutang database backend: {_backend()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if _required("YUTANG_REQUIRE_POSTGRES"):
        raise pytest.UsageError(f"YUTANG_REQUIRE_POSTGRES=1 but {problem}")
    skip = pytest.mark.skip(reason=problem)
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.get_closest_marker("django_db") or {"db", "transactional_db", "live_server"} & set(
            fixtures
        ):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    problem = None
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        problem = f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:  # pragma: no cover - playwright is a test dependency
            problem = f"Playwright is not installed ({exc})"
    if problem:
        if _required("YUTANG_REQUIRE_BROWSER"):
            pytest.fail(f"YUTANG_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    # Playwright's sync API runs an event loop in this thread; Django must allow ORM calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _forget_row_state() -> Iterator[None]:
    """Per-process state about rows by id (parsed journey versions, where claims stopped) is
    forgotten around every test: a rolled-back test lets SQLite reuse ids, and a flush
    restarts them, so one test's cached rows must not become the next test's."""
    from yutang.core.db import forget_row_state

    forget_row_state()
    yield
    forget_row_state()
