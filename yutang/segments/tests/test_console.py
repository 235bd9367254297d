"""Segment pages in the console (Django test client) and the editor in Chromium."""

from __future__ import annotations

import json

import pytest

from tests.factories import PASSWORD, console_client, make_brand, make_staff, make_store
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.segments.models import Segment
from yutang.segments.tests.builders import carrier_account, contact, customer

SHANGHAI = {"kind": "profile", "field": "city", "op": "eq", "value": "上海"}


@pytest.mark.django_db
def test_create_preview_and_members_pages():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    customer(brand, city="上海", display_name="甲")
    customer(brand, city="北京", display_name="乙")
    client = console_client(admin)
    listing = client.get("/segments/").content.decode()
    assert "新建人群" in listing and "人群分层" in listing  # zh-hans by default, our catalog
    page = client.get("/segments/new/")
    assert page.status_code == 200 and b"rule-builder" in page.content

    preview = client.post("/segments/preview/", {"rule": json.dumps(SHANGHAI)})
    assert preview.status_code == 200
    assert b'data-testid="preview-count">1<' in preview.content
    bad = client.post("/segments/preview/", {"rule": json.dumps({"or": []})})
    assert "$.or: must be a non-empty list" in bad.content.decode()

    response = client.post(
        "/segments/new/", {"name": "上海", "kind": "dynamic", "rule": json.dumps(SHANGHAI)}
    )
    segment = Segment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/segments/{segment.pk}/"
    members = client.get(f"/segments/{segment.pk}/members/").content.decode()
    assert "甲" in members and "乙" not in members
    export = client.get(f"/segments/{segment.pk}/export/?format=csv")
    assert export.status_code == 200 and "甲" in export.content.decode("utf-8-sig")

    refused = client.post(
        f"/segments/{segment.pk}/", {"name": "上海", "rule": json.dumps({"not": {}})}
    )
    assert refused.status_code == 200
    assert "rule.not.kind" in refused.content.decode()
    assert Segment.objects.get().rule == SHANGHAI


@pytest.mark.django_db
def test_analyst_sees_but_cannot_edit_and_advisor_cannot_export():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    client = console_client(admin)
    client.post("/segments/new/", {"name": "s", "kind": "dynamic", "rule": json.dumps(SHANGHAI)})
    segment = Segment.objects.get()
    analyst = console_client(make_staff(brand, Role.ANALYST))
    assert analyst.get(f"/segments/{segment.pk}/").status_code == 200
    assert analyst.post(f"/segments/{segment.pk}/delete/").status_code == 403
    assert analyst.get("/segments/new/").status_code == 403
    advisor = console_client(make_staff(brand, Role.ADVISOR, stores=[make_store(brand)]))
    assert advisor.get(f"/segments/{segment.pk}/export/?format=csv").status_code == 403
    assert Segment.objects.count() == 1


def _builder_options(client) -> dict:
    page = client.get("/segments/new/").content.decode()
    start = page.index('<script id="builder-options" type="application/json">')
    body = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(body)


@pytest.mark.django_db
def test_the_builder_offers_the_carrier_condition_in_chinese_and_english():
    from django.conf import settings

    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    account = carrier_account(brand, "wecom")
    client = console_client(admin)
    options = _builder_options(client)
    assert "carrier" in options["kinds"]
    assert options["carrier_accounts"] == [
        {"id": account.pk, "label": f"{account.display_name} (wecom)"}
    ]
    labels = options["labels"]
    assert labels["kinds"]["carrier"] == "当前持有的载体"
    assert labels["kinds"]["identity"] == "身份（曾有过）"
    assert labels["carrier_status"] == {
        "held": "当前持有",
        "lost": "已全部删除",
        "none": "从未有过",
    }
    assert (
        labels["carrier_kinds"][""] == "任意载体" and labels["carrier_kinds"]["wecom"] == "企业微信"
    )
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    labels = _builder_options(client)["labels"]
    assert labels["kinds"]["carrier"] == "Carrier held now"
    assert labels["carrier_status"]["lost"] == "deleted every one"
    assert labels["carrier_kinds"]["official_account"] == "Official account"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_build_a_carrier_condition_in_the_browser(chromium, live_server):
    """Pick "carrier held now", then "deleted every one", "never had one" and one account:
    the live count follows and the saved rule is the JSON the builder showed."""
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    first, second = carrier_account(brand, "wecom"), carrier_account(brand, "wecom")
    holds = customer(brand, display_name="持有")
    contact(holds, first)
    contact(holds, second, "lost")
    contact(customer(brand, display_name="删一"), first, "lost")
    deleted_both = customer(brand, display_name="删二")
    contact(deleted_both, first, "lost")
    contact(deleted_both, second, "lost")
    for n in range(3):
        customer(brand, display_name=f"从未{n}")
    context = chromium.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    count = "document.querySelector('[data-testid=preview-count]').textContent === '{}'"
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", admin.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/segments/new/")
        page.wait_for_selector("[data-testid=preview-count]")
        page.select_option("[data-testid=cond-kind]", "carrier")
        assert "当前持有的载体" in page.inner_text("[data-testid=cond-kind]")
        page.wait_for_function(count.format(1))  # holds a WeCom contact now: 持有
        page.select_option("[data-testid=cond-status]", "lost")
        assert page.inner_text("[data-testid=cond-status] option:checked") == "已全部删除"
        page.wait_for_function(count.format(2))  # deleted every WeCom contact: 删一, 删二
        sample = page.inner_text("[data-testid=preview-sample]")
        assert "删一" in sample and "删二" in sample and "持有" not in sample
        page.select_option("[data-testid=cond-status]", "none")
        page.wait_for_function(count.format(3))  # never had one: 从未0-2
        page.select_option("[data-testid=cond-account_ids]", [str(second.pk)])
        page.wait_for_function(count.format(4))  # never on the second account: + 删一
        page.select_option("[data-testid=cond-carrier]", "")  # any carrier kind
        page.fill("#id_name", "未加第二个企微")
        page.click("[data-testid=save-segment]")
        page.wait_for_selector("text=未加第二个企微")
        # The saved segment's page loads its members after it renders: let those requests
        # finish, or the test database is flushed under a request still reading it.
        page.wait_for_load_state("networkidle")
        assert Segment.objects.get().rule == {
            "and": [{"kind": "carrier", "account_ids": [second.pk], "status": "none"}]
        }
        assert errors == []
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_build_a_segment_in_the_browser_and_see_the_live_count(chromium, live_server):
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    for n in range(3):
        customer(brand, city="上海", display_name=f"上海{n}")
    customer(brand, city="北京", display_name="北京0")
    context = chromium.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", admin.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/segments/new/")
        # The default rule (orders >= 1) matches nobody yet.
        page.wait_for_selector("[data-testid=preview-count]")
        assert page.inner_text("[data-testid=preview-count]") == "0"
        # Switch the condition to the profile field city = 上海 with the builder.
        page.select_option("[data-testid=cond-kind]", "profile")
        page.fill("[data-testid=cond-value]", "上海")
        page.wait_for_function(
            "document.querySelector('[data-testid=preview-count]').textContent === '3'"
        )
        assert "毫秒" in page.inner_text("[data-testid=preview-time]")  # "query N ms" in zh-hans
        assert page.locator("[data-testid=preview-sample] tbody tr").count() == 3
        # Negate it: the count follows.
        page.locator("[data-testid=rule-condition] [data-testid=rule-not]").check()
        page.wait_for_function(
            "document.querySelector('[data-testid=preview-count]').textContent === '1'"
        )
        page.fill("#id_name", "不在上海")
        page.click("[data-testid=save-segment]")
        page.wait_for_selector("text=不在上海")
        # The saved segment's page loads its members after it renders: let those requests
        # finish, or the test database is flushed under a request still reading it.
        page.wait_for_load_state("networkidle")
        segment = Segment.objects.get()
        assert segment.rule == {
            "and": [{"not": {"kind": "profile", "field": "city", "op": "eq", "value": "上海"}}]
        }
        assert errors == []
    finally:
        context.close()


@pytest.mark.django_db
def test_rfm_auto_tag_pages_and_portrait():
    from yutang.segments.tests.builders import aggregate, tag

    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    c = customer(brand, city="上海")
    aggregate(c, order_count=2, paid_fen=100, last_order_at=c.created_at)
    t = tag(brand, "买家")
    client = console_client(admin)
    with use_clock(FrozenClock(c.created_at)):
        assert client.post("/segments/rfm/").status_code == 302
    page = client.get("/segments/rfm/").content.decode()
    assert "重要价值客户" in page
    created = client.post(
        "/segments/auto-tags/",
        {"name": "buyers", "tag_id": t.pk,
         "rule": json.dumps({"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1})},
    )  # fmt: skip
    assert created.status_code == 302
    refused = client.post("/segments/auto-tags/", {"name": "b", "tag_id": t.pk, "rule": "{"})
    assert "规则不是有效的 JSON" in refused.content.decode()  # zh-hans message
    client.post("/segments/new/", {"name": "上海", "kind": "dynamic", "rule": json.dumps(SHANGHAI)})
    portrait = client.get(f"/customers/{c.pk}/").content.decode()
    assert 'data-testid="segmentation"' in portrait
    assert "上海</a>" in portrait
    assert "买家</span>" in portrait
    assert 'data-testid="lifecycle-stage">repeat<' in portrait
