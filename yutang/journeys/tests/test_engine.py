"""The engine on both databases: steps, waits, triggers, entry rules, goals, exits, holdout,
versions. Time comes from the FrozenClock through fast_forward; nothing sleeps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from yutang.core.clock import FrozenClock, use_clock
from yutang.customers.models import CustomerTag
from yutang.journeys import engine, services
from yutang.journeys.models import Enrollment, StaffTask, StepRun
from yutang.journeys.tests.helpers import T0, customer, event, live, messages, setup

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def enrol(admin, journey, *people, at=T0):
    with use_clock(FrozenClock(at)):
        return services.enrol_customers(
            actor=admin, journey_id=journey.pk, customer_ids=[p.pk for p in people]
        )


def ff(until, start=T0):
    return engine.fast_forward(until=until, start=start)


def test_message_wait_message_runs_on_schedule_and_once():
    brand, admin = setup()
    alice = customer(brand, display_name="Alice")
    j = live(admin, [
        {"id": "hello", "type": "send_message", "content": "Hi {name}"},
        {"id": "w", "type": "wait", "days": 1},
        {"id": "again", "type": "send_message", "content": "Day 1"},
    ])  # fmt: skip
    assert [r.status for r in enrol(admin, j, alice)] == ["enrolled"]
    ff(T0 + dt.timedelta(hours=12))
    assert messages(brand) == [(alice.pk, "Hi Alice", T0.isoformat())]
    ff(T0 + 3 * DAY, start=T0 + dt.timedelta(hours=12))
    assert messages(brand)[1] == (alice.pk, "Day 1", (T0 + DAY).isoformat())
    e = Enrollment.objects.get()
    assert (e.state, e.exit_reason, e.exited_at) == ("completed", "completed", T0 + DAY)
    assert list(StepRun.objects.values_list("step_id", "outcome")) == [
        ("hello", "sent"), ("w", "waiting"), ("w", "waited"), ("again", "sent"),
    ]  # fmt: skip


def test_branch_after_wait_does_not_wait_twice():
    brand, admin = setup()
    c = customer(brand)
    j = live(admin, [
        {"id": "w", "type": "wait", "hours": 5},
        {"id": "b", "type": "branch", "condition": {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1}, "then": "buyer", "else": "other"},
        {"id": "buyer", "type": "send_message", "content": "buyer", "next": "end"},
        {"id": "other", "type": "send_message", "content": "other"},
        {"id": "end", "type": "exit"},
    ])  # fmt: skip
    enrol(admin, j, c)
    ff(T0 + DAY)
    assert messages(brand) == [(c.pk, "other", (T0 + dt.timedelta(hours=5)).isoformat())]
    assert Enrollment.objects.get().exit_reason == "exit_step"


def test_wait_until_time_of_day_after_that_time_waits_until_tomorrow():
    brand, admin = setup()  # Asia/Shanghai
    c = customer(brand)
    j = live(admin, [{"id": "w", "type": "wait_until", "time": "09:00"},
                     {"id": "m", "type": "send_message", "content": "x"}])  # fmt: skip
    start = T0 + dt.timedelta(minutes=30)  # 09:30 local
    enrol(admin, j, c, at=start)
    ff(start + 2 * DAY, start=start)
    assert messages(brand)[0][2] == (T0 + DAY).isoformat()  # tomorrow 09:00


def test_wait_until_exactly_that_time_continues_at_once_and_weekday():
    brand, admin = setup()
    a, b = customer(brand), customer(brand)
    j1 = live(admin, [{"id": "w", "type": "wait_until", "time": "09:00"},
                      {"id": "m", "type": "send_message", "content": "now"}])  # fmt: skip
    j2 = live(admin, [{"id": "w", "type": "wait_until", "time": "10:00", "weekdays": [4]},
                      {"id": "m", "type": "send_message", "content": "friday"}])  # fmt: skip
    enrol(admin, j1, a)
    enrol(admin, j2, b)
    ff(T0 + 7 * DAY)
    got = {content: at for _, content, at in messages(brand)}
    assert got == {"now": T0.isoformat(), "friday": "2026-03-06T02:00:00+00:00"}


def test_day_waits_keep_wall_clock_across_dst_and_midnight():
    brand, admin = setup()
    brand.time_zone = "Europe/Berlin"
    brand.save()
    c = customer(brand)
    j = live(admin, [{"id": "w", "type": "wait", "days": 1},
                     {"id": "m", "type": "send_message", "content": "x"},
                     {"id": "w2", "type": "wait_until", "time": "00:30"},
                     {"id": "m2", "type": "send_message", "content": "after midnight"}])  # fmt: skip
    start = dt.datetime(2026, 3, 28, 22, 0, tzinfo=dt.UTC)  # 23:00 CET, Saturday
    enrol(admin, j, c, at=start)
    ff(start + 3 * DAY, start=start)
    sent = [at for _, _, at in messages(brand)]
    # 23:00 CEST the next day is only 23 real hours later (clocks went forward at 02:00).
    assert sent[0] == "2026-03-29T21:00:00+00:00"
    assert sent[1] == "2026-03-29T22:30:00+00:00"  # 00:30 CEST on the 30th


def test_wait_for_event_and_its_timeout_branch():
    brand, admin = setup()
    buyer, idle = customer(brand), customer(brand)
    j = live(admin, [
        {"id": "w", "type": "wait_event", "event": "order.paid", "timeout": {"days": 2}, "on_timeout": "nudge"},
        {"id": "thanks", "type": "send_message", "content": "thanks", "next": "end"},
        {"id": "nudge", "type": "send_message", "content": "nudge"},
        {"id": "end", "type": "exit"},
    ])  # fmt: skip
    enrol(admin, j, buyer, idle)
    ff(T0 + dt.timedelta(hours=1))
    with use_clock(FrozenClock(T0 + dt.timedelta(hours=2))):
        event(
            brand,
            buyer,
            "order.paid",
            T0 + dt.timedelta(hours=2),
            order_id="o1",
            source="shop",
            amount_fen=100,
        )
    ff(T0 + 5 * DAY, start=T0 + dt.timedelta(hours=2))
    got = {cid: content for cid, content, _ in messages(brand)}
    assert got == {buyer.pk: "thanks", idle.pk: "nudge"}
    assert (
        messages(brand)[-1][2] == (T0 + 2 * DAY).isoformat()
        or messages(brand)[0][2] == (T0 + 2 * DAY).isoformat()
    )


def test_split_is_deterministic_and_weighted():
    brand, admin = setup()
    people = [customer(brand) for _ in range(60)]
    j = live(admin, [
        {"id": "s", "type": "split", "paths": [{"weight": 1, "next": "a"}, {"weight": 3, "next": "b"}]},
        {"id": "a", "type": "send_message", "content": "A", "next": "end"},
        {"id": "b", "type": "send_message", "content": "B"},
        {"id": "end", "type": "exit"},
    ])  # fmt: skip
    enrol(admin, j, *people)
    ff(T0 + DAY)
    counts = {"A": 0, "B": 0}
    for _, content, _ in messages(brand):
        counts[content] += 1
    assert counts["A"] + counts["B"] == 60
    assert 5 <= counts["A"] <= 25


def test_task_tag_attribute_actions_and_waiting_for_task():
    brand, admin = setup()
    c = customer(brand, owner_staff=admin)
    from yutang.customers.services import define_attribute

    define_attribute(actor=admin, brand=brand, key="welcomed", label="Welcomed", type="boolean")
    j = live(admin, [
        {"id": "tag", "type": "add_tag", "group": "旅程", "name": "新客"},
        {"id": "attr", "type": "set_attribute", "name": "welcomed", "value": True},
        {"id": "task", "type": "create_task", "title": "Call {name}", "script": "Hi {name}", "wait_for_completion": True, "timeout": {"days": 2}, "on_timeout": "late"},
        {"id": "untag", "type": "remove_tag", "group": "旅程", "name": "新客", "next": "end"},
        {"id": "late", "type": "send_message", "content": "late"},
        {"id": "end", "type": "exit"},
    ])  # fmt: skip
    enrol(admin, j, c)
    ff(T0 + dt.timedelta(hours=1))
    c.refresh_from_db()
    assert c.attributes == {"welcomed": True}
    assert CustomerTag.objects.filter(customer=c, tag__name="新客").exists()
    task = StaffTask.objects.get()
    assert (task.assignee_id, task.title, task.script) == (
        admin.pk,
        f"Call {c.display_name}",
        f"Hi {c.display_name}",
    )
    assert Enrollment.objects.get().state == "waiting"
    with use_clock(FrozenClock(T0 + dt.timedelta(hours=3))):
        from yutang.journeys import tasks

        tasks.complete_task(actor=admin, task_id=task.pk, outcome_code="reached", outcome_note="ok")
    ff(T0 + 5 * DAY, start=T0 + dt.timedelta(hours=3))
    assert not CustomerTag.objects.filter(customer=c, tag__name="新客").exists()
    assert messages(brand) == []
    assert Enrollment.objects.get().exit_reason == "exit_step"


def test_task_timeout_takes_the_timeout_branch():
    brand, admin = setup()
    c = customer(brand)
    j = live(admin, [
        {"id": "task", "type": "create_task", "title": "t", "assign_to": "store_queue", "wait_for_completion": True, "timeout": {"days": 1}, "on_timeout": "late"},
        {"id": "ok", "type": "exit"},
        {"id": "late", "type": "send_message", "content": "late"},
    ])  # fmt: skip
    enrol(admin, j, c)
    ff(T0 + 3 * DAY)
    assert messages(brand) == [(c.pk, "late", (T0 + DAY).isoformat())]
    assert StaffTask.objects.get().queue_role == "advisor"


def test_event_trigger_with_filter_and_reentry_never_after_exit_and_goal():
    brand, admin = setup()
    c = customer(brand)
    live(admin, [{"id": "w", "type": "wait", "days": 5}, {"id": "m", "type": "send_message", "content": "x"}],
             trigger={"type": "event", "event": "contact.added", "where": {"live_code": "X"}},
             goal={"event": "order.paid", "within_days": 3})  # fmt: skip
    with use_clock(FrozenClock(T0)):
        event(brand, c, "contact.added", T0, carrier="wecom", live_code="Y")
    ff(T0 + dt.timedelta(minutes=1))
    assert Enrollment.objects.count() == 0
    with use_clock(FrozenClock(T0 + dt.timedelta(minutes=1))):
        event(brand, c, "contact.added", T0, carrier="wecom", live_code="X")
    ff(T0 + dt.timedelta(minutes=2), start=T0 + dt.timedelta(minutes=1))
    assert Enrollment.objects.get().state == "waiting"
    t1 = T0 + DAY
    with use_clock(FrozenClock(t1)):
        event(brand, c, "order.paid", t1, order_id="o1", source="shop", amount_fen=100)
    ff(t1 + dt.timedelta(minutes=1), start=t1)
    e = Enrollment.objects.get()
    assert (e.state, e.exit_reason) == ("converted", "goal")
    with use_clock(FrozenClock(t1 + DAY)):
        event(brand, c, "contact.added", t1 + DAY, carrier="wecom", live_code="X")
    ff(t1 + 2 * DAY, start=t1 + DAY)
    assert Enrollment.objects.count() == 1  # never re-enters
    assert messages(brand) == []


def test_reentry_after_days_and_always():
    brand, admin = setup()
    c = customer(brand)
    after = live(
        admin,
        [{"id": "m", "type": "send_message", "content": "a"}],
        entry={"reentry": "after_days", "after_days": 2},
    )
    always = live(
        admin, [{"id": "m", "type": "send_message", "content": "b"}], entry={"reentry": "always"}
    )
    never = live(admin, [{"id": "e", "type": "exit"}])
    for at in (T0, T0 + DAY, T0 + 3 * DAY):
        enrol(admin, after, c, at=at)
        enrol(admin, always, c, at=at)
        enrol(admin, never, c, at=at)
        ff(at + dt.timedelta(hours=1), start=at)
    assert Enrollment.objects.filter(journey=after).count() == 2
    assert Enrollment.objects.filter(journey=always).count() == 3
    assert Enrollment.objects.filter(journey=never).count() == 1


def test_one_open_enrolment_and_entry_condition():
    brand, admin = setup()
    a, b = customer(brand, lifecycle_stage="at_risk"), customer(brand)
    j = live(
        admin,
        [{"id": "w", "type": "wait", "days": 1}],
        entry={"reentry": "always", "condition": {"kind": "lifecycle", "stages": ["at_risk"]}},
    )
    first = enrol(admin, j, a, b)
    assert [r.status for r in first] == ["enrolled", "condition_false"]
    assert [r.status for r in enrol(admin, j, a)] == ["already_enrolled"]


@pytest.mark.parametrize("kind,props,reason", [
    ("contact.deleted", {"carrier": "wecom"}, "contact_deleted"),
    ("consent.changed", {"purpose": "marketing", "status": "withdrawn"}, "consent_withdrawn"),
])  # fmt: skip
def test_exit_rules(kind, props, reason):
    brand, admin = setup()
    c = customer(brand)
    j = live(
        admin,
        [
            {"id": "w", "type": "wait", "days": 3},
            {"id": "m", "type": "send_message", "content": "x"},
        ],
    )
    enrol(admin, j, c)
    ff(T0 + dt.timedelta(hours=1))
    with use_clock(FrozenClock(T0 + DAY)):
        event(brand, c, kind, T0 + DAY, **props)
    ff(T0 + 5 * DAY, start=T0 + DAY)
    e = Enrollment.objects.get()
    assert (e.state, e.exit_reason) == ("exited", reason)
    assert messages(brand) == []


def test_exit_condition_entering_a_segment():
    brand, admin = setup()
    c = customer(brand)
    j = live(admin, [{"id": "w", "type": "wait", "days": 2}, {"id": "m", "type": "send_message", "content": "x"}],
             exit_rules={"condition": {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}})  # fmt: skip
    enrol(admin, j, c)
    ff(T0 + dt.timedelta(hours=1))
    c.attributes = {"vip": True}
    c.save()
    ff(T0 + 3 * DAY, start=T0 + dt.timedelta(hours=1))
    assert Enrollment.objects.get().exit_reason == "exit_condition"
    assert messages(brand) == []


def test_holdout_is_stable_and_counts_conversions():
    brand, admin = setup()
    people = [customer(brand) for _ in range(100)]
    j = live(admin, [{"id": "m", "type": "send_message", "content": "x"}], holdout_percent=30,
             goal={"event": "order.paid", "within_days": 3})  # fmt: skip
    results = enrol(admin, j, *people)
    held = {r.customer_id for r in results if r.status == "holdout"}
    assert 15 <= len(held) <= 45
    assert held == {p.pk for p in people if engine.in_holdout(j.pk, p.pk, 30)}
    ff(T0 + dt.timedelta(hours=1))
    assert len(messages(brand)) == 100 - len(held)
    one_held = next(p for p in people if p.pk in held)
    with use_clock(FrozenClock(T0 + DAY)):
        event(brand, one_held, "order.paid", T0 + DAY, order_id="h1", source="shop", amount_fen=1)
    ff(T0 + 2 * DAY, start=T0 + DAY)
    metrics = services.journey_metrics(actor=admin, journey_id=j.pk)
    assert metrics["goal"]["holdout"]["converted"] == 1
    assert metrics["goal"]["holdout"]["n"] == len(held)
    assert metrics["messages_queued"] == 100 - len(held)


def test_versions_enrolled_finish_their_version_unless_migrated():
    brand, admin = setup()
    a, b = customer(brand), customer(brand)
    steps_v1: list[dict[str, Any]] = [
        {"id": "w", "type": "wait", "days": 1},
        {"id": "m", "type": "send_message", "content": "v1"},
    ]
    j = live(admin, steps_v1)
    enrol(admin, j, a)
    ff(T0 + dt.timedelta(hours=1))
    steps_v2 = [
        {"id": "w2", "type": "wait", "days": 1},
        {"id": "m", "type": "send_message", "content": "v2"},
    ]
    services.update_journey(
        actor=admin, journey_id=j.pk, definition={"trigger": {"type": "manual"}, "steps": steps_v2}
    )
    services.publish(actor=admin, journey_id=j.pk)
    enrol(admin, j, b, at=T0 + dt.timedelta(hours=1))
    ff(T0 + 3 * DAY, start=T0 + dt.timedelta(hours=1))
    assert {cid: content for cid, content, _ in messages(brand)} == {a.pk: "v1", b.pk: "v2"}


def test_publish_with_migration_moves_open_enrolments():
    brand, admin = setup()
    a = customer(brand)
    j = live(
        admin,
        [
            {"id": "w", "type": "wait", "days": 1},
            {"id": "m", "type": "send_message", "content": "v1"},
        ],
    )
    enrol(admin, j, a)
    ff(T0 + dt.timedelta(hours=1))
    services.update_journey(
        actor=admin,
        journey_id=j.pk,
        definition={
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "w2", "type": "wait", "days": 1},
                {"id": "m", "type": "send_message", "content": "v2"},
            ],
        },
    )
    with pytest.raises(Exception, match="not a step"):
        services.publish(actor=admin, journey_id=j.pk, migration={"w": "nope"})
    services.publish(actor=admin, journey_id=j.pk, migration={"w": "w2"})
    ff(T0 + 3 * DAY, start=T0 + dt.timedelta(hours=1))
    assert [content for _, content, _ in messages(brand)] == ["v2"]


def test_schedule_trigger_every_monday_and_birthday_trigger():
    brand, admin = setup()
    vip = customer(brand, attributes={"vip": True})
    customer(brand)
    bday = customer(brand, birthday=dt.date(1990, 3, 4))
    with use_clock(FrozenClock(T0 - DAY)):
        weekly = live(admin, [{"id": "m", "type": "send_message", "content": "weekly"}],
                      trigger={"type": "schedule", "weekdays": [0], "time": "10:00",
                               "condition": {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}},
                      entry={"reentry": "always"})  # fmt: skip
        live(
            admin,
            [{"id": "m", "type": "send_message", "content": "生日快乐"}],
            trigger={"type": "date", "field": "birthday", "time": "09:00"},
            entry={"reentry": "always"},
        )
    ff(T0 + 8 * DAY, start=T0 - DAY)
    got = messages(brand)
    assert [(c, m) for c, m, _ in got if m == "weekly"] == [(vip.pk, "weekly"), (vip.pk, "weekly")]
    assert [(c, m, at) for c, m, at in got if m != "weekly"] == [
        (bday.pk, "生日快乐", "2026-03-04T01:00:00+00:00")
    ]
    assert Enrollment.objects.filter(journey=weekly).count() == 2


def test_condition_trigger_and_first_order_trigger():
    brand, admin = setup()
    c = customer(brand)
    seg = live(
        admin,
        [{"id": "m", "type": "send_message", "content": "seg"}],
        trigger={
            "type": "condition",
            "condition": {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 2},
        },
    )
    first = live(
        admin,
        [{"id": "m", "type": "send_message", "content": "first"}],
        trigger={"type": "event", "event": "order.paid", "first_order_only": True},
    )
    for n in (1, 2):
        at = T0 + n * DAY
        with use_clock(FrozenClock(at)):
            event(brand, c, "order.paid", at, order_id=f"o{n}", source="shop", amount_fen=100)
        ff(at + dt.timedelta(hours=1), start=at)
    assert sorted(m for _, m, _ in messages(brand)) == ["first", "seg"]
    assert Enrollment.objects.filter(journey=seg).count() == 1
    assert Enrollment.objects.filter(journey=first).count() == 1


def test_paused_journey_runs_no_steps_until_resumed():
    brand, admin = setup()
    c = customer(brand)
    j = live(admin, [{"id": "m", "type": "send_message", "content": "x"}])
    enrol(admin, j, c)
    services.set_status(actor=admin, journey_id=j.pk, status="paused")
    ff(T0 + DAY)
    assert messages(brand) == []
    services.set_status(actor=admin, journey_id=j.pk, status="live")
    ff(T0 + 2 * DAY, start=T0 + DAY)
    assert len(messages(brand)) == 1


def test_failing_extension_retries_then_exits_and_registered_one_runs():
    from yutang.journeys import extensions

    brand, admin = setup()
    c = customer(brand)
    calls = []
    extensions.register_action("grant_coupon", lambda **kw: calls.append(kw["idempotency_key"]))
    try:
        j = live(
            admin,
            [
                {
                    "id": "coupon",
                    "type": "extension",
                    "name": "grant_coupon",
                    "params": {"code": "NEW10"},
                }
            ],
        )
        enrol(admin, j, c)
        ff(T0 + DAY)
        assert calls == [f"journey:{Enrollment.objects.get().pk}:coupon:0"]
        extensions.unregister_action("grant_coupon")
        d = customer(brand)
        enrol(admin, j, d)
        ff(T0 + 2 * DAY, start=T0 + DAY)
        e = Enrollment.objects.get(customer=d)
        assert (e.state, e.exit_reason, e.failures) == ("exited", "step_failed", 5)
        assert "grant_coupon" in e.last_error
    finally:
        extensions.unregister_action("grant_coupon")


def test_a_failing_enrolment_does_not_hold_up_the_rest_of_its_batch():
    """The batch fails as a whole, is rolled back and runs again one enrolment at a time."""
    from yutang.journeys import extensions

    brand, admin = setup()
    good = [customer(brand, attributes={"bad": False}) for _ in range(3)]
    bad = customer(brand, attributes={"bad": True})
    rule = {"kind": "attribute", "key": "bad", "type": "boolean", "op": "eq", "value": True}
    extensions.register_action("flaky", lambda **kw: None)
    try:
        j = live(admin, [
            {"id": "b", "type": "branch", "condition": rule, "then": "x", "else": "m"},
            {"id": "x", "type": "extension", "name": "flaky", "next": "m"},
            {"id": "m", "type": "send_message", "content": "hi {name}"},
        ])  # fmt: skip
    finally:
        extensions.unregister_action("flaky")
    enrol(admin, j, *good, bad)
    with use_clock(FrozenClock(T0)):
        assert engine.run_due_once(batch=50) == 4  # the branch, in one batch
        assert engine.run_due_once(batch=50) == 4  # 3 messages and 1 failure, one batch
    assert sorted(c for c, _, _ in messages(brand)) == sorted(g.pk for g in good)
    e = Enrollment.objects.get(customer=bad)
    assert (e.state, e.current_step, e.failures) == ("active", "x", 1)
    assert "flaky" in e.last_error
    assert StepRun.objects.filter(step_id="m").count() == 3


def test_a_batch_evaluates_a_branch_condition_with_one_query_for_its_customers():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    brand, admin = setup()
    people = [customer(brand, attributes={"vip": i % 3 == 0}) for i in range(30)]
    rule = {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}
    exit_rule = {"kind": "aggregate", "field": "order_count", "op": "gte", "value": 5}
    j = live(admin, [
        {"id": "b", "type": "branch", "condition": rule, "then": "vip", "else": "end"},
        {"id": "vip", "type": "add_tag", "group": "g", "name": "vip"},
        {"id": "end", "type": "exit"},
    ], exit_rules={"condition": exit_rule})  # fmt: skip
    enrol(admin, j, *people)
    with use_clock(FrozenClock(T0)), CaptureQueriesContext(connection) as queries:
        assert engine.run_due_once(batch=50) == 30
    # claim, journeys, one query per rule (branch + exit), StepRuns, enrolments, savepoints
    assert len(queries) <= 12, [q["sql"][:80] for q in queries]
    chosen = dict(StepRun.objects.values_list("enrollment__customer_id", "outcome"))
    assert chosen == {p.pk: "then" if i % 3 == 0 else "else" for i, p in enumerate(people)}


def test_a_batch_of_sends_and_waits_takes_a_constant_number_of_queries():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    brand, admin = setup()
    people = [customer(brand) for _ in range(40)]
    j = live(admin, [
        {"id": "hi", "type": "send_message", "content": "hi {name}"},
        {"id": "w", "type": "wait", "days": 1},
    ])  # fmt: skip
    enrol(admin, j, *people)
    counts = []
    with use_clock(FrozenClock(T0 + 2 * DAY)):
        for _ in range(3):  # the sends, the waits' start, the waits' end
            with CaptureQueriesContext(connection) as queries:
                assert engine.run_due_once(batch=100) == 40
            counts.append(len(queries))
    assert max(counts) <= 20, counts  # one by one: over 100 for the 40 sends
    assert len(messages(brand)) == 40
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"completed"}
