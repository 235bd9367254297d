"""The confirmation poll against the local WeCom server: each waiting message moves on by
WeCom's per-customer result of its mass-message task (1 sent, 2 no longer a contact, 3 the
customer already got the corp's mass messages for the period), unconfirmed ones wait and are
asked again later, and at the deadline the task is cancelled on WeCom and the message
expires. `confirm_broadcast` reads the same results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.factories import make_staff
from yutang.carriers.models import CarrierContact
from yutang.carriers.tests.test_wecom_adapter import NOON, connect, post
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import CarrierAccount, Lease
from yutang.customers.models import Customer
from yutang.events.models import Event
from yutang.messaging import confirmations
from yutang.messaging import services as messaging
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import grant

pytestmark = pytest.mark.django_db
RESULT = "externalcontact/get_groupmsg_send_result"
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    clock = FrozenClock(NOON)
    with use_clock(clock):
        yield clock


@pytest.fixture
def server(frozen: FrozenClock) -> Iterator[WeComTestServer]:
    cache.clear()
    with WeComTestServer(clock=frozen) as running:
        running.add_staff("zhangsan")
        yield running
    cache.clear()


def customers_of(account: CarrierAccount) -> list[Customer]:
    return [
        c.customer
        for c in CarrierContact.objects.filter(account=account)
        .order_by("id")
        .select_related("customer")
    ]


def setup_contacts(server: WeComTestServer, n: int) -> tuple[CarrierAccount, list[Customer]]:
    account = connect(server)
    for i in range(n):
        post(account, server, server.add_customer(userid="zhangsan", external_userid=f"wm-{i}"))
    found = customers_of(account)
    for customer in found:
        grant(customer, "marketing")
    return account, found


def send_each(account: CarrierAccount, customers: list[Customer], text: str) -> list[Message]:
    for n, customer in enumerate(customers):
        messaging.enqueue_message(
            brand=account.brand,
            customer=customer,
            account=account,
            kind="service",
            content={"type": "text", "text": f"{text} {n}"},
            cause="journey",
            idempotency_key=f"{text}-{n}",
        )
    deliver_due_messages()
    rows = list(Message.objects.filter(idempotency_key__startswith=text).order_by("id"))
    assert [m.status for m in rows] == ["pending_confirmation"] * len(customers)
    return rows


def task_of(server: WeComTestServer, m: Message):
    return server.group_msgs[m.carrier_message_id]


def test_each_message_moves_on_by_its_own_wecom_result(server, frozen):
    account, customers = setup_contacts(server, 4)
    # Yesterday's mass message to wm-2, already sent: with the "one a day" rule that is fine
    # today; a second one today is not.
    server.mass_message_rule = ("day", 1)
    early = send_each(account, customers[2:3], "早安")
    server.confirm_group_msg(early[0].carrier_message_id)
    sent, gone, limited, waiting = send_each(account, customers, "会员日")

    server.confirm_group_msg(sent.carrier_message_id)
    server.customer_deletes_staff(userid="zhangsan", external_userid="wm-1")
    server.confirm_group_msg(gone.carrier_message_id)
    server.confirm_group_msg(limited.carrier_message_id)
    confirmed_at = frozen.now()
    frozen.advance(5 * MINUTE)

    assert confirmations.poll_due() == 5  # the four, and the first morning message
    for m in (sent, gone, limited, waiting):
        m.refresh_from_db()
    assert (sent.status, sent.sent_at) == ("sent", confirmed_at)
    assert (gone.status, gone.rule) == ("failed", "carrier")
    assert "WeCom status 2" in gone.reason
    assert (limited.status, limited.rule) == ("blocked", "platform_limit")
    assert "WeCom status 3" in limited.reason
    assert waiting.status == "pending_confirmation"
    # Five minutes old: asked again after a quarter of its age.
    assert waiting.due_at == frozen.now() + 5 * MINUTE / 4
    sent_events = Event.objects.filter(type="message.sent")
    by_message = {e.properties["message_id"]: e for e in sent_events}
    assert sorted(by_message) == sorted([str(sent.pk), str(early[0].pk)])
    assert by_message[str(sent.pk)].occurred_at == confirmed_at

    # Nothing is due again before its time; a replayed poll changes nothing.
    calls = len(server.calls(RESULT))
    assert confirmations.poll_due() == 0
    assert len(server.calls(RESULT)) == calls
    frozen.advance(2 * MINUTE)
    server.confirm_group_msg(waiting.carrier_message_id)
    assert confirmations.poll_due() == 1
    waiting.refresh_from_db()
    assert waiting.status == "sent"
    assert Event.objects.filter(type="message.sent").count() == 3


def test_an_unconfirmed_task_is_cancelled_on_wecom_and_expires_at_its_deadline(server, frozen):
    account, customers = setup_contacts(server, 1)
    (m,) = send_each(account, customers, "新品")
    deadline = m.claimed_until
    assert deadline == NOON + dt.timedelta(hours=24)

    # Asked every quarter of its age, at most every 15 minutes, and a last time a minute
    # before the deadline; calls stay few.
    while True:
        m.refresh_from_db()
        if m.status != "pending_confirmation":
            break
        frozen.set(max(m.due_at, frozen.now()))
        confirmations.poll_due()
    # 24 hours at most every 15 minutes (96), plus the first hour's quicker looks.
    assert len(server.calls(RESULT)) < 24 * 4 + 30
    assert (m.status, m.rule, m.finished_at) == ("expired", "confirmation", deadline - MINUTE)
    assert task_of(server, m).cancelled
    with pytest.raises(ValueError, match="cancelled"):
        server.confirm_group_msg(m.carrier_message_id)  # nobody can send it any more
    assert not Event.objects.filter(type="message.sent").exists()


def test_a_broadcast_is_one_task_and_confirm_broadcast_reads_its_results(server, frozen):
    account, customers = setup_contacts(server, 3)
    admin = make_staff(account.brand)
    broadcast = messaging.create_broadcast(
        actor=admin,
        account_id=account.pk,
        kind="service",
        content={"text": "门店周年庆"},
        customer_ids=[c.pk for c in customers],
    )
    deliver_due_messages()
    rows = list(Message.objects.filter(broadcast=broadcast).order_by("id"))
    # One mass-message task for the member to confirm, not one per customer.
    (task,) = server.group_msgs.values()
    assert task.request["external_userid"] == ["wm-0", "wm-1", "wm-2"]
    assert {m.carrier_message_id for m in rows} == {task.msgid}

    # Staff say they confirmed, but WeCom says not yet: nothing moves on their word.
    assert messaging.confirm_broadcast(actor=admin, broadcast_id=broadcast.pk) == 0
    server.customer_deletes_staff(userid="zhangsan", external_userid="wm-1")
    server.confirm_group_msg(task.msgid)
    calls = len(server.calls(RESULT))
    assert messaging.confirm_broadcast(actor=admin, broadcast_id=broadcast.pk) == 2
    assert len(server.calls(RESULT)) == calls + 1  # one call for the whole task
    statuses = list(
        Message.objects.filter(broadcast=broadcast).order_by("id").values_list("status", flat=True)
    )
    assert statuses == ["sent", "failed", "sent"]
    assert Event.objects.filter(type="message.sent").count() == 2
    assert messaging.confirm_broadcast(actor=admin, broadcast_id=broadcast.pk) == 0


def test_the_poll_goes_through_the_clients_rate_limiter_one_call_per_task(server, frozen):
    account, customers = setup_contacts(server, 3)
    send_each(account, customers, "提醒")
    counted_before = _window_count(server)
    assert confirmations.poll_due() == 3
    assert len(server.calls(RESULT)) == 3
    assert _window_count(server) - counted_before == 3


def _window_count(server: WeComTestServer) -> int:
    from yutang.carriers.wecom.client import WeComClient

    probe = WeComClient(corp_id=server.corp_id, secret=server.secret, base_url=server.base_url)
    name, seconds, _ = probe._windows(RESULT)[0]
    start = int(confirmations.clock.now().timestamp() // seconds) * seconds
    return int(cache.get(f"yutang:wecom:rl:{name}:{seconds}:{start}") or 0)


def test_the_loop_polls_in_one_worker_at_a_time(server, frozen):
    account, customers = setup_contacts(server, 1)
    send_each(account, customers, "通知")
    Lease.objects.update_or_create(
        name=confirmations.LOOP_LEASE,
        defaults={"holder": "another-worker", "expires_at": frozen.now() + MINUTE},
    )
    assert confirmations.run_loop() == 0
    assert not server.calls(RESULT)
    frozen.advance(2 * MINUTE)  # the other worker stopped renewing it
    assert confirmations.run_loop() == 1
    assert len(server.calls(RESULT)) == 1
