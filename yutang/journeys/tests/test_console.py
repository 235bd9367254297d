"""Console pages: list, builder with typed step forms and errors pointing at the step,
publish, enrol, metrics, task inbox; and a real browser run with fast-forward."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import PASSWORD, console_client, make_staff, make_store
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.journeys import engine, services, tasks
from yutang.journeys.models import Enrollment, Journey, StaffTask
from yutang.journeys.tests.helpers import T0, customer, setup


@pytest.mark.django_db
def test_builder_adds_typed_steps_points_at_bad_step_and_publishes():
    brand, admin = setup()
    client = console_client(admin)
    r = client.post("/journeys/new/", {"name": "欢迎旅程"})
    journey = Journey.objects.get(name="欢迎旅程")
    assert r.status_code == 302 and r["Location"] == f"/journeys/{journey.pk}/"
    r = client.post(
        f"/journeys/{journey.pk}/edit/", {"op": "add", "id": "w", "type": "wait", "days": "1"}
    )
    assert r.status_code == 302
    r = client.post(
        f"/journeys/{journey.pk}/edit/",
        {"op": "add", "id": "bad", "type": "wait_until", "time": "25:00"},
    )
    assert r.status_code == 422
    assert "$.steps[2].time" in r.content.decode()
    journey.refresh_from_db()
    assert [s["id"] for s in journey.draft["steps"]] == ["hello", "w"]  # nothing half-applied
    bad_json = {
        **journey.draft,
        "steps": [*journey.draft["steps"][:1], {"id": "w", "type": "wait", "days": 0}],
    }
    import json

    r = client.post(
        f"/journeys/{journey.pk}/edit/", {"op": "json", "definition": json.dumps(bad_json)}
    )
    page = r.content.decode()
    assert r.status_code == 422 and "$.steps[1]" in page
    assert 'border-danger border-2" data-step="w"' in page  # the builder marks the step
    r = client.post(f"/journeys/{journey.pk}/action/", {"op": "publish"})
    journey.refresh_from_db()
    assert journey.live_version is not None
    assert (journey.status, journey.live_version.number) == ("live", 1)
    page = client.get(f"/journeys/{journey.pk}/").content.decode()
    assert 'data-testid="published-flow"' in page and "echarts.min.js" in page


@pytest.mark.django_db
def test_template_install_and_store_role_cannot_see_journeys():
    from yutang.journeys.definition import dump, parse

    brand, admin = setup()
    client = console_client(admin)
    listing = client.get("/journeys/").content.decode()
    shipped = services.shipped_templates()
    assert len(shipped) == 7
    for template in shipped:  # every template is offered and parses
        assert template["key"] in listing
        parse(template["definition"])
    r = client.post("/journeys/new/", {"template": "1_new_contact"})
    journey = Journey.objects.get(brand=brand)
    assert r.status_code == 302 and r["Location"] == f"/journeys/{journey.pk}/"
    template = next(t for t in shipped if t["key"] == "1_new_contact")
    assert (journey.name, journey.status, journey.live_version_id) == (
        template["name"], "draft", None,
    )  # fmt: skip
    assert journey.draft == dump(parse(template["definition"]))  # the template, unchanged
    page = client.get(f"/journeys/{journey.pk}/").content.decode()
    assert 'data-step="welcome"' in page and 'data-testid="skip-if-welcomed"' in page
    # Installing the same template again is refused by name, not duplicated.
    client.post("/journeys/new/", {"template": "1_new_contact"})
    assert Journey.objects.filter(brand=brand).count() == 1
    for role in (Role.ADVISOR, Role.STORE_MANAGER):
        staff = make_staff(brand, role, stores=[make_store(brand)])
        store_client = console_client(staff)
        assert store_client.get("/journeys/").status_code == 403
        assert store_client.get(f"/journeys/{journey.pk}/").status_code == 403
        assert store_client.post("/journeys/new/", {"template": "3_repurchase"}).status_code == 403
        assert store_client.get("/tasks/").status_code == 200
    assert Journey.objects.filter(brand=brand).count() == 1


@pytest.mark.django_db
def test_task_inbox_overdue_first_and_complete():
    brand, admin = setup()
    c = customer(brand, owner_staff=admin)
    with use_clock(FrozenClock(T0)):
        late = tasks.create_task(
            actor=admin, customer_id=c.pk, title="late one", due_at=T0 + dt.timedelta(hours=1)
        )
        tasks.create_task(
            actor=admin,
            customer_id=c.pk,
            title="later one",
            due_at=T0 - dt.timedelta(hours=1) + dt.timedelta(days=2),
        )
    with use_clock(FrozenClock(T0 + dt.timedelta(hours=2))):
        assert tasks.remind_overdue_once() == 2  # one marked overdue, one reminder
        assert tasks.remind_overdue_once() == 0  # reminded once only
    client = console_client(admin)
    page = client.get("/tasks/").content.decode()
    assert page.index("late one") < page.index("later one")
    assert f"/customers/{c.pk}/" in page
    r = client.post(
        f"/tasks/{late.pk}/complete/",
        {"outcome_code": "reached", "outcome_note": "ok", "box": "mine"},
    )
    assert r.status_code == 302
    assert StaffTask.objects.get(pk=late.pk).status == "done"


@pytest.mark.django_db
def test_reminders_respect_thirty_per_minute_per_member():
    """Delivered to the member's carrier (the sandbox here; WeCom in test_reminders)."""
    from yutang.carriers.models import SandboxDelivery
    from yutang.core import services as core_services

    brand, admin = setup()
    core_services.create_carrier_account(
        actor=None, brand=brand, kind="sandbox", external_id="admin-phone", display_name="我",
        staff_id=admin.pk,
    )  # fmt: skip
    c = customer(brand, owner_staff=admin)
    with use_clock(FrozenClock(T0)):
        for n in range(35):
            tasks.create_task(actor=admin, customer_id=c.pk, title=f"t{n}", due_at=T0)

    def delivered() -> list[str]:
        rows = SandboxDelivery.objects.filter(kind="staff", recipient="staff:admin-phone")
        return sorted(r.content["text"].split("：")[1].split("（")[0] for r in rows)

    with use_clock(FrozenClock(T0 + dt.timedelta(seconds=1))):
        tasks.remind_overdue_once()
    assert StaffTask.objects.filter(reminded_at__isnull=False).count() == 30
    assert len(delivered()) == 30
    with use_clock(FrozenClock(T0 + dt.timedelta(seconds=30))):
        tasks.remind_overdue_once()
    assert StaffTask.objects.filter(reminded_at__isnull=False).count() == 30
    assert len(delivered()) == 30
    with use_clock(FrozenClock(T0 + dt.timedelta(minutes=1, seconds=2))):
        tasks.remind_overdue_once()
    assert StaffTask.objects.filter(reminded_at__isnull=False).count() == 35
    assert delivered() == sorted(f"t{n}" for n in range(35))  # each task once


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_build_publish_and_watch_a_customer_move_with_fast_forward(chromium, live_server):
    brand, admin = setup()
    alice = customer(brand, display_name="Alice")
    context = chromium.new_context(locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", admin.user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/journeys/")
        page.fill("[data-testid=journey-name]", "浏览器旅程")
        page.click("[data-testid=journey-create]")
        page.wait_for_selector("[data-testid=draft-flow]")
        page.fill("[data-testid=step-id]", "wait1")
        page.select_option("[data-testid=step-type]", "wait")
        page.fill("[data-testid=step-days]", "2")
        page.click("[data-testid=step-add]")
        page.wait_for_selector("[data-step=wait1]")
        page.fill("[data-testid=step-id]", "bye")
        page.select_option("[data-testid=step-type]", "send_message")
        page.fill("[data-testid=step-content]", "再见 {name}")
        page.click("[data-testid=step-add]")
        page.wait_for_selector("[data-step=bye]")
        page.click("[data-testid=journey-publish]")
        page.wait_for_selector("[data-testid=published-flow]")
        page.fill("[data-testid=enrol-ids]", str(alice.pk))
        page.click("[data-testid=enrol]")
        page.wait_for_selector("[data-testid=m-entered]:text('1')")
        journey = Journey.objects.get(name="浏览器旅程")
        enrolled_at = Enrollment.objects.get(journey=journey).entered_at
        engine.fast_forward(start=enrolled_at, until=enrolled_at + dt.timedelta(hours=1))
        page.reload()
        assert page.locator("[data-testid=step-count-wait1]").inner_text().startswith("当前在此: 1")
        engine.fast_forward(
            start=enrolled_at + dt.timedelta(hours=1), until=enrolled_at + dt.timedelta(days=3)
        )
        page.reload()
        assert page.locator("[data-testid=m-completed]").inner_text() == "1"
        assert page.locator("[data-testid=m-messages]").inner_text() == "2"
        assert page.evaluate("typeof window.echarts") == "object"
        drawn = page.evaluate(
            "echarts.getInstanceByDom(document.getElementById('step-work-chart'))"
            ".getOption().xAxis[0].data"
        )
        assert drawn == ["hello", "wait1", "bye"]  # the chart carries the metrics' steps
        assert services.journey_metrics(actor=admin, journey_id=journey.pk)["completed"] == 1
    finally:
        context.close()
