"""Who may change whom: logins shared between brands, store managers and people who work in
several stores, and everyone's own details. A refusal changes nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.factories import PASSWORD, Api, console_client, make_brand, make_staff, make_store
from yutang.core import services
from yutang.core.models import AuditLog, Staff
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-password"
TAKEN = {
    "code": "conflict",
    "message": "This username is taken; choose another.",
    "field": "username",
}


def _snapshot() -> tuple[object, ...]:
    users = get_user_model().objects.order_by("pk")
    return (
        list(users.values_list("pk", "username", "password")),
        sorted(Staff.objects.values_list("pk", "brand_id", "user_id", "role", "display_name")),
        AuditLog.objects.count(),
    )


@pytest.fixture
def world():
    x, y = make_brand("X"), make_brand("Y")
    store_x = make_store(x, code="X1")
    y_admin = make_staff(y, Role.BRAND_ADMIN, username="y.admin")
    x_admin = make_staff(x, Role.BRAND_ADMIN, username="x.admin")
    x_manager = make_staff(x, Role.STORE_MANAGER, stores=[store_x], username="x.manager")
    return {"x": x, "y": y, "store_x": store_x, "y_admin": y_admin, "x_admin": x_admin,
            "x_manager": x_manager}  # fmt: skip


def _add_body(world: dict, username: str) -> dict[str, object]:
    return {"username": username, "display_name": "Mine now", "role": "advisor",
            "store_ids": [world["store_x"].pk]}  # fmt: skip


# --- Attaching an existing login -------------------------------------------------------------


@pytest.mark.parametrize("who", ["x_admin", "x_manager"])
def test_api_cannot_attach_another_brands_admin(world, who):
    api = Api(world[who])
    before = _snapshot()
    response = api.post("/staff", _add_body(world, "y.admin"))
    assert response.status_code == 409
    assert response.json() == TAKEN
    assert _snapshot() == before
    assert Staff.objects.filter(user__username="y.admin").count() == 1


def test_the_refusal_is_the_same_whatever_the_login_is(world):
    """A login with roles elsewhere and a site superuser with none get the same answer, so the
    answer says nothing about where a username works."""
    get_user_model().objects.create_superuser("root.person", password=PASSWORD)
    make_staff(world["y"], Role.ANALYST, username="y.analyst")
    api = Api(world["x_admin"])
    before = _snapshot()
    answers = [
        api.post("/staff", _add_body(world, name)).json() for name in ("root.person", "y.analyst")
    ]
    assert answers == [TAKEN, TAKEN]
    assert _snapshot() == before


@pytest.mark.parametrize("who", ["x_admin", "x_manager"])
def test_console_cannot_attach_another_brands_admin(world, who):
    client = console_client(world[who])
    before = _snapshot()
    response = client.post("/staff/new/", _add_body(world, "y.admin"))
    assert response.status_code == 200
    assert "该用户名已被占用，请换一个。" in response.content.decode()  # the console speaks zh-hans
    assert _snapshot() == before


def test_system_may_attach_any_login(world):
    created = services.create_staff(
        actor=None, brand=world["x"], username="y.admin", display_name="Y", role=Role.ANALYST
    )
    assert created.staff.user == world["y_admin"].user and created.initial_password is None


def test_an_admin_of_both_brands_may_attach_and_reset_a_colleague(world):
    both = world["x_admin"]
    services.create_staff(
        actor=None, brand=world["y"], username="x.admin", display_name="Both", role=Role.BRAND_ADMIN
    )
    colleague = make_staff(world["y"], Role.OPERATIONS_LEAD, username="y.lead")
    api = Api(both)
    added = api.post("/staff", {"username": "y.lead", "display_name": "Lead", "role": "analyst"})
    assert added.status_code == 201
    reset = api.patch(f"/staff/{added.json()['id']}", {"password": NEW_PASSWORD})
    assert reset.status_code == 200
    colleague.user.refresh_from_db()
    assert colleague.user.check_password(NEW_PASSWORD)


# --- Resetting a password --------------------------------------------------------------------


@pytest.fixture
def y_admin_in_x(world):
    """Brand Y's admin, also an advisor in X's store (added by the system)."""
    return services.create_staff(
        actor=None, brand=world["x"], username="y.admin", display_name="Y admin in X",
        role=Role.ADVISOR, store_ids=[world["store_x"].pk],
    ).staff  # fmt: skip


@pytest.mark.parametrize("who", ["x_admin", "x_manager"])
def test_api_cannot_reset_the_password_of_another_brands_admin(world, y_admin_in_x, who):
    api = Api(world[who])
    before = _snapshot()
    response = api.patch(f"/staff/{y_admin_in_x.pk}", {"password": NEW_PASSWORD})
    assert response.status_code == 403
    assert response.json()["field"] == "password"
    assert _snapshot() == before
    user = get_user_model().objects.get(username="y.admin")
    assert user.check_password(PASSWORD) and not user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize("who", ["x_admin", "x_manager"])
def test_console_cannot_reset_the_password_of_another_brands_admin(world, y_admin_in_x, who):
    client = console_client(world[who])
    before = _snapshot()
    response = client.post(
        f"/staff/{y_admin_in_x.pk}/",
        {"display_name": "Y admin in X", "role": "advisor", "store_ids": [str(world["store_x"].pk)],
         "password": NEW_PASSWORD, "phone": "", "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 200
    assert 'data-field-error="password"' in response.content.decode()
    assert _snapshot() == before


def test_other_changes_to_a_shared_login_are_still_allowed(world, y_admin_in_x):
    response = Api(world["x_manager"]).patch(f"/staff/{y_admin_in_x.pk}", {"display_name": "Y"})
    assert response.status_code == 200 and response.json()["display_name"] == "Y"


# --- Store managers and people in several stores -------------------------------------------


@pytest.fixture
def stores():
    brand = make_brand()
    mine, theirs = make_store(brand, code="MINE"), make_store(brand, code="THEIRS")
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[mine])
    both = make_staff(brand, Role.ADVISOR, stores=[mine, theirs])
    only_mine = make_staff(brand, Role.ADVISOR, stores=[mine])
    return {"brand": brand, "mine": mine, "theirs": theirs, "manager": manager, "both": both,
            "only_mine": only_mine}  # fmt: skip


SHARED = "This person also works in stores you do not manage."
SHARED_ZH = "此人还在你不管理的门店工作。"  # the same error as the (zh-hans) console shows it


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("patch", {"display_name": "Renamed"}),
        ("patch", {"is_active": False}),
        ("patch", {"password": NEW_PASSWORD}),
        ("patch", {"store_ids": []}),
        ("delete", None),
    ],
)
def test_store_manager_cannot_change_someone_who_also_works_elsewhere(stores, method, body):
    api = Api(stores["manager"])
    before = _snapshot()
    url = f"/staff/{stores['both'].pk}"
    response = api.delete(url) if method == "delete" else api.patch(url, body)
    assert response.status_code == 403
    assert response.json() == {"code": "forbidden", "message": SHARED, "field": "staff_id"}
    assert _snapshot() == before
    assert stores["both"].user.check_password(PASSWORD)


def test_store_manager_still_manages_people_only_in_their_stores(stores):
    api = Api(stores["manager"])
    url = f"/staff/{stores['only_mine'].pk}"
    assert api.patch(url, {"display_name": "Renamed", "is_active": False}).status_code == 200
    assert api.patch(url, {"password": NEW_PASSWORD}).status_code == 200
    assert api.delete(url).status_code == 204


def test_console_shows_why_a_shared_person_cannot_be_edited(stores):
    client = console_client(stores["manager"])
    before = _snapshot()
    page = client.get(f"/staff/{stores['both'].pk}/")
    assert page.status_code == 403 and SHARED_ZH in page.content.decode()
    posted = client.post(f"/staff/{stores['both'].pk}/", {"display_name": "x", "role": "advisor"})
    assert posted.status_code == 403
    removed = client.post(f"/staff/{stores['both'].pk}/delete/", follow=True)
    assert SHARED_ZH in removed.content.decode()
    assert _snapshot() == before


# --- Everyone's own details -------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.STORE_MANAGER, Role.ADVISOR, Role.ANALYST])
def test_anyone_may_change_their_own_name_phone_and_password(stores, role):
    me = make_staff(stores["brand"], role, stores=[stores["mine"]] if role != Role.ANALYST else [])
    api = Api(me)
    response = api.patch(
        f"/staff/{me.pk}",
        {"display_name": "Me", "phone": "13912345678", "password": NEW_PASSWORD},
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["display_name"], response.json()["phone"]) == ("Me", "+8613912345678")
    me.user.refresh_from_db()
    assert me.user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"role": "brand_admin"}, "role"), ({"store_ids": []}, "store_ids"),
     ({"is_active": False}, "is_active")],
)  # fmt: skip
def test_nobody_changes_their_own_role_stores_or_status(stores, body, field):
    api = Api(stores["manager"])
    before = _snapshot()
    response = api.patch(f"/staff/{stores['manager'].pk}", body)
    assert response.status_code == 409 and response.json()["field"] == field
    assert _snapshot() == before


def test_unchanged_own_role_and_stores_are_accepted(stores):
    me = stores["manager"]
    body = {"display_name": "Same", "role": "store_manager", "store_ids": [stores["mine"].pk],
            "is_active": True}  # fmt: skip
    assert Api(me).patch(f"/staff/{me.pk}", body).status_code == 200


def test_console_store_manager_edits_own_display_name(stores):
    me = stores["manager"]
    client = console_client(me)
    form = client.get(f"/staff/{me.pk}/").content.decode()
    assert 'name="display_name"' in form and 'name="role"' not in form
    assert 'name="is_active"' not in form
    response = client.post(
        f"/staff/{me.pk}/", {"display_name": "王店长", "phone": "", "password": ""}
    )
    assert response.status_code == 302
    me.refresh_from_db()
    assert me.display_name == "王店长" and me.role == Role.STORE_MANAGER


def test_console_advisor_reaches_own_edit_page_from_the_staff_list(stores):
    me = stores["only_mine"]
    client = console_client(me)
    assert f'href="/staff/{me.pk}/"' in client.get("/staff/").content.decode()
    response = client.post(
        f"/staff/{me.pk}/", {"display_name": "小王", "phone": "", "password": ""}
    )
    assert response.status_code == 302
    me.refresh_from_db()
    assert me.display_name == "小王"
