"""Running a scenario: the model steps a day, the SystemDriver applies the day to the real
system, and the outcome is summed up against the scenario's targets."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from yutang.core import clock, db
from yutang.core.errors import N_, ValidationFailed
from yutang.core.models import Brand, Staff
from yutang.core.permissions import Action, require
from yutang.core.services import create_brand
from yutang.simulator.driver import SystemDriver
from yutang.simulator.model import OFFER_FIRST_ORDER_WINDOW, DayActions, World
from yutang.simulator.scenario import Scenario, parse_scenario

GROUP_ID = "sim-group"
#: Segments, RFM, lifecycle stages and auto tags are recomputed weekly and on the last day.
SCORES_EVERY_DAYS = 7


@dataclass
class DayProgress:
    day: int
    days: int
    date: dt.date
    pool: int
    adds: int
    deletions: int
    orders: int
    gmv_fen: int


@dataclass
class Outcome:
    """The plan-vs-outcome numbers (definitions in docs/simulator.md)."""

    pool: int
    adds: int
    deletions: int
    monthly_deletion_rate: float
    first_order_rate: float
    repurchase_rate: float
    orders: int
    gmv_fen: int
    refund_fen: int
    cost_fen: int
    cost_per_kept_contact_fen: float
    referral_adds: int
    blocked_marketing: int
    target_pool: int
    target_gmv_fen: int


@dataclass
class ChannelOutcome:
    """One channel's part of the run (the public channels, then `referral`)."""

    reach: int
    adds: int
    deletions: int
    cost_fen: float  # reach, add and fixed costs, and CPS on first orders


@dataclass
class SimulationResult:
    scenario: Scenario
    outcome: Outcome
    series: dict[str, list[float]]
    dates: list[dt.date]
    brand_id: int | None
    customers_by_person: dict[int, int] = field(default_factory=dict)
    channels: dict[str, ChannelOutcome] = field(default_factory=dict)


def run_key(scenario: Scenario) -> str:
    return re.sub(r"[^a-z0-9]+", "-", scenario.name.lower()).strip("-")[:40] + f"-{scenario.seed}"


def simulate(
    *,
    scenario: Scenario,
    brand: Brand | None = None,
    drive: bool = True,
    progress: Callable[[DayProgress], None] | None = None,
) -> SimulationResult:
    """Run a scenario day by day. With `drive` (the default) every contact, event and order
    goes into the real system for `brand` (a new brand named after the scenario when not
    given); without it only the model runs (for what-if comparisons and the model bench)."""
    world = World(scenario)
    driver: SystemDriver | None = None
    if drive:
        # Same seed, same world: nothing this process did before (where its last claims of
        # a backlog stopped) may steer this run's claims.
        db.forget_row_state()
        if brand is None:
            brand = create_brand(
                name=f"{scenario.name} (simulated, seed {scenario.seed})",
                time_zone=scenario.time_zone,
                is_sample=True,
            )
        driver = SystemDriver(
            brand=brand,
            run_key=run_key(scenario),
            order_source=scenario.plan.order_source,
            channel_keys=world.channel_keys,
            scenario=scenario,
        )
        with clock.use_clock(
            clock.FrozenClock(dt.datetime.combine(scenario.start_date, dt.time(), tzinfo=dt.UTC))
        ):
            driver.prepare(stores=scenario.stores)
    dates = [scenario.start_date + dt.timedelta(days=d) for d in range(scenario.days)]
    simulated = clock.FrozenClock(
        dt.datetime.combine(scenario.start_date, dt.time(), tzinfo=dt.UTC)
    )
    with clock.use_clock(simulated):
        for day, date in enumerate(dates):
            if driver is None:
                actions = world.step(day)
            else:
                # Journeys and the outbox run up to today's delivery pass; what was delivered
                # is what people receive today (the model's touch plan is not applied).
                intent = world.plan_intent(day) if scenario.touches_through_outbox else None
                sent = driver.advance(date, simulated, world.n, intent=intent)
                actions = world.step(
                    day, delivered=(sent.marketing, sent.service, sent.blocked_marketing)
                )
                with driver.day(date, simulated):
                    apply_day(driver, world, actions, date)
                if (day + 1) % SCORES_EVERY_DAYS == 0 or day + 1 == len(dates):
                    driver.refresh_scores()
            if progress is not None:
                s = world.tally.series
                progress(
                    DayProgress(
                        day=day + 1,
                        days=scenario.days,
                        date=date,
                        pool=int(s["pool"][day]),
                        adds=int(s["adds"][: day + 1].sum()),
                        deletions=int(s["deletions"][: day + 1].sum()),
                        orders=int(s["orders"][: day + 1].sum()),
                        gmv_fen=int(s["gmv_fen"][: day + 1].sum()),
                    )
                )
    refs = world.col("customer_ref")
    return SimulationResult(
        scenario=scenario,
        outcome=outcome_of(world),
        series={k: v.tolist() for k, v in world.tally.series.items()},
        dates=dates,
        brand_id=brand.pk if brand is not None else None,
        customers_by_person={i: int(r) for i, r in enumerate(refs.tolist()) if r},
        channels=channels_of(world),
    )


def channels_of(world: World) -> dict[str, ChannelOutcome]:
    keys = world.channel_keys
    channel = world.col("channel")
    adds = np.bincount(channel, minlength=len(keys))
    deleted = np.bincount(channel[world.col("deleted_day") >= 0], minlength=len(keys))
    return {
        key: ChannelOutcome(
            reach=int(world.channel_reach[k]),
            adds=int(adds[k]),
            deletions=int(deleted[k]),
            cost_fen=float(world.channel_cost_fen[k]),
        )
        for k, key in enumerate(keys)
    }


def apply_day(driver: SystemDriver, world: World, a: DayActions, date: dt.date) -> None:
    """Hand one day of actions to the driver, in the order they make sense in the log."""
    refs = world._columns["customer_ref"]
    driver.record_reach(date=date, reach=a.reach)
    if len(a.add_idx):
        ids = driver.add_contacts(
            people=a.add_idx.tolist(),
            channels=a.add_channel.tolist(),
            ats=[driver.at(date, m) for m in a.add_minute.tolist()],
        )
        refs[a.add_idx] = ids
    add_minute = dict(zip(a.add_idx.tolist(), a.add_minute.tolist(), strict=True))
    for person in a.group_join_idx.tolist():
        minute = min(1439, add_minute.get(person, 0) + 1)
        driver.join_group(
            customer_id=int(refs[person]), person=person, at=driver.at(date, minute), group=GROUP_ID
        )
    for person, marketing, service, minute in zip(
        a.touch_idx.tolist(),
        a.touch_marketing.tolist(),
        a.touch_service.tolist(),
        a.touch_minute.tolist(),
        strict=True,
    ):
        driver.record_touches(
            customer_id=int(refs[person]),
            person=person,
            at=driver.at(date, minute),
            marketing=marketing,
            service=service,
        )
    for person, count, minute in zip(
        a.click_idx.tolist(), a.click_count.tolist(), a.click_minute.tolist(), strict=True
    ):
        driver.click_link(
            customer_id=int(refs[person]), person=person, at=driver.at(date, minute), count=count
        )
    for person, count, minute in zip(
        a.reply_idx.tolist(), a.reply_count.tolist(), a.reply_minute.tolist(), strict=True
    ):
        driver.reply(
            customer_id=int(refs[person]), person=person, at=driver.at(date, minute), count=count
        )
    stores = world.store_codes
    store_col = world._columns["store"]
    for person, seq, amount, discount, minute in zip(
        a.order_idx.tolist(),
        a.order_seq.tolist(),
        a.order_amount_fen.tolist(),
        a.order_discount_fen.tolist(),
        a.order_minute.tolist(),
        strict=True,
    ):
        store = int(store_col[person])
        driver.place_order(
            customer_id=int(refs[person]),
            person=person,
            seq=seq,
            at=driver.at(date, max(minute, add_minute.get(person, 0))),
            amount_fen=amount,
            discount_fen=discount,
            store_code=stores[store] if stores and store >= 0 else None,
        )
    for person, seq, amount in zip(
        a.refund_idx.tolist(), a.refund_seq.tolist(), a.refund_amount_fen.tolist(), strict=True
    ):
        driver.refund(person=person, seq=seq, at=driver.at(date, 1439), amount_fen=amount)
    for person, minute in zip(a.delete_idx.tolist(), a.delete_minute.tolist(), strict=True):
        driver.delete_contact(
            customer_id=int(refs[person]), person=person, at=driver.at(date, minute)
        )
    for person in a.group_leave_idx.tolist():
        driver.leave_group(
            customer_id=int(refs[person]), person=person, at=driver.at(date, 1439), group=GROUP_ID
        )


def outcome_of(world: World) -> Outcome:
    s = world.tally.series
    scenario = world.s
    days = scenario.days
    pool_end = int(s["pool"][-1])
    # Monthly deletion rate (seed 003's 删除率): per 30-day period, deletions over the pool at
    # the period's start plus the period's adds; averaged over the periods.
    rates = []
    for start in range(0, days, 30):
        end = min(days, start + 30)
        if end - start < 30 and start > 0:
            break
        before = float(s["pool"][start - 1]) if start > 0 else 0.0
        exposed = before + float(s["adds"][start:end].sum())
        if exposed > 0:
            rates.append(float(s["deletions"][start:end].sum()) / exposed)
    orders_col = world.col("orders")
    buyers = int((orders_col >= 1).sum())
    cost = (
        s["acquisition_cost_fen"].sum()
        + s["reward_cost_fen"].sum()
        + s["carrier_cost_fen"].sum()
        + s["discount_fen"].sum()
    )
    return Outcome(
        pool=pool_end,
        adds=int(s["adds"].sum()),
        deletions=int(s["deletions"].sum()),
        monthly_deletion_rate=float(np.mean(rates)) if rates else 0.0,
        first_order_rate=(
            world.first_order_within_window / world.adds_eligible_for_window
            if world.adds_eligible_for_window
            else 0.0
        ),
        repurchase_rate=(int((orders_col >= 2).sum()) / buyers) if buyers else 0.0,
        orders=int(s["orders"].sum()),
        gmv_fen=int(s["gmv_fen"].sum()),
        refund_fen=int(s["refund_fen"].sum()),
        cost_fen=round(cost),
        cost_per_kept_contact_fen=float(cost / pool_end) if pool_end else 0.0,
        referral_adds=int(s["referral_adds"].sum()),
        blocked_marketing=int(s["blocked_marketing"].sum()),
        target_pool=round(scenario.targets.pool * scenario.scale),
        target_gmv_fen=round(scenario.targets.gmv_fen * scenario.scale),
    )


#: A what-if runs in the request; bigger worlds belong on the command line.
WHATIF_MAX_CONTACTS = 100_000


def expected_adds(scenario: Scenario) -> float:
    """Contacts the public channels are expected to add over the run (before referrals)."""
    daily = sum(c.reach_per_day * c.add_rate() for c in scenario.channels) * scenario.scale
    return daily * scenario.days


def whatif(
    *,
    actor: Staff,
    scenario_yaml: str,
    compare_yaml: str | None = None,
    days: int | None = None,
    seed: int | None = None,
    scale: float | None = None,
) -> list[SimulationResult]:
    """Run one scenario, or two on the same seed, through the model only (nothing is
    written). Errors name the scenario (`scenario` or `compare`) and the path in it."""
    require(actor, Action.SIMULATION_RUN)
    scenarios = []
    for field_name, text in (("scenario", scenario_yaml), ("compare", compare_yaml)):
        if text is None:
            continue
        try:
            parsed = parse_scenario(text, source=field_name)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, field=f"{field_name}.{exc.field}") from None
        scenarios.append(parsed)
    run_seed = seed if seed is not None else scenarios[0].seed
    scenarios = [s.with_overrides(days=days, seed=run_seed, scale=scale) for s in scenarios]
    for scenario in scenarios:
        if expected_adds(scenario) > WHATIF_MAX_CONTACTS:
            raise ValidationFailed(
                N_(
                    "{name} would add about {expected_adds:,.0f} contacts; a what-if takes at "
                    "most {WHATIF_MAX_CONTACTS:,}: lower scale or days, or run "
                    "`yutang simulate --model-only`."
                ),
                params={
                    "name": scenario.name,
                    "expected_adds": expected_adds(scenario),
                    "WHATIF_MAX_CONTACTS": WHATIF_MAX_CONTACTS,
                },
                field="scale",
            )
    return [simulate(scenario=s, drive=False) for s in scenarios]


__all__ = ["OFFER_FIRST_ORDER_WINDOW", "DayProgress", "Outcome", "SimulationResult", "simulate"]
