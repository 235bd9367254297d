"""Triggers on both databases: entering a segment (edge-triggered on segment.entered), the
condition trigger (level-triggered, a different thing), member days (days of the month),
birthdays and membership anniversaries in the brand's time zone, set-based."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_brand, make_staff
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.errors import ValidationFailed
from yutang.core.permissions import Role
from yutang.journeys import definition as defs
from yutang.journeys import engine, services, timing
from yutang.journeys.models import Enrollment
from yutang.journeys.tests.helpers import T0, customer, event, live, messages, setup
from yutang.segments import services as segments

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
VIP = {"kind": "attribute", "key": "vip", "type": "boolean", "op": "eq", "value": True}


def _refresh(segment, at):
    with use_clock(FrozenClock(at)):
        return segments.refresh_segment(segment=segment)


def _set_vip(who, value):
    who.attributes = {"vip": value}
    who.save(update_fields=["attributes"])


def test_segment_trigger_enrols_on_entering_the_segment_once_per_entry():
    brand, admin = setup()
    a, b = customer(brand, attributes={"vip": True}), customer(brand)
    with use_clock(FrozenClock(T0 - DAY)):
        segment = segments.create_segment(actor=admin, name="VIP", kind="dynamic", rule=VIP)
        j = live(
            admin,
            [{"id": "m", "type": "send_message", "content": "welcome to VIP"}],
            trigger={"type": "segment", "segment_id": segment.pk},
            entry={"reentry": "always"},
        )
    assert _refresh(segment, T0).entered == 1
    engine.fast_forward(start=T0, until=T0 + dt.timedelta(hours=1))
    assert [c for c, _, _ in messages(brand)] == [a.pk]
    # Still in the segment: more events and refreshes do not enrol again (edge, not level).
    t1 = T0 + DAY
    with use_clock(FrozenClock(t1)):
        event(brand, a, "order.paid", t1, order_id="o1", source="shop", amount_fen=100)
    assert _refresh(segment, t1).entered == 0
    engine.fast_forward(start=t1, until=t1 + dt.timedelta(hours=1))
    assert Enrollment.objects.filter(journey=j).count() == 1
    # b enters; a leaves and enters again: each entry enrols once.
    _set_vip(b, True)
    _set_vip(a, False)
    t2 = T0 + 2 * DAY
    assert (_refresh(segment, t2).entered, _refresh(segment, t2).exited) == (1, 0)
    _set_vip(a, True)
    t3 = T0 + 3 * DAY
    assert _refresh(segment, t3).entered == 1
    engine.fast_forward(start=t2, until=t3 + dt.timedelta(hours=1))
    assert sorted(Enrollment.objects.filter(journey=j).values_list("customer_id", flat=True)) == (
        sorted([a.pk, a.pk, b.pk])
    )
    sources = set(Enrollment.objects.filter(journey=j).values_list("source", flat=True))
    assert all(s.startswith("segment:") for s in sources)


def test_condition_trigger_is_level_triggered_and_legacy_segment_conditions_read_as_it():
    brand, admin = setup()
    c = customer(brand, attributes={"vip": True})
    legacy = {"trigger": {"type": "segment", "condition": VIP},
              "steps": [{"id": "m", "type": "send_message", "content": "x"}]}  # fmt: skip
    assert isinstance(defs.parse(legacy).trigger, defs.ConditionTrigger)
    j = live(
        admin,
        [{"id": "m", "type": "send_message", "content": "x"}],
        trigger={"type": "condition", "condition": VIP},
        entry={"reentry": "always"},
    )
    for n in range(2):  # every event while the condition holds enrols again
        at = T0 + n * DAY
        with use_clock(FrozenClock(at)):
            event(brand, c, "message.received", at, text="hi", carrier="sandbox")
        engine.fast_forward(start=at, until=at + dt.timedelta(hours=1))
    assert Enrollment.objects.filter(journey=j).count() == 2
    assert Enrollment.objects.filter(journey=j, source__startswith="condition:").count() == 2


def test_segment_trigger_must_name_a_dynamic_segment_of_the_brand():
    brand, admin = setup()
    other_brand = make_brand()
    other = segments.create_segment(
        actor=make_staff(other_brand, Role.BRAND_ADMIN), name="X", kind="dynamic", rule=VIP
    )
    static = segments.create_segment(actor=admin, name="Fixed", kind="static")
    steps = [{"id": "m", "type": "send_message", "content": "x"}]
    for segment_id, words in ((other.pk, "no segment"), (static.pk, "static")):
        definition = {"trigger": {"type": "segment", "segment_id": segment_id}, "steps": steps}
        with pytest.raises(ValidationFailed) as caught:
            services.create_journey(actor=admin, name=f"S{segment_id}", definition=definition)
        assert caught.value.field == "$.trigger.segment_id"
        assert words in caught.value.message


def test_member_day_schedule_runs_monthly_on_the_day_and_month_end():
    brand, admin = setup()
    member = customer(brand, attributes={"member": True})
    customer(brand)
    rule = {"kind": "attribute", "key": "member", "type": "boolean", "op": "eq", "value": True}
    start = dt.datetime(2026, 1, 31, 0, 0, tzinfo=dt.UTC)
    with use_clock(FrozenClock(start)):
        live(admin, [{"id": "m", "type": "send_message", "content": "会员日"}],
             trigger={"type": "schedule", "monthdays": [8], "time": "10:00", "condition": rule},
             entry={"reentry": "always"})  # fmt: skip
        live(admin, [{"id": "m", "type": "send_message", "content": "月底"}],
             trigger={"type": "schedule", "monthdays": [31], "time": "20:00", "condition": rule},
             entry={"reentry": "always"})  # fmt: skip
    engine.fast_forward(start=start, until=dt.datetime(2026, 4, 9, tzinfo=dt.UTC))
    got = [(text, at) for c, text, at in messages(brand) if c == member.pk]
    assert sorted(got) == [
        ("会员日", "2026-02-08T02:00:00+00:00"),
        ("会员日", "2026-03-08T02:00:00+00:00"),
        ("会员日", "2026-04-08T02:00:00+00:00"),
        ("月底", "2026-01-31T12:00:00+00:00"),  # published that morning
        ("月底", "2026-02-28T12:00:00+00:00"),
        ("月底", "2026-03-31T12:00:00+00:00"),
    ]
    assert len(messages(brand)) == 6
    assert timing.day_matches(dt.date(2028, 2, 29), monthdays=[30])
    assert not timing.day_matches(dt.date(2028, 2, 28), monthdays=[30])
    with pytest.raises(ValidationFailed) as caught:
        defs.parse({"trigger": {"type": "schedule", "time": "10:00", "monthdays": [32]},
                    "steps": [{"id": "x", "type": "exit"}]})  # fmt: skip
    assert caught.value.field == "$.trigger.monthdays[0]"


def test_membership_anniversary_uses_the_brand_time_zone_and_one_query():
    brand, admin = setup()  # Asia/Shanghai
    # 2024-03-04 17:00 UTC is 2024-03-05 01:00 in Shanghai: the anniversary is 5 March.
    late_night = customer(brand, created_at=dt.datetime(2024, 3, 4, 17, 0, tzinfo=dt.UTC))
    leap = customer(brand, created_at=dt.datetime(2024, 2, 28, 19, 0, tzinfo=dt.UTC))  # 29 Feb
    customer(brand, created_at=dt.datetime(2026, 3, 4, 17, 0, tzinfo=dt.UTC))  # this year
    march4 = customer(brand, created_at=dt.datetime(2025, 3, 4, 1, 0, tzinfo=dt.UTC))
    with CaptureQueriesContext(connection) as queries:
        found = list(
            engine.date_trigger_customers(brand, "membership_anniversary", dt.date(2026, 3, 5))
        )
    assert [c.pk for c in found] == [late_night.pk]
    assert len(queries) == 1
    leap_day = engine.date_trigger_customers(brand, "membership_anniversary", dt.date(2026, 2, 28))
    assert [c.pk for c in leap_day] == [leap.pk]

    start = dt.datetime(2026, 2, 27, 0, 0, tzinfo=dt.UTC)
    with use_clock(FrozenClock(start)):
        live(admin, [{"id": "m", "type": "send_message", "content": "周年"}],
             trigger={"type": "date", "field": "membership_anniversary", "time": "09:00"},
             entry={"reentry": "always"})  # fmt: skip
    engine.fast_forward(start=start, until=dt.datetime(2026, 3, 7, tzinfo=dt.UTC))
    assert [(c, at) for c, _, at in messages(brand)] == sorted(
        [
            (leap.pk, "2026-02-28T01:00:00+00:00"),
            (march4.pk, "2026-03-04T01:00:00+00:00"),
            (late_night.pk, "2026-03-05T01:00:00+00:00"),
        ]
    )


def test_birthday_query_is_set_based_and_leap_day_on_the_28th():
    brand, _ = setup()
    leap = customer(brand, birthday=dt.date(2000, 2, 29))
    feb28 = customer(brand, birthday=dt.date(1990, 2, 28))
    customer(brand, birthday=dt.date(1990, 3, 1))
    day = dt.date(2026, 2, 28)
    assert sorted(c.pk for c in engine.date_trigger_customers(brand, "birthday", day)) == sorted(
        [leap.pk, feb28.pk]
    )
    leap_year = dt.date(2028, 2, 28)
    assert [c.pk for c in engine.date_trigger_customers(brand, "birthday", leap_year)] == [feb28.pk]
