"""The REST API end to end: shapes, errors naming the field, CRUD, OpenAPI."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import Api, make_brand, make_staff, make_store
from yutang.core import services
from yutang.core.models import Staff, Store
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return make_staff(make_brand(), Role.BRAND_ADMIN)


def test_openapi_schema_and_docs_are_served():
    client = Client()
    schema = client.get("/api/v1/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/api/v1/stores",
        "/api/v1/staff",
        "/api/v1/carrier-accounts",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/brands/current",
    } <= paths
    assert client.get("/api/v1/docs").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "message_part"),
    [
        ({"code": "A1", "name": "A", "colour": "red"}, "colour", "Unknown field 'colour'"),
        ({"code": "A1", "name": "A", "latitude": "north"}, "latitude", "decimal"),
        ({"code": "A1", "name": "A", "latitude": 91}, "latitude", "less than or equal to 90"),
        ({"code": "A 1", "name": "A"}, "code", "pattern"),
        ({"name": "A"}, "code", "Field required"),
        ({"code": "A1", "name": "A", "kind": "partner"}, "kind", "direct"),
        ({"code": "A1", "name": "A", "is_active": "perhaps"}, "is_active", "boolean"),
    ],
)
def test_bad_input_is_422_naming_the_field(admin, body, field, message_part):
    response = Api(admin).post("/stores", body)
    assert response.status_code == 422
    payload = response.json()
    assert set(payload) == {"code", "message", "field"}
    assert payload["code"] == "invalid"
    assert payload["field"] == field
    assert message_part in payload["message"]
    assert not Store.objects.filter(brand=admin.brand).exists()


def test_store_crud(admin):
    api = Api(admin)
    created = api.post(
        "/stores",
        {
            "code": "SH9",
            "name": "Shanghai",
            "kind": "franchise",
            "latitude": "31.2",
            "longitude": "121.4",
        },
    )
    assert created.status_code == 201
    store = created.json()
    assert (store["kind"], store["latitude"]) == ("franchise", "31.2")
    assert api.get(f"/stores/{store['id']}").json()["name"] == "Shanghai"
    assert api.post("/stores", {"code": "SH9", "name": "Dup"}).json() == {
        "code": "conflict",
        "message": "A store with code 'SH9' exists.",
        "field": "code",
    }
    assert api.patch(f"/stores/{store['id']}", {"is_active": False}).json()["is_active"] is False
    assert [s["code"] for s in api.get("/stores?is_active=false").json()] == ["SH9"]
    assert api.get("/stores?search=zzz").json() == []
    assert api.delete(f"/stores/{store['id']}").status_code == 204
    assert api.get(f"/stores/{store['id']}").status_code == 404


def test_store_with_carrier_accounts_cannot_be_deleted(admin):
    api = Api(admin)
    store = make_store(admin.brand)
    api.post(
        "/carrier-accounts",
        {"kind": "sandbox", "external_id": "s1", "display_name": "S", "store_id": store.pk},
    )
    response = api.delete(f"/stores/{store.pk}")
    assert response.status_code == 409 and response.json()["field"] == "store_id"
    assert Store.objects.filter(pk=store.pk).exists()


def test_staff_crud_and_generated_password(admin):
    api = Api(admin)
    store = make_store(admin.brand)
    created = api.post(
        "/staff",
        {
            "username": "wang.fang",
            "display_name": "王芳",
            "role": "store_manager",
            "store_ids": [store.pk],
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert body["store_ids"] == [store.pk] and len(body["initial_password"]) >= 12
    assert Client().login(username="wang.fang", password=body["initial_password"])
    assert "initial_password" not in api.get(f"/staff/{body['id']}").json()

    no_store = api.post("/staff", {"username": "x.y", "display_name": "X", "role": "advisor"})
    assert no_store.status_code == 422 and no_store.json()["field"] == "store_ids"
    weak = api.post(
        "/staff",
        {"username": "z.z", "display_name": "Z", "role": "analyst", "password": "1234567890"},
    )
    assert weak.status_code == 422 and weak.json()["field"] == "password"
    bad_phone = api.post(
        "/staff", {"username": "p.p", "display_name": "P", "role": "analyst", "phone": "12345"}
    )
    assert bad_phone.status_code == 422 and bad_phone.json()["field"] == "phone"

    changed = api.patch(f"/staff/{body['id']}", {"role": "analyst", "store_ids": []})
    assert changed.json()["role"] == "analyst" and changed.json()["store_ids"] == []
    assert api.patch(f"/staff/{admin.pk}", {"role": "analyst"}).status_code == 409
    assert api.delete(f"/staff/{admin.pk}").status_code == 409
    assert api.delete(f"/staff/{body['id']}").status_code == 204
    assert not Staff.objects.filter(pk=body["id"]).exists()


def test_an_admin_of_both_brands_adds_a_colleague_from_one_to_the_other():
    first, second = make_brand(), make_brand()
    make_staff(first, Role.ANALYST, username="shared.person")
    admin2 = make_staff(second, Role.BRAND_ADMIN, username="both.admin")
    services.create_staff(
        actor=None, brand=first, username="both.admin", display_name="B", role=Role.BRAND_ADMIN
    )
    added = Api(admin2).post(
        "/staff", {"username": "shared.person", "display_name": "S", "role": "operations_lead"}
    )
    assert added.status_code == 201 and added.json()["initial_password"] is None
    assert Staff.objects.filter(user__username="shared.person").count() == 2
    again = Api(admin2).post(
        "/staff", {"username": "shared.person", "display_name": "S", "role": "analyst"}
    )
    assert again.status_code == 409


def test_identifiers_are_masked_for_analysts(admin):
    make_staff(admin.brand, Role.ANALYST, phone="13812341234")
    analyst = make_staff(admin.brand, Role.ANALYST)
    Api(admin).post(
        "/carrier-accounts", {"kind": "wecom", "external_id": "wmSecretUser77", "display_name": "A"}
    )
    phones = {s["phone"] for s in Api(analyst).get("/staff").json()} - {""}
    assert phones == {"138****1234"}
    assert Api(admin).get("/staff").json()[1]["phone"] == "+8613812341234"
    assert [a["external_id"] for a in Api(analyst).get("/carrier-accounts").json()] == [
        "wmSe****er77"
    ]
    assert [a["external_id"] for a in Api(admin).get("/carrier-accounts").json()] == [
        "wmSecretUser77"
    ]


def test_carrier_account_crud_and_advisor_self_scope(admin):
    store = make_store(admin.brand)
    advisor = make_staff(admin.brand, Role.ADVISOR, stores=[store])
    mine = Api(advisor).post(
        "/carrier-accounts",
        {
            "kind": "wecom",
            "external_id": "adv1",
            "display_name": "我",
            "signature": "hi",
            "daily_add_cap": 100,
        },
    )
    assert mine.status_code == 201 and mine.json()["staff_id"] == advisor.pk
    dup = Api(admin).post(
        "/carrier-accounts", {"kind": "wecom", "external_id": "adv1", "display_name": "dup"}
    )
    assert dup.status_code == 409 and dup.json()["field"] == "external_id"
    handed = Api(advisor).patch(f"/carrier-accounts/{mine.json()['id']}", {"staff_id": admin.pk})
    assert handed.status_code == 422 and handed.json()["field"] == "staff_id"
    cap = Api(advisor).patch(f"/carrier-accounts/{mine.json()['id']}", {"daily_add_cap": -1})
    assert cap.status_code == 422 and cap.json()["field"] == "daily_add_cap"


def test_brand_current_and_settings(admin):
    api = Api(admin)
    assert api.get("/brands/current").json()["settings"] == {
        "hq_can_view_franchise_customers": False,
        "merge_policy": "auto",
        "staff_language": "zh-hans",
    }
    bad = api.patch("/brands/current", {"time_zone": "Mars/Olympus"})
    assert bad.status_code == 422 and bad.json()["field"] == "time_zone"
    unknown = api.patch("/brands/current", {"settings": {"nope": 1}})
    assert unknown.status_code == 422 and unknown.json()["field"] == "settings.nope"
    ok = api.patch("/brands/current", {"time_zone": "Asia/Hong_Kong"})
    assert ok.json()["time_zone"] == "Asia/Hong_Kong"
    analyst = make_staff(admin.brand, Role.ANALYST)
    assert Api(analyst).patch("/brands/current", {"name": "x"}).status_code == 403


def test_session_auth_needs_csrf_for_writes(admin):
    client = Client(enforce_csrf_checks=True)
    client.login(username=admin.user.username, password="correct-horse-battery")
    assert client.get("/api/v1/stores").status_code == 200
    refused = client.post(
        "/api/v1/stores", {"code": "C1", "name": "C"}, content_type="application/json"
    )
    assert refused.status_code in (401, 403)
    assert not Store.objects.filter(code="C1").exists()


def test_usernames_are_identifiers_masked_for_analysts(admin):
    make_staff(admin.brand, Role.ADVISOR, stores=[make_store(admin.brand)], username="13812341234")
    make_staff(admin.brand, Role.ANALYST, username="li.na@example.com")
    analyst = make_staff(admin.brand, Role.ANALYST, username="the.analyst")
    seen = {s["id"]: s["username"] for s in Api(analyst).get("/staff").json()}
    clear = {s["id"]: s["username"] for s in Api(admin).get("/staff").json()}
    assert sorted(clear.values()) == sorted(
        [admin.user.username, "13812341234", "li.na@example.com", "the.analyst"]
    )
    assert sorted(seen.values()) == sorted(
        [crypto_mask(admin.user.username), "138****1234", "l***@example.com", "the.analyst"]
    )
    assert Api(analyst).get(f"/staff/{admin.pk}").json()["username"] != admin.user.username


def crypto_mask(value: str) -> str:
    from yutang.core.crypto import mask_text

    return mask_text(value)
