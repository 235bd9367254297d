"""The platform limit counts and holds service messages too (WeCom counts every mass message,
whatever it says), but never the welcome message (sent with send_welcome_msg, not as a mass
message); `count_service: false` restores marketing-only counting."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import make_staff
from yutang.core.clock import FrozenClock, use_clock
from yutang.messaging import gate, services
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.policy import PlatformLimit
from yutang.messaging.tests.helpers import NOON, setup
from yutang.messaging.tests.test_gate import NOW, cand, ctx, touch


def test_service_messages_are_held_to_the_platform_limit_and_count_against_it():
    c = ctx(platform_limits={"wecom": PlatformLimit(per_day=1).model_dump()})
    c.touches[1] = [touch(NOW - dt.timedelta(hours=1), "service")]
    d = gate.evaluate(cand("service"), c)
    assert (d.outcome, d.rule, d.reason) == ("block", "platform_limit", "wecom per day")
    # A service mass message spent the customer's one WeCom message today: marketing too.
    assert gate.evaluate(cand(), c).rule == "platform_limit"
    # Other carriers are not WeCom's business.
    assert gate.evaluate(cand("service", carrier="sms"), c).outcome == "pass"


def test_the_welcome_message_neither_counts_nor_is_held():
    c = ctx(platform_limits={"wecom": PlatformLimit(per_day=1).model_dump()})
    c.touches[1] = [gate.Touch(NOW - dt.timedelta(hours=1), "service", "wecom", "w", "welcome")]
    assert gate.evaluate(cand("service"), c).outcome == "pass"
    assert gate.evaluate(cand(), c).outcome == "pass"
    c.touches[1].append(touch(NOW - dt.timedelta(minutes=5), "service"))
    assert gate.evaluate(cand("service", cause="welcome"), c).outcome == "pass"
    assert gate.evaluate(cand("service", cause="journey"), c).rule == "platform_limit"


def test_count_service_false_counts_and_holds_marketing_only():
    limit = PlatformLimit(per_day=1, count_service=False).model_dump()
    c = ctx(platform_limits={"wecom": limit})
    c.touches[1] = [touch(NOW - dt.timedelta(hours=1), "service")]
    assert gate.evaluate(cand(), c).outcome == "pass"
    c.touches[1] = [touch(NOW - dt.timedelta(hours=1), "marketing")]
    assert gate.evaluate(cand("service"), c).outcome == "pass"
    assert gate.evaluate(cand(), c).rule == "frequency"  # the brand's own cap comes first


def test_the_default_wecom_limit_counts_service_messages():
    c = ctx(service_per_day=100, quiet_hours_enabled=False)
    c.touches[1] = [touch(NOW - dt.timedelta(days=d), "service") for d in range(10)]
    # March has 31 days: 10 service messages this month leave room.
    assert gate.evaluate(cand("service"), c).outcome == "pass"
    c.touches[1] = [touch(NOW - dt.timedelta(hours=h), "service") for h in range(31)]
    c.touches[1] = [t for t in c.touches[1] if t.at.month == 3]
    c.touches[1] += [touch(NOW - dt.timedelta(minutes=m), "service") for m in range(40)]
    assert gate.evaluate(cand("service"), c).rule == "platform_limit"


@pytest.mark.django_db
def test_the_outbox_holds_a_service_message_past_the_platform_limit_and_skips_welcomes():
    with use_clock(FrozenClock(NOON)):
        brand, account, (customer,) = setup(1)
        services.update_policy(
            actor=make_staff(brand),
            changes={"platform_limits": {"sandbox": {"per_day": 1}}, "service_per_day": 9},
        )
        # A welcome recorded earlier today (as the add path does): it does not count.
        services.enqueue_message(
            brand=brand,
            customer=customer,
            account=account,
            kind="service",
            content={"text": "欢迎"},
            cause="welcome",
            idempotency_key="welcome-1",
        )
        Message.objects.filter(idempotency_key="welcome-1").update(status="sent", passed_at=NOON)
        for n in range(2):
            services.enqueue_message(
                brand=brand,
                customer=customer,
                account=account,
                kind="service",
                content={"text": f"物流更新 {n}"},
                cause="journey",
                idempotency_key=f"ship-{n}",
            )
        deliver_due_messages()
        first, second = Message.objects.filter(cause="journey").order_by("id")
        assert first.status == "sent"
        assert (second.status, second.rule) == ("blocked", "platform_limit")
