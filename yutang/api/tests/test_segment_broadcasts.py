"""Broadcasts to a segment over REST: the segment resolves to its customers on this floor,
the pre-send preview counts what the gate would stop, and the broadcast queues one message
per member through the same outbox and gate."""

from __future__ import annotations

import io

import pytest

from tests.factories import Api, make_staff
from yutang.core.clock import FrozenClock, use_clock
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Broadcast, Message
from yutang.messaging.tests.helpers import NOON, add_contact, setup
from yutang.segments import services as segments

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with use_clock(FrozenClock(NOON)) as c:
        yield c


def static_segment(admin, name, customers):
    seg = segments.create_segment(actor=admin, name=name, kind="static")
    body = "customer_id\n" + "".join(f"{c.pk}\n" for c in customers)
    segments.upload_static_members(
        actor=admin, segment_id=seg.pk, upload=io.BytesIO(body.encode()), filename="m.csv"
    )
    return seg


def test_preview_and_broadcast_to_a_segment_reach_its_members_only():
    brand, account, (a, b, c) = setup(3)
    no_consent = add_contact(account, f"wm-{brand.pk}-nc", consent=False)
    admin = make_staff(brand)
    seg = static_segment(admin, "VIP", [a, b, no_consent])
    api = Api(admin)
    content = {"text": "VIP 专享"}

    preview = api.post(
        "/broadcasts/segment/preview",
        {"segment_id": seg.pk, "account_id": account.pk, "content": content},
    )
    assert preview.status_code == 200, preview.content
    assert preview.json() == {
        "total": 3,
        "would_send": 2,
        "blocked": {"consent": 1},
        "deferred": {},
        "expired": {},
        "segment_id": seg.pk,
        "segment_name": "VIP",
    }

    r = api.post(
        "/broadcasts/segment",
        {"segment_id": seg.pk, "account_id": account.pk, "content": content},
    )
    assert r.status_code == 201, r.content
    assert r.json()["total"] == 3 and r.json()["segment_name"] == "VIP"
    broadcast = Broadcast.objects.get(pk=r.json()["id"])
    assert broadcast.name == "VIP"
    assert broadcast.target == {
        "segment_id": seg.pk,
        "segment_name": "VIP",
        "customer_ids": sorted([a.pk, b.pk, no_consent.pk]),
    }
    queued = Message.objects.filter(broadcast=broadcast)
    assert set(queued.values_list("customer_id", flat=True)) == {a.pk, b.pk, no_consent.pk}
    assert c.pk not in set(Message.objects.values_list("customer_id", flat=True))

    deliver_due_messages()  # the gate decides at send time, as the preview said
    assert sorted(queued.values_list("status", "rule")) == [
        ("blocked", "consent"),
        ("sent", ""),
        ("sent", ""),
    ]


def test_a_dynamic_segment_resolves_to_its_rules_answer_now():
    brand, account, customers = setup(2)
    admin = make_staff(brand)
    everyone = segments.create_segment(
        actor=admin,
        name="全部",
        kind="dynamic",
        rule={"not": {"kind": "event", "type": "order.paid", "window": {"days": 60}}},
    )
    r = Api(admin).post(
        "/broadcasts/segment",
        {
            "segment_id": everyone.pk,
            "account_id": account.pk,
            "kind": "service",
            "content": {"text": "通知"},
            "name": "全员通知",
        },
    )
    assert r.status_code == 201, r.content
    assert r.json()["total"] == 2
    assert Broadcast.objects.get().name == "全员通知"


def test_segment_errors_name_the_field():
    brand, account, (a,) = setup(1)
    admin = make_staff(brand)
    api = Api(admin)
    empty = segments.create_segment(actor=admin, name="空", kind="static")
    r = api.post(
        "/broadcasts/segment",
        {"segment_id": empty.pk, "account_id": account.pk, "content": {"text": "x"}},
    )
    assert r.status_code == 422 and r.json()["field"] == "segment_id"
    assert "no customers" in r.json()["message"]

    other_brand, _, (stranger,) = setup(1)
    theirs = static_segment(make_staff(other_brand), "他们的", [stranger])
    r = api.post(
        "/broadcasts/segment/preview",
        {"segment_id": theirs.pk, "account_id": account.pk, "content": {"text": "x"}},
    )
    assert r.status_code == 404 and r.json()["field"] == "segment_id"
    missing = api.post("/broadcasts/segment", {"account_id": account.pk, "content": {}})
    assert missing.status_code == 422 and missing.json()["field"] == "segment_id"
    assert not Message.objects.exists() and not Broadcast.objects.exists()
