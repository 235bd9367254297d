"""A real worker process killed with SIGKILL at several points of a delivery pass loses
nothing and doubles nothing: after a restart every message is in the sandbox's records
exactly once, and in ours."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from yutang.carriers.models import SandboxDelivery
from yutang.core.tests.test_cli import ROOT, database_env, yutang
from yutang.events.models import Event
from yutang.messaging import services
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import setup


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        yutang("worker", "--batch", "--worker-id", f"crash-{os.getpid()}"),
        env={**database_env(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("point", ["after_claim", "after_send:7", "before_record", "after_events"])
def test_sigkill_mid_batch_then_restart_delivers_each_message_exactly_once(point):
    brand, account, customers = setup(12)
    for n, customer in enumerate(customers):
        # Service messages: the real clock may be in the brand's quiet hours.
        services.enqueue_message(
            brand=brand,
            customer=customer,
            account=account,
            kind="service",
            content={"text": f"订单 {n} 已发货"},
            cause="journey",
            idempotency_key=f"ship-{n}",
        )

    # Claims last 1 s here (120 s by default), so the restarted worker may take them over.
    crashed = run_worker(YUTANG_MESSAGING_CRASH_AT=point, YUTANG_MESSAGING_CLAIM_SECONDS="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    in_flight = Message.objects.exclude(status="sent").count()
    assert in_flight > 0  # the kill really interrupted the pass

    # Restart until nothing is left (a claim younger than its lease waits for the next run;
    # a worker process takes seconds to start, so one restart is the usual case).
    for _ in range(10):
        restarted = run_worker(YUTANG_MESSAGING_CLAIM_SECONDS="1")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        if not Message.objects.exclude(status="sent").exists():
            break

    assert sorted(Message.objects.values_list("status", flat=True)) == ["sent"] * 12
    keys = list(SandboxDelivery.objects.values_list("idempotency_key", flat=True))
    assert sorted(keys) == sorted(f"{brand.pk}:ship-{n}" for n in range(12))
    assert Event.objects.filter(type="message.sent").count() == 12
    ids = set(Message.objects.values_list("carrier_message_id", flat=True))
    assert ids == {f"sbx-{pk}" for pk in SandboxDelivery.objects.values_list("pk", flat=True)}
