"""A store role cannot list, read, update or delete another store's rows, through the API or
the console; the answer never reveals that the row exists, and nothing changes."""

from __future__ import annotations

import pytest

from tests.factories import Api, console_client, make_account, make_brand, make_staff, make_store
from yutang.core.models import AuditLog, CarrierAccount, Staff, Store
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    brand = make_brand()
    mine, theirs = make_store(brand, code="MINE"), make_store(brand, code="THEIRS")
    manager = make_staff(brand, Role.STORE_MANAGER, stores=[mine])
    my_advisor = make_staff(brand, Role.ADVISOR, stores=[mine])
    their_advisor = make_staff(brand, Role.ADVISOR, stores=[theirs])
    my_account = make_account(brand, staff=my_advisor, store=mine)
    their_account = make_account(brand, staff=their_advisor, store=theirs)
    other_brand = make_brand()
    foreign_store = make_store(other_brand, code="MINE")
    return {
        "brand": brand, "mine": mine, "theirs": theirs, "manager": manager,
        "my_advisor": my_advisor, "their_advisor": their_advisor, "my_account": my_account,
        "their_account": their_account, "foreign_store": foreign_store,
    }  # fmt: skip


def _snapshot():
    return (
        sorted(Store.objects.values_list("pk", "name", "code")),
        sorted(Staff.objects.values_list("pk", "display_name", "role", "is_active")),
        sorted(CarrierAccount.objects.values_list("pk", "display_name")),
        AuditLog.objects.count(),
    )


def test_api_lists_only_own_store_rows(world):
    api = Api(world["manager"])
    assert [s["code"] for s in api.get("/stores").json()] == ["MINE"]
    staff_ids = {s["id"] for s in api.get("/staff").json()}
    assert staff_ids == {world["manager"].pk, world["my_advisor"].pk}
    assert [a["id"] for a in api.get("/carrier-accounts").json()] == [world["my_account"].pk]


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/stores/{}", "theirs"),
        ("/stores/{}", "foreign_store"),
        ("/staff/{}", "their_advisor"),
        ("/carrier-accounts/{}", "their_account"),
    ],
)
def test_api_other_store_rows_look_missing(world, path, target):
    api = Api(world["manager"])
    before = _snapshot()
    url = path.format(world[target].pk)
    missing = path.format(999999)
    for method, body in [
        ("get", None),
        ("patch", {"display_name": "x"} if "store" not in path else {"name": "x"}),
        ("delete", None),
    ]:
        args = (url,) if body is None else (url, body)
        response = getattr(api, method)(*args)
        ghost = getattr(api, method)(*((missing,) if body is None else (missing, body)))
        # 404, or 403 where the role may not do this to any row; never a hint either way.
        assert response.status_code in (403, 404), (method, url)
        assert response.status_code == ghost.status_code
        assert response.json() == ghost.json(), "the answer must not reveal that the row exists"
    assert _snapshot() == before


def test_api_manager_cannot_attach_staff_or_accounts_to_another_store(world):
    api = Api(world["manager"])
    before = _snapshot()
    r = api.post(
        "/staff",
        {
            "username": "newbie",
            "display_name": "N",
            "role": "advisor",
            "store_ids": [world["theirs"].pk],
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "store_ids"
    r = api.patch(f"/staff/{world['my_advisor'].pk}", {"store_ids": [world["theirs"].pk]})
    assert r.status_code == 422 and r.json()["field"] == "store_ids"
    r = api.post(
        "/carrier-accounts",
        {"kind": "wecom", "external_id": "zz", "display_name": "Z", "store_id": world["theirs"].pk},
    )
    assert r.status_code == 422 and r.json()["field"] == "store_id"
    assert _snapshot() == before


def test_api_manager_cannot_promote_or_create_stores(world):
    api = Api(world["manager"])
    before = _snapshot()
    r = api.patch(f"/staff/{world['my_advisor'].pk}", {"role": "brand_admin"})
    assert r.status_code == 403 and r.json()["field"] == "role"
    r = api.post("/stores", {"code": "NEW", "name": "New"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert _snapshot() == before


def test_advisor_sees_only_themself_and_own_accounts(world):
    api = Api(world["my_advisor"])
    assert [s["id"] for s in api.get("/staff").json()] == [world["my_advisor"].pk]
    assert [a["id"] for a in api.get("/carrier-accounts").json()] == [world["my_account"].pk]
    assert api.get(f"/staff/{world['manager'].pk}").status_code == 404


def test_other_brand_is_invisible_even_to_its_admin(world):
    admin = make_staff(world["brand"], Role.BRAND_ADMIN)
    api = Api(admin)
    assert world["foreign_store"].pk not in {s["id"] for s in api.get("/stores").json()}
    assert api.get(f"/stores/{world['foreign_store'].pk}").status_code == 404


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("/stores/{}/", "theirs"),
        ("/staff/{}/", "their_advisor"),
        ("/carrier-accounts/{}/", "their_account"),
    ],
)
def test_console_other_store_rows_look_missing(world, url, target):
    client = console_client(world["manager"])
    before = _snapshot()
    page = url.format(world[target].pk)
    ghost = url.format(999999)
    assert client.get(page).status_code == 404
    assert client.post(page, {"name": "x", "display_name": "x", "code": "X"}).status_code == 404
    deleted = client.post(page + "delete/")
    assert deleted.status_code == client.post(ghost + "delete/").status_code
    assert deleted.status_code in (403, 404)
    assert _snapshot() == before


def test_console_lists_only_own_store_rows(world):
    client = console_client(world["manager"])
    body = client.get("/stores/").content.decode()
    assert "MINE" in body and "THEIRS" not in body
    body = client.get("/staff/").content.decode()
    assert world["my_advisor"].display_name in body
    assert world["their_advisor"].display_name not in body
