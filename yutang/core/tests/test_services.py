"""Service rules that no single endpoint shows: brand time zones, the thin-edge helpers."""

from __future__ import annotations

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.core import services
from yutang.core.errors import PermissionDenied, ValidationFailed
from yutang.core.models import Brand
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "asia/shanghai"])
def test_brands_need_a_real_time_zone(zone):
    with pytest.raises(ValidationFailed) as failed:
        services.create_brand(name="B", time_zone=zone)
    assert failed.value.field == "time_zone"
    assert not Brand.objects.exists()
    admin = make_staff(make_brand(), Role.BRAND_ADMIN)
    with pytest.raises(ValidationFailed) as failed:
        services.update_brand(actor=admin, time_zone=zone)
    assert failed.value.field == "time_zone"
    admin.brand.refresh_from_db()
    assert admin.brand.time_zone == "Asia/Shanghai"


def test_current_brand_needs_brand_view():
    admin = make_staff(make_brand(), Role.BRAND_ADMIN)
    assert services.current_brand(admin) == admin.brand
    admin.is_active = False
    with pytest.raises(PermissionDenied):
        services.current_brand(admin)


@pytest.mark.parametrize(
    ("role", "expected"),
    [(Role.BRAND_ADMIN, list(Role)), (Role.STORE_MANAGER, [Role.ADVISOR]), (Role.ANALYST, [])],
)
def test_assignable_roles(role, expected):
    brand = make_brand()
    stores = [make_store(brand)] if role == Role.STORE_MANAGER else []
    assert services.assignable_roles(make_staff(brand, role, stores=stores)) == expected


def test_current_staff_role_prefers_the_chosen_brand():
    first, second = make_brand(), make_brand()
    mine = make_staff(first, Role.ANALYST, username="two.hats")
    other = services.create_staff(
        actor=None, brand=second, username="two.hats", display_name="T", role=Role.BRAND_ADMIN
    ).staff
    user = mine.user
    assert services.current_staff_role(user=user, brand_id=second.pk) == other
    assert services.current_staff_role(user=user, brand_id=None) == mine
    assert services.current_staff_role(user=user, brand_id=2**70) == mine
    stranger = make_brand()
    assert services.current_staff_role(user=user, brand_id=stranger.pk) == mine
