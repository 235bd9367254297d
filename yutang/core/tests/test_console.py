"""Console pages through the real Django stack: login, language, brand switcher, forms."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import (
    PASSWORD,
    console_client,
    make_account,
    make_brand,
    make_staff,
    make_store,
)
from yutang.core.models import AuditLog, Store
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db

PAGES = ["/", "/stores/", "/staff/", "/carrier-accounts/", "/tokens/"]


def test_login_page_is_chinese_by_default_and_switches_to_english():
    client = Client()
    assert "登录" in client.get("/login/").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/login/"})
    assert "Log in" in client.get("/login/").content.decode()


def test_login_and_logout():
    staff = make_staff(make_brand(), Role.OPERATIONS_LEAD)
    client = Client()
    assert client.get("/").status_code == 302
    wrong = client.post("/login/", {"username": staff.user.username, "password": "nope"})
    assert "用户名或密码错误" in wrong.content.decode()
    ok = client.post("/login/", {"username": staff.user.username, "password": PASSWORD})
    assert ok.status_code == 302 and ok["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post("/logout/")
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("role", list(Role))
def test_every_role_sees_its_pages_and_only_its_navigation(role):
    brand = make_brand()
    store = make_store(brand)
    staff = make_staff(brand, role, stores=[store] if role in ("store_manager", "advisor") else [])
    make_account(brand, staff=staff, store=store)
    client = console_client(staff)
    for page in PAGES:
        assert client.get(page).status_code == 200, page
    home = client.get("/").content.decode()
    assert ('href="/audit/"' in home) is (role == Role.BRAND_ADMIN)
    assert ('href="/brand/settings/"' in home) is (role == Role.BRAND_ADMIN)


def test_user_without_a_role_is_told_so():
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("loner", password=PASSWORD)
    client = Client()
    client.login(username="loner", password=PASSWORD)
    response = client.get("/stores/")
    assert response.status_code == 403
    assert "没有" in response.content.decode()


def test_store_form_creates_edits_and_shows_errors_by_field():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    client = console_client(admin)
    bad = client.post("/stores/new/", {"code": "bad code", "name": "", "kind": "direct"})
    body = bad.content.decode()
    assert bad.status_code == 200
    assert 'data-field-error="code"' in body and 'data-field-error="name"' in body
    assert not Store.objects.filter(brand=brand).exists()
    ok = client.post(
        "/stores/new/",
        {
            "code": "GZ1",
            "name": "广州店",
            "kind": "franchise",
            "city": "广州",
            "latitude": "",
            "is_active": "on",
        },
    )
    assert ok.status_code == 302
    store = Store.objects.get(brand=brand, code="GZ1")
    assert (store.kind, store.latitude, store.is_active) == ("franchise", None, True)
    client.post(f"/stores/{store.pk}/", {"code": "GZ1", "name": "广州天河店", "kind": "franchise"})
    store.refresh_from_db()
    assert (store.name, store.is_active) == ("广州天河店", False)
    dup = client.post("/stores/new/", {"code": "GZ1", "name": "again", "kind": "direct"})
    assert "GZ1" in dup.content.decode() and Store.objects.filter(brand=brand).count() == 1
    deleted = client.post(f"/stores/{store.pk}/delete/", headers={"HX-Request": "true"})
    assert deleted["HX-Redirect"] == "/stores/"
    assert not Store.objects.filter(pk=store.pk).exists()


def test_staff_form_shows_generated_password_once_and_masks_for_analysts():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    store = make_store(brand)
    client = console_client(admin)
    response = client.post(
        "/staff/new/",
        {
            "username": "xiao.chen",
            "display_name": "小陈",
            "role": "advisor",
            "store_ids": [str(store.pk)],
            "phone": "13912345678",
        },
        follow=True,
    )
    body = response.content.decode()
    assert "小陈" in body and "+8613912345678" in body
    password = body.split("：")[-1].split("<")[0].strip() if "：" in body else None
    assert password and Client().login(username="xiao.chen", password=password)
    analyst = make_staff(brand, Role.ANALYST)
    analyst_view = console_client(analyst).get("/staff/").content.decode()
    assert "139****5678" in analyst_view and "13912345678" not in analyst_view
    assert "xi****en" in analyst_view and "xiao.chen" not in analyst_view


def test_store_manager_adds_an_advisor_to_own_store_only():
    brand = make_brand()
    mine, other = make_store(brand), make_store(brand)
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[mine])
    client = console_client(manager)
    form = client.get("/staff/new/").content.decode()
    assert 'value="advisor"' in form and 'value="brand_admin"' not in form
    assert other.name not in form
    client.post(
        "/staff/new/",
        {
            "username": "adv.x",
            "display_name": "Adv",
            "role": "advisor",
            "store_ids": [str(mine.pk)],
            "password": "long-enough-pass",
        },
    )
    assert brand.staff.filter(user__username="adv.x", stores=mine).exists()
    refused = client.post(
        "/staff/new/",
        {
            "username": "adv.y",
            "display_name": "Adv",
            "role": "brand_admin",
            "store_ids": [str(mine.pk)],
        },
    )
    assert not brand.staff.filter(user__username="adv.y").exists()
    assert "data-field-error" in refused.content.decode() or "role" in refused.content.decode()


def test_brand_switcher_changes_the_current_brand():
    first, second = make_brand("甲品牌"), make_brand("乙品牌")
    staff = make_staff(first, Role.BRAND_ADMIN, username="multi")
    from yutang.core import services

    services.create_staff(
        actor=None, brand=second, username="multi", display_name="M", role=Role.ANALYST
    )
    make_store(second, code="ONLY2")
    client = console_client(staff)
    home = client.get("/").content.decode()
    assert 'id="brand-select"' in home and "乙品牌" in home
    assert "ONLY2" not in client.get("/stores/").content.decode()
    client.post("/brand/switch/", {"brand_id": str(second.pk)})
    assert "ONLY2" in client.get("/stores/").content.decode()
    # a brand the user has no role in is ignored
    stranger = make_brand("丙品牌")
    client.post("/brand/switch/", {"brand_id": str(stranger.pk)})
    assert "ONLY2" in client.get("/stores/").content.decode()


def test_brand_settings_toggle_franchise_access_and_validate_time_zone():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    client = console_client(admin)
    bad = client.post("/brand/settings/", {"name": "B", "time_zone": "Nowhere/Else"})
    assert 'data-field-error="time_zone"' in bad.content.decode()
    client.post(
        "/brand/settings/",
        {"name": "B", "time_zone": "Asia/Shanghai", "hq_can_view_franchise_customers": "on"},
    )
    brand.refresh_from_db()
    assert brand.policy.hq_can_view_franchise_customers is True
    assert AuditLog.objects.filter(brand=brand, action="brand.update").count() == 1


def test_carrier_account_form_round_trip():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    client = console_client(admin)
    client.post(
        "/carrier-accounts/new/",
        {
            "kind": "wecom",
            "external_id": "wm001",
            "display_name": "小鱼",
            "staff_id": str(admin.pk),
            "daily_add_cap": "80",
            "is_active": "on",
        },
    )
    account = brand.carrier_accounts.get()
    assert (account.staff_id, account.daily_add_cap) == (admin.pk, 80)
    client.post(
        f"/carrier-accounts/{account.pk}/",
        {"display_name": "小鱼2", "staff_id": "", "daily_add_cap": "", "is_active": "on"},
    )
    account.refresh_from_db()
    assert (account.display_name, account.staff_id, account.daily_add_cap) == ("小鱼2", None, None)


def test_console_masks_phone_like_usernames_and_account_ids_for_analysts():
    brand = make_brand()
    store = make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[store], username="13700001111")
    make_account(brand, staff=advisor, store=store, external_id="wmSecretUser77")
    analyst = console_client(make_staff(brand, Role.ANALYST))
    staff_page = analyst.get("/staff/").content.decode()
    assert "137****1111" in staff_page and "13700001111" not in staff_page
    accounts_page = analyst.get("/carrier-accounts/").content.decode()
    assert "wmSe****er77" in accounts_page and "wmSecretUser77" not in accounts_page
    admin = console_client(make_staff(brand, Role.BRAND_ADMIN))
    assert "13700001111" in admin.get("/staff/").content.decode()
    assert "wmSecretUser77" in admin.get("/carrier-accounts/").content.decode()


HUGE_IDS = [2**63, 10**30]


@pytest.mark.parametrize("number", HUGE_IDS)
@pytest.mark.parametrize(
    "url",
    ["/stores/{}/", "/stores/{}/delete/", "/staff/{}/", "/staff/{}/delete/",
     "/carrier-accounts/{}/", "/carrier-accounts/{}/delete/", "/tokens/{}/revoke/"],
)  # fmt: skip
def test_huge_ids_in_console_urls_are_404(url, number):
    client = console_client(make_staff(make_brand(), Role.BRAND_ADMIN))
    page = url.format(number)
    if not page.endswith(("delete/", "revoke/")):
        assert client.get(page).status_code == 404
    assert client.post(page, {"name": "x", "display_name": "x"}).status_code == 404


def test_huge_ids_in_console_forms_are_field_errors():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    client = console_client(admin)
    response = client.post(
        "/staff/new/",
        {"username": "big.id", "display_name": "B", "role": "analyst", "store_ids": [str(2**64)]},
    )
    assert (
        response.status_code == 200 and 'data-field-error="store_ids"' in response.content.decode()
    )
    response = client.post(
        "/carrier-accounts/new/",
        {"kind": "wecom", "external_id": "e", "display_name": "E", "staff_id": str(10**30)},
    )
    assert response.status_code == 200
    assert not brand.staff.filter(user__username="big.id").exists()
    assert not brand.carrier_accounts.exists()


def test_staff_edit_empty_phone_clears_and_shown_phone_keeps():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    store = make_store(brand)
    member = make_staff(brand, Role.ADVISOR, stores=[store], phone="13912345678")
    client = console_client(admin)
    form = {"display_name": "A", "role": "advisor", "store_ids": [str(store.pk)],
            "is_active": "on", "password": ""}  # fmt: skip
    shown = "+8613912345678"
    assert f'value="{shown}"' in client.get(f"/staff/{member.pk}/").content.decode()
    audit_rows = AuditLog.objects.filter(action="staff.update").count()
    assert client.post(f"/staff/{member.pk}/", {**form, "phone": shown}).status_code == 302
    member.refresh_from_db()
    assert member.phone == "+8613912345678"
    assert "phone" not in AuditLog.objects.filter(action="staff.update").latest("id").changes
    assert client.post(f"/staff/{member.pk}/", {**form, "phone": ""}).status_code == 302
    member.refresh_from_db()
    assert (member.phone, member.phone_hash) == ("", "")
    assert AuditLog.objects.filter(action="staff.update").count() == audit_rows + 2
    assert AuditLog.objects.filter(action="staff.update").latest("id").changes["phone"] == {
        "before": "139****5678",
        "after": "",
    }


def test_staff_edit_keeps_a_masked_phone_it_showed(monkeypatch):
    """Whoever sees the phone masked and submits the mask unchanged keeps the real number."""
    from yutang.core import services

    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    store = make_store(brand)
    member = make_staff(brand, Role.ADVISOR, stores=[store], phone="13912345678")
    real = services.present_staff

    def masked(viewer, staff):
        return {**real(viewer, staff), "phone": "139****5678"}

    monkeypatch.setattr(services, "present_staff", masked)
    client = console_client(admin)
    form = {"display_name": "A", "role": "advisor", "store_ids": [str(store.pk)],
            "is_active": "on", "password": "", "phone": "139****5678"}  # fmt: skip
    assert client.post(f"/staff/{member.pk}/", form).status_code == 302
    member.refresh_from_db()
    assert member.phone == "+8613912345678"


def test_carrier_account_form_refuses_javascript_links():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    client = console_client(admin)
    response = client.post(
        "/carrier-accounts/new/",
        {"kind": "wecom", "external_id": "wm1", "display_name": "A",
         "avatar_url": "javascript:alert(1)", "is_active": "on"},
    )  # fmt: skip
    assert 'data-field-error="avatar_url"' in response.content.decode()
    assert not brand.carrier_accounts.exists()


def test_audit_page_says_when_a_cursor_is_bad(django_assert_max_num_queries):
    admin = make_staff(make_brand(), Role.BRAND_ADMIN)
    client = console_client(admin)
    client.get("/audit/")  # warm the session and caches
    with django_assert_max_num_queries(8) as captured:
        response = client.get("/audit/?cursor=garbage!!")
    body = response.content.decode()
    assert response.status_code == 200 and 'data-testid="audit-problem"' in body
    assert not [q for q in captured.captured_queries if "core_auditlog" in q["sql"]]
