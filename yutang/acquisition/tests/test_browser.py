"""In Chromium: create a live code in the console, download its QR, decode it to the URL."""

from __future__ import annotations

import pytest
import zxingcpp
from django.db import connection
from PIL import Image
from playwright.sync_api import expect

from tests.factories import PASSWORD, make_brand, make_staff, make_store
from yutang.acquisition.models import LiveCode
from yutang.acquisition.tests.helpers import make_channel, make_pool

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_a_live_code_download_its_qr_and_decode_it(chromium, live_server, artifacts_dir):
    brand = make_brand("鱼塘引流测试")
    lead = make_staff(brand, "operations_lead", username="browser.lead")
    store = make_store(brand, name="静安店")
    (account,) = make_pool(brand, 1, store=store)
    channel = make_channel(
        brand, code="package-card", name="包裹卡", hook_description="加我领 5 元券"
    )

    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900},
                                   accept_downloads=True)  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", lead.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.click("nav >> text=渠道活码")
        page.wait_for_url(f"{live_server.url}/live-codes/")
        page.click("[data-testid=live-code-create]")
        page.fill("#id_name", "11月包裹卡")
        page.select_option("#id_channel_id", str(channel.pk))
        page.check(f"#acc_{account.pk}")
        page.fill("#id_welcome_text", "{name}你好，我是{staff}，{store}送你 5 元券")
        expect(page.locator("[data-testid=welcome-text]")).to_have_text(
            "小美你好，我是Persona，静安店送你 5 元券"
        )
        page.click("[data-testid=live-code-save]")
        page.wait_for_url(f"{live_server.url}/live-codes/*/")
        code = LiveCode.objects.get(brand=brand)
        landing = f"{live_server.url}/c/{code.public_token}/"
        assert page.locator("[data-testid=landing-url]").inner_text() == landing
        with page.expect_download() as download_info:
            page.click("[data-testid=qr-png]")
        download = download_info.value
        assert download.suggested_filename == f"live-code-{code.pk}.png"
        path = artifacts_dir / f"live-code-qr-{connection.vendor}.png"
        download.save_as(str(path))
        decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(path))]
        assert decoded == [landing]
        # The landing page renders on a phone and shows the QR.
        phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        try:
            mobile = phone.new_page()
            mobile.goto(landing)
            assert (
                mobile.locator("[data-testid=landing-qr]").evaluate("img => img.naturalWidth") > 0
            )
            assert "加我领 5 元券" in mobile.content()
        finally:
            phone.close()
        page.goto(f"{live_server.url}/channels/report/")
        page.locator("#chart-trend canvas").wait_for()
        page.screenshot(
            path=str(artifacts_dir / f"channel-report-{connection.vendor}.png"), full_page=True
        )
        assert errors == []
    finally:
        context.close()
