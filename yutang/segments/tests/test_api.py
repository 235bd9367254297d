"""Segments over REST: CRUD, preview, members, export with masking, static upload, refresh,
errors naming the field, and store scoping."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.factories import Api, make_brand, make_staff, make_store
from yutang.core.permissions import Role
from yutang.customers import services as customers
from yutang.events.models import Event
from yutang.segments import services
from yutang.segments.models import Segment, SegmentMember

pytestmark = pytest.mark.django_db

SHANGHAI = {"kind": "profile", "field": "city", "op": "eq", "value": "上海"}


@pytest.fixture
def world():
    brand = make_brand()
    store_a, store_b = make_store(brand), make_store(brand)
    admin = make_staff(brand, Role.BRAND_ADMIN)
    people = []
    for n, (city, store) in enumerate([("上海", store_a), ("上海", store_b), ("北京", store_a)]):
        result = customers.create_customer(
            actor=admin,
            identities=[{"kind": "phone", "value": f"1380013800{n}"}],
            profile={"display_name": f"P{n}", "city": city, "owner_store_id": store.pk},
        )
        people.append(result.customer)
    return brand, admin, store_a, store_b, people


def test_crud_preview_members_and_refresh(world):
    brand, admin, _, _, people = world
    api = Api(admin)
    created = api.post("/segments", {"name": "上海客户", "rule": SHANGHAI, "refresh_minutes": 60})
    assert created.status_code == 201, created.json()
    seg = created.json()
    assert seg["kind"] == "dynamic" and seg["rule"]["value"] == "上海"
    assert api.get("/segments").json()[0]["name"] == "上海客户"

    preview = api.post("/segments/preview", {"rule": SHANGHAI}).json()
    assert preview["count"] == 2
    assert {c["id"] for c in preview["sample"]} == {people[0].pk, people[1].pk}
    assert preview["elapsed_ms"] >= 0
    assert (
        preview["sample"][0]["identities"][0]["value"].startswith("+86")
        or "*" not in (preview["sample"][0]["identities"][0]["value"])
    )

    page = api.get(f"/segments/{seg['id']}/members?limit=1").json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api.get(f"/segments/{seg['id']}/members?limit=5&cursor={page['next_cursor']}").json()
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == {people[0].pk, people[1].pk}

    refreshed = api.post(f"/segments/{seg['id']}/refresh", {}).json()
    assert refreshed == {"segment_id": seg["id"], "entered": 2, "exited": 0, "members": 2}
    assert Event.objects.filter(type="segment.entered").count() == 2

    patched = api.patch(f"/segments/{seg['id']}", {"rule": {"not": SHANGHAI}})
    assert patched.status_code == 200
    assert api.get(f"/segments/{seg['id']}/preview").json()["count"] == 1
    assert api.delete(f"/segments/{seg['id']}").status_code == 204
    assert not Segment.objects.filter(pk=seg["id"]).exists()


def test_bad_rules_are_422_naming_the_json_path(world):
    _, admin, *_ = world
    api = Api(admin)
    bad = {"and": [SHANGHAI, {"kind": "event", "type": "link.clicked", "window": {"days": 0}}]}
    response = api.post("/segments", {"name": "x", "rule": bad})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "rule.and[1].window.days"
    assert body["message"] == "$.and[1].window.days: must be between 1 and 3650"
    assert not Segment.objects.exists()
    response = api.post("/segments/preview", {"rule": {"kind": "tag"}})
    assert response.status_code == 422 and response.json()["field"] == "rule.tag_ids"
    response = api.post("/segments", {"name": "x", "rule": SHANGHAI, "colour": 1})
    assert response.status_code == 422 and response.json()["field"] == "colour"
    api.post("/segments", {"name": "dup", "rule": SHANGHAI})
    assert api.post("/segments", {"name": "dup", "rule": SHANGHAI}).status_code == 409
    assert api.get("/segments/1/members?limt=2").status_code == 422


def test_export_masks_identifiers_per_role(world):
    brand, admin, *_ = world
    seg = (
        Api(admin)
        .post("/segments", {"name": "all", "rule": {"not": {"kind": "tag", "tag_ids": [1]}}})
        .json()
    )
    full = Api(admin).get(f"/segments/{seg['id']}/export?format=csv")
    assert full.status_code == 200 and full.streaming  # streamed from a spooled file
    assert f'filename="segment-{seg["id"]}-' in full["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(full.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "display_name", "phone"]
    assert sorted(r[2] for r in rows[1:]) == ["+8613800138000", "+8613800138001", "+8613800138002"]

    analyst = make_staff(brand, Role.ANALYST)
    masked = Api(analyst).get(f"/segments/{seg['id']}/export?format=xlsx")
    assert masked.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(masked.streaming_content))).active
    phones = sorted(row[2] for row in sheet.iter_rows(min_row=2, values_only=True))
    assert phones == ["138****8000", "138****8001", "138****8002"]
    assert Api(analyst).get(f"/segments/{seg['id']}/export?format=pdf").status_code == 422


def test_exports_are_written_in_chunks():
    """CSV rows reach the output EXPORT_CHUNK_ROWS at a time, never as one string of the
    whole file; the bytes are the same as one write would give."""
    writes: list[int] = []

    class Recorder(io.BytesIO):
        def write(self, data: Any) -> int:
            writes.append(len(data))
            return super().write(data)

    n = services.EXPORT_CHUNK_ROWS * 3 + 5
    rows = ([str(i), f"客户{i}", "", "female", "", "上海", "=cmd", "", ""] for i in range(n))
    out = Recorder()
    services.write_export_to(rows, "csv", out)
    assert len(writes) == 4  # three full chunks and the rest
    parsed = list(csv.reader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    assert len(parsed) == n + 1 and parsed[0] == services.EXPORT_COLUMNS
    assert parsed[-1][:2] == [str(n - 1), f"客户{n - 1}"] and parsed[1][6] == "'=cmd"
    xlsx = io.BytesIO()
    services.write_export_to(iter([["1", "甲", "", "", "", "", "", "", ""]]), "xlsx", xlsx)
    sheet = load_workbook(xlsx).active
    assert [r[1] for r in sheet.iter_rows(min_row=2, values_only=True)] == ["甲"]


def test_store_roles_see_only_their_stores_members_and_cannot_manage(world):
    brand, admin, store_a, store_b, people = world
    seg = Api(admin).post("/segments", {"name": "上海", "rule": SHANGHAI}).json()
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[store_a])
    api = Api(manager)
    assert api.post("/segments/preview", {"rule": SHANGHAI}).json()["count"] == 1
    ids = [c["id"] for c in api.get(f"/segments/{seg['id']}/members").json()["items"]]
    assert ids == [people[0].pk]
    denied = api.post("/segments", {"name": "mine", "rule": SHANGHAI})
    assert denied.status_code == 403
    assert api.delete(f"/segments/{seg['id']}").status_code == 403
    assert Segment.objects.count() == 1
    other = make_brand()
    stranger = make_staff(other, Role.BRAND_ADMIN)
    assert Api(stranger).get(f"/segments/{seg['id']}").status_code == 404


def test_static_upload_all_rows_or_none_and_snapshot(world):
    brand, admin, _, _, people = world
    api = Api(admin)
    seg = api.post("/segments", {"name": "名单", "kind": "static"}).json()
    good = "手机号\n13800138000\n13800138002\n"
    response = api.client.post(
        f"/api/v1/segments/{seg['id']}/members/upload", {"file": _file("list.csv", good)},
        headers=api.headers,
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    assert response.json() == {"members": 2}
    bad = "手机号\n13800138001\n13900000000\n"
    response = api.client.post(
        f"/api/v1/segments/{seg['id']}/members/upload", {"file": _file("list.csv", bad)},
        headers=api.headers,
    )  # fmt: skip
    assert response.status_code == 422
    assert response.json()["message"] == "Row 3: no customer has this phone."
    members = set(
        SegmentMember.objects.filter(segment_id=seg["id"]).values_list("customer_id", flat=True)
    )
    assert members == {people[0].pk, people[2].pk}  # unchanged by the refused file

    dynamic = api.post("/segments", {"name": "上海", "rule": SHANGHAI}).json()
    snap = api.post(f"/segments/{dynamic['id']}/snapshot", {"name": "上海 snapshot"})
    assert snap.status_code == 201 and snap.json()["kind"] == "static"
    assert snap.json()["member_count"] == 2


def _file(name: str, text: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def test_customer_segmentation_endpoint_and_in_memory_match(world):
    brand, admin, store_a, _, people = world
    api = Api(admin)
    seg = api.post("/segments", {"name": "上海", "rule": SHANGHAI}).json()
    body = api.get(f"/customers/{people[0].pk}/segmentation").json()
    assert body["segments"] == [{"id": seg["id"], "name": "上海", "kind": "dynamic"}]
    assert body["rfm"] is None and body["predicted_next_purchase"] is None
    assert api.get(f"/customers/{people[2].pk}/segmentation").json()["segments"] == []
    from yutang.segments import services

    node = services.parse_rule(SHANGHAI)
    assert services.customer_matches(customer=people[0], node=node) is True
    assert services.customer_matches(customer=people[2], node=node) is False
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[store_a])
    assert Api(manager).get(f"/customers/{people[1].pk}/segmentation").status_code == 404
