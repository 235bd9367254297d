"""The Django admin shows core rows but cannot change them: changes go through the services,
which check permissions and write the audit log."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import make_brand, make_store
from yutang.core.models import ApiToken, AuditLog, Brand, CarrierAccount, Staff, Store

pytestmark = pytest.mark.django_db

CORE_MODELS = [Brand, Store, Staff, CarrierAccount, ApiToken, AuditLog]


@pytest.mark.parametrize("model", CORE_MODELS, ids=lambda m: m.__name__)
def test_every_core_admin_is_read_only(model, rf):
    model_admin = admin.site._registry[model]
    request = rf.get("/admin/")
    request.user = get_user_model()(is_superuser=True, is_staff=True)
    assert model_admin.has_view_permission(request) is True
    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request) is False
    assert model_admin.has_delete_permission(request) is False
    assert model_admin.get_actions(request) == {}


def test_a_superuser_cannot_change_a_store_through_the_admin():
    brand = make_brand()
    store = make_store(brand, code="ADM1", name="Before")
    get_user_model().objects.create_superuser("root", password="root-password-long")
    client = Client()
    client.login(username="root", password="root-password-long")
    assert client.get("/admin/core/store/").status_code == 200
    assert client.get("/admin/core/store/add/").status_code == 403
    audit_rows = AuditLog.objects.count()
    changed = client.post(
        f"/admin/core/store/{store.pk}/change/", {"code": "ADM1", "name": "After"}
    )
    assert changed.status_code == 403
    assert client.post(f"/admin/core/store/{store.pk}/delete/", {"post": "yes"}).status_code == 403
    store.refresh_from_db()
    assert store.name == "Before"
    assert AuditLog.objects.count() == audit_rows
