"""A real worker process killed with SIGKILL mid-pass while sending through the WeCom carrier
to the local WeCom server running in its own process: after restarts every message is one
mass-message task on the server — none lost, none twice — and our records name that task.
WeCom's add_msg_template takes no idempotency key, so a retry must find the task an earlier,
killed try created (`WeComCarrier._earlier_task`). Then the member confirms every task on the
server and the worker's confirmation poll records each message as sent once."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.factories import make_account, make_brand
from yutang.carriers import services as carriers
from yutang.carriers.models import CarrierContact
from yutang.core.tests.test_cli import ROOT, database_env, yutang
from yutang.events.models import Event
from yutang.messaging import services
from yutang.messaging.models import Message

N = 8


@pytest.fixture
def wecom() -> Iterator[dict[str, Any]]:
    """`python -m yutang.carriers.wecom.testserver` in its own process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "yutang.carriers.wecom.testserver", "--staff", "zhangsan"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "yutang.settings"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the WeCom test server did not start"
        yield json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def control(server: dict[str, Any], what: str, body: dict[str, Any] | None = None) -> Any:
    url = server["control_url"] + what
    response = httpx.post(url, json=body, timeout=10) if body is not None else httpx.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def run_worker(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        yutang("worker", "--batch", "--worker-id", f"wecom-crash-{os.getpid()}"),
        env={**database_env(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("point", "same_text"),
    [
        ("after_claim", False),
        ("after_send:5", False),
        ("before_record", False),
        ("after_send", True),  # one task for all: WeCom had it, our record was lost
    ],
)
def test_sigkill_mid_batch_then_restart_creates_each_wecom_task_exactly_once(
    wecom, point, same_text
):
    brand = make_brand()
    account = make_account(brand, external_id="zhangsan")
    carriers.connect_carrier(
        actor=None,
        account=account,
        credentials={
            "secret": wecom["secret"],
            "token": wecom["token"],
            "encoding_aes_key": wecom["encoding_aes_key"],
        },
        settings={"corp_id": wecom["corp_id"], "base_url": wecom["base_url"]},
    )
    for n in range(N):
        add = control(wecom, "add_customer", {"userid": "zhangsan", "external_userid": f"wm-{n}"})
        url = f"/api/v1/carriers/{account.pk}/callback"
        answer = Client().post(
            url + "?" + httpx.QueryParams(add["query"]).__str__(),
            data=add["body"],
            content_type="text/xml",
        )
        assert answer.status_code == 200
    contacts = {
        c.customer_id: c.external_id for c in CarrierContact.objects.filter(account=account)
    }
    assert len(contacts) == N
    for n, customer_id in enumerate(sorted(contacts)):
        # Service messages: the real clock may be in the brand's quiet hours.
        services.enqueue_message(
            brand=brand,
            customer=brand.customers.get(pk=customer_id),
            account=account,
            kind="service",
            content={"text": "您的预约已确认" if same_text else f"您的预约 {n} 已确认"},
            cause="journey",
            idempotency_key=f"booking-{n}",
        )

    crashed = run_worker(YUTANG_MESSAGING_CRASH_AT=point, YUTANG_MESSAGING_CLAIM_SECONDS="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert Message.objects.exclude(status="pending_confirmation").exists()  # really interrupted

    for _ in range(10):
        restarted = run_worker(YUTANG_MESSAGING_CLAIM_SECONDS="1")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        if not Message.objects.exclude(status="pending_confirmation").exists():
            break

    # Ours: every message waits for the member, each naming its own task.
    messages = list(Message.objects.order_by("id"))
    assert [m.status for m in messages] == ["pending_confirmation"] * N
    # Theirs: each message in exactly one task, to its customer, with its text — a task per
    # message, or one for all when they say the same (a broadcast).
    tasks = {t["msgid"]: t for t in control(wecom, "group_msgs")["group_msgs"]}
    assert len(tasks) == (1 if same_text else N)
    assert set(tasks) == {m.carrier_message_id for m in messages}
    reached = [ext for t in tasks.values() for ext in t["external_userid"]]
    assert sorted(reached) == sorted(contacts.values())  # nobody twice, nobody missing
    for m in messages:
        task = tasks[m.carrier_message_id]
        assert contacts[m.customer_id] in task["external_userid"]
        assert task["text"] == m.content["text"]

    # The member confirms every task; the worker's poll records each as sent, once.
    for msgid in tasks:
        control(wecom, "confirm", {"msgid": msgid})
    Message.objects.update(due_at=Message.objects.order_by("created_at")[0].created_at)
    assert run_worker().returncode == 0
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert Event.objects.filter(type="message.sent").count() == N
