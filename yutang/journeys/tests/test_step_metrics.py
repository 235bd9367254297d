"""Per-step metrics (messages sent / blocked by rule, tasks created / done) and per-journey
task completion by staff member and store, with the median time to completion; the console
page draws the same numbers as the API."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tests.factories import Api, console_client, make_staff, make_store
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.journeys import engine, services, tasks
from yutang.journeys.models import StaffTask
from yutang.journeys.tests.helpers import live
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.tests import helpers as msg

pytestmark = pytest.mark.django_db
MINUTE = dt.timedelta(minutes=1)


def test_step_metrics_and_task_completion_by_staff_and_store():
    noon = msg.NOON
    with use_clock(FrozenClock(noon)):
        brand, _account, people = msg.setup(4)
        admin = make_staff(brand, Role.BRAND_ADMIN)
        north, south = make_store(brand, name="北店"), make_store(brand, name="南店")
        ann = make_staff(brand, Role.ADVISOR, stores=[north])
        bob = make_staff(brand, Role.ADVISOR, stores=[south])
        for staff, name in ((ann, "Ann"), (bob, "Bob")):
            staff.display_name = name
            staff.save(update_fields=["display_name"])
        for who, (staff, store) in zip(people, [(ann, north), (ann, north), (bob, south),
                                                (bob, south)], strict=True):  # fmt: skip
            who.owner_staff, who.owner_store = staff, store
            who.save(update_fields=["owner_staff", "owner_store"])
        msg.grant(people[3], "marketing", status="withdrawn")
        journey = live(admin, [
            {"id": "a", "type": "send_message", "kind": "marketing", "content": "one"},
            {"id": "t", "type": "create_task", "title": "回访 {name}", "script": "hi"},
            {"id": "b", "type": "send_message", "kind": "marketing", "content": "two"},
        ])  # fmt: skip
        services.enrol_customers(
            actor=admin, journey_id=journey.pk, customer_ids=[p.pk for p in people]
        )
        while engine.run_due_once(batch=50):
            pass
        deliver_due_messages()
    owned = {t.customer_id: t for t in StaffTask.objects.all()}
    for who, actor, minutes, skipped in [
        (people[0], ann, 10, False),
        (people[1], ann, 30, False),
        (people[2], bob, 60, False),
        (people[3], bob, 5, True),
    ]:
        with use_clock(FrozenClock(noon + minutes * MINUTE)):
            tasks.complete_task(
                actor=actor, task_id=owned[who.pk].pk, outcome_code="reached", skipped=skipped
            )

    m = Api(admin).get(f"/journeys/{journey.pk}/metrics").json()
    steps = {s["id"]: s for s in m["steps"]}
    assert [s["id"] for s in m["steps"]] == ["a", "t", "b"]
    assert steps["a"]["messages"] == {
        "queued": 4, "sent": 3, "pending_confirmation": 0, "blocked": 1,
        "blocked_by_rule": {"consent": 1}, "by_status": {"sent": 3, "blocked": 1},
    }  # fmt: skip
    assert (steps["b"]["messages"]["sent"], steps["b"]["messages"]["blocked_by_rule"]) == (
        0, {"frequency": 3, "consent": 1},
    )  # fmt: skip
    assert steps["t"]["messages"]["queued"] == 0
    assert steps["t"]["tasks"] == {"created": 4, "done": 3, "skipped": 1}
    assert steps["a"]["tasks"] == {"created": 0, "done": 0, "skipped": 0}
    assert (m["tasks_created"], m["tasks_done"]) == (4, 3)
    assert m["messages_blocked_by_rule"] == {"consent": 2, "frequency": 3}
    assert m["task_completion"]["staff"] == [
        {"id": ann.pk, "name": "Ann", "total": 2, "done": 2, "completion_rate": 1.0,
         "median_minutes": 20.0},
        {"id": bob.pk, "name": "Bob", "total": 2, "done": 1, "completion_rate": 0.5,
         "median_minutes": 60.0},
    ]  # fmt: skip
    assert [(r["name"], r["done"], r["median_minutes"]) for r in m["task_completion"]["stores"]] == [
        ("北店", 2, 20.0), ("南店", 1, 60.0),
    ]  # fmt: skip
    # The inbox's brand-wide figures agree (median of 10 and 30 minutes).
    brandwide = Api(admin).get("/tasks/metrics").json()
    assert [(r["name"], r["completion_rate"], r["median_minutes"]) for r in brandwide["staff"]] == [
        ("Ann", 1.0, 20.0), ("Bob", 0.5, 60.0),
    ]  # fmt: skip

    page = console_client(admin).get(f"/journeys/{journey.pk}/").content.decode()
    found = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page)
    assert found is not None
    chart = json.loads(found.group(1))
    assert chart["steps"] == ["a", "t", "b"]
    assert chart["sent"] == [steps[s]["messages"]["sent"] for s in "atb"] == [3, 0, 0]
    assert chart["blocked"] == [steps[s]["messages"]["blocked"] for s in "atb"] == [1, 0, 4]
    assert chart["tasks_created"] == [0, 4, 0] and chart["tasks_done"] == [0, 3, 0]
    assert chart["staff_rate"] == [1.0, 0.5]
    assert 'data-testid="step-blocked-b">4' in page
    assert 'data-testid="step-tasks-done-t">3' in page
    assert 'data-testid="step-work-chart"' in page and 'data-testid="task-completion"' in page
