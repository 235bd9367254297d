"""The policy gate: the one place that decides whether a message may reach a customer now.

Rules run in this order and the first that stops a message is recorded on it:

1. ``carrier``         the customer still holds this carrier account (not deleted, has an address)
2. ``consent``         consent for this purpose on this carrier
3. ``frequency``       per-customer caps across all carriers and staff (and per carrier)
4. ``quiet_hours``     marketing waits until the brand's quiet hours end (deferred, not dropped)
5. ``platform_limit``  what the carrier itself allows per customer (day / week / month)
6. ``marketing_share`` at most N% of an account's recent posts are marketing (posts: its
                       broadcasts by default, or every message with ``marketing_share_scope``
                       ``all``; see `in_share_scope`)
7. ``duplicate``       the same content to the same customer within N days
8. ``holdout``         hooks registered by journeys/experiments (`register_holdout`)

`evaluate` is pure: it reads a `GateContext` (loaded once per batch by `delivery.load_context`;
`delivery.decide` decides again, with the customers' TouchLock rows locked, what would pass)
and returns a `Decision`. A message that passes is `record`-ed into the context so the next
message of the batch sees it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from yutang.messaging.policy import PolicySettings

RULES = (
    "carrier",
    "consent",
    "frequency",
    "quiet_hours",
    "platform_limit",
    "marketing_share",
    "duplicate",
    "holdout",
)
#: The furthest back any rule looks (a calendar month for a monthly platform limit); the
#: history a batch reads is narrower: `history_since`.
HISTORY_DAYS = 32


@dataclass(frozen=True)
class Candidate:
    customer_id: int
    account_id: int
    carrier: str
    kind: str  # service | marketing
    content_hash: str
    not_after: dt.datetime | None = None
    message_id: int | None = None
    cause: str = ""


class Touch(NamedTuple):
    """A message to the customer that passed the gate (a tuple: the loader makes one for
    every touch in the window, and a frozen dataclass costs several times as much)."""

    at: dt.datetime
    kind: str
    carrier: str
    content_hash: str
    cause: str = ""


Outcome = Literal["pass", "block", "defer", "expire"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    rule: str = ""
    until: dt.datetime | None = None
    reason: str = ""


#: What a message the marketing share could stop gets while the posts are not counted
#: (`GateContext.posts_counted`): it passes for now (it is recorded, so the customer's later
#: messages in the batch see it) and is decided again, with every rule, once they are.
PROVISIONAL = Decision("pass", "marketing_share", reason="provisional: posts not counted")

#: A holdout hook: fn(candidate) -> True to hold the customer out of this message.
Holdout = Callable[[Candidate], bool]
_HOLDOUTS: list[Holdout] = []


def register_holdout(fn: Holdout) -> None:
    if fn not in _HOLDOUTS:
        _HOLDOUTS.append(fn)


def unregister_holdout(fn: Holdout) -> None:
    if fn in _HOLDOUTS:
        _HOLDOUTS.remove(fn)


@dataclass(frozen=True)
class Instants:
    key: tuple[object, ...]
    day_start: dt.datetime
    week_start: dt.datetime
    month_start: dt.datetime
    days_in_month: int
    #: When the quiet hours we are in end; None outside them (or without any).
    quiet_until: dt.datetime | None

    @classmethod
    def of(
        cls, key: tuple[object, ...], now: dt.datetime, tz: zoneinfo.ZoneInfo, p: PolicySettings
    ) -> Instants:
        window = p.quiet_window()
        quiet = window is not None and is_within_quiet_hours(now, tz, window)
        month_start, days = _local_month_start(now, tz)
        return cls(
            key=key,
            day_start=_local_day_start(now, tz),
            week_start=now - dt.timedelta(days=7),
            month_start=month_start,
            days_in_month=days,
            quiet_until=quiet_hours_end(now, tz, window) if quiet and window else None,
        )


@dataclass
class GateContext:
    now: dt.datetime
    tz: zoneinfo.ZoneInfo
    policy: PolicySettings
    #: (customer, account) -> the address that reaches the customer there (as the loader
    #: keeps it: delivery keeps it sealed until the message passes); absent: not held
    recipients: dict[tuple[int, int], Any] = field(default_factory=dict)
    #: (customer, purpose, carrier or "") -> status
    consents: dict[tuple[int, str, str], str] = field(default_factory=dict)
    touches: dict[int, list[Touch]] = field(default_factory=lambda: defaultdict(list))
    #: account -> [marketing posts, all posts] within the share window
    account_posts: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    enabled: bool = True
    #: The earliest touch the loader read (`history_since`); None: the widest window.
    history_since: dt.datetime | None = None
    #: Which touches the loader read besides the marketing ones (`touches_needed`: the
    #: batch's candidates decide on them as on every touch); None: every touch.
    needed: Needed | None = None
    #: False: the accounts' posts are not counted (`delivery.decide`'s first, lock-free
    #: decision on PostgreSQL): a message the marketing share could stop gets `PROVISIONAL`,
    #: a pass that must be decided again with the posts counted, as every pass is there.
    posts_counted: bool = True

    _instants: Instants | None = field(default=None, repr=False, compare=False)

    def instants(self) -> Instants:
        """The instants every decision compares with, computed once per (now, tz, policy)."""
        key = (self.now, self.tz, id(self.policy))
        if self._instants is None or self._instants.key != key:
            self._instants = Instants.of(key, self.now, self.tz, self.policy)
        return self._instants

    def record(self, c: Candidate) -> None:
        self.touches[c.customer_id].append(
            Touch(self.now, c.kind, c.carrier, c.content_hash, c.cause)
        )
        if not in_share_scope(self.policy, c.cause):
            return
        posts = self.account_posts[c.account_id]
        posts[1] += 1
        if c.kind == "marketing":
            posts[0] += 1


#: The causes of the messages that are an account's posts: a broadcast (群发) or a campaign
#: puts the same text in front of many of the account's customers, as a moments or group post
#: does. Journey steps, manual sends, welcomes and replies are one-to-one.
POST_CAUSES = frozenset({"broadcast", "campaign"})


def in_share_scope(policy: PolicySettings, cause: str) -> bool:
    """Whether a message of this cause counts towards (and is limited by) the marketing share.
    Seed 003's "at most 20% marketing" is about what an account posts; one-to-one messages
    (journeys, manual sends) are limited per customer by the frequency caps instead, unless
    the brand sets ``marketing_share_scope`` to ``all``."""
    return policy.marketing_share_scope == "all" or cause in POST_CAUSES


# --- Time ----------------------------------------------------------------------------------


def is_within_quiet_hours(
    moment: dt.datetime, tz: zoneinfo.ZoneInfo, window: tuple[dt.time, dt.time] | None
) -> bool:
    if window is None:
        return False
    start, end = window
    local = moment.astimezone(tz).time()
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window crosses midnight


def quiet_hours_end(
    moment: dt.datetime, tz: zoneinfo.ZoneInfo, window: tuple[dt.time, dt.time]
) -> dt.datetime:
    """The first allowed instant after `moment` (inside quiet hours). A local end time that a
    daylight-saving jump skips resolves to the instant just after the jump."""
    _, end = window
    local = moment.astimezone(tz)
    day = local.date() if local.time() < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=tz).astimezone(dt.UTC)


def _local_day_start(now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    local = now.astimezone(tz)
    return dt.datetime.combine(local.date(), dt.time(), tzinfo=tz).astimezone(dt.UTC)


def _local_month_start(now: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, int]:
    local = now.astimezone(tz)
    start = dt.datetime.combine(local.date().replace(day=1), dt.time(), tzinfo=tz)
    return start.astimezone(dt.UTC), calendar.monthrange(local.year, local.month)[1]


# --- Rules ---------------------------------------------------------------------------------


def _count(
    touches: Iterable[Touch], since: dt.datetime, kind: str, carrier: str | None = None
) -> int:
    return sum(
        1
        for t in touches
        if t.at >= since and t.kind == kind and (carrier is None or t.carrier == carrier)
    )


def history_since(ctx: GateContext, candidates: Iterable[Candidate]) -> dt.datetime:
    """The earliest touch any rule may count for these candidates: the rolling week (the
    frequency caps; the local day lies within it), the duplicate window, and the platform
    limits of the candidates' carriers (a calendar month only where a monthly limit applies).
    Touches before it change no decision, so the gate need not read them."""
    at = ctx.instants()
    p = ctx.policy
    since = min(at.week_start, at.day_start)
    if p.duplicate_window_days:
        since = min(since, ctx.now - dt.timedelta(days=p.duplicate_window_days))
    for carrier in {c.carrier for c in candidates}:
        limit = p.platform_limits.get(carrier)
        if limit is not None and (limit.per_month is not None or limit.days_in_month):
            since = min(since, at.month_start)
    return since


class Needed(NamedTuple):
    """Besides the marketing touches, which touches the rules may count (`touches_needed`)."""

    #: touches with these contents (the duplicate rule compares the candidates' own)
    hashes: frozenset[str]
    #: every touch on these carriers (a platform limit there counts service messages too)
    carriers: frozenset[str]


def touches_needed(ctx: GateContext, candidates: Iterable[Candidate]) -> Needed | None:
    """Which of their customers' touches the rules may look at for these candidates: None
    when any touch may count; else the marketing touches and those `Needed` names.

    A marketing candidate's caps count only marketing touches; quiet hours and the marketing
    share read none; the duplicate rule compares the candidate's content; a platform limit
    counts the touches on its carrier, service ones too unless it says `count_service: false`.
    A service candidate's daily cap counts service touches: a batch with one needs every
    touch. Touches of the batch that pass are recorded whole (`GateContext.record`), so a
    later candidate sees them. Deciding on these gives the decisions of every touch
    (`test_the_touches_the_gate_reads_change_no_decision`)."""
    hashes: set[str] = set()
    carriers: set[str] = set()
    limits = ctx.policy.platform_limits
    for c in candidates:
        if c.kind != "marketing":
            return None
        hashes.add(c.content_hash)
        limit = limits.get(c.carrier)
        if limit is not None and limit.count_service:
            carriers.add(c.carrier)
    return Needed(frozenset(hashes), frozenset(carriers))


def reaches(c: Candidate, ctx: GateContext) -> bool:
    """Whether rules 1 and 2 (the carrier, consent) let the candidate through to the rules
    that read its customer's touch history."""
    return (c.customer_id, c.account_id) in ctx.recipients and _consented(c, ctx)


def _consented(c: Candidate, ctx: GateContext) -> bool:
    purpose = "marketing" if c.kind == "marketing" else "service"
    specific = ctx.consents.get((c.customer_id, purpose, c.carrier))
    general = ctx.consents.get((c.customer_id, purpose, ""))
    if "withdrawn" in (specific, general):
        return False
    if purpose == "service":
        return True  # service messages need no opt-in, only the absence of an opt-out
    return "granted" in (specific, general)


def _platform_limit(
    c: Candidate, ctx: GateContext, touches: Iterable[Touch], at: Instants
) -> Decision | None:
    """What the carrier itself allows per customer. It counts the customer's touches on this
    carrier the platform counts: marketing, and service too unless the brand's limit says
    `count_service: false` (a service message is then not held to it either). Welcome
    messages never count: WeCom sends them with send_welcome_msg, not as a mass message."""
    limit = ctx.policy.platform_limits.get(c.carrier)
    if limit is None or c.cause == "welcome" or (c.kind == "service" and not limit.count_service):
        return None
    day_start, week_start, month_start = at.day_start, at.week_start, at.month_start
    days = at.days_in_month
    per_month = days if limit.days_in_month and limit.per_month is None else limit.per_month
    # One pass over the customer's touches: those the platform counts, per window.
    on_day = on_week = on_month = 0
    for t in touches:
        if t.carrier != c.carrier or t.cause == "welcome":
            continue
        if t.kind != "marketing" and not limit.count_service:
            continue
        on_month += t.at >= month_start
        on_week += t.at >= week_start
        on_day += t.at >= day_start
    checks = (
        (limit.per_day, on_day, "day"),
        (limit.per_week, on_week, "7 days"),
        (per_month, on_month, "month"),
    )
    for allowed, counted, label in checks:
        if allowed is not None and counted >= allowed:
            return Decision("block", "platform_limit", reason=f"{c.carrier} per {label}")
    return None


def evaluate(c: Candidate, ctx: GateContext) -> Decision:
    if c.not_after is not None and ctx.now > c.not_after:
        return Decision("expire", "deadline", reason="its deadline passed before it could go")
    if not ctx.enabled:
        return Decision("pass")
    p, now = ctx.policy, ctx.now
    if (c.customer_id, c.account_id) not in ctx.recipients:
        return Decision("block", "carrier", reason="the customer no longer holds this account")
    if not _consented(c, ctx):
        return Decision("block", "consent", reason=f"no {c.kind} consent on {c.carrier}")
    touches = ctx.touches.get(c.customer_id, [])
    at = ctx.instants()
    day_start, week_start = at.day_start, at.week_start
    if c.kind == "service":
        if _count(touches, day_start, "service") >= p.service_per_day:
            return Decision("block", "frequency", reason="service messages per day")
        limited = _platform_limit(c, ctx, touches, at)
        if limited is not None:
            return limited
    else:
        # Today and the rolling week in one pass (the local day starts within the week).
        on_day = on_week = 0
        for t in touches:
            if t.kind == "marketing" and t.at >= week_start:
                on_week += 1
                on_day += t.at >= day_start
        if on_day >= p.marketing_per_day:
            return Decision("block", "frequency", reason="marketing touches per day")
        if on_week >= p.marketing_per_week:
            return Decision("block", "frequency", reason="marketing touches per 7 days")
        cap = p.carrier_caps.get(c.carrier)
        if cap is not None:
            if (
                cap.per_day is not None
                and _count(touches, day_start, "marketing", c.carrier) >= cap.per_day
            ):
                return Decision("block", "frequency", reason=f"{c.carrier} touches per day")
            if (
                cap.per_week is not None
                and _count(touches, week_start, "marketing", c.carrier) >= cap.per_week
            ):
                return Decision("block", "frequency", reason=f"{c.carrier} touches per 7 days")
        until = at.quiet_until
        if until is not None:
            if c.not_after is not None and until > c.not_after:
                return Decision(
                    "expire", "quiet_hours", reason="quiet hours last past its deadline"
                )
            return Decision("defer", "quiet_hours", until=until)
        limited = _platform_limit(c, ctx, touches, at)
        if limited is not None:
            return limited
        if not ctx.posts_counted and in_share_scope(p, c.cause):
            # Decided again once the account's posts are counted (see `posts_counted`).
            return PROVISIONAL
        mkt, total = ctx.account_posts.get(c.account_id, (0, 0))
        if (
            in_share_scope(p, c.cause)
            and total >= p.marketing_share_min_posts
            and (mkt + 1) > p.marketing_share_max * (total + 1)
        ):
            return Decision(
                "block",
                "marketing_share",
                reason=f"marketing would exceed {p.marketing_share_max:.0%} of posts",
            )
    if p.duplicate_window_days:
        since = now - dt.timedelta(days=p.duplicate_window_days)
        if any(t.at >= since and t.content_hash == c.content_hash for t in touches):
            return Decision("block", "duplicate", reason="same content sent recently")
    for hook in _HOLDOUTS:
        if hook(c):
            return Decision("block", "holdout", reason="held out")
    return Decision("pass")
