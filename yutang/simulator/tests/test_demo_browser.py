"""The demo in a real browser: build a tiny simulated month with `yutang demo`, log in with the
printed login, and open every console page in NAVIGATION plus a customer portrait."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from yutang.commerce.models import Order
from yutang.console.context import NAVIGATION
from yutang.core.models import ApiToken, Staff
from yutang.core.permissions import Action
from yutang.customers.models import Customer, ImportJob, MergeCandidate
from yutang.journeys.models import Journey
from yutang.simulator import demo_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMPTY_STATE = re.compile(
    r"\bNo [A-Za-z -]+ yet\b|\bNothing (yet|to review)\b|\bNo [a-z]+ match\b|\bNo results\b"
)

#: Pages the demo leaves empty: none. The merge review, imports and API tokens pages show
#: what the brand did besides its simulated customers (yutang/simulator/demo_data.py). The
#: test asserts the pages listed here show their empty state, so a page that empties again
#: fails the test until it is listed (and docs/simulator.md says why).
EMPTY_IN_DEMO: set[str] = set()


def test_every_console_page_of_the_demo(
    chromium: Any, live_server: Any, artifacts_dir: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    with override_settings(VAR_DIR=tmp_path):
        call_command("demo", "--scale", "0.003", "--days", "30", "--no-serve", stdout=out)
    username, password = (tmp_path / "demo-login.txt").read_text().split("\n")[:2]
    assert f"password: {password}" in out.getvalue()
    admin = Staff.objects.get(user__username=username)
    visible = Customer.objects.for_actor(admin, Action.CUSTOMER_VIEW)  # not franchise-owned
    order = (
        Order.objects.filter(customer__in=visible, external_id__startswith="sim-")
        .order_by("-amount_fen")
        .first()
    )
    assert order is not None  # a month of the demo has orders

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.click("[data-testid=language-en]")
        page.wait_for_load_state()

        pages = [(name, reverse(name)) for name, _label, _icon, _action in NAVIGATION]
        pages.append(("console:customer", reverse("console:customer", args=[order.customer_id])))
        seen_empty = set()
        for name, path in pages:
            response = page.goto(f"{live_server.url}{path}")
            assert response is not None and response.status == 200, (name, response)
            text = page.locator("body").inner_text()
            assert "Server Error" not in text and "Traceback" not in text, name
            # (a portrait has small sections of its own, e.g. "No statement yet.")
            if name != "console:customer" and EMPTY_STATE.search(page.locator("main").inner_text()):
                seen_empty.add(name)
            slug = name.split(":")[1]
            page.screenshot(
                path=str(artifacts_dir / f"demo-{slug}-{connection.vendor}.png"), full_page=True
            )
        assert sorted(seen_empty) == sorted(EMPTY_IN_DEMO)
        # the pages with data show the simulated world
        page.goto(f"{live_server.url}{reverse('console:customer', args=[order.customer_id])}")
        portrait = page.locator("main").inner_text()
        assert "order.paid" in portrait and "contact.added carrier=sandbox" in portrait
        page.goto(f"{live_server.url}{reverse('console:customers')}")
        assert page.locator("main table tbody tr").count() >= 10
        # the driven pages: channels and live codes of the scenario, journeys that ran, an
        # outbox with what was sent and what the gate blocked, segments and an auto-tag rule
        expected = {
            "console:channels": ["package_card", "xhs_koc"],
            "console:live_codes": ["活码"],
            "console:partners": ["合作方"],
            "console:journeys": ["新客欢迎", "首单后关怀"],
            "console:outbox": ["Sent", "Blocked"],
            "console:segments": ["Important value", "At risk"],
            "console:auto_tags": ["Two or more orders"],
        }
        for name, words in expected.items():
            page.goto(f"{live_server.url}{reverse(name)}")
            text = page.locator("main").inner_text()
            for word in words:
                assert word in text, (name, word)
        # the new-contact journey's step metrics: people entered and messages went out
        journey = Journey.objects.get(brand=admin.brand, name__startswith="新客欢迎")
        page.goto(f"{live_server.url}{reverse('console:journey', args=[journey.pk])}")
        assert int(page.locator("[data-testid=m-entered]").inner_text()) > 0
        assert int(page.locator("[data-testid=m-messages]").inner_text()) > 0
        page.screenshot(
            path=str(artifacts_dir / f"demo-journey-new-contact-{connection.vendor}.png"),
            full_page=True,
        )
        check_what_the_brand_did(page, live_server.url, admin, artifacts_dir)
        assert errors == []
    finally:
        context.close()


def check_what_the_brand_did(page: Any, url: str, admin: Staff, artifacts_dir: Path) -> None:
    """The merge review, imports and API tokens pages show what demo_data did through the
    services: a parcel-card contact waiting to be merged with an imported Tmall member, the
    member import with its one bad row, and the ERP's token, masked."""
    brand = admin.brand
    # Merge review: the simulated contact who claimed the parcel card's cashback with the
    # Taobao buyer name of an imported member, both weak identities: a person decides.
    candidate = MergeCandidate.objects.get(brand=brand, status="open")
    pair = {candidate.first_id, candidate.second_id}
    member = Customer.objects.get(pk__in=pair, display_name="林晓雯（示例）")
    contact = Customer.objects.get(pk__in=pair - {member.pk})
    assert contact.identities.filter(kind="wecom_external_userid").exists()
    page.goto(f"{url}{reverse('console:merges')}")
    rows = page.locator("[data-testid=merge-table] tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert "林晓雯（示例）" in row and f"#{contact.pk}" in row
    assert f"shared identity ({demo_data.CLAIM_SOURCE})" in row
    assert rows.first.locator("button", has_text="Merge").count() == 1

    # Imports: the member list imported on day one, four rows applied and one rejected; the
    # error file names the row, the column and the reason.
    job = ImportJob.objects.get(brand=brand)
    assert (job.filename, job.status, job.created, job.rejected) == (
        demo_data.IMPORT_FILENAME, "done", 4, 1,
    )  # fmt: skip
    page.goto(f"{url}{reverse('console:imports')}")
    text = page.locator("[data-testid=imports-table]").inner_text()
    assert demo_data.IMPORT_FILENAME in text and "Done" in text
    page.click(f"text={demo_data.IMPORT_FILENAME}")
    progress = page.locator("[data-testid=import-progress]").inner_text()
    assert "4 created" in progress and "1 rejected" in progress
    href = page.locator("[data-testid=error-file]").get_attribute("href")
    report = page.request.get(f"{url}{href}")
    assert report.status == 200
    lines = report.text().lstrip("\ufeff").splitlines()
    assert lines[1].startswith(f"{demo_data.BAD_ROW},phone,")
    page.screenshot(path=str(artifacts_dir / f"demo-import-{connection.vendor}.png"))

    # API tokens: the ERP's order-sync token, shown by its first characters only.
    token = ApiToken.objects.get(brand=brand)
    page.goto(f"{url}{reverse('console:tokens')}")
    text = page.locator("[data-testid=tokens-table]").inner_text()
    assert demo_data.TOKEN_NAME in text and "Active" in text
    assert f"ytk_{token.prefix}…" in text
    assert page.locator("[data-testid=new-token]").count() == 0  # the secret is not shown
