"""The operations overview in Debian's Chromium: KPIs equal the API's, charts draw."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import PASSWORD, Api
from yutang.analytics.exports import kpi_cards
from yutang.analytics.tests.fixtures import NOW, build_world
from yutang.core.clock import FrozenClock, use_clock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MARCH = "from=2026-03-01&to=2026-03-31"


def test_dashboard_shows_the_api_numbers_and_charts(chromium, live_server, artifacts_dir):
    world = build_world()
    # The live server runs in this process, so the frozen clock holds for its requests too.
    with use_clock(FrozenClock(NOW)):
        api = Api(world.admin).get(f"/analytics/overview?{MARCH}").json()
        expected = {c["key"]: c["shown"] for c in kpi_cards(api)}
        context = chromium.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )
        try:
            page.goto(f"{live_server.url}/login/")
            page.fill("#id_username", world.admin.user.username)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}/")
            page.fill("#f-from", "2026-03-01")
            page.fill("#f-to", "2026-03-31")
            page.click("[data-testid=apply-filters]")
            page.wait_for_url("**preset=custom**")
            shown = {key: page.locator(f"[data-testid=kpi-{key}]").inner_text() for key in expected}
            assert shown == expected
            assert shown["gmv_fen"] == "¥379.00" and shown["deletion_rate"] == "14.3%"
            for chart in ("pool", "adds", "rates", "gmv"):
                page.wait_for_selector(f"[data-testid=chart-{chart}][data-ready='1'] canvas")
            for section in ("channels", "journeys", "messages"):
                status = page.locator(f"[data-testid=section-{section}]").get_attribute(
                    "data-status"
                )
                assert status == "ok", section
            assert page.locator("[data-testid=sources-table] tbody tr").count() == 3
            path = artifacts_dir / f"analytics-overview-{connection.vendor}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 20_000
            assert errors == []
        finally:
            context.close()
