"""Console: carrier settings, outbox with filters, broadcast composer with the policy preview,
policy settings, touch history on the portrait; one walk-through in Chromium."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD, console_client, make_staff
from yutang.carriers.models import CarrierConnection
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.messaging import services
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Broadcast, Message
from yutang.messaging.tests.helpers import NOON, setup


@pytest.fixture
def frozen():
    with use_clock(FrozenClock(NOON)) as c:
        yield c


@pytest.mark.django_db
def test_outbox_filters_and_portrait_history(frozen):
    brand, account, (c1, c2) = setup(2)
    admin = make_staff(brand)
    for n, c in enumerate((c1, c1, c2)):
        services.enqueue_message(
            brand=brand,
            customer=c,
            account=account,
            kind="marketing",
            content={"text": f"msg {n}"},
            cause="journey",
            idempotency_key=f"k{n}",
        )
    deliver_due_messages()
    client = console_client(admin)
    page = client.get("/messaging/outbox/?rule=frequency").content.decode()
    assert "msg 1" in page and "msg 0" not in page
    assert "frequency" in page
    assert client.get("/messaging/outbox/?status=nonsense").status_code == 200
    portrait = client.get(f"/customers/{c1.pk}/").content.decode()
    assert 'data-testid="touch-history"' in portrait and "msg 0" in portrait


@pytest.mark.django_db
def test_composer_previews_and_queues_a_broadcast_to_a_segment(frozen):
    import io

    from yutang.segments import services as segments

    brand, account, (a, b, c) = setup(3)
    admin = make_staff(brand)
    seg = segments.create_segment(actor=admin, name="老客", kind="static")
    segments.upload_static_members(
        actor=admin,
        segment_id=seg.pk,
        upload=io.BytesIO(f"customer_id\n{a.pk}\n{b.pk}\n".encode()),
        filename="m.csv",
    )
    client = console_client(admin)
    page = client.get("/messaging/broadcast/").content.decode()
    assert 'data-testid="broadcast-segment"' in page and "老客" in page
    form = {"account_id": account.pk, "kind": "marketing", "text": "回馈", "segment_id": seg.pk}
    preview = client.post(
        "/messaging/broadcast/", {**form, "action": "preview"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert 'data-testid="preview-segment"' in preview and "老客" in preview
    assert "2" in preview and not Broadcast.objects.exists()
    sent = client.post("/messaging/broadcast/", {**form, "action": "send"})
    assert sent.status_code == 302
    assert Broadcast.objects.get().target["segment_id"] == seg.pk
    assert set(Message.objects.values_list("customer_id", flat=True)) == {a.pk, b.pk}
    wrong = client.post("/messaging/broadcast/", {**form, "segment_id": "x", "action": "send"})
    assert wrong.status_code == 200 and Broadcast.objects.count() == 1


@pytest.mark.django_db
def test_composer_preview_then_queue_and_policy_page(frozen):
    brand, account, customers = setup(2)
    client = console_client(make_staff(brand))
    ids = " ".join(str(c.pk) for c in customers)
    preview = client.post(
        "/messaging/broadcast/",
        {
            "account_id": account.pk,
            "kind": "marketing",
            "text": "新品",
            "customer_ids": ids,
            "action": "preview",
        },
        headers={"HX-Request": "true"},
    )
    assert 'data-testid="policy-preview"' in preview.content.decode()
    assert "2" in preview.content.decode() and not Broadcast.objects.exists()
    bad = client.post(
        "/messaging/broadcast/",
        {
            "account_id": account.pk,
            "kind": "marketing",
            "text": "x",
            "customer_ids": "12 abc",
            "action": "preview",
        },
    )
    assert "abc" in bad.content.decode()
    sent = client.post(
        "/messaging/broadcast/",
        {
            "account_id": account.pk,
            "kind": "marketing",
            "text": "新品",
            "customer_ids": ids,
            "action": "send",
        },
    )
    assert sent.status_code == 302 and Message.objects.filter(cause="broadcast").count() == 2
    r = client.post(
        "/messaging/policy/",
        {
            "marketing_per_day": "2",
            "quiet_start": "22:00",
            "quiet_end": "08:00",
            "unsubscribe_keywords": "退订, TD",
        },
    )
    assert r.status_code == 302
    policy = services.get_policy(brand=brand)
    assert (policy.marketing_per_day, policy.quiet_start, policy.unsubscribe_keywords) == (
        2,
        "22:00",
        ["退订", "TD"],
    )
    page = client.get("/messaging/policy/").content.decode()
    assert "每位客户每天营销消息上限" in page and "营销占比统计范围" in page  # labels in zh-hans
    wrong = client.post("/messaging/policy/", {"quiet_start": "9pm"})
    assert 'data-testid="policy-error"' in wrong.content.decode()
    assert services.get_policy(brand=brand).quiet_start == "22:00"


@pytest.mark.django_db
def test_carrier_settings_connect_and_show_last_error(frozen):
    brand, account, _ = setup(0)
    from yutang.core import services as core_services

    hook = core_services.create_carrier_account(
        actor=None, brand=brand, kind="webhook", external_id="hook-1", display_name="Brand CRM"
    )
    client = console_client(make_staff(brand))
    r = client.post(
        f"/messaging/carriers/{hook.pk}/",
        {"settings.url": "http://127.0.0.1:9/x", "credentials.signing_secret": "s3cret"},
    )
    assert r.status_code == 302
    page = client.get("/messaging/carriers/").content.decode()
    assert 'data-testid="last-error"' in page and "s3cret" not in page
    assert CarrierConnection.objects.get(account=hook).status == "error"
    analyst = console_client(make_staff(brand, Role.ANALYST))
    assert analyst.post(f"/messaging/carriers/{hook.pk}/", {}).status_code == 403


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_broadcast_preview_in_chromium(chromium, live_server):
    brand, account, customers = setup(3)
    admin = make_staff(brand, Role.BRAND_ADMIN, username="msg.browser")
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
        page.click("nav >> text=群发")
        page.wait_for_url(f"{live_server.url}/messaging/broadcast/")
        assert page.locator("h1").inner_text() == "新建群发"
        page.fill("textarea[name=text]", "春季新品")
        page.fill("textarea[name=customer_ids]", " ".join(str(c.pk) for c in customers))
        page.click("button[value=preview]")
        page.wait_for_selector("[data-testid=policy-preview] .yt-card")
        text = page.locator("[data-testid=policy-preview]").inner_text()
        assert "3" in text
        assert errors == []
    finally:
        context.close()
