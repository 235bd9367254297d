"""Live-code routing: rotation fairness, weights, caps and spill-over, backups and alerts,
time slots in the brand's time zone, nearest store, exclusive routing, and the seams."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.acquisition import services
from yutang.acquisition.models import AccountDay, Alert, ContactAdd
from yutang.acquisition.tests.helpers import (
    make_channel,
    make_code,
    make_customer,
    make_pool,
    utc,
)
from yutang.core.errors import ValidationFailed
from yutang.core.models import AuditLog
from yutang.customers.models import Customer, CustomerTag

pytestmark = pytest.mark.django_db

NOON = utc(2026, 11, 2, 4, 0)  # Monday 12:00 in Asia/Shanghai


def test_round_robin_gives_each_account_its_share_within_one_over_10000_adds():
    brand = make_brand()
    pool = make_pool(brand, 3)
    code = make_code(brand, pool)
    counts = Counter(services.assign_account(live_code=code, at=NOON).pk for _ in range(10_000))
    assert sorted(counts) == sorted(a.pk for a in pool)
    for account in pool:
        assert abs(counts[account.pk] - 10_000 / 3) <= 1
    assert (
        AccountDay.objects.get(account=pool[0], day=dt.date(2026, 11, 2)).assigned
        == counts[pool[0].pk]
    )


def test_weighted_rotation_is_proportional_to_the_weights():
    brand = make_brand()
    pool = make_pool(brand, 3)
    code = make_code(brand, pool, rule="weighted", weights=[5, 3, 2])
    counts = Counter(services.assign_account(live_code=code, at=NOON).pk for _ in range(10_000))
    assert [counts[a.pk] for a in pool] == [5000, 3000, 2000]
    # Smooth: the heaviest never takes more than its share in a row.
    first_cycle = [services.smooth_weighted_order([5, 3, 2])]
    assert first_cycle[0].count(0) == 5 and first_cycle[0][:2] != [0, 0]


def test_a_full_account_spills_over_to_the_next_then_backups_then_an_alert():
    brand = make_brand()
    owner = make_staff(brand, "operations_lead")
    pool = make_pool(brand, 2, cap=2)
    backup = make_pool(brand, 1, cap=1)[0]
    code = make_code(brand, pool, backups=[backup], channel=make_channel(brand, owner_id=owner.pk))
    chosen = [services.assign_account(live_code=code, at=NOON).pk for _ in range(5)]
    assert sorted(chosen[:4]) == sorted([pool[0].pk, pool[0].pk, pool[1].pk, pool[1].pk])
    assert chosen[4] == backup.pk
    with pytest.raises(services.NoCapacity) as exc:
        services.assign_account(live_code=code, at=NOON)
    assert exc.value.field == "live_code"
    alert = Alert.objects.get(live_code=code)
    assert alert.owner == owner and alert.day == dt.date(2026, 11, 2)
    assert (
        AuditLog.objects.filter(action="live_code.no_capacity", target_id=str(code.pk)).count() == 1
    )
    # A second refusal the same day does not repeat the alert.
    with pytest.raises(services.NoCapacity):
        services.assign_account(live_code=code, at=NOON)
    assert Alert.objects.filter(live_code=code).count() == 1
    assert services.contact_way_members(live_code=code, at=NOON) == []
    # The next day (in Shanghai) every account has room again.
    next_day = utc(2026, 11, 2, 16, 0)  # 00:00 on Tuesday in Shanghai
    assert services.contact_way_members(live_code=code, at=next_day) == pool
    assert services.assign_account(live_code=code, at=next_day).pk in {a.pk for a in pool}


def test_adds_reported_by_the_carrier_fill_the_cap_too():
    brand = make_brand()
    pool = make_pool(brand, 2, cap=1)
    code = make_code(brand, pool)
    services.record_contact_added(
        brand=brand, account=pool[0], customer=make_customer(brand), state=code.state,
        occurred_at=NOON,
    )  # fmt: skip
    assert services.contact_way_members(live_code=code, at=NOON) == [pool[1]]
    assert services.assign_account(live_code=code, at=NOON) == pool[1]


def test_time_slots_follow_the_brand_time_zone_and_special_dates():
    brand = make_brand()
    day_staff, night_staff, holiday_staff = make_pool(brand, 3)
    schedule = {
        "weekly": {
            "mon": [
                {"start": "09:00", "end": "18:00", "accounts": [day_staff.pk]},
                {"start": "18:00", "end": "24:00", "accounts": [night_staff.pk]},
            ]
        },
        "special": {
            "2026-11-09": [{"start": "00:00", "end": "24:00", "accounts": [holiday_staff.pk]}]
        },
    }
    code = make_code(
        brand, [day_staff, night_staff, holiday_staff], rule="time_slot", schedule=schedule
    )
    # 08:59:59 Monday in Shanghai is 00:59:59 UTC: nobody on duty, no backups -> refused.
    with pytest.raises(services.NoCapacity):
        services.assign_account(live_code=code, at=utc(2026, 11, 2, 0, 59, 59))
    assert services.assign_account(live_code=code, at=utc(2026, 11, 2, 1, 0)) == day_staff
    assert services.assign_account(live_code=code, at=utc(2026, 11, 2, 9, 59, 59)) == day_staff
    assert services.assign_account(live_code=code, at=utc(2026, 11, 2, 10, 0)) == night_staff
    assert services.assign_account(live_code=code, at=utc(2026, 11, 2, 15, 59)) == night_staff
    # Tuesday 00:00 in Shanghai: no slot.
    assert services.contact_way_members(live_code=code, at=utc(2026, 11, 2, 16, 0)) == []
    # The special date replaces the weekly Monday.
    assert services.assign_account(live_code=code, at=utc(2026, 11, 9, 4, 0)) == holiday_staff
    assert services.contact_way_members(live_code=code, at=utc(2026, 11, 9, 4, 0)) == [
        holiday_staff
    ]


def test_schedule_errors_name_the_slot():
    brand = make_brand()
    pool = make_pool(brand, 1)
    other = make_pool(brand, 1)[0]
    bad = {"weekly": {"mon": [{"start": "09:00", "end": "25:00", "accounts": [pool[0].pk]}]}}
    with pytest.raises(ValidationFailed) as exc:
        make_code(brand, pool, rule="time_slot", schedule=bad)
    assert exc.value.field == "schedule.weekly.mon.0.end"
    outside = {"weekly": {"tue": [{"start": "09:00", "end": "10:00", "accounts": [other.pk]}]}}
    with pytest.raises(ValidationFailed) as exc:
        make_code(brand, pool, rule="time_slot", schedule=outside)
    assert exc.value.field == "schedule.weekly.tue.0.accounts"


def test_nearest_store_routing_by_coordinates_and_by_city():
    brand = make_brand()
    shanghai = make_store(
        brand, city="上海", latitude=Decimal("31.230416"), longitude=Decimal("121.473701")
    )
    hangzhou = make_store(
        brand, city="杭州", latitude=Decimal("30.274084"), longitude=Decimal("120.155070")
    )
    (sh,) = make_pool(brand, 1, store=shanghai, cap=1)
    (hz,) = make_pool(brand, 1, store=hangzhou)
    code = make_code(brand, [hz, sh], rule="nearest_store")
    near_shanghai = {"latitude": 31.2, "longitude": 121.5}
    assert services.assign_account(live_code=code, at=NOON, location=near_shanghai) == sh
    # Shanghai's account is full: the next nearest store takes the contact.
    assert services.assign_account(live_code=code, at=NOON, location=near_shanghai) == hz
    assert services.assign_account(live_code=code, at=NOON, location={"city": "杭州"}) == hz
    with pytest.raises(ValidationFailed) as exc:
        services.assign_account(live_code=code, at=NOON, location={"latitude": 91, "longitude": 0})
    assert exc.value.field == "location"


def test_exclusive_routing_sends_an_owned_customer_back_to_their_staff():
    brand = make_brand()
    pool = make_pool(brand, 3, cap=1)
    code = make_code(brand, pool, rule="exclusive")
    customer = make_customer(brand)
    Customer.objects.filter(pk=customer.pk).update(owner_staff=pool[2].staff)
    customer.refresh_from_db()
    for _ in range(3):  # the owner takes them back even past the cap
        assert services.assign_account(live_code=code, at=NOON, customer=customer) == pool[2]
    # A customer nobody owns is rotated like round-robin.
    assert (
        services.assign_account(live_code=code, at=NOON, customer=make_customer(brand)) in pool[:2]
    )


def test_state_encoding_and_lookup_stay_within_the_brand():
    brand, other = make_brand(), make_brand()
    code = make_code(brand, make_pool(brand, 1))
    state = services.state_for(code)
    assert state == f"lc{code.pk}" and len(state) <= 30
    assert services.live_code_for_state(brand=brand, state=state) == code
    assert services.live_code_for_state(brand=other, state=state) is None
    for junk in ("", "lc", "lc0", "lc01", f"x{code.pk}", "lc" + "9" * 40, None):
        assert services.live_code_for_state(brand=brand, state=junk) is None


def test_welcome_renders_variables_limits_attachments_and_grants_the_hook_coupon():
    brand = make_brand()
    store = make_store(brand, name="南京西路店")
    (account,) = make_pool(brand, 1, store=store)
    channel = make_channel(brand, hook_coupon_code="NEW10", hook_description="新人 10 元券")
    attachments = [
        {"type": "image", "url": "https://example.com/a.png"},
        {"type": "link", "url": "https://example.com/", "title": "会员中心"},
        {"type": "miniprogram", "appid": "wx123", "page": "pages/index", "title": "商城"},
    ]
    code = make_code(
        brand, [account], channel=channel,
        welcome_text="{name} 你好，我是{staff}，欢迎来到{store}！{unknown} 保持原样",
        welcome_attachments=attachments,
    )  # fmt: skip
    welcome = services.welcome_for_add(
        brand=brand, account=account, state=code.state, customer_name="小美", attachment_limit=2
    )
    assert welcome == services.Welcome(
        text="小美 你好，我是Persona，欢迎来到南京西路店！{unknown} 保持原样",
        attachments=attachments[:2], coupon_code="NEW10", live_code_id=code.pk,
    )  # fmt: skip
    # No live code: the brand default, else nothing.
    assert (
        services.welcome_for_add(brand=brand, account=account, state=None, customer_name="A")
        is None
    )
    admin = make_staff(brand)
    services.set_default_welcome(actor=admin, text="欢迎 {name}")
    fallback = services.welcome_for_add(brand=brand, account=account, state="zz", customer_name="A")
    assert fallback == services.Welcome(text="欢迎 A", attachments=[], coupon_code="")


def test_record_contact_added_attributes_first_touch_owner_tags_and_is_idempotent():
    brand = make_brand()
    store = make_store(brand)
    (account,) = make_pool(brand, 1, store=store)
    first = make_channel(brand, code="package-card", tags=["渠道/包裹卡"])
    second = make_channel(brand, code="sms-nov")
    code1 = make_code(brand, [account], channel=first)
    code2 = make_code(brand, [account], channel=second)
    customer = make_customer(brand)
    at = NOON
    add = services.record_contact_added(
        brand=brand, account=account, customer=customer, state=code1.state, occurred_at=at
    )
    again = services.record_contact_added(
        brand=brand, account=account, customer=customer, state=code1.state, occurred_at=at
    )
    assert again.pk == add.pk and ContactAdd.objects.count() == 1
    assert AccountDay.objects.get(account=account).added == 1
    customer.refresh_from_db()
    assert customer.source_channel == "package-card"
    assert customer.owner_staff_id == account.staff_id and customer.owner_store_id == store.pk
    assert [ct.tag.name for ct in CustomerTag.objects.filter(customer=customer)] == ["包裹卡"]
    later = services.record_contact_added(
        brand=brand, account=account, customer=customer, state=code2.state,
        occurred_at=at + dt.timedelta(days=3),
    )  # fmt: skip
    customer.refresh_from_db()
    assert add.is_first_touch and not later.is_first_touch
    assert customer.source_channel == "package-card"  # first touch wins
    assert later.channel == second
