"""REST: send, list with filters, cancel, preview, policy; scope for store roles; CLI."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import Api, make_staff, make_store
from yutang.carriers.models import SandboxDelivery
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import NOON, setup

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with use_clock(FrozenClock(NOON)) as c:
        yield c


def test_send_list_filter_cancel():
    brand, account, (c1, c2) = setup(2)
    api = Api(make_staff(brand))
    r = api.post(
        "/messages",
        {
            "customer_id": c1.pk,
            "account_id": account.pk,
            "kind": "marketing",
            "content": {"text": "hi"},
        },
    )
    assert r.status_code == 201 and r.json()["status"] == "queued"
    bad = api.post(
        "/messages",
        {
            "customer_id": c1.pk,
            "account_id": account.pk,
            "kind": "marketing",
            "content": {"type": "link"},
        },
    )
    assert bad.status_code == 422 and bad.json()["field"] == "content"
    unknown = api.get("/messages?colour=red")
    assert unknown.status_code == 422 and unknown.json()["field"] == "colour"
    m2 = api.post(
        "/messages",
        {
            "customer_id": c2.pk,
            "account_id": account.pk,
            "kind": "service",
            "content": {"text": "order"},
        },
    ).json()
    assert api.post(f"/messages/{m2['id']}/cancel", {}).json()["status"] == "cancelled"
    again = api.post(f"/messages/{m2['id']}/cancel", {})
    assert again.status_code == 409
    listed = api.get("/messages?status=queued").json()["items"]
    assert [m["customer_id"] for m in listed] == [c1.pk]
    assert api.get("/messages?rule=nonsense").json()["field"] == "rule"


def test_broadcast_preview_and_policy_settings():
    brand, account, customers = setup(3)
    api = Api(make_staff(brand))
    body = {
        "account_id": account.pk,
        "content": {"text": "新品"},
        "customer_ids": [c.pk for c in customers],
    }
    assert api.post("/broadcasts/preview", body).json() == {
        "total": 3,
        "would_send": 3,
        "blocked": {},
        "deferred": {},
        "expired": {},
    }
    assert api.patch("/messaging/policy", {"quiet_start": "25:00"}).json()["field"] == "quiet_start"
    assert api.patch("/messaging/policy", {"marketing_per_day": 0}).status_code == 200
    assert api.post("/broadcasts/preview", body).json()["blocked"] == {"frequency": 3}
    assert api.get("/messaging/policy").json()["marketing_per_day"] == 0


def test_store_roles_see_only_their_stores_messages_and_analysts_cannot_send():
    brand, account, (c1, c2) = setup(2)
    store = make_store(brand)
    c1.owner_store = store
    c1.save()
    admin = Api(make_staff(brand))
    for c in (c1, c2):
        admin.post(
            "/messages",
            {
                "customer_id": c.pk,
                "account_id": account.pk,
                "kind": "service",
                "content": {"text": f"to {c.pk}"},
            },
        )
    manager = Api(make_staff(brand, Role.STORE_MANAGER, stores=[store]))
    assert [m["customer_id"] for m in manager.get("/messages").json()["items"]] == [c1.pk]
    analyst = Api(make_staff(brand, Role.ANALYST))
    denied = analyst.post(
        "/messages",
        {
            "customer_id": c1.pk,
            "account_id": account.pk,
            "kind": "service",
            "content": {"text": "x"},
        },
    )
    assert denied.status_code == 403
    assert Message.objects.count() == 2


def test_send_test_command(capsys):
    brand, account, (c1,) = setup(1)
    call_command("send-test", "--account", str(account.pk), "--customer", str(c1.pk))
    assert "sent" in capsys.readouterr().out
    assert SandboxDelivery.objects.count() == 1
    with pytest.raises(CommandError, match="--customer"):
        call_command("send-test", "--account", str(account.pk), "--customer", "999999")
