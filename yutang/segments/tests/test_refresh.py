"""Materialising dynamic segments: membership changes become segment.entered / exited
events; time-based rules change membership as the (injected) clock moves, with no new event;
the worker loop refreshes due segments once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from tests.factories import make_brand, make_staff
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role
from yutang.core.worker import acquire_lease
from yutang.events.models import Event
from yutang.segments import services
from yutang.segments.models import Segment, SegmentMember
from yutang.segments.tests.builders import T0, customer, event

pytestmark = pytest.mark.django_db
NO_ORDER_60 = {"not": {"kind": "event", "type": "order.paid", "window": {"days": 60}}}


def membership(segment: Segment) -> set[int]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("customer_id", flat=True))


def test_time_passing_moves_people_into_no_order_in_60_days():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    clock = FrozenClock(T0)
    with use_clock(clock):
        recent = customer(brand)
        older = customer(brand)
        event(recent, "order.paid", T0 - dt.timedelta(days=10), order_id="1", amount_fen=1)
        event(older, "order.paid", T0 - dt.timedelta(days=50), order_id="2", amount_fen=1)
        seg = services.create_segment(actor=admin, name="沉睡", kind="dynamic", rule=NO_ORDER_60)
        assert services.refresh_segment(segment=seg).members == 0

        clock.advance(dt.timedelta(days=11))  # 61 days after the older order
        result = services.refresh_segment(segment=seg)
        assert (result.entered, result.exited, result.members) == (1, 0, 1)
        assert membership(seg) == {older.pk}
        entered = Event.objects.get(type="segment.entered")
        assert entered.customer_id == older.pk
        assert entered.properties == {"segment_id": seg.pk, "segment": "沉睡"}
        assert entered.occurred_at == clock.now()

        clock.advance(dt.timedelta(days=40))
        result = services.refresh_segment(segment=seg)
        assert (result.entered, result.members) == (1, 2)

        # A new order takes the person out again.
        event(older, "order.paid", clock.now(), order_id="3", amount_fen=1)
        result = services.refresh_segment(segment=seg)
        assert (result.entered, result.exited) == (0, 1)
        assert Event.objects.filter(type="segment.exited", customer=older).count() == 1
        # Refreshing again changes nothing and emits nothing.
        before = Event.objects.count()
        assert services.refresh_segment(segment=seg).entered == 0
        assert Event.objects.count() == before


def test_worker_loop_refreshes_due_segments_once_per_interval():
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    clock = FrozenClock(T0)
    with use_clock(clock):
        customer(brand, city="上海")
        due = services.create_segment(
            actor=admin, name="上海", kind="dynamic", refresh_minutes=30,
            rule={"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
        )  # fmt: skip
        services.create_segment(
            actor=admin, name="manual", kind="dynamic",
            rule={"kind": "profile", "field": "city", "op": "exists"},
        )  # fmt: skip
        assert services.refresh_due_segments() == 1
        assert services.refresh_due_segments() == 0
        clock.advance(dt.timedelta(minutes=29))
        assert services.refresh_due_segments() == 0
        clock.advance(dt.timedelta(minutes=1))
        assert services.refresh_due_segments() == 1
        due.refresh_from_db()
        assert due.refresh_count == 2 and due.member_count == 1
        # Another worker holding this segment's lease: this one skips it.
        clock.advance(dt.timedelta(hours=1))
        assert acquire_lease(f"segment-refresh:{due.pk}", "other-worker", dt.timedelta(minutes=5))
        assert services.refresh_due_segments() == 0


def test_cli_list_preview_refresh_and_export(tmp_path, capsys):
    brand = make_brand()
    admin = make_staff(brand, Role.BRAND_ADMIN)
    customer(brand, city="上海", display_name="甲")
    seg = services.create_segment(
        actor=admin, name="上海", kind="dynamic",
        rule={"kind": "profile", "field": "city", "op": "eq", "value": "上海"},
    )  # fmt: skip
    call_command("segments", "--brand", str(brand.pk), "list")
    call_command("segments", "--brand", str(brand.pk), "preview", str(seg.pk))
    call_command("segments", "--brand", str(brand.pk), "refresh", str(seg.pk))
    out = tmp_path / "m.csv"
    call_command("segments", "--brand", str(brand.pk), "export", str(seg.pk), "-o", str(out))
    text = capsys.readouterr().out
    assert f"{seg.pk}\tdynamic\t0\tnever\t上海" in text
    assert "1 customers (" in text
    assert "上海: 1 members, +1 -0" in text
    assert "甲" in out.read_text(encoding="utf-8-sig")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"^\$\.or: must be a non-empty list$"):
        call_command("segments", "--brand", str(brand.pk), "preview", "--rule", '{"or": []}')
