"""Every metric of the overview computed from the hand-made fixture (fixtures.py), with the
expected numbers worked out by hand; runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_staff
from yutang.analytics import services
from yutang.analytics.sections import (
    Column,
    SectionContext,
    SectionTable,
    register_overview_section,
    registered_sections,
    unregister_overview_section,
)
from yutang.analytics.tests.fixtures import MARCH, NOW, World, at, build_world
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.errors import NotFound, PermissionDenied, ValidationFailed
from yutang.core.permissions import Role
from yutang.customers import services as customers
from yutang.events.services import ingest_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> World:
    return build_world()


def _overview(actor, start=MARCH[0], end=MARCH[1], now=NOW, **kw):
    with use_clock(FrozenClock(now)):
        return services.overview(actor=actor, start=start, end=end, **kw)


def test_march_for_the_whole_brand(world):
    o = _overview(world.admin)
    t = o.totals
    # Pool: c1 (Feb 10) and c6 (Jan 5) were held on March 1.
    assert t.contacts_opening == 2
    # c2, c3 on w2, c3 on the official account, c4, and c1 again; c3's second add on w2 is
    # no change (already held); c5's deletion of a contact never added is no change either.
    assert (t.gross_adds, t.re_adds, t.deletions, t.removals) == (5, 1, 1, 1)
    assert t.net_growth == 3
    assert t.contacts_held == 5
    assert t.deletion_rate == services.Ratio(1, 7)  # c1 ÷ (2 held on March 1 + 5 adds)
    assert t.deletion_rate.rate == 1 / 7
    assert o.people_held == 5  # c1, c2, c3 (official account), c4, c6
    assert {(p.carrier, p.opening, p.gross_adds, p.deletions, p.removals, p.closing)
            for p in o.carriers} == {("wecom", 2, 4, 1, 1, 4), ("official_account", 0, 1, 0, 0, 1)}  # fmt: skip
    # New people: c2, c3, c4 (c1 was first added in February). c2 paid within 72 hours,
    # c4 too (April 2, after the period: cohorts follow their people); c3 paid after 5 days.
    assert (t.new_people, t.first_order_cohort, t.first_orders_3d, t.first_order_pending) == (
        3, 3, 2, 0,
    )  # fmt: skip
    assert t.first_order_rate.rate == 2 / 3
    # Orders in March: c1 ¥50, c2 ¥99 + ¥30, c3 ¥200. Repeat buyers: c1 (bought in
    # February), c2 (second order of March). c4's April order is outside.
    assert (t.orders, t.gmv_fen, t.refunds_fen, t.net_gmv_fen) == (4, 37900, 1000, 36900)
    assert (t.buyers, t.repeat_buyers) == (3, 2)
    assert t.repurchase_rate.rate == 2 / 3
    assert o.gmv_per_contact_fen == 7580  # 37900 ÷ 5 contacts held
    assert [(s.source, s.orders, s.buyers, s.gmv_fen) for s in o.sources] == [
        ("store_pos", 1, 1, 20000),
        ("tmall", 1, 1, 9900),
        ("mini_program", 2, 2, 8000),
    ]
    assert (t.messages_sent, t.marketing_sent) == (4, 3)
    assert o.granularity == "day" and len(o.series) == 31


def test_the_daily_series_follows_the_brand_time_zone(world):
    o = _overview(world.admin)
    day = {f.start.day: f for f in o.series}
    # c2 was added at 00:30 on March 1 in Shanghai (still February 28 in UTC).
    assert day[1].gross_adds == 1 and day[1].contacts_opening == 2 and day[1].contacts_held == 3
    assert day[3].gross_adds == 2 and day[3].contacts_held == 5
    assert day[4].gross_adds == 0 and day[4].contacts_held == 5
    assert day[5].deletions == 1 and day[5].contacts_held == 4
    assert day[5].deletion_rate == services.Ratio(1, 5)
    assert day[20].re_adds == 1 and day[25].removals == 1 and day[31].contacts_held == 5
    assert [d for d, f in day.items() if f.orders] == [2, 8, 10, 21]
    assert day[2].gmv_fen == 9900 and day[11].refunds_fen == 1000
    assert day[10].repeat_buyers == 1 and day[2].repeat_buyers == 0
    assert [d for d, f in day.items() if f.new_people] == [1, 3, 31]
    assert sum(f.gross_adds for f in o.series) == o.totals.gross_adds
    assert sum(f.gmv_fen for f in o.series) == o.totals.gmv_fen


def test_monthly_series_gives_each_months_deletion_rate(world):
    o = _overview(world.admin, start=dt.date(2026, 2, 1), granularity="month")
    feb, mar = o.series
    assert (feb.start, feb.end, mar.start, mar.end) == (
        dt.date(2026, 2, 1), dt.date(2026, 2, 28), dt.date(2026, 3, 1), dt.date(2026, 3, 31),
    )  # fmt: skip
    assert (feb.contacts_opening, feb.gross_adds, feb.contacts_held) == (1, 1, 2)
    assert feb.deletion_rate == services.Ratio(0, 2)
    assert mar.deletion_rate == services.Ratio(1, 7)
    assert (feb.orders, feb.buyers, feb.repeat_buyers) == (1, 1, 0)
    assert o.totals.buyers == 3 and o.totals.repeat_buyers == 2  # c1 first bought in Feb


def test_weekly_buckets_start_on_monday_and_are_clipped_to_the_period(world):
    o = _overview(world.admin, granularity="week")
    assert o.series[0].start == dt.date(2026, 3, 1)  # a Sunday: its week began Feb 23
    assert o.series[0].end == dt.date(2026, 3, 1)
    assert o.series[1].start == dt.date(2026, 3, 2)
    assert o.series[-1].end == dt.date(2026, 3, 31)
    assert sum(f.gross_adds for f in o.series) == 5


def test_first_orders_still_inside_their_72_hours_are_pending(world):
    # Read on April 1 at noon: c4 (added March 31, 23:00) is 13 hours in.
    o = _overview(world.admin, now=at(4, 1, 12))
    t = o.totals
    assert (t.new_people, t.first_order_cohort, t.first_orders_3d, t.first_order_pending) == (
        3, 2, 1, 1,
    )  # fmt: skip
    assert t.first_order_rate.rate == 1 / 2


def test_store_manager_sees_only_their_store(world):
    manager = make_staff(world.brand, Role.STORE_MANAGER, stores=[world.store_a])
    o = _overview(manager)
    t = o.totals
    assert (t.contacts_opening, t.gross_adds, t.deletions, t.removals, t.contacts_held) == (
        2, 2, 1, 0, 3,
    )  # fmt: skip
    assert (t.orders, t.gmv_fen, t.buyers, t.repeat_buyers) == (3, 17900, 2, 2)
    assert (t.new_people, t.first_orders_3d) == (1, 1)
    assert o.people_held == 3
    with pytest.raises(NotFound) as exc:
        _overview(manager, store=world.store_b.code)
    assert exc.value.field == "store"


def test_hq_sees_a_franchise_store_in_aggregate(world):
    lead = make_staff(world.brand, Role.OPERATIONS_LEAD)
    o = _overview(lead, store="B")
    t = o.totals
    assert (t.gross_adds, t.removals, t.contacts_held, t.gmv_fen, t.new_people) == (
        2, 1, 1, 20000, 1,
    )  # fmt: skip
    assert o.store == world.store_b


def test_channel_filter_uses_the_first_touch_channel(world):
    o = _overview(world.admin, channel="xhs")
    t = o.totals
    assert (t.contacts_opening, t.gross_adds, t.removals, t.contacts_held) == (0, 3, 1, 2)
    assert (t.new_people, t.first_orders_3d, t.gmv_fen) == (2, 1, 20000)


def test_another_brand_sees_nothing_of_this_one(world):
    other = build_world()  # same shape, second brand
    o = _overview(other.admin)
    assert o.totals.gmv_fen == 37900  # its own, not the sum of both
    assert o.totals.contacts_held == 5


def test_merged_duplicates_count_once(world):
    with use_clock(FrozenClock(NOW)):
        a = customers.create_customer(
            actor=world.admin, identities=[{"kind": "external", "value": "dup-a"}], profile={}
        ).customer
        b = customers.create_customer(
            actor=world.admin, identities=[{"kind": "external", "value": "dup-b"}], profile={}
        ).customer
        ingest_events(brand=world.brand, items=[
            {"type": "contact.added", "occurred_at": at(3, 15), "customer_id": a.pk,
             "idempotency_key": "dup-a-add", "properties": {"carrier": "wecom", "account_id": "w9"}},
            {"type": "contact.added", "occurred_at": at(3, 16), "customer_id": b.pk,
             "idempotency_key": "dup-b-add", "properties": {"carrier": "wecom", "account_id": "w9"}},
        ])  # fmt: skip
        before = _overview(world.admin).totals
        customers.manual_merge(actor=world.admin, keep_id=a.pk, absorb_id=b.pk)
    after = _overview(world.admin).totals
    assert (before.gross_adds, before.new_people) == (7, 5)
    # One person, one contact on w9: the second add is now a repeat of a held contact.
    assert (after.gross_adds, after.new_people, after.contacts_held) == (6, 4, 6)


def test_an_empty_brand_has_no_rates_rather_than_zero_rates(world):
    from tests.factories import make_brand

    empty = make_staff(make_brand(), Role.BRAND_ADMIN)
    t = _overview(empty).totals
    assert t.deletion_rate.rate is None
    assert t.first_order_rate.rate is None
    assert t.repurchase_rate.rate is None
    assert _overview(empty).gmv_per_contact_fen is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": dt.date(2026, 3, 2), "end": dt.date(2026, 3, 1)}, "end"),
        ({"start": "2026-03-01"}, "start"),
        ({"granularity": "hour"}, "granularity"),
        ({"start": dt.date(2020, 1, 1), "granularity": "day"}, "granularity"),
        ({"start": dt.date(2010, 1, 1)}, "end"),
        ({"channel": "x" * 65}, "channel"),
        ({"store": "NOPE"}, "store"),
    ],
)
def test_bad_input_names_the_field(world, kwargs, field):
    args = {"start": MARCH[0], "end": MARCH[1], **kwargs}
    with pytest.raises((ValidationFailed, NotFound)) as exc:
        _overview(world.admin, **args)
    assert exc.value.field == field


def test_a_role_without_the_action_is_refused(world):
    world.admin.role = "nobody"
    with pytest.raises((PermissionDenied, ValueError)):
        _overview(world.admin)


def test_the_number_of_queries_does_not_grow_with_the_data(world):
    def count() -> int:
        staff = type(world.admin).objects.get(pk=world.admin.pk)
        with CaptureQueriesContext(connection) as ctx:
            _overview(staff, start=dt.date(2026, 1, 1), end=dt.date(2026, 4, 14), store="A")
        return len(ctx.captured_queries)

    small = count()
    more = build_world()  # another brand's data does not matter; add more to this one:
    with use_clock(FrozenClock(NOW)):
        for n in range(30):
            c = customers.create_customer(
                actor=world.admin, identities=[{"kind": "external", "value": f"more-{n}"}],
                profile={"owner_store_id": world.store_a.pk},
            ).customer  # fmt: skip
            ingest_events(brand=world.brand, items=[
                {"type": "contact.added", "occurred_at": at(3, 1 + n % 28), "customer_id": c.pk,
                 "idempotency_key": f"more-{n}", "properties": {"carrier": "wecom"}},
                {"type": "order.paid", "occurred_at": at(3, 2 + n % 27), "customer_id": c.pk,
                 "idempotency_key": f"more-o-{n}",
                 "properties": {"order_id": f"M{n}", "source": "tmall", "amount_fen": 100}},
            ])  # fmt: skip
    assert more.brand != world.brand
    # the brand, the store filter, six aggregate queries, then one query for each installed
    # section (messages, journeys; channels, with no channels in this world)
    assert small == count() == 11


@pytest.fixture
def no_providers():
    """Sections as if no app had installed a provider; the installed ones come back after."""
    installed = {spec.key: spec.provider for spec in registered_sections()}
    for key in installed:
        unregister_overview_section(key)
    yield
    for key, provider in installed.items():
        unregister_overview_section(key)
        if provider is not None:
            register_overview_section(key, provider)


def test_sections_without_a_provider_are_unavailable_and_a_provider_fills_one(world, no_providers):
    o = _overview(world.admin)
    assert {s.key: s.status for s in o.sections} == {
        "channels": "unavailable", "journeys": "unavailable", "messages": "unavailable",
    }  # fmt: skip

    def journeys(ctx):
        count = ctx.customers.count()
        return SectionTable(columns=[Column("name", "Journey", "text"), Column("customers", "In scope")],
                            rows=[{"name": "Welcome", "customers": count}])  # fmt: skip

    def broken(ctx):
        raise RuntimeError("boom")

    register_overview_section("journeys", journeys)
    register_overview_section("messages", broken)
    try:
        manager = make_staff(world.brand, Role.STORE_MANAGER, stores=[world.store_a])
        sections = {s.key: s for s in _overview(manager).sections}
    finally:
        unregister_overview_section("journeys")
        unregister_overview_section("messages")
    assert sections["journeys"].status == "ok"
    assert sections["journeys"].table.rows == [{"name": "Welcome", "customers": 4}]  # A's four
    assert sections["messages"].status == "error"
    assert sections["channels"].status == "unavailable"


def test_the_messages_section_counts_the_outbox_by_outcome_and_rule():
    from yutang.analytics.providers.messaging import messages_by_rule
    from yutang.customers.models import Customer
    from yutang.messaging import services as messaging
    from yutang.messaging.delivery import deliver_due_messages
    from yutang.messaging.tests.helpers import NOON, setup

    with use_clock(FrozenClock(NOON)):
        brand, account, (c1, c2) = setup(2)
        for n, customer in enumerate([c1, c1, c2]):  # c1's second is over the daily cap
            messaging.enqueue_message(
                brand=brand, customer=customer, account=account, kind="marketing",
                content={"type": "text", "text": f"新品 {n}"}, cause="campaign",
                idempotency_key=f"m{n}",
            )  # fmt: skip
        deliver_due_messages()
    ctx = SectionContext(
        actor=None, brand=brand, start=NOON.date(), end=NOON.date(),
        start_at=NOON - dt.timedelta(hours=1), end_at=NOON + dt.timedelta(hours=1),
        store=None, channel=None, customers=Customer.objects.filter(brand=brand),
    )  # fmt: skip
    rows = messages_by_rule(ctx).rows
    assert rows == [
        {"outcome": "sent", "rule": "", "service": 0, "marketing": 2, "total": 2},
        {"outcome": "blocked", "rule": "frequency", "service": 0, "marketing": 1, "total": 1},
    ]
    only_c2 = SectionContext(**{**ctx.__dict__, "customers": Customer.objects.filter(pk=c2.pk)})
    assert [r["total"] for r in messages_by_rule(only_c2).rows] == [1]
