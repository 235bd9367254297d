"""The shipped templates run end to end on real data with fast-forward: installed from
templates_json, published, fed through the real apps (sandbox callbacks and live codes,
commerce orders, segments' RFM and lifecycle, attributes), their messages and tasks checked
for content and timing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.factories import make_staff, make_store
from yutang.acquisition.tests.helpers import make_channel, make_code
from yutang.commerce import services as commerce
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand
from yutang.core.permissions import Role
from yutang.customers.models import Customer
from yutang.journeys import engine, integrations, services
from yutang.journeys.models import Enrollment, Journey, StaffTask, StepRun
from yutang.journeys.tests.helpers import T0, customer, messages, setup
from yutang.messaging.models import Message
from yutang.messaging.tests import helpers as msg
from yutang.segments.models import CustomerRfm

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def install(admin, key: str, at: dt.datetime = T0 - DAY) -> Journey:
    with use_clock(FrozenClock(at)):
        journey = services.create_from_template(actor=admin, key=key)
        services.publish(actor=admin, journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def order(brand: Brand, who: Customer, at: dt.datetime, n: int, *skus: str) -> None:
    with use_clock(FrozenClock(at)):
        commerce.post_order(
            brand=brand, actor=None, source="mini_program", external_id=f"o{who.pk}-{n}",
            paid_at=at, amount_fen=9900, customer_id=who.pk,
            items=[{"sku": sku, "qty": 1} for sku in skus],
        )  # fmt: skip


def product(brand: Brand, sku: str, name: str, cycle: int | None) -> None:
    commerce.upsert_product(
        actor=None, brand=brand, sku=sku, name=name, price_fen=9900, usage_cycle_days=cycle
    )


def sent(brand: Brand, who: Customer) -> list[tuple[str, str]]:
    return [(text, at) for cid, text, at in messages(brand) if cid == who.pk]


def local(text: str) -> str:
    """A Shanghai wall time "2026-03-09 10:00" as the UTC ISO string messages() gives."""
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return moment.astimezone(dt.UTC).isoformat()


def test_1_new_contact_welcomes_with_the_channel_hook_unless_the_live_code_welcomed():
    with use_clock(FrozenClock(T0)):
        brand, account, _ = msg.setup(0)
        admin = make_staff(brand, Role.BRAND_ADMIN)
    journey = install(admin, "1_new_contact")
    channel = make_channel(brand, name="门店海报", hook_description="扫码送试用装！")
    welcoming = make_code(brand, [account], channel=channel, welcome_text="欢迎 {name}～")
    silent = make_code(brand, [account], channel=channel)
    with use_clock(FrozenClock(T0)):
        welcomed = msg.add_contact(account, "wm-a", state=f"lc{welcoming.pk}")
        fresh = msg.add_contact(account, "wm-b", state=f"lc{silent.pk}")
    assert Message.objects.filter(cause="welcome", customer=welcomed).count() == 1
    assert not Message.objects.filter(cause="welcome", customer=fresh).exists()
    engine.fast_forward(start=T0, until=T0 + 4 * DAY)

    entered = Enrollment.objects.get(journey=journey, customer=fresh).entered_at
    assert sent(brand, fresh) == [
        (f"{fresh.display_name}您好，欢迎来到{brand.name}！扫码送试用装！回复「福利」领取新人礼。",
         entered.isoformat()),
        ("今天给您分享一篇实用小知识，有问题随时问我～", (entered + DAY).isoformat()),
        ("新人首单立减20元，3天内有效。", (entered + 2 * DAY).isoformat()),
    ]  # fmt: skip
    # The live code's automatic welcome went out: the journey's welcome step does nothing.
    assert [text for text, _ in sent(brand, welcomed)] == [
        "今天给您分享一篇实用小知识，有问题随时问我～", "新人首单立减20元，3天内有效。",
    ]  # fmt: skip
    outcomes = dict(
        StepRun.objects.filter(step_id="welcome").values_list("enrollment__customer_id", "outcome")
    )
    assert outcomes == {welcomed.pk: "welcomed", fresh.pk: "sent"}
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"completed"}


def test_2_after_first_order_thanks_follows_up_at_day_3_and_invites_at_day_7():
    brand, admin = setup()
    advisor = make_staff(brand, Role.ADVISOR, stores=[make_store(brand)])
    product(brand, "TONER", "精华水", 30)
    who = customer(brand, owner_staff=advisor, display_name="李女士")
    install(admin, "2_after_first_order")
    paid = T0 + 2 * HOUR  # Monday 11:00
    order(brand, who, paid, 1, "TONER")
    order(brand, who, paid + DAY, 2, "TONER")  # a second order does not enrol again
    engine.fast_forward(start=paid, until=paid + 10 * DAY)
    (e,) = Enrollment.objects.all()
    start = e.entered_at
    assert start - paid < dt.timedelta(minutes=1)
    assert sent(brand, who) == [
        ("感谢李女士的第一单！使用中有任何问题都可以找我。", start.isoformat()),
        ("邀请您写一条评价，推荐好友下单各得10元券。", (start + 7 * DAY).isoformat()),
    ]
    task = StaffTask.objects.get()
    assert (task.assignee_id, task.title, task.script, task.created_at) == (
        advisor.pk, "首单回访：李女士", "您好李女士，收到的精华水用得怎么样？", start + 3 * DAY,
    )  # fmt: skip
    assert e.state == "completed"


def test_3_repurchase_fires_on_the_usage_cycle_minus_the_lead_time_with_the_product():
    brand, admin = setup()
    product(brand, "WASH", "洗面奶", 30)
    product(brand, "CREAM", "面霜", 60)
    product(brand, "BAG", "帆布袋", None)
    wash, cream, both, stale, again, nothing = (
        customer(brand, display_name=n) for n in ("甲", "乙", "丙", "丁", "戊", "己")
    )
    order(brand, wash, T0 - 20 * DAY, 1, "WASH", "BAG")
    order(brand, cream, T0 - 20 * DAY, 1, "CREAM")
    order(brand, both, T0 - 20 * DAY, 1, "WASH", "CREAM")
    order(brand, stale, T0 - 40 * DAY, 1, "WASH")  # its window (days 27–33) has passed
    order(brand, again, T0 - 20 * DAY, 1, "WASH")
    journey = install(admin, "3_repurchase")
    engine.fast_forward(start=T0, until=T0 + 5 * DAY)
    order(brand, again, T0 + 5 * DAY, 2, "WASH")  # bought again: the cycle starts over
    # Both ways of evaluating the rule agree (SQL for the schedule, memory for one customer).
    rule = {"kind": "repurchase_due", "lead_days": 3, "window_days": 7}
    people = [wash, cream, both, stale, again, nothing]
    for day in (7, 12, 37):
        with use_clock(FrozenClock(T0 + day * DAY + HOUR)):
            in_sql = integrations.customers_holding(
                brand=brand, rule=rule, customer_ids=[p.pk for p in people]
            )
            in_memory = {
                p.pk for p in people if integrations.condition_holds(customer=p, rule=rule)
            }
        assert in_sql == in_memory, day
    engine.fast_forward(start=T0 + 5 * DAY, until=T0 + 45 * DAY)

    def reminder(name: str, product: str) -> str:
        return f"{name}，您上次买的{product}快用完了吧？老客回购有专属价。"

    assert sent(brand, wash) == [(reminder("甲", "洗面奶"), local("2026-03-09 10:00"))]
    assert sent(brand, cream) == [(reminder("乙", "面霜"), local("2026-04-08 10:00"))]
    assert sent(brand, both) == [(reminder("丙", "面霜"), local("2026-04-08 10:00"))]
    assert sent(brand, again) == [(reminder("戊", "洗面奶"), local("2026-04-03 10:00"))]
    assert sent(brand, stale) == sent(brand, nothing) == []
    assert Enrollment.objects.filter(journey=journey).count() == 4  # once per window


def _at_risk(brand: Brand, owner: Any, n: int, *, high: bool) -> list[Customer]:
    people = [customer(brand, owner_staff=owner, lifecycle_stage="at_risk") for _ in range(n)]
    for who in people:
        CustomerRfm.objects.create(
            customer=who, brand=brand, recency=1, frequency=2, monetary=5 if high else 1,
            rfm_class="important_retain" if high else "general_retain", computed_at=T0,
        )  # fmt: skip
    return people


def test_4_win_back_calls_high_value_customers_messages_the_others_holds_out_ten_percent():
    brand, admin = setup()
    advisor = make_staff(brand, Role.ADVISOR, stores=[make_store(brand)])
    high = _at_risk(brand, advisor, 15, high=True)
    low = _at_risk(brand, advisor, 15, high=False)
    customer(brand)  # not at risk
    journey = install(admin, "4_win_back")
    engine.fast_forward(start=T0, until=T0 + 3 * DAY)  # Monday 10:00 is an hour after T0
    held = {p.pk for p in high + low if engine.in_holdout(journey.pk, p.pk, 10)}
    rows = Enrollment.objects.filter(journey=journey)
    assert rows.count() == 30
    assert set(rows.filter(is_holdout=True).values_list("customer_id", flat=True)) == held
    monday_ten = local("2026-03-02 10:00")
    called = {t.customer_id for t in StaffTask.objects.all()}
    assert called == {p.pk for p in high} - held
    assert {t.assignee_id for t in StaffTask.objects.all()} == {advisor.pk}
    texted = {cid for cid, _, at in messages(brand) if at == monday_ten}
    assert texted == {p.pk for p in low} - held
    assert len(messages(brand)) == len(texted)
    treated_buyer = next(p for p in low if p.pk not in held)
    order(brand, treated_buyer, T0 + 4 * DAY, 1)
    engine.fast_forward(start=T0 + 4 * DAY, until=T0 + 5 * DAY)
    goal = services.journey_metrics(actor=admin, journey_id=journey.pk)["goal"]
    assert (goal["treated"]["n"], goal["treated"]["converted"]) == (30 - len(held), 1)
    assert goal["holdout"]["n"] == len(held)


def test_5_birthday_and_member_day_greetings():
    brand, admin = setup()
    bday = customer(brand, birthday=dt.date(1992, 3, 4), display_name="周先生")
    member = customer(brand, display_name="吴女士")
    customer(brand)  # no birthday, no order
    order(brand, member, T0 - 10 * DAY, 1)
    install(admin, "5_birthday")
    install(admin, "5_member_day")
    engine.fast_forward(start=T0, until=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    assert sent(brand, bday) == [
        ("周先生，生日快乐！生日当月到店享专属礼。", local("2026-03-04 09:00"))
    ]
    assert StaffTask.objects.get().title == "生日问候：周先生"
    greeting = f"吴女士，今天是{brand.name}会员日，全场会员专享价，别错过～"
    assert sent(brand, member) == [
        (greeting, local("2026-03-08 10:00")),
        (greeting, local("2026-04-08 10:00")),
    ]
    assert len(messages(brand)) == 3


def test_6_store_rhythm_makes_the_morning_and_afternoon_tasks_every_day():
    brand, admin = setup()
    advisor = make_staff(brand, Role.ADVISOR, stores=[make_store(brand)])
    owner = customer(brand, owner_staff=advisor, attributes={"group_owner": True})
    customer(brand, owner_staff=advisor)
    install(admin, "6_store_rhythm", at=T0)  # Monday 09:00: the first morning is Tuesday's
    engine.fast_forward(start=T0, until=T0 + 2 * DAY)  # → Wednesday 09:00
    got = [
        (t.customer_id, t.title, t.created_at.isoformat(), t.due_at.isoformat())
        for t in StaffTask.objects.order_by("created_at", "id")
    ]
    assert got == [
        (owner.pk, "08:30 早安群发", local("2026-03-03 08:30"), local("2026-03-03 09:00")),
        (owner.pk, "15:00 下午茶群发", local("2026-03-03 15:00"), local("2026-03-03 15:30")),
        (owner.pk, "08:30 早安群发", local("2026-03-04 08:30"), local("2026-03-04 09:00")),
    ]
    assert {t.assignee_id for t in StaffTask.objects.all()} == {advisor.pk}
