"""Console pages over the real HTTP stack: thin views, scoped data, downloads."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import load_workbook

from tests.factories import console_client, make_brand, make_staff, make_store
from yutang.acquisition import services
from yutang.acquisition.models import Channel, LiveCode, Partner
from yutang.acquisition.tests.helpers import make_channel, make_code, make_pool

pytestmark = pytest.mark.django_db


def test_channel_list_create_edit_and_report_downloads():
    brand = make_brand()
    lead = make_staff(brand, "operations_lead")
    client = console_client(lead)
    page = client.get("/channels/")
    assert page.status_code == 200 and "渠道" in page.content.decode()
    bad = client.post("/channels/new/", {"code": "Bad Code!", "name": "x", "type": "sms"})
    assert bad.status_code == 200 and b'data-field-error="code"' in bad.content
    created = client.post(
        "/channels/new/",
        {"code": "sms-nov", "name": "双11短信", "type": "sms", "tags": "渠道/短信, 活动/双11",
         "cost_per_reach_fen": "5", "cost_per_add_fen": "0", "cpa_fen": "0", "cps_bp": "0",
         "cpa_event": "added", "attribution_window_days": "30", "is_active": "on"},
    )  # fmt: skip
    assert created.status_code == 302
    channel = Channel.objects.get(brand=brand, code="sms-nov")
    assert channel.tags == ["渠道/短信", "活动/双11"] and channel.cost_per_reach_fen == 5
    listing = client.get("/channels/").content.decode()
    assert "sms-nov" in listing and 'data-series="sms-nov"' in listing
    report = client.get("/channels/report/?date_from=2026-11-01&date_to=2026-11-30")
    assert report.status_code == 200 and b"chart-trend" in report.content
    csv = client.get("/channels/report/?date_from=2026-11-01&date_to=2026-11-30&format=csv")
    assert csv["Content-Type"].startswith("text/csv") and "sms-nov" in csv.content.decode(
        "utf-8-sig"
    )
    xlsx = client.get("/channels/report/?date_from=2026-11-01&date_to=2026-11-30&format=xlsx")
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet["A1"].value == "channel" and sheet["A2"].value == "sms-nov"


def test_live_code_editor_preview_and_qr_download():
    brand = make_brand()
    lead = make_staff(brand, "operations_lead")
    store = make_store(brand, name="静安店")
    (account,) = make_pool(brand, 1, store=store)
    channel = make_channel(brand)
    client = console_client(lead)
    form = {
        "name": "门店活码", "channel_id": str(channel.pk), "rule": "round_robin",
        "account_ids": [str(account.pk)], f"weight_{account.pk}": "1",
        "welcome_text": "{name}您好，我是{staff}，{store}欢迎你", "schedule": "",
        "welcome_attachments": "[]", "is_active": "on",
    }  # fmt: skip
    preview = client.post("/live-codes/preview/", form)
    assert "小美您好，我是Persona，静安店欢迎你" in preview.content.decode()
    bad = client.post("/live-codes/new/", {**form, "schedule": "{not json"})
    assert bad.status_code == 200 and b'data-field-error="schedule"' in bad.content
    assert not LiveCode.objects.exists()
    created = client.post("/live-codes/new/", form)
    assert created.status_code == 302
    code = LiveCode.objects.get()
    editor = client.get(f"/live-codes/{code.pk}/").content.decode()
    assert f"/c/{code.public_token}/" in editor and f"lc{code.pk}" in editor
    png = client.get(f"/live-codes/{code.pk}/qr/?format=png")
    assert png["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"
    poster = client.get(f"/live-codes/{code.pk}/qr/?format=poster")
    assert b"<svg" in poster.content


def test_alerts_show_on_the_live_code_list_and_a_store_role_sees_only_its_codes():
    brand = make_brand()
    mine, theirs = make_store(brand), make_store(brand)
    code_mine = make_code(brand, make_pool(brand, 1, store=mine, cap=0), store_id=mine.pk)
    code_theirs = make_code(brand, make_pool(brand, 1, store=theirs), store_id=theirs.pk)
    with pytest.raises(services.NoCapacity):
        services.assign_account(live_code=code_mine, at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    manager = console_client(make_staff(brand, "store_manager", stores=[mine]))
    page = manager.get("/live-codes/").content.decode()
    assert code_mine.name in page and code_theirs.name not in page
    assert 'data-testid="capacity-alert"' in page
    assert manager.get(f"/live-codes/{code_theirs.pk}/").status_code == 404
    assert manager.get(f"/live-codes/{code_theirs.pk}/qr/").status_code == 404
    advisor = console_client(make_staff(brand, "advisor", stores=[mine]))
    assert advisor.get("/channels/").status_code == 403


def test_partner_pages_compute_lock_and_export_a_settlement():
    brand = make_brand()
    lead = make_staff(brand, "operations_lead")
    client = console_client(lead)
    created = client.post(
        "/partners/",
        {"name": "KOL 阿花", "kind": "kol", "phone": "13812341234", "cps_bp": "1000",
         "cpa_fen": "300", "cpa_event": "added", "fixed_fee_fen": "5000",
         "attribution_window_days": "30", "contact_note": "", "is_active": "on"},
    )  # fmt: skip
    partner = Partner.objects.get(brand=brand)
    assert created.status_code == 302 and created["Location"] == f"/partners/{partner.pk}/"
    analyst = console_client(make_staff(brand, "analyst"))
    listing = analyst.get("/partners/").content.decode()
    assert "138****1234" in listing and "13812341234" not in listing
    computed = client.post(
        f"/partners/{partner.pk}/", {"period_start": "2026-10-01", "period_end": "2026-10-31"}
    )
    assert computed.status_code == 302
    settlement = partner.settlements.get()
    assert settlement.amount_owed_fen == 5000
    assert client.post(f"/settlements/{settlement.pk}/lock/").status_code == 302
    settlement.refresh_from_db()
    assert settlement.status == "locked"
    again = client.post(
        f"/partners/{partner.pk}/", {"period_start": "2026-10-01", "period_end": "2026-10-31"}
    )
    # the service's error, in the console's language
    assert again.status_code == 200 and "与已锁定的结算期" in again.content.decode()
    xlsx = client.get(f"/settlements/{settlement.pk}/xlsx/")
    assert load_workbook(io.BytesIO(xlsx.content)).active["B1"].value == "KOL 阿花"
    assert analyst.post(f"/settlements/{settlement.pk}/lock/").status_code == 403


def test_partner_page_lists_the_partners_channels_only():
    brand = make_brand()
    lead = make_staff(brand, "operations_lead")
    partner = services.create_partner(actor=lead, brand=brand, name="KOC 小桃", kind="koc")
    other = services.create_partner(actor=lead, brand=brand, name="KOL 阿花", kind="kol")
    make_channel(brand, code="xhs-taotao", name="小红书 小桃", partner_id=partner.pk)
    make_channel(brand, code="xhs-ahua", name="小红书 阿花", partner_id=other.pk)
    page = console_client(lead).get(f"/partners/{partner.pk}/").content.decode()
    assert 'data-testid="partner-channels"' in page
    assert "xhs-taotao" in page and "xhs-ahua" not in page
    empty = services.create_partner(actor=lead, brand=brand, name="新达人", kind="kol")
    page = console_client(lead).get(f"/partners/{empty.pk}/").content.decode()
    assert "尚未有渠道关联到该达人" in page


def test_default_welcome_and_qr_logo_are_set_in_the_console():
    from PIL import Image as PilImage

    brand = make_brand()
    lead = console_client(make_staff(brand, "operations_lead"))
    page = lead.get("/acquisition/settings/").content.decode()
    assert "默认欢迎语" in page and 'data-testid="qr-logo-none"' in page
    saved = lead.post(
        "/acquisition/settings/",
        {"what": "welcome", "default_welcome_text": "{name}你好，我是{staff}"},
    )
    assert saved.status_code == 302
    assert services.acquisition_defaults(actor=make_staff(brand, "analyst")) == (
        services.AcquisitionDefaults(default_welcome_text="{name}你好，我是{staff}", has_logo=False)
    )
    page = lead.get("/acquisition/settings/").content.decode()
    assert "小美你好，我是导购" in page
    too_long = lead.post(
        "/acquisition/settings/", {"what": "welcome", "default_welcome_text": "长" * 2001}
    )
    assert too_long.status_code == 200 and b'data-field-error="default_welcome_text"' in (
        too_long.content
    )
    bad = io.BytesIO(b"<svg onload=alert(1)>")
    bad.name = "logo.png"
    rejected = lead.post("/acquisition/settings/", {"what": "logo", "logo": bad})
    assert rejected.status_code == 200 and b'data-field-error="logo"' in rejected.content
    assert services.brand_logo(brand=brand) is None
    none = lead.post("/acquisition/settings/", {"what": "logo"})
    assert b'data-field-error="logo"' in none.content
    image = io.BytesIO()
    PilImage.new("RGB", (64, 64), "red").save(image, format="JPEG")
    image.seek(0)
    image.name = "logo.jpg"
    assert lead.post("/acquisition/settings/", {"what": "logo", "logo": image}).status_code == 302
    page = lead.get("/acquisition/settings/").content.decode()
    assert 'data-testid="qr-logo-image"' in page
    png = lead.get("/acquisition/logo.png")
    assert png["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    # an analyst sees the settings but cannot change them
    analyst = console_client(make_staff(brand, "analyst"))
    view = analyst.get("/acquisition/settings/").content.decode()
    assert 'data-testid="default-welcome-save"' not in view and "readonly" in view
    refused = analyst.post("/acquisition/settings/", {"what": "remove_logo"})
    assert refused.status_code == 200 and services.brand_logo(brand=brand) is not None
    assert lead.post("/acquisition/settings/", {"what": "remove_logo"}).status_code == 302
    assert services.brand_logo(brand=brand) is None
    assert lead.get("/acquisition/logo.png").status_code == 404
