"""One-click send from a staff task: the script goes to the customer through the outbox and
the policy gate (a staff member cannot record a touch the gate never saw), the task closes as
"sent" with its message, a journey waiting for the task goes on, and the metrics count it."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import Api, console_client, make_staff, make_store
from yutang.carriers.models import SandboxDelivery
from yutang.core import services as core_services
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.journeys import engine, services, tasks
from yutang.journeys.models import Enrollment, StaffTask, StepRun
from yutang.journeys.tests.helpers import T0, customer, hold, live, setup
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests import helpers as msg

pytestmark = pytest.mark.django_db
HOUR = dt.timedelta(hours=1)


def advisor_with_customer(brand, **fields):
    store = make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[store])
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="sandbox", external_id=f"adv-{advisor.pk}",
        display_name="顾问", staff_id=advisor.pk, store_id=store.pk,
    )  # fmt: skip
    who = customer(brand, reachable=False, owner_staff=advisor, owner_store=store, **fields)
    hold(who, account)
    return advisor, account, who


def journey_task(admin, who):
    j = live(admin, [
        {"id": "call", "type": "create_task", "title": "回访 {name}", "script": "{name}您好，用得怎么样？",
         "wait_for_completion": True, "timeout": {"days": 2}, "on_timeout": "late"},
        {"id": "done", "type": "exit"},
        {"id": "late", "type": "exit"},
    ])  # fmt: skip
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[who.pk])
    engine.fast_forward(start=T0, until=T0 + HOUR)
    return j, StaffTask.objects.get(customer=who)


def test_send_from_a_journey_task_goes_through_the_outbox_and_resumes_the_journey():
    brand, admin = setup()
    advisor, account, who = advisor_with_customer(brand, display_name="王女士")
    with use_clock(FrozenClock(T0)):
        msg.grant(who, "marketing")
    j, task = journey_task(admin, who)
    with use_clock(FrozenClock(T0 + 2 * HOUR)):
        r = Api(advisor).post(f"/tasks/{task.pk}/send", {})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["status"], body["outcome_code"]) == ("done", "sent")
    m = Message.objects.get(pk=body["message_id"])
    assert (m.cause, m.cause_ref, m.staff_id, m.account_id, m.status) == (
        "journey", f"journey:{j.pk}:call", advisor.pk, account.pk, "queued",
    )  # fmt: skip
    assert m.content["text"] == "王女士您好，用得怎么样？"
    assert (m.idempotency_key, m.kind) == (f"task:{task.pk}", "marketing")
    with use_clock(FrozenClock(T0 + 2 * HOUR)):
        deliver_due_messages()
    m.refresh_from_db()
    assert (m.status, m.rule) == ("sent", "")
    assert SandboxDelivery.objects.filter(account=account).count() == 1
    # The journey waiting for the task went on at once.
    run = StepRun.objects.get(step_id="call", outcome="task_done")
    assert run.ran_at == T0 + 2 * HOUR
    engine.fast_forward(start=T0 + 2 * HOUR, until=T0 + 3 * HOUR)
    assert Enrollment.objects.get().exit_reason == "exit_step"
    assert StepRun.objects.filter(step_id="done").exists()
    metrics = services.journey_metrics(actor=admin, journey_id=j.pk)
    assert (metrics["messages_queued"], metrics["messages_sent"]) == (1, 1)
    # Sending again: the task is closed.
    again = Api(advisor).post(f"/tasks/{task.pk}/send", {})
    assert (again.status_code, again.json()["field"]) == (409, "status")
    assert Message.objects.count() == 1


def test_completing_as_sent_cannot_bypass_the_gate():
    with use_clock(FrozenClock(msg.NOON)):
        brand, admin = setup()
        advisor, account, who = advisor_with_customer(brand)
        msg.grant(who, "marketing", status="withdrawn")
        task = tasks.create_task(
            actor=admin, customer_id=who.pk, title="跟进", script="新品到店了", due_at=msg.NOON
        )
        done = tasks.complete_task(
            actor=advisor, task_id=task.pk, outcome_code="sent", outcome_note="发了"
        )
        assert done.message is not None
        deliver_due_messages()
    m = Message.objects.get()
    assert (m.cause, m.cause_ref, m.status, m.rule) == (
        "manual", f"task:{task.pk}", "blocked", "consent",
    )  # fmt: skip
    assert not SandboxDelivery.objects.exists()
    assert StaffTask.objects.get().outcome_code == "sent"


def test_send_errors_name_the_problem():
    brand, admin = setup()
    advisor, _, who = advisor_with_customer(brand)
    shared = core_services.create_carrier_account(
        actor=None, brand=brand, kind="sandbox", external_id="shared", display_name="品牌号"
    )
    stranger = customer(brand, reachable=False, owner_staff=advisor)
    hold(stranger, shared)  # only the brand's shared account, which advisors may not use
    with use_clock(FrozenClock(T0)):
        empty = tasks.create_task(actor=admin, customer_id=who.pk, title="空", due_at=T0)
        theirs = tasks.create_task(
            actor=admin, customer_id=stranger.pk, title="x", script="hi", due_at=T0
        )
    api = Api(advisor)
    r = api.post(f"/tasks/{empty.pk}/send", {})
    assert (r.status_code, r.json()["field"]) == (422, "text")
    r = api.post(f"/tasks/{empty.pk}/send", {"text": "  好久不见 "})
    assert r.status_code == 200
    assert Message.objects.get().content["text"] == "好久不见"
    r = api.post(f"/tasks/{theirs.pk}/send", {})
    assert (r.status_code, r.json()["field"]) == (409, "task_id")
    r = api.post(f"/tasks/{theirs.pk}/complete", {"outcome_code": "sent", "skipped": True})
    assert (r.status_code, r.json()["field"]) == (422, "skipped")
    assert StaffTask.objects.get(pk=theirs.pk).status == "open"
    # The brand admin may send from the brand's shared account the customer holds.
    r = Api(admin).post(f"/tasks/{theirs.pk}/send", {"kind": "service"})
    assert r.status_code == 200, r.content
    sent = Message.objects.get(idempotency_key=f"task:{theirs.pk}")
    assert (sent.kind, sent.account_id, sent.staff_id) == ("service", shared.pk, admin.pk)


def test_the_inbox_sends_the_edited_script():
    brand, admin = setup()
    advisor, _, who = advisor_with_customer(brand)
    with use_clock(FrozenClock(T0)):
        task = tasks.create_task(
            actor=admin, customer_id=who.pk, title="回访", script="原话术", due_at=T0 + HOUR
        )
    client = console_client(advisor)
    page = client.get("/tasks/").content.decode()
    assert 'data-testid="task-send"' in page and "原话术" in page
    r = client.post(f"/tasks/{task.pk}/send/", {"text": "改过的话术", "box": "mine"})
    assert r.status_code == 302
    assert Message.objects.get().content["text"] == "改过的话术"
    assert StaffTask.objects.get().status == "done"
