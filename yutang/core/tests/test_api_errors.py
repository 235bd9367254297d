"""Every answer under /api/v1/ has the `{code, message, field}` shape, and bad input is refused
by name before it can reach the database: unknown routes and methods, broken JSON, unknown
query parameters, explicit nulls, impossible ids, unsafe links, duplicates."""

from __future__ import annotations

import pytest
from django.db import IntegrityError
from django.test import Client

from tests.factories import Api, make_account, make_brand, make_staff, make_store
from yutang.core import services
from yutang.core.errors import Conflict, NotFound, ValidationFailed
from yutang.core.models import AuditLog, CarrierAccount, Store
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db

HUGE = 2**63  # one past the largest id the databases hold
HUGER = 10**30


@pytest.fixture
def admin():
    return make_staff(make_brand(), Role.BRAND_ADMIN)


# --- Routes, methods, bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/", "/api/v1/stores/1/extra", "/api/v1/x/"]
)
def test_unknown_paths_are_json_404(admin, path):
    api = Api(admin)
    for method in ("get", "post", "delete"):
        response = getattr(api.client, method)(path, headers=api.headers)
        assert response.status_code == 404, (method, path)
        assert response["Content-Type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"code", "message", "field"}
        assert body["code"] == "not_found" and body["field"] is None


def test_unknown_paths_are_json_404_without_credentials_too():
    response = Client().get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_wrong_method_is_json_405(admin):
    api = Api(admin)
    store = make_store(admin.brand)
    response = api.client.put(f"/api/v1/stores/{store.pk}", headers=api.headers)
    assert response.status_code == 405
    assert response.json() == {
        "code": "method_not_allowed",
        "message": f"PUT is not allowed on /api/v1/stores/{store.pk}; use DELETE or GET or PATCH.",
        "field": None,
    }
    assert response["Allow"] == "DELETE, GET, PATCH"
    assert api.client.delete("/api/v1/stores", headers=api.headers).status_code == 405


@pytest.mark.parametrize("raw", [b"{not json", b'{"code": "A1",', b"\xff\xfe"])
def test_malformed_json_is_400_naming_the_body(admin, raw):
    api = Api(admin)
    response = api.client.post(
        "/api/v1/stores", data=raw, content_type="application/json", headers=api.headers
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["field"]) == ("invalid_json", "body")
    assert body["message"].startswith("The request body is not valid JSON: ")
    assert not Store.objects.exists()


@pytest.mark.parametrize(
    "path",
    ["/stores?kindd=franchise", "/staff?rolee=advisor", "/carrier-accounts?knd=wecom",
     "/audit?limt=5", "/tokens?all=1"],
)  # fmt: skip
def test_unknown_query_parameters_are_422_naming_them(admin, path):
    response = Api(admin).get(path)
    assert response.status_code == 422
    name = path.split("?")[1].split("=")[0]
    assert response.json() == {
        "code": "invalid",
        "message": f"Unknown query parameter {name!r}.",
        "field": name,
    }


def test_known_query_parameters_still_work(admin):
    make_store(admin.brand, code="F1", kind="franchise")
    make_store(admin.brand, code="D1", kind="direct")
    api = Api(admin)
    assert [s["code"] for s in api.get("/stores?kind=franchise&is_active=true").json()] == ["F1"]
    assert api.get("/staff?role=brand_admin").status_code == 200
    assert api.get("/staff?role=chief").json()["field"] == "role"
    assert api.get("/tokens").status_code == 200


# --- Explicit nulls ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "code", "is_active", "kind", "city", "address"])
def test_explicit_null_on_a_store_is_422(admin, field):
    store = make_store(admin.brand, code="N1", name="Named")
    audit_rows = AuditLog.objects.count()
    response = Api(admin).patch(f"/stores/{store.pk}", {field: None})
    assert response.status_code == 422
    assert response.json()["field"] == field
    store.refresh_from_db()
    assert (store.code, store.name, store.is_active) == ("N1", "Named", True)
    assert AuditLog.objects.count() == audit_rows + 1  # only the Api helper's token


def test_null_latitude_is_allowed_because_the_column_is_nullable(admin):
    store = make_store(admin.brand, latitude="31.2")
    response = Api(admin).patch(f"/stores/{store.pk}", {"latitude": None})
    assert response.status_code == 200 and response.json()["latitude"] is None


@pytest.mark.parametrize("field", ["display_name", "is_active", "signature", "persona"])
def test_explicit_null_on_a_carrier_account_is_422(admin, field):
    account = make_account(admin.brand)
    response = Api(admin).patch(f"/carrier-accounts/{account.pk}", {field: None})
    assert response.status_code == 422 and response.json()["field"] == field
    account.refresh_from_db()
    assert (account.display_name, account.is_active) == ("Persona", True)


def test_null_links_on_a_carrier_account_are_allowed(admin):
    store = make_store(admin.brand)
    account = make_account(admin.brand, staff=admin, store=store)
    response = Api(admin).patch(
        f"/carrier-accounts/{account.pk}",
        {"staff_id": None, "store_id": None, "daily_add_cap": None},
    )
    assert response.status_code == 200
    assert (response.json()["staff_id"], response.json()["store_id"]) == (None, None)


def test_services_reject_nulls_named(admin):
    store = make_store(admin.brand)
    with pytest.raises(ValidationFailed) as failed:
        services.update_store(actor=admin, store_id=store.pk, name=None)
    assert failed.value.field == "name"
    with pytest.raises(ValidationFailed) as failed:
        services.create_carrier_account(
            actor=admin, kind="wecom", external_id="e1", display_name=None
        )
    assert failed.value.field == "display_name"


# --- Ids out of range -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/staff", {"username": "u.x", "display_name": "U", "role": "analyst",
                    "store_ids": [HUGE]}, "store_ids.0"),
        ("/staff", {"username": "u.x", "display_name": "U", "role": "analyst",
                    "store_ids": [0]}, "store_ids.0"),
        ("/carrier-accounts", {"kind": "wecom", "external_id": "e", "display_name": "E",
                               "staff_id": HUGER}, "staff_id"),
        ("/carrier-accounts", {"kind": "wecom", "external_id": "e", "display_name": "E",
                               "store_id": -1}, "store_id"),
    ],
)  # fmt: skip
def test_ids_in_bodies_are_bounded(admin, path, body, field):
    response = Api(admin).post(path, body)
    assert response.status_code == 422 and response.json()["field"] == field


@pytest.mark.parametrize("path", ["/stores/{}", "/staff/{}", "/carrier-accounts/{}"])
@pytest.mark.parametrize("number", [HUGE, HUGER])
def test_huge_path_ids_are_404(admin, path, number):
    api = Api(admin)
    url = path.format(number)
    for method, body in (("get", None), ("patch", {}), ("delete", None)):
        response = api.patch(url, body) if body is not None else getattr(api, method)(url)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "not_found"
    assert api.delete(f"/tokens/{number}").status_code == 404


@pytest.mark.parametrize("number", [0, -1, HUGE, HUGER])
def test_services_treat_impossible_ids_as_missing(admin, number):
    for call in (
        lambda: services.get_store(actor=admin, store_id=number),
        lambda: services.get_staff(actor=admin, staff_id=number),
        lambda: services.get_carrier_account(actor=admin, account_id=number),
        lambda: services.revoke_api_token(actor=admin, token_id=number),
        lambda: services.update_store(actor=admin, store_id=number, name="x"),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(ValidationFailed) as failed:
        services.create_staff(
            actor=admin, username="n.n", display_name="N", role=Role.ANALYST, store_ids=[number]
        )
    assert failed.value.field == "store_ids"


def test_a_cursor_past_the_largest_id_is_refused(admin):
    from yutang.core.pagination import encode_cursor

    response = Api(admin).get(f"/audit?cursor={encode_cursor(HUGER)}")
    assert response.status_code == 422 and response.json()["field"] == "cursor"


# --- Links shown in the console ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["avatar_url", "cover_url"])
@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x",
                                 "//evil.example/a.png", "http://"])  # fmt: skip
def test_persona_links_must_be_http(admin, field, url):
    api = Api(admin)
    created = api.post(
        "/carrier-accounts", {"kind": "wecom", "external_id": "e1", "display_name": "E", field: url}
    )
    assert created.status_code == 422 and created.json()["field"] == field
    account = make_account(admin.brand)
    patched = api.patch(f"/carrier-accounts/{account.pk}", {field: url})
    assert patched.status_code == 422 and patched.json()["field"] == field
    with pytest.raises(ValidationFailed) as failed:
        services.update_carrier_account(actor=admin, account_id=account.pk, **{field: url})
    assert failed.value.field == field
    account.refresh_from_db()
    assert getattr(account, field) == ""


def test_http_and_https_links_are_kept(admin):
    body = {"kind": "wecom", "external_id": "e1", "display_name": "E",
            "avatar_url": "https://cdn.example.com/a.png", "cover_url": "HTTP://example.com/c.jpg"}  # fmt: skip
    response = Api(admin).post("/carrier-accounts", body)
    assert response.status_code == 201
    assert response.json()["avatar_url"] == "https://cdn.example.com/a.png"


# --- Duplicates and other integrity errors ----------------------------------------------------


def test_a_concurrent_duplicate_carrier_account_is_a_conflict(admin, monkeypatch):
    make_account(admin.brand, external_id="dup")
    # The other request registered it after our check: the database refuses, we say why.
    monkeypatch.setattr(
        services, "_carrier_account_taken", _false_once(services._carrier_account_taken)
    )
    with pytest.raises(Conflict) as conflict:
        services.create_carrier_account(
            actor=admin, kind="wecom", external_id="dup", display_name="D"
        )
    assert conflict.value.field == "external_id"
    assert CarrierAccount.objects.filter(external_id="dup").count() == 1


def test_other_integrity_errors_are_not_called_duplicates(admin, monkeypatch):
    def broken(**fields):
        raise IntegrityError("something else entirely")

    monkeypatch.setattr(CarrierAccount.objects, "create", broken)
    with pytest.raises(IntegrityError):
        services.create_carrier_account(
            actor=admin, kind="wecom", external_id="new", display_name="N"
        )


def test_a_concurrent_duplicate_store_code_is_a_conflict(admin, monkeypatch):
    make_store(admin.brand, code="TAKEN")
    store = make_store(admin.brand, code="FREE")
    monkeypatch.setattr(services, "_store_code_taken", _false_once(services._store_code_taken))
    with pytest.raises(Conflict) as conflict:
        services.update_store(actor=admin, store_id=store.pk, code="TAKEN")
    assert conflict.value.field == "code"
    store.refresh_from_db()
    assert store.code == "FREE"


def _false_once(real):
    calls = []

    def check(**kwargs):
        calls.append(kwargs)
        return False if len(calls) == 1 else real(**kwargs)

    return check
