"""REST: CRUD, publish, status, enrol (JSON and CSV), enrollments, metrics, tasks; errors
name the field or JSON path; scope holds."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from tests.factories import Api, make_staff, make_store, token_for
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.journeys import engine, services, tasks
from yutang.journeys.models import Enrollment, Journey, StaffTask
from yutang.journeys.tests.helpers import T0, customer, setup

pytestmark = pytest.mark.django_db

DEF = {"trigger": {"type": "manual"},
       "steps": [{"id": "hi", "type": "send_message", "content": "hi"},
                 {"id": "task", "type": "create_task", "title": "call", "due": {"hours": 1}}]}  # fmt: skip


def test_crud_publish_enrol_metrics_over_http():
    brand, admin = setup()
    api = Api(admin)
    people = [customer(brand) for _ in range(3)]
    r = api.post("/journeys", {"name": "Welcome", "definition": DEF})
    assert r.status_code == 201, r.content
    jid = r.json()["id"]
    assert r.json()["status"] == "draft"
    assert api.post(f"/journeys/{jid}/enrol", {"customer_ids": [people[0].pk]}).status_code == 409
    r = api.post(f"/journeys/{jid}/publish", {})
    assert (r.status_code, r.json()["live_version"], r.json()["status"]) == (200, 1, "live")
    r = api.post(f"/journeys/{jid}/enrol", {"customer_ids": [p.pk for p in people[:2]]})
    assert [x["status"] for x in r.json()] == ["enrolled", "enrolled"]
    csv = f"customer_id\n{people[2].pk}\n".encode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client(headers={"Authorization": f"Bearer {token_for(admin)}"})
    r = client.post(f"/api/v1/journeys/{jid}/enrol-csv",
                    {"file": SimpleUploadedFile("a.csv", csv)})  # fmt: skip
    assert [x["status"] for x in r.json()] == ["enrolled"], r.content
    r = client.post(f"/api/v1/journeys/{jid}/enrol-csv",
                    {"file": SimpleUploadedFile("a.csv", b"customer_id\n999999\n")})  # fmt: skip
    assert (r.status_code, r.json()["field"]) == (422, "line 2")
    engine.fast_forward(until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    r = api.get(f"/journeys/{jid}/enrollments")
    assert {e["state"] for e in r.json()["items"]} == {"completed"}
    m = api.get(f"/journeys/{jid}/metrics").json()
    assert (m["entered"], m["completed"], m["messages_queued"], m["tasks_created"]) == (3, 3, 3, 3)
    assert [s["id"] for s in m["steps"]] == ["hi", "task"]
    r = api.post(f"/journeys/{jid}/status", {"status": "paused"})
    assert r.json()["status"] == "paused"
    exported = api.get(f"/journeys/{jid}/export").json()
    exported["name"] = "Copy"
    r = api.post("/journeys/import", exported)
    assert r.status_code == 201, r.content
    assert Journey.objects.filter(brand=brand).count() == 2


def test_validation_errors_name_the_step_path():
    _, admin = setup()
    api = Api(admin)
    bad = {**DEF, "steps": [*DEF["steps"], {"id": "w", "type": "wait", "days": -2}]}
    r = api.post("/journeys", {"name": "Bad", "definition": bad})
    assert (r.status_code, r.json()["field"]) == (422, "$.steps[2].days")
    bad = {
        **DEF,
        "steps": [
            {"id": "b", "type": "branch", "condition": {"and": [{"kind": "tag", "tag_ids": "x"}]}}
        ],
    }
    r = api.post("/journeys", {"name": "Bad", "definition": bad})
    assert r.json()["field"] == "$.steps[0].condition.and[0].tag_ids"
    r = api.post("/journeys", {"name": "Bad", "definition": DEF, "extra": 1})
    assert (r.status_code, r.json()["field"]) == (422, "extra")


def test_roles_and_tasks_inbox_scope():
    brand, admin = setup()
    s1, s2 = make_store(brand), make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[s1])
    mine = customer(brand, owner_store=s1, owner_staff=advisor)
    other = customer(brand, owner_store=s2)
    analyst = make_staff(brand, Role.ANALYST)
    assert Api(analyst).post("/journeys", {"name": "x", "definition": DEF}).status_code == 403
    assert Api(advisor).get("/journeys").status_code == 403
    with use_clock(FrozenClock(T0)):
        r = Api(admin).post(
            "/tasks",
            {
                "customer_id": mine.pk,
                "title": "call back",
                "due_at": (T0 + dt.timedelta(hours=2)).isoformat(),
            },
        )
        assert r.status_code == 201, r.content
        Api(admin).post(
            "/tasks", {"customer_id": other.pk, "title": "other store", "due_at": T0.isoformat()}
        )
    api = Api(advisor)
    assert [t["title"] for t in api.get("/tasks?box=store").json()["items"]] == ["call back"]
    tid = api.get("/tasks").json()["items"][0]["id"]
    other_id = StaffTask.objects.get(title="other store").pk
    assert api.post(f"/tasks/{other_id}/complete", {"outcome_code": "reached"}).status_code == 404
    assert StaffTask.objects.get(pk=other_id).status == "open"
    r = api.post(f"/tasks/{tid}/complete", {"outcome_code": "nope"})
    assert (r.status_code, r.json()["field"]) == (422, "outcome_code")
    r = api.post(f"/tasks/{tid}/complete", {"outcome_code": "reached", "outcome_note": "回访完成"})
    assert (r.status_code, r.json()["status"]) == (200, "done")
    assert api.post(f"/tasks/{tid}/complete", {"outcome_code": "reached"}).status_code == 409
    metrics = Api(admin).get("/tasks/metrics").json()
    assert metrics["staff"][0]["completion_rate"] == 1.0
    assert Enrollment.objects.count() == 0


def test_enrollments_and_tasks_page_with_cursors_past_the_old_caps():
    brand, admin = setup()
    people = [customer(brand, reachable=False, owner_staff=admin) for _ in range(7)]
    j = services.create_journey(
        actor=admin, name="Paged",
        definition={"trigger": {"type": "manual"}, "steps": [{"id": "w", "type": "wait", "days": 9}]},
    )  # fmt: skip
    services.publish(actor=admin, journey_id=j.pk)
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[p.pk for p in people])
        for p in people:
            tasks.create_task(actor=admin, customer_id=p.pk, title=f"t{p.pk}", due_at=T0)
    api = Api(admin)
    for path, expected in (
        (f"/journeys/{j.pk}/enrollments", sorted(Enrollment.objects.values_list("pk", flat=True))),
        ("/tasks", sorted(StaffTask.objects.values_list("pk", flat=True))),
    ):
        seen: list[int] = []
        cursor = ""
        pages = 0
        while True:
            r = api.get(f"{path}?limit=3" + (f"&cursor={cursor}" if cursor else ""))
            assert r.status_code == 200, r.content
            body = r.json()
            assert len(body["items"]) <= 3
            seen += [row["id"] for row in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert (seen, pages) == (sorted(expected, reverse=True), 3)
        bad = api.get(f"{path}?cursor=nonsense")
        assert (bad.status_code, bad.json()["field"]) == (422, "cursor")
        too_many = api.get(f"{path}?limit=501")
        assert (too_many.status_code, too_many.json()["field"]) == (422, "limit")
    r = api.get(f"/journeys/{j.pk}/enrollments?state=active&limit=500")
    assert len(r.json()["items"]) == 7
