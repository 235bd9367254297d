"""Store rules beyond the matrix: who may change a store's kind, and what keeps a store from
being deleted."""

from __future__ import annotations

import pytest

from tests.factories import Api, console_client, make_brand, make_staff, make_store
from yutang.core.models import AuditLog, Store
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def brand():
    return make_brand()


@pytest.mark.parametrize(("role", "kind"), [(Role.OPERATIONS_LEAD, "franchise"),
                                            (Role.STORE_MANAGER, "direct")])  # fmt: skip
def test_only_brand_admins_change_a_stores_kind(brand, role, kind):
    store = make_store(brand, kind="direct" if kind == "franchise" else "franchise", name="Old")
    member = make_staff(brand, role, stores=[store] if role == Role.STORE_MANAGER else [])
    api = Api(member)
    audit_rows = AuditLog.objects.count()
    response = api.patch(f"/stores/{store.pk}", {"kind": kind, "name": "Renamed"})
    assert response.status_code == 403
    assert response.json()["field"] == "kind" and response.json()["code"] == "forbidden"
    store.refresh_from_db()
    assert (store.kind, store.name) == ("direct" if kind == "franchise" else "franchise", "Old")
    assert AuditLog.objects.count() == audit_rows
    # The same kind again is no change, so it is allowed.
    same = api.patch(f"/stores/{store.pk}", {"kind": store.kind, "name": "Renamed"})
    assert same.status_code == 200


def test_brand_admin_changes_a_stores_kind(brand):
    store = make_store(brand, kind="franchise")
    admin = make_staff(brand, Role.BRAND_ADMIN)
    response = Api(admin).patch(f"/stores/{store.pk}", {"kind": "direct"})
    assert response.status_code == 200 and response.json()["kind"] == "direct"


def test_store_creators_may_still_create_franchise_stores(brand):
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    response = Api(lead).post("/stores", {"code": "FR1", "name": "加盟店", "kind": "franchise"})
    assert response.status_code == 201 and response.json()["kind"] == "franchise"


def test_console_refuses_a_kind_change_by_an_operations_lead(brand):
    store = make_store(brand, code="K1", kind="franchise", name="Old")
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    client = console_client(lead)
    response = client.post(
        f"/stores/{store.pk}/", {"code": "K1", "name": "x", "kind": "direct", "is_active": "on"}
    )
    assert 'data-field-error="kind"' in response.content.decode()
    store.refresh_from_db()
    assert (store.kind, store.name) == ("franchise", "Old")


def test_a_store_with_staff_cannot_be_deleted(brand):
    store = make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[store])
    admin = make_staff(brand, Role.BRAND_ADMIN)
    api = Api(admin)
    audit_rows = AuditLog.objects.count()
    response = api.delete(f"/stores/{store.pk}")
    assert response.status_code == 409
    assert response.json() == {
        "code": "conflict",
        "message": "Staff still work in this store; move them to another store or remove them "
        "first, or deactivate the store instead.",
        "field": "store_id",
    }
    assert Store.objects.filter(pk=store.pk).exists()
    assert advisor.store_ids == [store.pk]
    assert AuditLog.objects.count() == audit_rows
    # Once nobody works there, it can go.
    assert api.delete(f"/staff/{advisor.pk}").status_code == 204
    assert api.delete(f"/stores/{store.pk}").status_code == 204
