"""The driver's delivery pass reads the outbox from the oldest message still open at the
previous pass (`SystemDriver._open_message_floor`): that message's id while one is open, else
one above every id; and only on a brand whose outbox was empty when the run began."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factories import make_brand
from yutang.core.clock import FrozenClock, use_clock
from yutang.messaging import services as messaging
from yutang.messaging.models import Message
from yutang.segments.tests.builders import T0, carrier_account, customer
from yutang.simulator.driver import SystemDriver

pytestmark = pytest.mark.django_db


def driver_for(brand):
    return SystemDriver(brand=brand, run_key="t", order_source="tmall", channel_keys=[])


def test_the_floor_is_the_oldest_open_message_or_above_every_id():
    brand, other = make_brand(), make_brand()
    person, account = customer(brand), carrier_account(brand)
    someone, elsewhere = customer(other), carrier_account(other)
    driver = driver_for(brand)
    with use_clock(FrozenClock(T0)):

        def enqueue(b, c, a, key, due=None):
            return messaging.enqueue_message(
                brand=b, customer=c, account=a, kind="service", cause="campaign",
                content={"type": "text", "text": key}, idempotency_key=key, due_at=due,
            )  # fmt: skip

        assert driver._open_message_floor() == (
            (Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        )
        first = enqueue(brand, person, account, "a")
        later = enqueue(brand, person, account, "b", due=T0 + dt.timedelta(days=2))
        enqueue(other, someone, elsewhere, "c")  # another brand's open message: not ours
        assert driver._open_message_floor() == first.pk
        Message.objects.filter(pk=first.pk).update(status=Message.Status.SENT, sent_at=T0)
        assert driver._open_message_floor() == later.pk
        for status in (Message.Status.DEFERRED, Message.Status.SENDING,
                       Message.Status.PENDING_CONFIRMATION):  # fmt: skip
            Message.objects.filter(pk=later.pk).update(status=status)
            assert driver._open_message_floor() == later.pk
        Message.objects.filter(pk=later.pk).update(status=Message.Status.BLOCKED)
        top = Message.objects.order_by("-pk").values_list("pk", flat=True).first()
        assert top is not None and driver._open_message_floor() == top + 1
