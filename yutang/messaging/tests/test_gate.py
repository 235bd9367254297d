"""The gate's rules, one by one and in order, on pure contexts; quiet hours across midnight
and daylight-saving zones."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from yutang.messaging import gate
from yutang.messaging.policy import PlatformLimit, PolicySettings

SH = zoneinfo.ZoneInfo("Asia/Shanghai")
NY = zoneinfo.ZoneInfo("America/New_York")
NOW = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai


def ctx(now: dt.datetime = NOW, tz: zoneinfo.ZoneInfo = SH, **policy: object) -> gate.GateContext:
    c = gate.GateContext(now=now, tz=tz, policy=PolicySettings.model_validate(policy))
    c.recipients[(1, 10)] = "wm-1"
    c.consents[(1, "marketing", "")] = "granted"
    return c


def cand(kind: str = "marketing", **kw: object) -> gate.Candidate:
    base: dict[str, object] = dict(
        customer_id=1, account_id=10, carrier="wecom", kind=kind, content_hash="h1"
    )
    return gate.Candidate(**{**base, **kw})  # type: ignore[arg-type]


def touch(
    at: dt.datetime, kind: str = "marketing", carrier: str = "wecom", h: str = "old"
) -> gate.Touch:
    return gate.Touch(at, kind, carrier, h)


def test_a_consenting_contact_passes():
    assert gate.evaluate(cand(), ctx()) == gate.Decision("pass")


def test_carrier_rule_blocks_a_customer_who_deleted_the_account():
    c = ctx()
    c.recipients.clear()
    assert gate.evaluate(cand(), c).rule == "carrier"


def test_consent_needs_a_grant_for_marketing_and_respects_carrier_withdrawal():
    c = ctx()
    c.consents.clear()
    assert gate.evaluate(cand(), c).rule == "consent"
    assert gate.evaluate(cand("service"), c).outcome == "pass"
    c.consents[(1, "marketing", "")] = "granted"
    c.consents[(1, "marketing", "wecom")] = "withdrawn"
    assert gate.evaluate(cand(), c).rule == "consent"
    assert gate.evaluate(cand(carrier="sms"), c).outcome == "pass"  # withdrawn on wecom only


def test_frequency_caps_daily_then_weekly_and_service_separately():
    c = ctx()
    c.touches[1] = [touch(NOW - dt.timedelta(hours=1))]
    d = gate.evaluate(cand(), c)
    assert (d.outcome, d.rule, d.reason) == ("block", "frequency", "marketing touches per day")
    c.touches[1] = [touch(NOW - dt.timedelta(days=d)) for d in (1, 2, 3)]
    assert gate.evaluate(cand(), c).reason == "marketing touches per 7 days"
    c.touches[1] = [touch(NOW - dt.timedelta(days=d)) for d in (1, 2, 8)]
    assert gate.evaluate(cand(), c).outcome == "pass"
    c.touches[1] = [touch(NOW - dt.timedelta(minutes=m), "service") for m in range(5)]
    assert gate.evaluate(cand("service"), c).rule == "frequency"
    assert gate.evaluate(cand(), c).outcome == "pass"  # service touches don't spend marketing caps


def test_the_day_is_the_brands_local_day():
    # 23:00 Shanghai yesterday = 15:00 UTC: a different local day from 10:00 today.
    c = ctx(quiet_hours_enabled=False)
    c.touches[1] = [touch(dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC))]
    assert gate.evaluate(cand(), c).outcome == "pass"
    c.touches[1] = [touch(dt.datetime(2026, 3, 10, 16, 30, tzinfo=dt.UTC))]  # 00:30 today
    assert gate.evaluate(cand(), c).rule == "frequency"


def test_per_carrier_cap():
    c = ctx(marketing_per_day=5, carrier_caps={"wecom": {"per_day": 1}})
    c.touches[1] = [touch(NOW - dt.timedelta(hours=1), carrier="sms")]
    assert gate.evaluate(cand(), c).outcome == "pass"
    c.touches[1] = [touch(NOW - dt.timedelta(hours=1))]
    assert gate.evaluate(cand(), c).reason == "wecom touches per day"


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        ("21:29", False),
        ("21:30", True),
        ("23:59", True),
        ("00:00", True),
        ("08:29", True),
        ("08:30", False),
        ("12:00", False),
    ],
)
def test_quiet_hours_across_midnight(local, quiet):
    h, m = map(int, local.split(":"))
    moment = dt.datetime(2026, 3, 11, h, m, tzinfo=SH)
    window = (dt.time(21, 30), dt.time(8, 30))
    assert gate.is_within_quiet_hours(moment, SH, window) is quiet


def test_marketing_in_quiet_hours_is_deferred_to_the_end_never_dropped():
    late = dt.datetime(2026, 3, 11, 22, 0, tzinfo=SH)
    d = gate.evaluate(cand(), ctx(now=late.astimezone(dt.UTC)))
    assert (d.outcome, d.rule) == ("defer", "quiet_hours")
    assert d.until == dt.datetime(2026, 3, 12, 8, 30, tzinfo=SH)
    early = dt.datetime(2026, 3, 12, 7, 0, tzinfo=SH)
    assert gate.evaluate(cand(), ctx(now=early.astimezone(dt.UTC))).until == dt.datetime(
        2026, 3, 12, 8, 30, tzinfo=SH
    )
    assert gate.evaluate(cand("service"), ctx(now=late.astimezone(dt.UTC))).outcome == "pass"


def test_a_deferral_past_the_deadline_expires():
    late = dt.datetime(2026, 3, 11, 22, 0, tzinfo=SH)
    d = gate.evaluate(
        cand(not_after=dt.datetime(2026, 3, 11, 23, 0, tzinfo=SH)), ctx(now=late.astimezone(dt.UTC))
    )
    assert (d.outcome, d.rule) == ("expire", "quiet_hours")


def test_quiet_hours_in_a_daylight_saving_zone():
    # New York springs forward on 2026-03-08 at 02:00 -> 03:00. A window ending at 02:30
    # local ends at an instant that does not exist: the first allowed instant is after the jump.
    window = (dt.time(22, 0), dt.time(2, 30))
    moment = dt.datetime(2026, 3, 8, 1, 0, tzinfo=NY)
    end = gate.quiet_hours_end(moment.astimezone(dt.UTC), NY, window)
    assert end == dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.UTC)  # 03:30 EDT
    assert not gate.is_within_quiet_hours(end, NY, window)
    # In autumn (fall back on 2026-11-01), 21:30-08:30 ends at 08:30 EST = 13:30 UTC.
    autumn = dt.datetime(2026, 11, 1, 1, 30, tzinfo=NY)
    assert gate.quiet_hours_end(
        autumn.astimezone(dt.UTC), NY, (dt.time(21, 30), dt.time(8, 30))
    ) == (dt.datetime(2026, 11, 1, 13, 30, tzinfo=dt.UTC))


def test_platform_limit_days_in_month_and_stricter_policy():
    c = ctx(marketing_per_day=100, marketing_per_week=100)
    c.touches[1] = [
        touch(dt.datetime(2026, 2, 1, 2, tzinfo=dt.UTC) + dt.timedelta(hours=i)) for i in range(28)
    ]
    feb = dt.datetime(2026, 2, 28, 10, tzinfo=dt.UTC)
    c.now = feb
    assert gate.evaluate(cand(), c).rule == "platform_limit"  # 28 days in February
    c.now = NOW  # March: a new month
    assert gate.evaluate(cand(), c).outcome == "pass"
    strict = ctx(
        marketing_per_day=100,
        marketing_per_week=100,
        platform_limits={"wecom": PlatformLimit(per_week=7, per_day=1).model_dump()},
    )
    strict.touches[1] = [touch(NOW - dt.timedelta(hours=2))]
    assert gate.evaluate(cand(), strict).reason == "wecom per day"


def test_marketing_share_of_an_accounts_posts():
    c = ctx()
    post = cand(cause="broadcast")
    c.account_posts[10] = [4, 20]  # 4 of 20 are marketing: a 5th would be 5/21 > 20%
    assert gate.evaluate(post, c).rule == "marketing_share"
    c.account_posts[10] = [3, 20]  # 4/21 = 19%
    assert gate.evaluate(post, c).outcome == "pass"
    c.account_posts[10] = [5, 10]  # too few posts to judge
    assert gate.evaluate(post, c).outcome == "pass"


def test_the_marketing_share_limits_posts_unless_the_brand_extends_it_to_every_message():
    c = ctx()
    c.account_posts[10] = [4, 20]
    one_to_one = cand(cause="journey")
    assert gate.evaluate(one_to_one, c).outcome == "pass"  # the frequency caps govern it
    c.record(one_to_one)
    assert c.account_posts[10] == [4, 20]  # not a post: the share's counts are unchanged
    every = ctx(marketing_share_scope="all")
    every.account_posts[10] = [4, 20]
    assert gate.evaluate(one_to_one, every).rule == "marketing_share"
    every.account_posts[10] = [3, 20]
    every.record(one_to_one)
    assert every.account_posts[10] == [4, 21]


def test_duplicate_content_within_the_window():
    c = ctx()
    c.touches[1] = [touch(NOW - dt.timedelta(days=6), "service", h="h1")]
    assert gate.evaluate(cand(), c).rule == "duplicate"
    c.touches[1] = [touch(NOW - dt.timedelta(days=8), "service", h="h1")]
    assert gate.evaluate(cand(), c).outcome == "pass"


def test_holdout_hook_runs_last():
    def hold(c: gate.Candidate) -> bool:
        return c.customer_id == 1

    gate.register_holdout(hold)
    try:
        assert gate.evaluate(cand(), ctx()).rule == "holdout"
        c = ctx()
        c.consents.clear()
        assert gate.evaluate(cand(), c).rule == "consent"  # earlier rules win
    finally:
        gate.unregister_holdout(hold)


def test_order_first_stopping_rule_is_recorded():
    late = dt.datetime(2026, 3, 11, 22, 0, tzinfo=SH).astimezone(dt.UTC)
    c = ctx(now=late)
    c.touches[1] = [touch(late - dt.timedelta(hours=1), h="h1")]  # cap AND duplicate AND quiet
    assert gate.evaluate(cand(), c).rule == "frequency"
    c.consents.clear()
    assert gate.evaluate(cand(), c).rule == "consent"
    c.recipients.clear()
    assert gate.evaluate(cand(), c).rule == "carrier"


def test_a_passed_message_counts_for_the_next_in_the_same_batch():
    c = ctx()
    assert gate.evaluate(cand(), c).outcome == "pass"
    c.record(cand())
    assert gate.evaluate(cand(content_hash="h2"), c).rule == "frequency"


def test_gate_disabled_only_checks_deadlines():
    c = ctx()
    c.recipients.clear()
    c.enabled = False
    assert gate.evaluate(cand(), c).outcome == "pass"


def test_the_history_window_the_gate_reads_changes_no_decision():
    """`history_since` lets the loader skip touches no rule counts for the batch's carriers:
    deciding on the touches since then gives the decisions of the whole history."""
    import random

    rnd = random.Random(4)
    policies: list[dict[str, object]] = [
        {},  # WeCom's days-in-the-month limit: a calendar month back for WeCom candidates
        {"platform_limits": {}, "duplicate_window_days": 0},
        {"platform_limits": {"wecom": {"per_week": 2, "per_day": 1}}},
        {"platform_limits": {"sms": {"per_month": 3}}, "duplicate_window_days": 20},
        {"carrier_caps": {"sms": {"per_day": 1, "per_week": 2}}, "duplicate_window_days": 3},
    ]
    for settings in policies:
        for now in (NOW, dt.datetime(2026, 3, 1, 0, 30, tzinfo=dt.UTC)):
            policy = PolicySettings.model_validate({"quiet_hours_enabled": False, **settings})
            full = gate.GateContext(now=now, tz=SH, policy=policy)
            full.recipients[(1, 10)] = "x"
            for carrier in ("wecom", "sms"):
                full.consents[(1, "marketing", carrier)] = "granted"
            cands = [
                cand(kind, carrier=carrier, content_hash=h)
                for kind in ("marketing", "service")
                for carrier in ("wecom", "sms")
                for h in ("h1", "h2")
            ]
            for carrier_set in (["wecom"], ["sms"], ["wecom", "sms"]):
                batch = [c for c in cands if c.carrier in carrier_set]
                since = gate.history_since(full, batch)
                assert since <= now - dt.timedelta(days=7)
                for _ in range(60):
                    full.touches[1] = [
                        gate.Touch(
                            now - dt.timedelta(minutes=rnd.randrange(40 * 24 * 60)),
                            rnd.choice(["marketing", "service"]),
                            rnd.choice(["wecom", "sms"]),
                            rnd.choice(["h1", "h2", "h3"]),
                        )
                        for _ in range(rnd.randrange(12))
                    ]
                    narrow = gate.GateContext(
                        now=now,
                        tz=full.tz,
                        policy=full.policy,
                        recipients=full.recipients,
                        consents=full.consents,
                    )
                    narrow.touches[1] = [t for t in full.touches[1] if t.at >= since]
                    for c in batch:
                        assert gate.evaluate(c, narrow) == gate.evaluate(c, full), (settings, c)


def test_the_history_window_is_a_week_unless_a_rule_looks_further_back():
    c = ctx(quiet_hours_enabled=False)
    week = NOW - dt.timedelta(days=7)
    assert gate.history_since(c, [cand(carrier="sms")]) == week
    # WeCom's default limit: as many a month as the month has days, from the local 1st.
    month = dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.UTC)  # 1 March, 00:00 in Shanghai
    assert gate.history_since(c, [cand(carrier="sms"), cand()]) == month
    longer = ctx(duplicate_window_days=10)
    assert gate.history_since(longer, [cand(carrier="sms")]) == NOW - dt.timedelta(days=10)


def test_the_touches_the_gate_reads_change_no_decision():
    """`touches_needed` lets the loader skip the touches no rule compares for the batch: a
    batch decided in order (each pass recorded) on the marketing touches and those it names
    gets the decisions of every touch — caps, per-carrier caps, platform limits counting
    service or not, duplicates, welcome messages; a service candidate reads everything."""
    import random

    rnd = random.Random(7)
    policies: list[dict[str, object]] = [
        {},  # WeCom's days-in-the-month limit, counting service messages
        {"platform_limits": {}, "marketing_per_day": 2, "marketing_per_week": 4},
        {"platform_limits": {"wecom": {"per_week": 3, "count_service": False}}},
        {"platform_limits": {"sms": {"per_day": 2}}, "duplicate_window_days": 20},
        {
            "platform_limits": {"sms": {"per_day": 1}},
            "marketing_per_day": 9,
            "marketing_per_week": 20,
        },
        {"carrier_caps": {"sms": {"per_day": 1, "per_week": 2}}, "service_per_day": 2},
        {"duplicate_window_days": 0, "marketing_per_day": 3, "marketing_per_week": 9},
    ]
    carriers = ("wecom", "sms", "sandbox")
    hashes = ("h1", "h2", "h3", "h4")
    checked = filtered = 0
    for settings in policies:
        policy = PolicySettings.model_validate({"quiet_hours_enabled": False, **settings})
        for _ in range(150):
            batch = [
                cand(
                    rnd.choice(["marketing"] * 6 + ["service"]),
                    customer_id=rnd.choice([1, 2]),
                    carrier=rnd.choice(carriers),
                    content_hash=rnd.choice(hashes),
                    cause=rnd.choice(["journey", "broadcast", "welcome"]),
                )
                for _ in range(rnd.randrange(1, 6))
            ]
            history = {
                cid: [
                    gate.Touch(
                        NOW - dt.timedelta(minutes=rnd.randrange(rnd.choice([9, 1]) * 24 * 60)),
                        rnd.choice(["marketing", "service"]),
                        rnd.choice(carriers),
                        rnd.choice(hashes),
                        rnd.choice(["journey", "broadcast", "welcome"]),
                    )
                    for _ in range(rnd.randrange(14))
                ]
                for cid in (1, 2)
            }
            decisions = []
            for narrow in (False, True):
                c = gate.GateContext(now=NOW, tz=SH, policy=policy)
                for cid in (1, 2):
                    for carrier in carriers:
                        c.recipients[(cid, 10)] = "x"
                        c.consents[(cid, "marketing", carrier)] = "granted"
                needed = gate.touches_needed(c, batch)
                for cid, touches in history.items():
                    c.touches[cid] = [
                        t
                        for t in touches
                        if not narrow
                        or needed is None
                        or t.kind == "marketing"
                        or t.content_hash in needed.hashes
                        or t.carrier in needed.carriers
                    ]
                filtered += narrow and needed is not None
                out = []
                for cnd in batch:
                    d = gate.evaluate(cnd, c)
                    if d.outcome == "pass":
                        c.record(cnd)
                    out.append(d)
                decisions.append(out)
            assert decisions[0] == decisions[1], (settings, batch, history)
            checked += 1
    assert filtered > checked // 3  # most batches read less than every touch


def test_a_batch_of_marketing_reads_its_contents_and_the_limited_carriers_service_touches():
    c = ctx()  # WeCom's default limit counts service messages
    assert gate.touches_needed(c, [cand(content_hash="a"), cand(carrier="sms")]) == gate.Needed(
        frozenset({"a", "h1"}), frozenset({"wecom"})
    )
    assert gate.touches_needed(c, [cand(carrier="sms"), cand("service", carrier="sms")]) is None
    uncounted = ctx(platform_limits={"wecom": {"per_week": 2, "count_service": False}})
    assert gate.touches_needed(uncounted, [cand()]) == gate.Needed(frozenset({"h1"}), frozenset())
