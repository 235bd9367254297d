"""The REST API end to end over HTTP: errors name the field, scopes hold, files download."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from openpyxl import load_workbook
from PIL import Image

from tests.factories import Api, make_brand, make_staff, make_store
from yutang.acquisition.models import Channel, LiveCode
from yutang.acquisition.tests.helpers import make_channel, make_code, make_pool

pytestmark = pytest.mark.django_db


def test_channel_crud_and_errors_naming_the_field():
    brand = make_brand()
    api = Api(make_staff(brand, "operations_lead"))
    created = api.post(
        "/channels",
        {"code": "douyin-ads", "name": "抖音信息流", "type": "feed_ad", "platform": "douyin",
         "cost_per_add_fen": 350, "tags": ["渠道/抖音"]},
    )  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["code"] == "douyin-ads" and body["platform"] == "douyin"
    bad = api.post("/channels", {"code": "x", "name": "x", "type": "billboard"})
    assert bad.status_code == 422 and bad.json()["field"] == "type"
    typo = api.post("/channels", {"code": "x", "name": "x", "type": "sms", "cost_per_ad_fen": 1})
    assert typo.status_code == 422 and typo.json()["field"] == "cost_per_ad_fen"
    duplicate = api.post("/channels", {"code": "douyin-ads", "name": "again", "type": "sms"})
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "code"
    bad_tag = api.post("/channels", {"code": "y", "name": "y", "type": "sms", "tags": ["notag"]})
    assert bad_tag.status_code == 422 and bad_tag.json()["field"] == "tags.0"
    patched = api.patch(f"/channels/{body['id']}", {"cps_bp": 500})
    assert patched.status_code == 200 and patched.json()["cps_bp"] == 500
    cost = api.post(f"/channels/{body['id']}/costs", {"date": "2026-11-01", "amount_fen": 100000})
    assert cost.status_code == 201
    reach = api.put(f"/channels/{body['id']}/reach", {"date": "2026-11-01", "count": 20000})
    again = api.put(f"/channels/{body['id']}/reach", {"date": "2026-11-01", "count": 25000})
    assert reach.json()["id"] == again.json()["id"] and again.json()["count"] == 25000
    unknown_query = api.get("/channels?kind=sms")
    assert unknown_query.status_code == 422 and unknown_query.json()["field"] == "kind"
    analyst = Api(make_staff(brand, "analyst"))
    assert analyst.get("/channels").status_code == 200
    denied = analyst.post("/channels", {"code": "z", "name": "z", "type": "sms"})
    assert denied.status_code == 403 and not Channel.objects.filter(code="z").exists()


def test_live_code_crud_capacity_and_qr_download_decodes_to_the_landing_url():
    brand = make_brand()
    api = Api(make_staff(brand, "operations_lead"))
    channel = make_channel(brand)
    a, b = make_pool(brand, 2, cap=5)
    created = api.post(
        "/live-codes",
        {"channel_id": channel.pk, "name": "包裹卡 11月", "rule": "weighted",
         "members": [{"account_id": a.pk, "weight": 2}, {"account_id": b.pk, "is_backup": True}],
         "welcome_text": "你好 {name}",
         "welcome_attachments": [{"type": "image", "url": "https://example.com/x.png"}]},
    )  # fmt: skip
    assert created.status_code == 201, created.content
    code = created.json()
    assert code["state"] == f"lc{code['id']}" and code["members"][0]["weight"] == 2
    bad = api.post(
        "/live-codes",
        {"channel_id": channel.pk, "name": "x", "rule": "round_robin",
         "members": [{"account_id": 999999}]},
    )  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "members.0.account_id"
    bad_schedule = api.patch(
        f"/live-codes/{code['id']}",
        {"rule": "time_slot",
         "schedule": {"weekly": {"mon": [{"start": "18:00", "end": "09:00", "accounts": [a.pk]}]}}},
    )  # fmt: skip
    assert bad_schedule.status_code == 422
    assert bad_schedule.json()["field"] == "schedule.weekly.mon.0.end"
    capacity = api.get(f"/live-codes/{code['id']}/capacity").json()
    assert [(c["account_id"], c["cap"], c["has_room"]) for c in capacity] == [
        (a.pk, 5, True), (b.pk, 5, True),
    ]  # fmt: skip
    png = api.get(f"/live-codes/{code['id']}/qr?format=png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))]
    assert decoded == [f"http://testserver{code['landing_path']}"]
    svg = api.get(f"/live-codes/{code['id']}/qr?format=svg")
    assert svg["Content-Type"] == "image/svg+xml" and svg.content.startswith(b"<svg")
    poster = api.get(f"/live-codes/{code['id']}/qr?format=poster")
    assert b"<svg" in poster.content
    assert api.get(f"/live-codes/{code['id']}/qr?format=gif").json()["field"] == "format"
    assert api.delete(f"/live-codes/{code['id']}").status_code == 204
    assert not LiveCode.objects.get(pk=code["id"]).is_active


def test_a_store_manager_sees_only_their_store_live_codes():
    brand = make_brand()
    mine, theirs = make_store(brand), make_store(brand)
    channel = make_channel(brand)
    code_mine = make_code(brand, make_pool(brand, 1, store=mine), channel=channel, store_id=mine.pk)
    code_theirs = make_code(
        brand, make_pool(brand, 1, store=theirs), channel=channel, store_id=theirs.pk
    )
    manager = Api(make_staff(brand, "store_manager", stores=[mine]))
    listed = manager.get("/live-codes").json()
    assert [c["id"] for c in listed] == [code_mine.pk]
    assert manager.get(f"/live-codes/{code_theirs.pk}").status_code == 404
    assert manager.patch(f"/live-codes/{code_theirs.pk}", {"name": "x"}).status_code == 404
    assert LiveCode.objects.get(pk=code_theirs.pk).name != "x"
    other_brand = Api(make_staff(make_brand(), "operations_lead"))
    assert other_brand.get(f"/live-codes/{code_mine.pk}").status_code == 404


def test_partners_settlements_short_links_and_report_over_http():
    brand = make_brand()
    lead = Api(make_staff(brand, "operations_lead"))
    partner = lead.post(
        "/partners", {"name": "KOC 小林", "kind": "koc", "phone": "13900001111", "cpa_fen": 800}
    )
    assert partner.status_code == 201 and partner.json()["phone"] == "+8613900001111"
    analyst = Api(make_staff(brand, "analyst"))
    assert analyst.get("/partners").json()[0]["phone"] == "139****1111"
    bad_phone = lead.post("/partners", {"name": "x", "phone": "12"})
    assert bad_phone.status_code == 422 and bad_phone.json()["field"] == "phone"
    pid = partner.json()["id"]
    settlement = lead.post(
        f"/partners/{pid}/settlements", {"period_start": "2026-10-01", "period_end": "2026-10-31"}
    )
    assert settlement.status_code == 200 and settlement.json()["amount_owed_fen"] == 0
    sid = settlement.json()["id"]
    assert lead.post(f"/settlements/{sid}/lock", {}).json()["status"] == "locked"
    relock = lead.post(f"/settlements/{sid}/lock", {})
    assert relock.status_code == 409
    xlsx = lead.get(f"/settlements/{sid}.xlsx")
    assert load_workbook(io.BytesIO(xlsx.content)).active["B1"].value == "KOC 小林"
    link = lead.post("/short-links", {"target_url": "javascript:alert(1)"})
    assert link.status_code == 422 and link.json()["field"] == "target_url"
    link = lead.post("/short-links", {"target_url": "https://example.com/sale"})
    assert link.status_code == 201 and len(link.json()["code"]) == 16
    report = lead.get("/reports/channels?date_from=2026-10-01&date_to=2026-10-31")
    assert report.status_code == 200 and report.json()["rows"] == []
    backwards = lead.get("/reports/channels?date_from=2026-10-31&date_to=2026-10-01")
    assert backwards.status_code == 422 and backwards.json()["field"] == "date_to"


def test_default_welcome_and_logo_over_http():
    from PIL import Image as PilImage

    from yutang.acquisition import services

    brand = make_brand()
    lead = Api(make_staff(brand, "operations_lead"))
    assert (
        lead.put(
            "/acquisition/default-welcome", {"default_welcome_text": "欢迎 {name}"}
        ).status_code
        == 204
    )
    (account,) = make_pool(brand, 1)
    welcome = services.welcome_for_add(
        brand=brand, account=account, state=None, customer_name="阿明"
    )
    assert welcome is not None and welcome.text == "欢迎 阿明"
    logo = io.BytesIO()
    PilImage.new("RGB", (40, 40), "blue").save(logo, format="PNG")
    logo.seek(0)
    logo.name = "logo.png"
    response = lead.client.post("/api/v1/acquisition/logo", {"file": logo}, headers=lead.headers)
    assert response.status_code == 204, response.content
    assert services.brand_logo(brand=brand) is not None
    read = lead.get("/acquisition/default-welcome")
    assert read.json() == {"default_welcome_text": "欢迎 {name}", "has_logo": True}
    fetched = lead.get("/acquisition/logo")
    assert fetched["Content-Type"] == "image/png" and fetched.content.startswith(b"\x89PNG")
    bad = io.BytesIO(b"not an image")
    bad.name = "logo.png"
    response = lead.client.post("/api/v1/acquisition/logo", {"file": bad}, headers=lead.headers)
    assert response.status_code == 422 and response.json()["field"] == "logo"
    assert lead.delete("/acquisition/logo").status_code == 204
    assert services.brand_logo(brand=brand) is None
    missing = lead.get("/acquisition/logo")
    assert missing.status_code == 404 and missing.json()["field"] == "logo"
    assert lead.get("/acquisition/default-welcome").json()["has_logo"] is False
    analyst = Api(make_staff(brand, "analyst"))
    assert (
        analyst.put("/acquisition/default-welcome", {"default_welcome_text": "x"}).status_code
        == 403
    )


def test_a_store_manager_makes_live_codes_for_their_store_with_their_accounts_only():
    brand = make_brand()
    mine, theirs = make_store(brand), make_store(brand)
    channel = make_channel(brand)
    (own,) = make_pool(brand, 1, store=mine)
    (other,) = make_pool(brand, 1, store=theirs)
    manager = Api(make_staff(brand, "store_manager", stores=[mine]))
    body = {"channel_id": channel.pk, "name": "店内台卡", "rule": "round_robin"}
    created = manager.post(
        "/live-codes", {**body, "store_id": mine.pk, "members": [{"account_id": own.pk}]}
    )
    assert created.status_code == 201, created.content
    foreign = manager.post(
        "/live-codes", {**body, "store_id": mine.pk, "members": [{"account_id": other.pk}]}
    )
    assert foreign.status_code == 422 and foreign.json()["field"] == "members.0.account_id"
    elsewhere = manager.post(
        "/live-codes", {**body, "store_id": theirs.pk, "members": [{"account_id": own.pk}]}
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["field"] == "store_id"
    nowhere = manager.post("/live-codes", {**body, "members": [{"account_id": own.pk}]})
    assert nowhere.status_code == 422 and nowhere.json()["field"] == "store_id"
    assert LiveCode.objects.filter(brand=brand).count() == 1
    lead = Api(make_staff(brand, "operations_lead"))
    link = lead.post("/short-links", {"target_url": "https://example.com/"}).json()
    assert [row["code"] for row in lead.get("/short-links").json()] == [link["code"]]
