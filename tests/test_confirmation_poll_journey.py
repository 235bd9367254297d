"""End to end across floors: a journey's send step waits for the WeCom member's confirmation;
the member confirms the mass-message task on the (local) WeCom server; the worker's
confirmation poll reads the result and stores `message.sent` through the normal recording
path, and the journey goes on — with nobody calling `confirm_message`."""

from __future__ import annotations

import datetime as dt

import pytest

from yutang.journeys import engine
from yutang.journeys.models import StaffTask
from yutang.journeys.tests.test_confirmation import runs, start, wecom  # noqa: F401
from yutang.messaging import confirmations
from yutang.messaging.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_definitions() -> None:
    # The journey engine caches parsed definitions by version id for the process; SQLite
    # test transactions roll back and reuse ids, so a version parsed by an earlier test
    # (the simulator's) could stand in for this test's. Start without it.
    engine._DEFINITIONS.clear()


def test_the_poll_moves_the_waiting_journey_on_when_the_member_confirms(wecom):  # noqa: F811
    server, frozen = wecom
    _, journey, m = start(server, timeout_hours=48)
    frozen.advance(dt.timedelta(hours=2))
    engine.fast_forward(until=frozen.now())
    assert runs(journey) == [("m", "confirming")]

    confirmations.poll_due()  # not confirmed yet: nothing moves
    assert Message.objects.get(pk=m.pk).status == "pending_confirmation"
    server.confirm_group_msg(m.carrier_message_id)
    frozen.advance(dt.timedelta(minutes=30))
    assert confirmations.poll_due() == 1

    assert Message.objects.get(pk=m.pk).status == "sent"
    engine.fast_forward(until=frozen.now() + dt.timedelta(minutes=1))
    assert runs(journey) == [
        ("m", "confirming"), ("m", "confirmed"), ("ok", "tagged"), ("end", "exit_step"),
    ]  # fmt: skip
    assert not StaffTask.objects.exists()
