"""Exactly-once under concurrency and crashes: concurrent workers never run a step twice,
and a worker killed with SIGKILL at several points then restarted ends with the same state
and the same messages as an uninterrupted run, message by message."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from yutang.core.clock import FrozenClock, use_clock
from yutang.core.tests.test_cli import database_env
from yutang.journeys import engine, services
from yutang.journeys.models import Enrollment, StaffTask, StepRun
from yutang.journeys.tests.helpers import T0, customer, live, setup
from yutang.messaging.models import Message

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[3]

STEPS: list[dict[str, Any]] = [
    {"id": "hello", "type": "send_message", "content": "hello {name}"},
    {"id": "w1", "type": "wait", "hours": 20},
    # A branch, not a random split: splits hash the enrolment id, which differs between the
    # two brands compared here (split determinism is tested in test_engine).
    {"id": "pick", "type": "branch", "condition": {"kind": "attribute", "key": "half", "type": "boolean", "op": "eq", "value": True}, "then": "a", "else": "b"},
    {"id": "a", "type": "send_message", "content": "path a", "next": "w2"},
    {"id": "b", "type": "create_task", "title": "call {name}"},
    {"id": "w2", "type": "wait_until", "time": "10:00"},
    {"id": "vip", "type": "branch", "condition": {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}, "then": "gift", "else": "bye"},
    {"id": "gift", "type": "send_message", "content": "gift", "next": "bye"},
    {"id": "bye", "type": "send_message", "content": "bye {name}"},
]  # fmt: skip


def scenario(size: int):
    brand, admin = setup()
    people = [
        customer(brand, display_name=f"c{i}", attributes={"vip": i % 3 == 0, "half": i % 2 == 0})
        for i in range(size)
    ]
    journey = live(admin, STEPS)
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(
            actor=admin, journey_id=journey.pk, customer_ids=[p.pk for p in people]
        )
    return brand, journey, people


def snapshot(brand, people):
    ordinal = {p.pk: i for i, p in enumerate(people)}
    msgs = sorted(
        (
            ordinal[m.customer_id],
            m.content["text"],
            m.kind,
            m.status,
            m.cause_ref.split(":", 2)[2],
            m.due_at.isoformat(),
            m.idempotency_key.split(":", 2)[2],
        )
        for m in Message.objects.filter(brand=brand, cause="journey")
    )
    enrollments = sorted(
        (ordinal[e.customer_id], e.state, e.exit_reason, e.current_step, e.seq, str(e.exited_at))
        for e in Enrollment.objects.filter(brand=brand)
    )
    runs = sorted(
        (
            ordinal[r.enrollment.customer_id],
            r.step_id,
            r.attempt_key,
            r.outcome,
            r.due_at.isoformat(),
        )
        for r in StepRun.objects.filter(enrollment__brand=brand).select_related("enrollment")
    )
    tasks = sorted(
        (ordinal[t.customer_id], t.title, t.due_at.isoformat())
        for t in StaffTask.objects.filter(brand=brand)
    )
    return msgs, enrollments, runs, tasks


def _worker(brand_id: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "yutang.cli", "journeys", "fast-forward", "--days", "5",
         "--start", T0.isoformat(), "--brand", str(brand_id), "--batch", "7", "--progress"],
        env=database_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sigkill_at_several_points_gives_the_same_result_as_an_uninterrupted_run():
    brand_a, _, people_a = scenario(24)
    brand_b, _, people_b = scenario(24)
    engine.fast_forward(start=T0, until=T0 + dt.timedelta(days=5), brand_id=brand_a.pk)
    expected = snapshot(brand_a, people_a)
    assert len(expected[0]) >= 24 * 2

    kills = 0
    for passes_before_kill in (1, 3, 2, 5):
        worker = _worker(brand_b.pk)
        assert worker.stdout is not None
        seen = 0
        for line in worker.stdout:
            if line.startswith("pass"):
                seen += 1
                if seen >= passes_before_kill:
                    worker.send_signal(signal.SIGKILL)
                    kills += 1
                    break
        worker.wait(timeout=120)
        worker.stdout.close()
    final = _worker(brand_b.pk)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out
    assert kills >= 3
    got = snapshot(brand_b, people_b)
    assert got[0] == expected[0]  # the same messages, one by one
    assert got[1] == expected[1]
    assert got[2] == expected[2]
    assert got[3] == expected[3]


def test_concurrent_workers_never_run_a_step_twice():
    brand, journey, people = scenario(60)
    errors: list[BaseException] = []
    frozen = FrozenClock(T0 + dt.timedelta(days=5))

    def work() -> None:
        try:
            while engine.run_due_once(batch=5, journey_ids=[journey.pk]):
                pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    with use_clock(frozen):
        for _ in range(12):  # each round moves every enrolment at most one step
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert errors == []
    keys = list(Message.objects.filter(brand=brand).values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))
    runs = list(
        StepRun.objects.filter(enrollment__journey=journey).values_list(
            "enrollment_id", "attempt_key"
        )
    )
    assert len(runs) == len(set(runs))
    assert set(Enrollment.objects.filter(journey=journey).values_list("state", flat=True)) == {
        "completed"
    }
    # every customer got hello and bye exactly once
    for p in people:
        contents = [
            m["text"] for m in Message.objects.filter(customer=p).values_list("content", flat=True)
        ]
        assert contents.count(f"hello {p.display_name}") == 1
        assert contents.count(f"bye {p.display_name}") == 1
