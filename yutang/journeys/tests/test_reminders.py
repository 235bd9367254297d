"""Overdue-task reminders reach the staff member's carrier: a WeCom app message through the
real client to the local WeCom protocol server (30 a minute per member), the sandbox's record
(the demo), queue tasks to their store's managers; text in the brand's staff language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.factories import make_staff, make_store
from yutang.carriers import services as carriers
from yutang.carriers.models import SandboxDelivery
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core import services as core_services
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand, CarrierAccount, Staff
from yutang.core.permissions import Role
from yutang.journeys import extensions, tasks
from yutang.journeys.models import StaffNotification, StaffTask
from yutang.journeys.tests.helpers import T0, customer, setup

pytestmark = pytest.mark.django_db
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def server() -> Iterator[WeComTestServer]:
    cache.clear()  # the client's token and rate-limit windows live in the cache
    with WeComTestServer(clock=FrozenClock(T0)) as running:
        running.add_staff("zhangsan", "lisi")
        yield running
    cache.clear()


def wecom_account(server: WeComTestServer, brand: Brand, staff: Staff, userid: str):
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="wecom", external_id=userid, display_name=userid,
        staff_id=staff.pk,
    )  # fmt: skip
    carriers.connect_carrier(
        actor=None,
        account=account,
        credentials={"secret": server.secret, "token": server.callback_token,
                     "encoding_aes_key": server.encoding_aes_key},
        settings={"corp_id": server.corp_id, "base_url": server.base_url,
                  "agent_id": str(server.agent_id)},
    )  # fmt: skip
    return account


def overdue(admin, who, n, *, title="回访", due=T0):
    with use_clock(FrozenClock(due - dt.timedelta(hours=1))):
        return [
            tasks.create_task(actor=admin, customer_id=who.pk, title=f"{title}{i}", due_at=due)
            for i in range(n)
        ]


def remind(at):
    with use_clock(FrozenClock(at)):
        return tasks.remind_overdue_once()


def test_reminders_reach_wecom_thirty_a_minute_per_member(server):
    brand, admin = setup()
    store = make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[store])
    wecom_account(server, brand, advisor, "zhangsan")
    c = customer(brand, owner_staff=advisor, owner_store=store, display_name="王女士")
    overdue(admin, c, 35)
    assert remind(T0 + SECOND) == 35 + 30  # all marked overdue, 30 reminded
    sent = [m for m in server.app_messages if m["touser"] == "zhangsan"]
    assert len(sent) == 30
    assert sent[0]["content"] == "任务已逾期：回访0（客户 王女士，截止 03-02 09:00）"
    assert remind(T0 + 30 * SECOND) == 0  # still the same minute for zhangsan
    assert len(server.app_messages) == 30
    assert remind(T0 + 62 * SECOND) == 5
    assert sorted(m["content"] for m in server.app_messages) == sorted(
        f"任务已逾期：回访{i}（客户 王女士，截止 03-02 09:00）" for i in range(35)
    )
    assert remind(T0 + 200 * SECOND) == 0  # each task once
    assert len(server.calls("message/send")) == 35
    assert set(StaffNotification.objects.values_list("channel", flat=True)) == {"wecom"}
    assert not StaffTask.objects.filter(reminded_at__isnull=True).exists()


def test_a_carrier_that_asks_to_wait_gets_the_reminder_on_a_later_pass(server):
    brand, admin = setup()
    advisor = make_staff(brand, Role.ADVISOR, stores=[make_store(brand)])
    wecom_account(server, brand, advisor, "lisi")
    overdue(admin, customer(brand, owner_staff=advisor), 1)
    server.fail_next("message/send", 45009)  # WeCom: the API is over its frequency limit
    assert remind(T0 + SECOND) == 1  # marked overdue, not reminded
    assert server.app_messages == []
    assert StaffTask.objects.get().reminded_at is None
    assert remind(T0 + 2 * SECOND) == 1
    assert [m["touser"] for m in server.app_messages] == ["lisi"]


def test_queue_tasks_remind_the_store_managers_through_the_sandbox_in_the_brand_language():
    brand, admin = setup(staff_language="en")
    store = make_store(brand, name="Sanlitun")
    managers = [make_staff(brand, Role.STORE_MANAGER, stores=[store]) for _ in range(2)]
    make_staff(brand, Role.STORE_MANAGER, stores=[make_store(brand)])  # another store's
    for m in managers:
        core_services.create_carrier_account(
            actor=None, brand=brand, kind="sandbox", external_id=f"mgr{m.pk}",
            display_name="店长", staff_id=m.pk,
        )  # fmt: skip
    who = customer(brand, owner_store=store, display_name="Ms Wang")
    with use_clock(FrozenClock(T0 - dt.timedelta(hours=1))):
        task = StaffTask.objects.create(
            brand=brand, customer=who, store=store, queue_role=Role.ADVISOR.value,
            title="Follow up", due_at=T0, created_at=T0 - dt.timedelta(hours=1),
        )  # fmt: skip
    assert tasks.reminder_recipients(task) == managers
    assert remind(T0 + SECOND) == 1 + 2
    records = SandboxDelivery.objects.filter(kind="staff").order_by("recipient")
    assert [r.recipient for r in records] == sorted(f"staff:mgr{m.pk}" for m in managers)
    assert {r.content["text"] for r in records} == {
        "Overdue task in a queue you manage: Follow up (customer Ms Wang, due 03-02 09:00)"
    }
    assert remind(T0 + 5 * SECOND) == 0
    assert SandboxDelivery.objects.filter(kind="staff").count() == 2


def test_a_queue_without_a_store_manager_goes_to_operations_leads_and_console_fallback():
    brand, admin = setup()
    lead = make_staff(brand, Role.OPERATIONS_LEAD)
    who = customer(brand)
    task = StaffTask.objects.create(
        brand=brand, customer=who, queue_role=Role.ADVISOR.value, title="t", due_at=T0,
        created_at=T0,
    )  # fmt: skip
    assert tasks.reminder_recipients(task) == [lead]
    assert remind(T0 + SECOND) == 2
    assert list(StaffNotification.objects.values_list("staff_id", "channel")) == [
        (lead.pk, "console")  # no carrier account: recorded for the console
    ]
    assert not CarrierAccount.objects.filter(staff=lead).exists()


def test_a_registered_notifier_replaces_the_carrier_one():
    brand, admin = setup()
    overdue(admin, customer(brand, owner_staff=admin), 1)
    seen: list[str] = []

    def notifier(*, staff, task, text):
        seen.append(text)
        return "custom"

    extensions.register_staff_notifier(notifier)
    try:
        remind(T0 + SECOND)
    finally:
        extensions.clear_staff_notifier()
    assert seen == ["任务已逾期：回访0（客户 " + StaffTask.objects.get().customer.display_name
                    + "，截止 03-02 09:00）"]  # fmt: skip
    assert StaffNotification.objects.get().channel == "custom"
