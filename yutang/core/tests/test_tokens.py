"""API token lifecycle: create, use, revoke; a revoked token is refused."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.core.management import call_command
from django.test import Client

from tests.factories import Api, console_client, make_brand, make_staff
from yutang.core import clock
from yutang.core.models import ApiToken
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_lifecycle_through_the_api():
    staff = make_staff(make_brand(), Role.OPERATIONS_LEAD)
    api = Api(staff)

    created = api.post("/tokens", {"name": "ERP sync"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("ytk_")

    # stored only as its hash
    row = ApiToken.objects.get(pk=created.json()["id"])
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(list(ApiToken.objects.values()))
    assert row.last_used_at is None

    client = Client()
    start = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)
    with clock.use_clock(clock.FrozenClock(start)):
        assert client.get("/api/v1/brands/current", headers=bearer(token)).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at == start

    listed = api.get("/tokens").json()
    assert {t["name"] for t in listed} == {"test", "ERP sync"}
    assert all("token" not in t for t in listed), "a listed token never shows its secret"

    revoked = api.delete(f"/tokens/{row.pk}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = client.get("/api/v1/brands/current", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json() == {
        "code": "unauthenticated", "message": "A valid API token or session is required.",
        "field": None,
    }  # fmt: skip


def test_unknown_and_malformed_tokens_are_refused():
    client = Client()
    for value in ["Bearer ytk_nope", "Bearer ", "Basic abc", "ytk_x"]:
        assert client.get("/api/v1/stores", headers={"Authorization": value}).status_code == 401


def test_token_of_deactivated_staff_is_refused():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    member = make_staff(brand, Role.ANALYST)
    member_api = Api(member)
    assert member_api.get("/stores").status_code == 200
    assert Api(admin).patch(f"/staff/{member.pk}", {"is_active": False}).status_code == 200
    assert member_api.get("/stores").status_code == 401


def test_last_used_is_written_at_most_once_a_minute():
    staff = make_staff(make_brand(), Role.ANALYST)
    api = Api(staff)
    frozen = clock.FrozenClock(dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    with clock.use_clock(frozen):
        api.get("/stores")
        first = ApiToken.objects.get(staff=staff).last_used_at
        frozen.advance(dt.timedelta(seconds=30))
        api.get("/stores")
        assert ApiToken.objects.get(staff=staff).last_used_at == first
        frozen.advance(dt.timedelta(seconds=31))
        api.get("/stores")
        assert ApiToken.objects.get(staff=staff).last_used_at == frozen.now()


def test_staff_cannot_revoke_someone_elses_token_but_admin_can():
    brand = make_brand()
    admin, a, b = (make_staff(brand, r) for r in (Role.BRAND_ADMIN, Role.ANALYST, Role.ANALYST))
    a_api, b_api = Api(a), Api(b)
    a_token = ApiToken.objects.get(staff=a)
    assert b_api.delete(f"/tokens/{a_token.pk}").status_code == 404
    assert a_api.get("/stores").status_code == 200
    assert Api(admin).delete(f"/tokens/{a_token.pk}").status_code == 200
    assert a_api.get("/stores").status_code == 401


def test_console_creates_shows_once_and_revokes():
    staff = make_staff(make_brand(), Role.COMMUNITY_OPERATOR)
    client = console_client(staff)
    page = client.post("/tokens/", {"name": "BI export"}).content.decode()
    token = page.split('<code class="yt-token">')[1].split("</code>")[0]
    assert Client().get("/api/v1/stores", headers=bearer(token)).status_code == 200
    assert token not in client.get("/tokens/").content.decode()
    row = ApiToken.objects.get(staff=staff, name="BI export")
    response = client.post(f"/tokens/{row.pk}/revoke/", headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"] == "/tokens/"
    assert Client().get("/api/v1/stores", headers=bearer(token)).status_code == 401


def test_createtoken_command_prints_a_working_token(capsys):
    staff = make_staff(make_brand(), Role.ANALYST, username="bi.robot")
    call_command("createtoken", "bi.robot", "--name", "nightly export")
    token = capsys.readouterr().out.strip()
    assert Client().get("/api/v1/stores", headers=bearer(token)).status_code == 200
    assert ApiToken.objects.get(staff=staff).name == "nightly export"
