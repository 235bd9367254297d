"""The console in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import PASSWORD, make_brand, make_staff, make_store
from yutang.core.permissions import Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_switch_language_open_stores_and_screenshot(chromium, live_server, artifacts_dir):
    brand = make_brand("鱼塘测试品牌")
    make_store(brand, code="SH001", name="上海静安店", city="上海")
    make_store(brand, code="HZ001", name="杭州加盟店", kind="franchise", city="杭州")
    admin = make_staff(brand, Role.BRAND_ADMIN, username="browser.admin")

    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(f"{live_server.url}/login/")
        assert page.locator("button[type=submit]").inner_text() == "登录"
        page.fill("#id_username", admin.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        assert page.locator("h1").inner_text() == "概览"
        assert page.locator("[data-testid=stat-stores]").inner_text() == "2"

        page.click("[data-testid=language-en]")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Overview"

        page.click("nav >> text=Stores")
        page.wait_for_url(f"{live_server.url}/stores/")
        assert page.locator("h1").inner_text() == "Stores"
        rows = page.locator("[data-testid=stores-table] tbody tr")
        assert rows.count() == 2
        assert "上海静安店" in rows.nth(1).inner_text()
        assert "Franchise" in rows.nth(0).inner_text()
        # vendored assets loaded (no CDN): Bootstrap styles applied, htmx present
        assert page.evaluate("typeof window.htmx") == "object"
        path = artifacts_dir / f"console-stores-{connection.vendor}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        assert errors == []
    finally:
        context.close()


def test_htmx_delete_in_the_browser(chromium, live_server):
    brand = make_brand()
    make_store(brand, code="GONE1", name="To be closed")
    admin = make_staff(brand, Role.BRAND_ADMIN)
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", admin.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/stores/")
        page.on("dialog", lambda dialog: dialog.accept())
        page.click("[data-testid=stores-table] >> text=删除")
        page.wait_for_selector("text=门店已删除。")
        assert (
            page.locator("[data-testid=stores-table] tbody").inner_text().strip() == "还没有门店。"
        )
    finally:
        context.close()
