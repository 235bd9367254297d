"""Channel economics and partner settlement against hand-computed numbers."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import load_workbook

from tests.factories import make_brand, make_staff
from yutang.acquisition import reports, services
from yutang.acquisition.tests.helpers import make_channel, make_code, make_customer, make_pool
from yutang.commerce import services as commerce
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.errors import Conflict
from yutang.events.services import ingest_one

pytestmark = pytest.mark.django_db

CST = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=CST)


def at(month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=CST)


def order(brand, customer, ext: str, when: dt.datetime, amount: int) -> None:
    commerce.post_order(
        brand=brand, actor=None, source="tmall", external_id=ext, paid_at=when,
        amount_fen=amount, customer_id=customer.pk,
    )  # fmt: skip


def deleted(brand, customer, when: dt.datetime) -> None:
    ingest_one(
        brand=brand,
        item={"type": "contact.deleted", "occurred_at": when, "customer_id": customer.pk,
              "idempotency_key": f"del-{customer.pk}-{when.isoformat()}",
              "properties": {"carrier": "wecom"}},
    )  # fmt: skip


def test_channel_report_matches_the_hand_computed_fixture():
    with use_clock(FrozenClock(NOW)):
        brand = make_brand()
        lead = make_staff(brand, "operations_lead")
        (account,) = make_pool(brand, 1)
        card = make_channel(
            brand, code="card", cost_per_reach_fen=10, cost_per_add_fen=100, cpa_fen=500,
            cpa_event="activated", cps_bp=1000, attribution_window_days=30,
        )  # fmt: skip
        other = make_channel(brand, code="other")
        code_a, code_b = (
            make_code(brand, [account], channel=card),
            make_code(brand, [account], channel=other),
        )
        services.add_cost(
            actor=lead, channel_id=card.pk, date=dt.date(2026, 9, 1), amount_fen=10000
        )
        services.add_cost(actor=lead, channel_id=card.pk, date=dt.date(2026, 10, 1), amount_fen=777)
        for day, count in (
            (dt.date(2026, 9, 1), 1000),
            (dt.date(2026, 9, 2), 500),
            (dt.date(2026, 10, 15), 999),
        ):
            services.record_reach(actor=lead, channel_id=card.pk, date=day, count=count)
        c1, c2, c3, c4, c5, c6 = (make_customer(brand) for _ in range(6))

        def add(customer, code, when):
            services.record_contact_added(
                brand=brand, account=account, customer=customer, state=code.state, occurred_at=when
            )

        add(c1, code_a, at(9, 1))
        add(c2, code_a, at(9, 5))
        add(c3, code_a, at(9, 10))
        add(c4, code_a, at(9, 30, 23, 30))  # last local day of the period
        add(c5, code_a, at(10, 1, 0, 30))  # first local day after it
        add(c6, code_b, at(8, 1))  # first touch elsewhere ...
        add(c6, code_a, at(9, 3))  # ... so not in the card's cohort
        order(brand, c1, "o1", at(9, 2), 10000)
        commerce.post_refund(
            brand=brand, actor=None, source="tmall", order_external_id="o1", external_id="r1",
            amount_fen=2000, refunded_at=at(9, 4),
        )  # fmt: skip
        order(brand, c1, "o2", at(11, 15), 5000)
        order(brand, c3, "o3", at(9, 20), 3000)
        order(brand, c4, "o4", at(10, 1, 12), 4000)
        order(brand, c5, "o5", at(10, 2), 9999)
        order(brand, c6, "o6", at(9, 4), 8888)
        deleted(brand, c2, at(9, 10))
        deleted(brand, c3, at(10, 5))

        report = reports.channel_report(
            actor=lead, date_from=dt.date(2026, 9, 1), date_to=dt.date(2026, 9, 30),
            granularity="month",
        )  # fmt: skip
    row = {r.channel_code: r for r in report.rows}["card"]
    expected = reports.Metrics(
        channel_id=card.pk, channel_code="card", channel_name=card.name, cohort="all",
        reached=1500, added=4, add_rate=0.0027, deleted_7d=1, deleted_30d=2, kept_30d=2,
        first_order_3d=2, first_order_30d=3, gmv_30d_fen=15000, gmv_90d_fen=20000,
        gmv_180d_fen=20000,
        # 10000 fixed + 10×1500 reach + 100×4 added + 500×3 activated + 10% of 15000
        cost_fen=28400, cost_per_added_fen=7100, cost_per_kept_fen=14200, roi=0.7042,
        ltv_cac=None,
    )  # fmt: skip
    assert row == expected
    assert [(c.channel_code, c.cohort) for c in report.cohorts] == [("card", "2026-09")]
    assert report.cohorts[0].added == 4 and report.cohorts[0].cost_fen == 28400
    assert {r.channel_code: r.added for r in report.rows}["other"] == 0
    adds = report.adds_by_day["card"]
    assert len(adds) == 30 and sum(adds) == 4 and adds[0] == adds[4] == adds[9] == adds[29] == 1
    assert report.deletions_by_day["card"][9] == 1 and sum(report.deletions_by_day["card"]) == 1
    table = reports.report_table(report)
    assert table[0][:3] == ["channel", "name", "cohort"] and len(table) == 4

    def ltv(brand_arg, ids):
        return {i: 21300 for i in ids}

    reports.register_ltv_provider(ltv)
    try:
        with use_clock(FrozenClock(NOW)):
            again = reports.channel_report(
                actor=lead, date_from=dt.date(2026, 9, 1), date_to=dt.date(2026, 9, 30)
            )
    finally:
        reports.unregister_ltv_provider(ltv)
    assert {r.channel_code: r for r in again.rows}["card"].ltv_cac == 3.0  # 21300 / 7100


def test_partner_settlement_with_cps_cpa_refunds_and_locking():
    with use_clock(FrozenClock(NOW)):
        brand = make_brand()
        lead = make_staff(brand, "operations_lead")
        (account,) = make_pool(brand, 1)
        partner = services.create_partner(
            actor=lead, brand=brand, name="小红书 KOL 阿花", kind="kol", phone="13812341234",
            cps_bp=1000, cpa_fen=300, cpa_event="added", fixed_fee_fen=5000,
            attribution_window_days=30,
        )  # fmt: skip
        channel = make_channel(
            brand, type="kol_post", platform="xiaohongshu", partner_id=partner.pk
        )
        code = make_code(brand, [account], channel=channel)
        p1, p2 = make_customer(brand), make_customer(brand)
        for customer, when in ((p1, at(9, 1)), (p2, at(9, 20))):
            services.record_contact_added(
                brand=brand, account=account, customer=customer, state=code.state, occurred_at=when
            )
        order(brand, p1, "k1", at(9, 5), 10000)
        order(brand, p1, "k2", at(10, 15), 7000)  # 44 days after the add: outside the window
        order(brand, p2, "k3", at(10, 2), 6000)
        commerce.post_refund(
            brand=brand, actor=None, source="tmall", order_external_id="k1", external_id="kr1",
            amount_fen=4000, refunded_at=at(10, 3),
        )  # fmt: skip
        september = services.compute_settlement(
            actor=lead, partner_id=partner.pk, period_start=dt.date(2026, 9, 1),
            period_end=dt.date(2026, 9, 30),
        )  # fmt: skip
        # 5000 fixed + 2 adds × 300 + 10% of 10000
        assert september.figures == {
            "added": 2, "activated": 1, "gmv_fen": 10000, "refunds_fen": 0, "net_gmv_fen": 10000,
            "fixed_fee_fen": 5000, "cpa_actions": 2, "cpa_fen": 600, "cps_fen": 1000,
            "cps_bp": 1000, "amount_owed_fen": 6600,
        }  # fmt: skip
        services.lock_settlement(actor=lead, settlement_id=september.pk)
        with pytest.raises(Conflict):
            services.compute_settlement(
                actor=lead, partner_id=partner.pk, period_start=dt.date(2026, 9, 1),
                period_end=dt.date(2026, 9, 30),
            )  # fmt: skip
        with pytest.raises(Conflict):
            services.compute_settlement(
                actor=lead, partner_id=partner.pk, period_start=dt.date(2026, 9, 15),
                period_end=dt.date(2026, 10, 15),
            )  # fmt: skip
        with pytest.raises(Conflict):
            services.lock_settlement(actor=lead, settlement_id=september.pk)
        october = services.compute_settlement(
            actor=lead, partner_id=partner.pk, period_start=dt.date(2026, 10, 1),
            period_end=dt.date(2026, 10, 31),
        )  # fmt: skip
    # p2's first order is in October; the September order's refund is reversed in October.
    assert october.figures["added"] == 0 and october.figures["activated"] == 1
    assert october.figures["gmv_fen"] == 6000 and october.figures["refunds_fen"] == 4000
    assert october.figures["cps_fen"] == 200 and october.amount_owed_fen == 5200
    september.refresh_from_db()
    assert september.status == "locked" and september.amount_owed_fen == 6600
    book = load_workbook(
        io.BytesIO(services.settlement_xlsx(actor=lead, settlement_id=september.pk))
    )
    values = {row[0]: row[1] for row in book.active.iter_rows(values_only=True) if row}
    assert values["Amount owed (fen)"] == 6600 and values["Partner"] == "小红书 KOL 阿花"
    analyst = make_staff(brand, "analyst")
    assert services.present_partner(analyst, partner)["phone"] == "138****1234"
    assert services.present_partner(lead, partner)["phone"] == "+8613812341234"
