"""Every state change writes an audit row; identifiers in it are masked."""

from __future__ import annotations

import pytest

from tests.factories import Api, console_client, make_brand, make_staff, make_store
from yutang.core.models import AuditLog
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db


def last(action: str) -> AuditLog:
    return AuditLog.objects.filter(action=action).latest("id")


def test_each_state_change_is_audited_with_identifiers_masked():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    api = Api(admin)
    start = AuditLog.objects.filter(brand=brand).count()

    store = api.post("/stores", {"code": "BJ1", "name": "Beijing", "city": "北京"}).json()
    row = last("store.create")
    assert (row.actor_id, row.target_type, row.target_id) == (
        admin.pk,
        "core.store",
        str(store["id"]),
    )
    assert row.changes["code"] == {"after": "BJ1"}

    api.patch(f"/stores/{store['id']}", {"name": "Beijing Sanlitun"})
    assert last("store.update").changes == {
        "name": {"before": "Beijing", "after": "Beijing Sanlitun"}
    }

    person = api.post(
        "/staff",
        {
            "username": "li.lei",
            "display_name": "Li Lei",
            "role": "advisor",
            "store_ids": [store["id"]],
            "phone": "13812341234",
        },
    ).json()
    created = last("staff.create")
    assert created.changes["phone"] == {"after": "138****1234"}
    assert created.store_id == store["id"]

    api.patch(
        f"/staff/{person['id']}", {"phone": "+86 139 0000 5678", "password": "a-new-long-password"}
    )
    updated = last("staff.update")
    assert updated.changes["phone"] == {"before": "138****1234", "after": "139****5678"}
    assert updated.changes["password"] == {"after": "(changed)"}

    account = api.post(
        "/carrier-accounts",
        {
            "kind": "wecom",
            "external_id": "wmLiLei0001XYZ",
            "display_name": "小李",
            "staff_id": person["id"],
            "store_id": store["id"],
        },
    ).json()
    assert last("carrier_account.create").changes["external_id"] == {"after": "wmLi****1XYZ"}
    api.patch(f"/carrier-accounts/{account['id']}", {"daily_add_cap": 150})
    assert last("carrier_account.update").changes == {
        "daily_add_cap": {"before": None, "after": 150}
    }
    api.delete(f"/carrier-accounts/{account['id']}")
    assert last("carrier_account.delete").changes["external_id"] == {"before": "wmLi****1XYZ"}

    token = api.post("/tokens", {"name": "sync"}).json()
    assert last("token.create").changes["name"] == {"after": "sync"}
    api.delete(f"/tokens/{token['id']}")
    assert last("token.revoke").target_id == str(token["id"])

    api.patch("/brands/current", {"settings": {"hq_can_view_franchise_customers": True}})
    assert last("brand.update").changes["settings"]["after"] == {
        "hq_can_view_franchise_customers": True,
        "merge_policy": "auto",
        "staff_language": "zh-hans",
    }

    api.delete(f"/staff/{person['id']}")
    assert last("staff.delete").changes["phone"] == {"before": "139****5678"}
    api.delete(f"/stores/{store['id']}")
    assert last("store.delete").target_label == "BJ1 Beijing Sanlitun"

    actions = list(
        AuditLog.objects.filter(brand=brand).order_by("id").values_list("action", flat=True)
    )[start:]
    assert actions == [
        "store.create",
        "store.update",
        "staff.create",
        "staff.update",
        "carrier_account.create",
        "carrier_account.update",
        "carrier_account.delete",
        "token.create",
        "token.revoke",
        "brand.update",
        "staff.delete",
        "store.delete",
    ]
    everything = str(list(AuditLog.objects.values_list("changes", flat=True)))
    for clear in ["13812341234", "13900005678", "wmLiLei0001XYZ", "a-new-long-password"]:
        assert clear not in everything


def test_a_refused_change_writes_no_audit_row():
    brand = make_brand()
    analyst = make_staff(brand, Role.ANALYST)
    before = AuditLog.objects.count()
    response = Api(analyst).post("/stores", {"code": "X", "name": "X"})
    assert response.status_code == 403
    assert AuditLog.objects.count() == before + 1  # only the Api helper's token.create


def test_audit_log_is_for_brand_admins_only():
    brand = make_brand()
    make_store(brand, code="AUD1")
    admin = make_staff(brand, Role.BRAND_ADMIN)
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    page = Api(admin).get("/audit?limit=2")
    assert page.status_code == 200 and len(page.json()["items"]) == 2
    second = Api(admin).get(f"/audit?limit=2&cursor={page.json()['next_cursor']}").json()
    assert not {i["id"] for i in second["items"]} & {i["id"] for i in page.json()["items"]}
    assert Api(lead).get("/audit").status_code == 403
    assert console_client(lead).get("/audit/").status_code == 403
    body = console_client(admin).get("/audit/").content.decode()
    assert "store.create" in body and "AUD1" in body


def test_bad_cursor_is_a_clear_error():
    admin = make_staff(make_brand(), Role.BRAND_ADMIN)
    response = Api(admin).get("/audit?cursor=garbage!!")
    assert response.status_code == 422
    assert response.json()["field"] == "cursor"
