"""Customers, events and orders through the REST API: masking, scoping, merges, attribution."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import Api, make_brand, make_staff, make_store
from yutang.core.permissions import Role
from yutang.customers.models import Customer
from yutang.events.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    brand = make_brand()
    direct, franchise = make_store(brand, code="D1"), make_store(brand, code="F1", kind="franchise")
    admin = make_staff(brand, Role.BRAND_ADMIN)
    advisor = make_staff(brand, Role.ADVISOR, stores=[direct])
    api = Api(admin)

    def customer(phone, store=None, **profile):
        body = {"identities": [{"kind": "phone", "value": phone}], **profile}
        if store is not None:
            body["owner_store_id"] = store.pk
        response = api.post("/customers", body)
        assert response.status_code in (200, 201, 202), response.json()
        return response.json()

    return {
        "brand": brand,
        "direct": direct,
        "franchise": franchise,
        "admin": admin,
        "advisor": advisor,
        "api": api,
        "customer": customer,
    }


def test_create_is_idempotent_by_identity_and_masks_for_analysts(shop):
    first = shop["api"].post(
        "/customers",
        {"identities": [{"kind": "phone", "value": "13812341234"}], "display_name": "林"},
    )
    again = shop["api"].post(
        "/customers", {"identities": [{"kind": "phone", "value": "+86 138 1234 1234"}]}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["created"] is False
    assert first.json()["identities"] == [
        {"kind": "phone", "namespace": "", "value": "+8613812341234"}
    ]
    analyst = Api(make_staff(shop["brand"], Role.ANALYST))
    seen = analyst.get(f"/customers/{first.json()['id']}").json()
    assert seen["identities"][0]["value"] == "138****1234"
    assert "13812341234" not in str(analyst.get("/customers").json())


def test_bad_input_names_the_field(shop):
    api = shop["api"]
    cases = [
        ({"identities": []}, "identities"),
        ({"identities": [{"kind": "fax", "value": "1"}]}, "identities.0.kind"),
        ({"identities": [{"kind": "phone", "value": "12"}]}, "identities.0.value"),
        (
            {
                "identities": [{"kind": "phone", "value": "13800000000"}],
                "attributes": {"skin": "dry"},
            },
            "attributes.skin",
        ),
        (
            {"identities": [{"kind": "phone", "value": "13800000000"}], "birthday": "31/02/1990"},
            "birthday",
        ),
        (
            {"identities": [{"kind": "phone", "value": "13800000000"}], "owner_store_id": 999999},
            "owner_store_id",
        ),
    ]
    for body, field in cases:
        response = api.post("/customers", body)
        assert response.status_code == 422, body
        assert response.json()["field"] == field, (body, response.json())
    assert not Customer.objects.filter(brand=shop["brand"]).exists()


def test_attribute_schema_rejects_wrong_types_naming_the_attribute(shop):
    api = shop["api"]
    assert (
        api.put(
            "/attributes",
            {"key": "skin_type", "label": "肤质", "type": "enum", "choices": ["dry", "oily"]},
        ).status_code
        == 200
    )
    assert (
        api.put("/attributes", {"key": "vip", "label": "VIP", "type": "boolean"}).status_code == 200
    )
    c = shop["customer"]("13800000001")
    bad = api.patch(f"/customers/{c['id']}", {"attributes": {"skin_type": "shiny"}})
    assert bad.status_code == 422 and bad.json()["field"] == "attributes.skin_type"
    bad = api.patch(f"/customers/{c['id']}", {"attributes": {"vip": "yes"}})
    assert bad.status_code == 422 and bad.json()["field"] == "attributes.vip"
    ok = api.patch(f"/customers/{c['id']}", {"attributes": {"skin_type": "dry", "vip": True}})
    assert ok.json()["attributes"] == {"skin_type": "dry", "vip": True}


def test_store_roles_and_franchise_ownership(shop):
    mine = shop["customer"]("13800000001", shop["direct"])
    franchised = shop["customer"]("13800000002", shop["franchise"])
    assert set(franchised) == {"id", "created", "merged_ids"}, (
        "HQ gets no franchise customer details"
    )
    hq_only = shop["customer"]("13800000003")
    advisor = Api(shop["advisor"])
    assert [c["id"] for c in advisor.get("/customers").json()["items"]] == [mine["id"]]
    assert advisor.get(f"/customers/{franchised['id']}").status_code == 404
    assert advisor.get(f"/customers/{hq_only['id']}").status_code == 404
    lead = Api(make_staff(shop["brand"], Role.OPERATIONS_LEAD))
    assert {c["id"] for c in lead.get("/customers").json()["items"]} == {mine["id"], hq_only["id"]}
    assert lead.get(f"/customers/{franchised['id']}").status_code == 404
    assert (
        shop["api"]
        .patch("/brands/current", {"settings": {"hq_can_view_franchise_customers": True}})
        .status_code
        == 200
    )
    assert lead.get(f"/customers/{franchised['id']}").status_code == 200


def test_filters_phone_lookup_and_cursor_pages(shop):
    api = shop["api"]
    ids = [shop["customer"](f"1380000000{n}", display_name=f"顾客{n}")["id"] for n in range(5)]
    tag = api.post("/tags", {"group": "兴趣", "name": "护肤"}).json()
    api.post(f"/customers/{ids[1]}/tags", {"add": [tag["id"]]})
    assert [c["id"] for c in api.get(f"/customers?tag_id={tag['id']}").json()["items"]] == [ids[1]]
    assert [c["id"] for c in api.get("/customers?phone=138-0000-0003").json()["items"]] == [ids[3]]
    assert [c["id"] for c in api.get("/customers?search=顾客4").json()["items"]] == [ids[4]]
    page = api.get("/customers?limit=2").json()
    rest = api.get(f"/customers?limit=10&cursor={page['next_cursor']}").json()
    assert [c["id"] for c in page["items"] + rest["items"]] == sorted(ids, reverse=True)
    found = api.get("/identities/lookup?kind=phone&value=13800000002").json()
    assert found["id"] == ids[2]


def test_merge_unmerge_notes_consent_and_events_over_http(shop):
    api = shop["api"]
    a = shop["customer"]("13800000001")
    b = api.post("/customers", {"identities": [{"kind": "external", "value": "M-1"}]}).json()
    assert api.post(f"/customers/{b['id']}/notes", {"body": "到店试用"}).status_code == 201
    consent = api.post(
        f"/customers/{b['id']}/consent",
        {"purpose": "marketing", "status": "withdrawn", "proof": "回复 退订"},
    )
    assert consent.status_code == 201 and consent.json()["type"] == "consent.changed"
    merge = api.post("/merges", {"keep_id": a["id"], "absorb_id": b["id"]})
    assert merge.status_code == 201
    detail = api.get(f"/customers/{a['id']}").json()
    assert {i["kind"] for i in detail["identities"]} == {"phone", "external"}
    assert detail["consent"][0]["status"] == "withdrawn"
    assert api.get(f"/customers/{b['id']}").status_code == 404
    assert api.post(f"/merges/{merge.json()['id']}/undo", {}).status_code == 200
    assert api.get(f"/customers/{b['id']}/notes").json()[0]["body"] == "到店试用"
    timeline = api.get(f"/customers/{b['id']}/timeline").json()
    assert [t["kind"] for t in timeline] == ["note", "event"] or {t["kind"] for t in timeline} == {
        "note",
        "event",
    }


def test_event_batch_endpoint(shop):
    api = shop["api"]
    items = [
        {
            "type": "link.clicked",
            "occurred_at": "2026-01-02T03:04:05+08:00",
            "idempotency_key": f"k{n}",
            "identities": [{"kind": "phone", "value": "13800000009"}],
            "properties": {"link": "x"},
        }
        for n in range(3)
    ]
    items.append({"type": "link.clicked", "idempotency_key": "bad", "properties": {}})
    body = api.post("/events", {"events": items}).json()
    assert (body["stored"], body["duplicates"], body["rejected"]) == (3, 0, 1)
    assert body["results"][3]["error"]["field"] == "occurred_at"
    replay = api.post("/events", {"events": items[:3]}).json()
    assert (replay["stored"], replay["duplicates"]) == (0, 3)
    too_many = api.post("/events", {"events": [items[0]] * 1001})
    assert too_many.status_code == 422 and too_many.json()["field"] == "events"
    customer = body["results"][0]["customer_id"]
    assert len(api.get(f"/customers/{customer}/events").json()["items"]) == 3
    assert (
        Api(make_staff(shop["brand"], Role.ANALYST)).post("/events", {"events": items}).status_code
        == 403
    )


def test_orders_are_idempotent_attributed_and_refunds_are_bounded(shop):
    api = shop["api"]
    c = shop["customer"](
        "13800000001",
        shop["direct"],
        source_channel="package_card",
        owner_staff_id=shop["advisor"].pk,
    )
    order = {
        "source": "tmall",
        "external_id": "T-100",
        "paid_at": "2026-04-01T10:00:00+08:00",
        "amount_fen": 19900,
        "identities": [{"kind": "phone", "value": "13800000001"}],
    }
    first = api.post("/orders", order)
    assert first.status_code == 201
    o = first.json()
    assert (o["customer_id"], o["staff_id"], o["attributed_store_id"], o["channel"]) == (
        c["id"],
        shop["advisor"].pk,
        shop["direct"].pk,
        "package_card",
    )
    assert api.post("/orders", order).status_code == 200
    assert api.post("/orders", {**order, "amount_fen": 1}).status_code == 409
    assert Event.objects.filter(brand=shop["brand"], type="order.paid").count() == 1
    assert (
        api.post("/orders", {**order, "external_id": "T-101", "amount_fen": -1}).json()["field"]
        == "amount_fen"
    )
    assert (
        api.post("/orders", {**order, "external_id": "T-102", "source": "ebay"}).json()["field"]
        == "source"
    )
    refund = {"external_id": "R1", "amount_fen": 5000, "refunded_at": "2026-04-03T10:00:00+08:00"}
    assert api.post("/orders/tmall/T-100/refunds", refund).status_code == 201
    assert api.post("/orders/tmall/T-100/refunds", refund).status_code == 200
    too_much = api.post(
        "/orders/tmall/T-100/refunds", {**refund, "external_id": "R2", "amount_fen": 15000}
    )
    assert too_much.status_code == 422 and too_much.json()["field"] == "amount_fen"
    agg = api.get(f"/customers/{c['id']}").json()["aggregate"]
    assert (agg["order_count"], agg["paid_fen"], agg["refunded_fen"]) == (1, 19900, 5000)


def test_customer_list_and_detail_query_counts_do_not_grow(shop):
    api = shop["api"]
    tag = api.post("/tags", {"group": "兴趣", "name": "护肤"}).json()

    def count(path):
        with CaptureQueriesContext(connection) as ctx:
            assert api.get(path).status_code == 200
        return len(ctx.captured_queries)

    for n in range(3):
        c = shop["customer"](f"1390000000{n}")
        api.post(f"/customers/{c['id']}/tags", {"add": [tag["id"]]})
    few = count("/customers")
    for n in range(3, 9):
        c = shop["customer"](f"1390000000{n}")
        api.post(f"/customers/{c['id']}/tags", {"add": [tag["id"]]})
    assert count("/customers") == few
    assert count(f"/customers/{c['id']}") <= 10


def test_store_roles_cannot_use_brand_wide_writes(shop):
    advisor = Api(shop["advisor"])
    event = {
        "type": "link.clicked",
        "occurred_at": "2026-01-02T03:04:05+08:00",
        "idempotency_key": "x",
        "identities": [{"kind": "phone", "value": "13800000009"}],
        "properties": {"link": "x"},
    }
    assert advisor.post("/events", {"events": [event]}).status_code == 403
    order = {
        "source": "tmall",
        "external_id": "T-9",
        "paid_at": "2026-04-01T10:00:00+08:00",
        "amount_fen": 100,
        "identities": [{"kind": "phone", "value": "13800000009"}],
    }
    assert advisor.post("/orders", order).status_code == 403
    assert advisor.get("/imports").status_code == 403
    assert not Customer.objects.filter(brand=shop["brand"]).exists()
    # but an advisor records consent for their own store's customer
    mine = shop["customer"]("13800000001", shop["direct"])
    response = advisor.post(
        f"/customers/{mine['id']}/consent", {"purpose": "marketing", "status": "withdrawn"}
    )
    assert response.status_code == 201
