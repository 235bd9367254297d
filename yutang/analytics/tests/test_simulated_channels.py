"""The overview's channels section on a small simulated brand: each figure equals what the
simulation did (its own per-channel tallies) and what the database holds (the stored adds,
deletions, reach records and orders), worked out here without the report's code."""

from __future__ import annotations

import datetime as dt

import pytest

from yutang.acquisition.models import Channel, ContactAdd, ReachRecord
from yutang.analytics import services
from yutang.commerce.models import Order
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand
from yutang.events.models import Event
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import simulate

pytestmark = pytest.mark.django_db


def test_the_channels_section_is_what_the_simulation_did() -> None:
    scenario = load_scenario("fashion-300k").with_overrides(days=12, scale=0.02)
    result = simulate(scenario=scenario)
    assert result.brand_id is not None
    brand = Brand.objects.get(pk=result.brand_id)
    start, end = scenario.start_date, result.dates[-1]
    with use_clock(FrozenClock(dt.datetime.combine(end, dt.time(23, 59), tzinfo=brand.tz))):
        overview = services.overview(actor=None, brand=brand, start=start, end=end)
    section = next(s for s in overview.sections if s.key == "channels")
    assert section.status == "ok" and section.table is not None
    assert [c.key for c in section.table.columns] == [
        "channel", "added", "kept_30d", "cost_fen", "cost_per_kept_fen", "roi",
    ]  # fmt: skip
    rows = {row["channel"]: row for row in section.table.rows}
    channels = {c.name: c for c in Channel.objects.filter(brand=brand)}
    assert set(rows) == set(channels)  # one row per scenario channel, plus referral
    specs = {c.key: c for c in scenario.channels}

    for name, row in rows.items():
        channel = channels[name]
        sim = result.channels[channel.code]
        # Added: the contacts whose first touch was the channel, as the model added them.
        adds = ContactAdd.objects.filter(brand=brand, channel=channel, is_first_touch=True)
        assert row["added"] == adds.count() == sim.adds, name
        # Kept after 30 days: a 12-day run is shorter than 30 days, so every deletion counts.
        customers = list(adds.values_list("customer_id", flat=True))
        deleted = (
            Event.objects.filter(brand=brand, type="contact.deleted", customer_id__in=customers)
            .values("customer_id")
            .distinct()
            .count()
        )
        assert row["kept_30d"] == sim.adds - sim.deletions == row["added"] - deleted, name
        # Cost: the channel's reach and add prices (the scenario's) times what was reached
        # and added, plus its CPS share of the first orders' amounts.
        spec = specs.get(channel.code)
        reached = sum(ReachRecord.objects.filter(channel=channel).values_list("count", flat=True))
        assert reached == sim.reach, name
        paid = list(Order.objects.filter(brand=brand, customer_id__in=customers))
        gmv = sum(o.amount_fen - o.refunded_fen for o in paid)
        cps = spec.cps_share if spec is not None else 0.0
        expected = (
            0
            if spec is None
            else reached * spec.cost_per_reach_fen
            + sim.adds * spec.cost_per_add_fen
            + gmv * round(cps * 10000) // 10000
        )
        assert row["cost_fen"] == expected, name
        # The model pays CPS on the first order's amount; the report on what was kept after
        # refunds (in fen, rounded down). Twelve days hold no repeat order (the shortest usage
        # cycle is weeks), so the two differ by the CPS share of the refunds alone.
        refunded = sum(o.refunded_fen for o in paid)
        assert 0 <= sim.cost_fen - cps * refunded - row["cost_fen"] < 1, name
        assert row["cost_per_kept_fen"] == (
            round(expected / row["kept_30d"]) if row["kept_30d"] else None
        ), name
    # Together: every add and deletion of the run, and the model's own acquisition cost.
    assert sum(r["added"] for r in rows.values()) == result.outcome.adds
    assert sum(r["added"] - r["kept_30d"] for r in rows.values()) == result.outcome.deletions
    # Cheapest kept contact first; channels that kept nobody last.
    ranked = [r["cost_per_kept_fen"] for r in section.table.rows]
    assert ranked == sorted(ranked, key=lambda v: (v is None, v or 0))
    assert sum(r["cost_fen"] for r in rows.values()) > 0
    assert rows[channels_by_code(brand)["xhs_koc"]]["added"] > 0


def channels_by_code(brand: Brand) -> dict[str, str]:
    return dict(Channel.objects.filter(brand=brand).values_list("code", "name"))
