"""The claim of due enrolments: earliest first; on PostgreSQL a backlog's claim starts where
the previous full claim started (not past the dead index entries at the front), and a due
row behind that floor is still claimed once the part after it comes up short."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection

from yutang.core.clock import FrozenClock, use_clock
from yutang.journeys import engine, services
from yutang.journeys.models import Enrollment, StepRun
from yutang.journeys.tests.helpers import T0, customer, live, setup

pytestmark = pytest.mark.django_db


def _ran(rows: list[Enrollment]) -> set[int]:
    return set(StepRun.objects.filter(enrollment__in=rows).values_list("enrollment_id", flat=True))


def test_claim_floor_and_the_rows_behind_it(monkeypatch):
    monkeypatch.setattr(engine, "FLOOR_MIN_BATCH", 2)
    brand, admin = setup()
    j = live(admin, [{"id": "w", "type": "wait", "days": 1}])
    people = [customer(brand, reachable=False) for _ in range(5)]
    with use_clock(FrozenClock(T0)):
        services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[p.pk for p in people])
    a, b, c, d, e = Enrollment.objects.filter(journey=j).order_by("id")
    with use_clock(FrozenClock(T0)):
        assert engine.run_due_once(batch=2) == 2
        assert _ran([a, b, c, d, e]) == {a.pk, b.pk}
        # c becomes due earlier than the floor (a's key), e.g. written by hand.
        Enrollment.objects.filter(pk=c.pk).update(next_due_at=T0 - dt.timedelta(hours=1))
        assert engine.run_due_once(batch=2) == 2
        second = _ran([c, d, e])
        if connection.vendor == "postgresql":
            assert second == {d.pk, e.pk}  # read from the floor on
        else:
            assert second == {c.pk, d.pk}  # SQLite: always from the front, due order
        assert engine.run_due_once(batch=2) == 1  # the rest, from the front
        assert _ran([a, b, c, d, e]) == {a.pk, b.pk, c.pk, d.pk, e.pk}
        assert engine.run_due_once(batch=2) == 0
    # Every enrolment ran its wait's start exactly once.
    assert StepRun.objects.filter(enrollment__journey=j).count() == 5


@pytest.mark.django_db(transaction=True)
def test_an_emptied_database_forgets_cached_versions_and_claim_floors():
    """`yutang demo --fresh` flushes the database, and ids start again at 1: a version cached
    by id before must not stand for the new version with the same id (the demo's same-seed
    rebuild once came out different on PostgreSQL), nor an old claim floor steer a claim."""
    call_command("flush", interactive=False, verbosity=0)  # ids from 1, as after --fresh
    _, admin = setup()
    before = live(admin, [{"id": "w", "type": "wait", "days": 1}])
    assert before.live_version_id is not None
    assert engine.definition_of(before.live_version_id).steps[0].id == "w"
    engine._claim_floor[None] = (T0, 10**6)
    call_command("flush", interactive=False, verbosity=0)
    assert engine._claim_floor == {}

    _, admin = setup()
    after = live(admin, [{"id": "x", "type": "wait", "days": 2}])
    assert after.live_version_id == before.live_version_id  # the same id, another version
    assert engine.definition_of(after.live_version_id).steps[0].id == "x"
