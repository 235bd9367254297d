"""The agent-based model of a brand's audience and private-domain contacts.

Pure NumPy, vectorised per day over people; it knows nothing of the database. `World.step`
advances one simulated day and returns what people did (`DayActions`); the SystemDriver
turns those actions into calls on the real services. Every coefficient comes from the
scenario (`Behaviour`, `Plan`, `Audience`, `Channel`) and is explained in docs/simulator.md.

Deterministic for a given seed: three NumPy generators spawned from one SeedSequence
(arrivals, traits, behaviour), so two plans run on the same seed meet the same public
audience, and nothing depends on dict order or on the wall clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from yutang.simulator.scenario import LogNormal, Scenario

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

REFERRAL = "referral"
OFFER_FIRST_ORDER_WINDOW = 3  # days: seed 003 asks for the first order "within three days"
EARLY_DELETION_DAYS = 3  # seed 003: bounty-card adds may delete "the next day"


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def quiet_share(send_from: str, send_to: str, quiet_start: str, quiet_end: str) -> float:
    """The share of a uniform send window [send_from, send_to) inside quiet hours."""
    start, end = _minutes(send_from), _minutes(send_to)
    if end <= start:
        end += 24 * 60
    q_start, q_end = _minutes(quiet_start), _minutes(quiet_end)
    if q_end <= q_start:
        q_end += 24 * 60
    inside = 0
    for shift in (-24 * 60, 0, 24 * 60):
        inside += max(0, min(end, q_end + shift) - max(start, q_start + shift))
    return min(1.0, inside / max(1, end - start))


@dataclass
class DayActions:
    """What people did on one day, as parallel arrays of person indices and values.
    `minute_*` is the local minute of the day (0–1439) at which each action happened."""

    day: int
    add_idx: IntArray
    add_channel: IntArray
    add_minute: IntArray
    delete_idx: IntArray
    delete_minute: IntArray
    group_join_idx: IntArray
    group_leave_idx: IntArray
    touch_idx: IntArray
    touch_marketing: IntArray
    touch_service: IntArray
    touch_minute: IntArray
    click_idx: IntArray
    click_count: IntArray
    click_minute: IntArray
    reply_idx: IntArray
    reply_count: IntArray
    reply_minute: IntArray
    order_idx: IntArray
    order_seq: IntArray
    order_amount_fen: IntArray
    order_discount_fen: IntArray
    order_minute: IntArray
    refund_idx: IntArray
    refund_seq: IntArray
    refund_amount_fen: IntArray
    #: People each public channel reached today (its reach record), in channel order.
    reach: list[int] = field(default_factory=list)


@dataclass
class Tally:
    """Daily series the model keeps of itself; the report and the tests read them."""

    days: int
    series: dict[str, FloatArray] = field(default_factory=dict)

    NAMES = (
        "pool",
        "adds",
        "deletions",
        "early_deletions",
        "first_orders",
        "repeat_orders",
        "orders",
        "gmv_fen",
        "refunds",
        "refund_fen",
        "discount_fen",
        "marketing_touches",
        "service_touches",
        "group_posts_received",
        "clicks",
        "replies",
        "group_members",
        "group_joins",
        "group_leaves",
        "referral_adds",
        "acquisition_cost_fen",
        "reward_cost_fen",
        "carrier_cost_fen",
        "blocked_marketing",
    )

    def __post_init__(self) -> None:
        for name in self.NAMES:
            self.series[name] = np.zeros(self.days, dtype=np.float64)

    def add(self, name: str, day: int, value: float) -> None:
        self.series[name][day] += value


class World:
    """All people who ever added the brand, as columns; grows as people arrive."""

    def __init__(self, scenario: Scenario):
        self.s = scenario
        seeds = np.random.SeedSequence(scenario.seed).spawn(3)
        self.rng_arrivals = np.random.Generator(np.random.PCG64(seeds[0]))
        self.rng_traits = np.random.Generator(np.random.PCG64(seeds[1]))
        self.rng = np.random.Generator(np.random.PCG64(seeds[2]))
        self.channels = [*scenario.channels]
        self.channel_keys = [c.key for c in self.channels] + [REFERRAL]
        b = scenario.behaviour
        # The referral channel: a friend's recommendation carries trust and intent.
        self._intent = np.array([c.intent for c in self.channels] + [b.referral_intent])
        self._initial_trust = np.array(
            [c.initial_trust for c in self.channels] + [b.referral_initial_trust]
        )
        self._early_deletion = np.array([c.early_deletion for c in self.channels] + [0.02])
        self.store_codes = list(scenario.stores)
        self.n = 0
        self._capacity = 0
        self._reach: list[int] = []
        #: Per channel (channel_keys' order, `referral` last), over the whole run: people
        #: reached and the channel's acquisition cost (reach, adds, fixed, CPS).
        self.channel_reach = np.zeros(len(self.channel_keys), dtype=np.int64)
        self.channel_cost_fen = np.zeros(len(self.channel_keys), dtype=np.float64)
        self._columns: dict[str, np.ndarray] = {}
        self._grow(1024)
        self.tally = Tally(scenario.days)
        self.pending_referrals: dict[int, list[int]] = {}
        self.first_order_within_window = 0
        self.adds_eligible_for_window = 0
        plan = scenario.plan
        self.quiet_share = (
            0.0
            if plan.policy.enforce
            else quiet_share(
                plan.send_from, plan.send_to, plan.policy.quiet_start, plan.policy.quiet_end
            )
        )
        self._send_from = _minutes(plan.send_from)
        self._send_span = max(1, (_minutes(plan.send_to) - self._send_from) % (24 * 60))

    # --- columns --------------------------------------------------------------------------

    _SPEC: dict[str, tuple[type, float]] = {
        "channel": (np.int64, -1),
        "store": (np.int64, -1),
        "added_day": (np.int64, -1),
        "active": (np.bool_, 0),
        "deleted_day": (np.int64, -1),
        "propensity": (np.float64, 0),
        "price_sensitivity": (np.float64, 0),
        "cycle": (np.float64, 0),
        "tolerance": (np.float64, 0),
        "referral": (np.float64, 0),
        "hour": (np.float64, 0),
        "order_value": (np.float64, 0),
        "trust": (np.float64, 0),
        "in_group": (np.bool_, 0),
        "orders": (np.int64, 0),
        "next_due": (np.int64, -1),
        "reminded_day": (np.int64, -10),
        "referred_by": (np.int64, -1),
        "customer_ref": (np.int64, 0),
    }

    def _grow(self, capacity: int) -> None:
        for name, (dtype, fill) in self._SPEC.items():
            column: np.ndarray = np.full(capacity, fill, dtype=dtype)
            if name in self._columns:
                column[: self._capacity] = self._columns[name][: self._capacity]
            self._columns[name] = column
        for name in ("annoy", "marketing", "useful"):
            ring = np.zeros((capacity, 7), dtype=np.float32)
            if name in self._columns:
                ring[: self._capacity] = self._columns[name][: self._capacity]
            self._columns[name] = ring
        self._capacity = capacity

    def col(self, name: str) -> np.ndarray:
        return self._columns[name][: self.n]

    # --- people ---------------------------------------------------------------------------

    def _draw(self, dist: LogNormal | object, size: int) -> FloatArray:
        rng = self.rng_traits
        if isinstance(dist, LogNormal):
            return np.asarray(dist.median * np.exp(rng.normal(0.0, dist.sigma, size)))
        a, b = dist.a, dist.b  # type: ignore[attr-defined]
        return np.asarray(rng.beta(a, b, size))

    def _arrive(self, day: int, channels: IntArray, referred_by: IntArray) -> IntArray:
        count = len(channels)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        while self.n + count > self._capacity:
            self._grow(self._capacity * 2)
        idx = np.arange(self.n, self.n + count)
        self.n += count
        a = self.s.audience
        c = self._columns
        c["channel"][idx] = channels
        c["added_day"][idx] = day
        c["active"][idx] = True
        c["propensity"][idx] = self._draw(a.purchase_propensity, count)
        c["price_sensitivity"][idx] = self._draw(a.price_sensitivity, count)
        c["cycle"][idx] = np.maximum(1.0, self._draw(a.usage_cycle_days, count))
        c["tolerance"][idx] = np.maximum(0.25, self._draw(a.marketing_tolerance_per_week, count))
        c["referral"][idx] = self._draw(a.referral_propensity, count)
        c["hour"][idx] = np.mod(
            self.rng_traits.normal(a.active_hours.peak, a.active_hours.spread, count), 24.0
        )
        c["order_value"][idx] = np.maximum(100.0, self._draw(a.order_value_fen, count))
        c["trust"][idx] = self._initial_trust[channels]
        c["referred_by"][idx] = referred_by
        if self.store_codes:
            stores = np.full(count, -1, dtype=np.int64)
            for k, channel in enumerate(self.channels):
                mine = np.flatnonzero(channels == k)
                allowed = channel.stores or self.store_codes
                codes = [self.store_codes.index(s) for s in allowed]
                stores[mine] = self.rng_traits.choice(codes, size=len(mine))
            referred = np.flatnonzero(channels == len(self.channels))
            stores[referred] = np.where(
                referred_by[referred] >= 0, c["store"][np.maximum(referred_by[referred], 0)], 0
            )
            c["store"][idx] = stores
        return idx

    def _minutes_of(self, idx: IntArray) -> IntArray:
        """Local minute of an action: around each person's preferred hour."""
        hours = self._columns["hour"][idx] + self.rng.normal(0.0, 1.0, len(idx))
        return np.asarray(np.clip(np.mod(hours, 24.0) * 60, 0, 1439).astype(np.int64))

    # --- one day --------------------------------------------------------------------------

    def step(self, day: int, delivered: tuple[IntArray, IntArray, int] | None = None) -> DayActions:
        """One day. `delivered` (when the SystemDriver drives the real system) is what the
        outbox delivered per person since the previous day's pass — (marketing, service)
        arrays indexed by person, and the marketing messages the gate blocked — and replaces
        the stand-in touch plan below: journeys and the policy gate decide the touches."""
        s, plan, b = self.s, self.s.plan, self.s.behaviour
        t = self.tally
        rng = self.rng
        c = self._columns
        ring = day % 7

        # 1. Arrivals from each public channel, then friends referred earlier.
        arrivals: list[IntArray] = []
        self._reach = []
        for k, channel in enumerate(self.channels):
            reached = self.rng_arrivals.poisson(channel.reach_per_day * s.scale)
            self._reach.append(int(reached))
            added = self.rng_arrivals.binomial(reached, channel.add_rate())
            arrivals.append(np.full(added, k, dtype=np.int64))
            cost = (
                reached * channel.cost_per_reach_fen
                + added * channel.cost_per_add_fen
                + channel.fixed_cost_per_day_fen * s.scale
            )
            t.add("acquisition_cost_fen", day, cost)
            self.channel_reach[k] += reached
            self.channel_cost_fen[k] += cost
        referrers = np.array(self.pending_referrals.pop(day, []), dtype=np.int64)
        channels = np.concatenate([*arrivals, np.full(len(referrers), len(self.channels))])
        referred_by = np.concatenate(
            [np.full(len(channels) - len(referrers), -1, dtype=np.int64), referrers]
        )
        new = self._arrive(day, channels.astype(np.int64), referred_by)
        t.add("adds", day, len(new))
        t.add("referral_adds", day, len(referrers))
        add_minute = self._minutes_of(new)
        joins = new[rng.random(len(new)) < plan.groups.invite_accept]
        c["in_group"][joins] = True

        # Everyone held before today is touched today; today's adds get the welcome only.
        held = np.flatnonzero(c["active"][: self.n] & (c["added_day"][: self.n] < day))

        # 2. The brand's touch plan (the stand-in for journeys + the policy gate), or what
        # the real outbox delivered when driven.
        if delivered is not None:
            sent_marketing, sent_service, blocked_today = delivered
            marketing = np.zeros(len(held), dtype=np.int64)
            service = np.zeros(len(held), dtype=np.int64)
            known = held[held < len(sent_marketing)]
            marketing[: len(known)] = sent_marketing[known]
            service[: len(known)] = sent_service[known]
            t.add("blocked_marketing", day, blocked_today)
            # A delivered marketing message carries the plan's weekly coupon on its day.
            coupon_day = (marketing > 0) & (
                rng.random(len(held)) < min(1.0, plan.coupons.per_week / 7)
            )
            due = c["next_due"][held] == day
            c["reminded_day"][held[due & (service > 0)]] = day
        else:
            marketing, service, coupon_day = self._plan_touches(held, day, ring)
        total = marketing + service
        quiet = (
            rng.binomial(total, self.quiet_share)
            if self.quiet_share > 0 and delivered is None
            else 0 * total
        )
        # Night owls do not mind a late message as much: no extra weight for them.
        night_owl = self._in_quiet_hours(c["hour"][held])
        quiet_extra = np.where(night_owl, 0, quiet) * max(0.0, b.quiet_hour_weight - 1)
        in_group = c["in_group"][held]
        posts = rng.poisson(plan.groups.posts_per_day, len(held)) * in_group
        group_marketing = rng.binomial(posts, plan.groups.marketing_share)
        annoy = marketing + quiet_extra + b.group_touch_weight * group_marketing
        c["annoy"][held, ring] = annoy
        c["marketing"][held, ring] = marketing
        c["useful"][held, ring] = service + b.group_touch_weight * (posts - group_marketing)
        t.add("marketing_touches", day, int(marketing.sum()))
        t.add("service_touches", day, int(service.sum()))
        t.add("group_posts_received", day, int(posts.sum()))
        return self._behave(day, new, joins, add_minute, held, marketing, service,
                            group_marketing, coupon_day)  # fmt: skip

    def plan_intent(self, day: int) -> tuple[IntArray, IntArray, IntArray]:
        """Driven with `touches_through_outbox`: the touches the plan means to send today to
        each contact held before today — (people, marketing, service) — before any cap; the
        outbox and its gate decide what is delivered."""
        c, plan = self._columns, self.s.plan
        held = np.flatnonzero(c["active"][: self.n] & (c["added_day"][: self.n] < day))
        n_touch = self.rng.poisson(plan.touches_per_day, len(held))
        marketing = self.rng.binomial(n_touch, plan.marketing_share)
        keep = n_touch > 0
        return held[keep], marketing[keep], (n_touch - marketing)[keep]

    def _plan_touches(
        self, held: IntArray, day: int, ring: int
    ) -> tuple[IntArray, IntArray, BoolArray]:
        """The model-only stand-in for journeys + the policy gate: the plan's touches, capped
        as the gate's defaults would (1 marketing touch a day, 3 a week)."""
        plan, t, rng, c = self.s.plan, self.tally, self.rng, self._columns
        n_touch = rng.poisson(plan.touches_per_day, len(held))
        marketing = rng.binomial(n_touch, plan.marketing_share)
        service = n_touch - marketing
        if plan.coupons.per_week > 0:
            coupon_day = rng.random(len(held)) < plan.coupons.per_week / 7
            marketing = marketing + coupon_day
        else:
            coupon_day = np.zeros(len(held), dtype=bool)
        due = c["next_due"][held] == day
        if plan.repurchase_reminders:
            service = service + due
            c["reminded_day"][held[due]] = day
        if plan.policy.enforce:
            week_so_far = c["marketing"][held].sum(axis=1) - c["marketing"][held, ring]
            allowed = np.clip(
                np.minimum(
                    plan.policy.marketing_per_day, plan.policy.marketing_per_week - week_so_far
                ),
                0,
                None,
            ).astype(np.int64)
            blocked = np.maximum(0, marketing - allowed)
            t.add("blocked_marketing", day, int(blocked.sum()))
            coupon_day = coupon_day & (marketing <= allowed)
            marketing = marketing - blocked
        return marketing, service, coupon_day

    def _behave(
        self,
        day: int,
        new: IntArray,
        joins: IntArray,
        add_minute: IntArray,
        held: IntArray,
        marketing: IntArray,
        service: IntArray,
        group_marketing: IntArray,
        coupon_day: BoolArray,
    ) -> DayActions:
        s, plan, b = self.s, self.s.plan, self.s.behaviour
        t, rng, c = self.tally, self.rng, self._columns
        ring = day % 7
        total = marketing + service

        # 3. Reading, clicking, replying.
        trust = c["trust"][held]
        reads = rng.binomial(total, b.read_rate)
        read_share = np.divide(reads, np.maximum(total, 1))
        clicks = rng.binomial(
            marketing + group_marketing,
            np.clip(b.click_rate * (0.5 + trust) * np.maximum(read_share, 0.0), 0, 1),
        )
        replies = rng.binomial(service, np.clip(b.reply_rate * (0.5 + trust), 0, 1))
        t.add("clicks", day, int(clicks.sum()))
        t.add("replies", day, int(replies.sum()))

        # 4. Trust: useful content builds it, touches beyond tolerance wear it down.
        annoy_week = c["annoy"][held].sum(axis=1)
        useful_week = c["useful"][held].sum(axis=1)
        tolerance = c["tolerance"][held]
        excess = np.maximum(0.0, annoy_week - tolerance) / tolerance
        useful_today = c["useful"][held, ring]
        trust = (
            trust
            + b.trust_gain_useful * useful_today * (1 - trust)
            - b.trust_loss_excess * np.minimum(excess, 10) * trust
        )
        c["trust"][held] = np.clip(trust, 0, 1)

        # 5. Deletion (删除): a hazard rising with touches beyond tolerance and with the
        # marketing share, falling with useful content, service and trust.
        marketing_week = c["marketing"][held].sum(axis=1)
        touches_week = marketing_week + c["useful"][held].sum(axis=1)
        share = np.divide(marketing_week, np.maximum(touches_week, 1e-9))
        log_hazard = (
            np.log(b.base_deletion_per_day)
            + b.excess_touch_hazard * np.minimum(excess, 10)
            + b.marketing_share_hazard * np.maximum(0.0, share - 0.2)
            - b.useful_content_relief * np.minimum(useful_week, 7) / 7
            - b.service_relief * (plan.service_quality - 0.5)
            - b.trust_relief * (c["trust"][held] - 0.5)
        )
        p_delete = 1 - np.exp(-np.minimum(np.exp(log_hazard), 5.0))
        age = day - c["added_day"][held]
        early = self._early_deletion[c["channel"][held]]
        p_early = np.where(age <= EARLY_DELETION_DAYS, 1 - (1 - early) ** (1 / 3), 0.0)
        roll = rng.random(len(held))
        deleted_early = roll < p_early
        deleted = deleted_early | (roll < p_early + p_delete * (1 - p_early))
        gone = held[deleted]
        c["active"][gone] = False
        c["deleted_day"][gone] = day
        t.add("deletions", day, len(gone))
        t.add("early_deletions", day, int(deleted_early.sum()))
        leaving = gone[c["in_group"][gone]]

        # 6. Orders: first orders boosted by the offer right after adding, repurchases on the
        # usage cycle when reminded and trusted; some buy elsewhere and reset their cycle.
        buyers_pool = np.concatenate([held[~deleted], new])
        bp = buyers_pool
        trust_b = c["trust"][bp]
        first = c["orders"][bp] == 0
        since_add = day - c["added_day"][bp]
        price = c["price_sensitivity"][bp]
        offer = plan.first_order_offer
        in_offer = np.zeros(len(bp), dtype=bool)
        offer_boost = np.ones(len(bp))
        if offer is not None and offer.discount_share > 0:
            in_offer = first & (since_add < offer.within_days)
            offer_boost = np.where(
                in_offer, 1 + b.offer_uplift * price * offer.discount_share / 0.2, 1.0
            )
        clicked = np.zeros(len(bp), dtype=bool)
        clicked[: len(held[~deleted])] = clicks[~deleted] > 0
        coupon = np.zeros(len(bp), dtype=bool)
        coupon[: len(held[~deleted])] = coupon_day[~deleted]
        coupon_boost = np.where(coupon, 1 + b.coupon_uplift * price, 1.0)
        click_boost = np.where(clicked, 1 + b.click_uplift, 1.0)
        intent = self._intent[c["channel"][bp]]
        p_first = (
            b.first_order_per_day
            * c["propensity"][bp]
            / 0.25
            * intent
            * (0.5 + trust_b)
            * offer_boost
            * coupon_boost
            * click_boost
        )
        is_due = (~first) & (c["next_due"][bp] <= day)
        reminded = (day - c["reminded_day"][bp]) <= 3
        p_repeat = (
            b.repurchase_per_day
            * (0.5 + trust_b)
            * np.where(reminded, 1 + b.reminder_uplift, 1.0)
            * coupon_boost
            * click_boost
        )
        roll = rng.random(len(bp))
        p = np.where(first, p_first, np.where(is_due, p_repeat, 0.0))
        buys = roll < np.clip(p, 0, 0.95)
        elsewhere = is_due & ~buys & (rng.random(len(bp)) < b.buy_elsewhere_per_day)
        cycle_jitter = np.exp(rng.normal(0.0, 0.2, len(bp)))
        c["next_due"][bp[elsewhere]] = day + np.round(
            c["cycle"][bp[elsewhere]] * cycle_jitter[elsewhere]
        ).astype(np.int64)
        o = bp[buys]
        first_buy = first[buys]
        base_value = c["order_value"][o] * np.exp(rng.normal(0.0, 0.15, len(o)))
        discount_share = np.where(
            in_offer[buys],
            offer.discount_share if offer is not None else 0.0,
            np.where(coupon[buys], plan.coupons.discount_share, 0.0),
        )
        amount = np.maximum(100, np.round(base_value * (1 - discount_share))).astype(np.int64)
        discount = np.round(base_value * discount_share).astype(np.int64)
        c["orders"][o] += 1
        seq = c["orders"][o].copy()
        c["next_due"][o] = day + np.round(c["cycle"][o] * cycle_jitter[buys]).astype(np.int64)
        satisfaction = (
            0.6 * plan.product_quality
            + 0.4 * plan.service_quality
            + rng.normal(0.0, 0.15, len(o))
            + 0.2 * (c["trust"][o] - 0.5)
        )
        c["trust"][o] = np.clip(c["trust"][o] + b.trust_gain_order * (satisfaction - 0.5) * 2, 0, 1)
        t.add("orders", day, len(o))
        t.add("first_orders", day, int(first_buy.sum()))
        t.add("repeat_orders", day, int((~first_buy).sum()))
        t.add("gmv_fen", day, int(amount.sum()))
        t.add("discount_fen", day, int(discount.sum()))
        window = (
            first_buy
            & (since_add[buys] < OFFER_FIRST_ORDER_WINDOW)
            & (c["added_day"][o] + OFFER_FIRST_ORDER_WINDOW <= s.days)  # as the denominator
        )
        self.first_order_within_window += int(window.sum())
        ch = c["channel"][o]
        cps = np.array([ch_.cps_share for ch_ in self.channels] + [0.0])[ch]
        t.add("acquisition_cost_fen", day, float((cps * amount * first_buy).sum()))
        np.add.at(self.channel_cost_fen, ch, cps * amount * first_buy)
        # Referral rewards are paid on the referred friend's first order.
        rewarded = o[first_buy & (c["referred_by"][o] >= 0)]
        t.add("reward_cost_fen", day, len(rewarded) * plan.referral_reward_fen)

        # Refunds: more likely after a disappointing order.
        p_refund = np.clip(plan.refund_rate * (1 + (0.5 - satisfaction)), 0, 1)
        refunded = rng.random(len(o)) < p_refund
        t.add("refunds", day, int(refunded.sum()))
        t.add("refund_fen", day, int(amount[refunded].sum()))

        # 7. Referrals: delighted buyers refer friends, more so when rewarded.
        delighted = o[(satisfaction > b.delight_threshold) & ~refunded]
        reward = 1 + (b.referral_reward_uplift if plan.referral_reward_fen > 0 else 0.0)
        refers = delighted[
            rng.random(len(delighted)) < np.clip(c["referral"][delighted] * reward, 0, 1)
        ]
        lags = rng.integers(1, 8, len(refers))
        for person, lag in zip(refers.tolist(), lags.tolist(), strict=True):
            if day + lag < s.days:
                self.pending_referrals.setdefault(day + lag, []).append(person)

        # 8. Groups: members leave when the group is too much marketing or too noisy.
        members = held[~deleted][c["in_group"][held[~deleted]]]
        p_leave = (
            b.group_leave_per_day
            * np.exp(b.marketing_share_hazard * max(0.0, plan.groups.marketing_share - 0.2))
            * (1 + plan.groups.posts_per_day / 10)
        )
        leave = members[rng.random(len(members)) < p_leave]
        group_leave = np.concatenate([leaving, leave])
        c["in_group"][group_leave] = False
        t.add("group_joins", day, len(joins))
        t.add("group_leaves", day, len(group_leave))
        t.add("group_members", day, int(c["in_group"][: self.n].sum()))
        pool = int(c["active"][: self.n].sum())
        t.add("pool", day, pool)
        t.add("carrier_cost_fen", day, pool * plan.cost_per_contact_month_fen / 30)
        if day + OFFER_FIRST_ORDER_WINDOW <= s.days:
            self.adds_eligible_for_window += len(new)

        touched = held[(marketing + service) > 0] if s.record_touches else held[:0]
        touched_mask = (marketing + service) > 0
        return DayActions(
            day=day,
            add_idx=new,
            add_channel=c["channel"][new].copy(),
            add_minute=add_minute,
            delete_idx=gone,
            delete_minute=self._minutes_of(gone),
            group_join_idx=joins,
            group_leave_idx=group_leave,
            touch_idx=touched,
            touch_marketing=marketing[touched_mask] if s.record_touches else held[:0],
            touch_service=service[touched_mask] if s.record_touches else held[:0],
            touch_minute=(
                (self._send_from + rng.integers(0, self._send_span, len(touched))) % (24 * 60)
                if s.record_touches
                else held[:0]
            ),
            click_idx=held[clicks > 0],
            click_count=clicks[clicks > 0],
            click_minute=self._minutes_of(held[clicks > 0]),
            reply_idx=held[replies > 0],
            reply_count=replies[replies > 0],
            reply_minute=self._minutes_of(held[replies > 0]),
            order_idx=o,
            order_seq=seq,
            order_amount_fen=amount,
            order_discount_fen=discount,
            order_minute=self._minutes_of(o),
            refund_idx=o[refunded],
            refund_seq=seq[refunded],
            refund_amount_fen=amount[refunded],
            reach=list(self._reach),
        )

    def _in_quiet_hours(self, hours: FloatArray) -> BoolArray:
        policy = self.s.plan.policy
        start, end = _minutes(policy.quiet_start) / 60, _minutes(policy.quiet_end) / 60
        if start > end:
            return np.asarray((hours >= start) | (hours < end))
        return np.asarray((hours >= start) & (hours < end))
