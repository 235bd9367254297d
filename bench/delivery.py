"""Delivery benchmark (issue 4): queued marketing messages through the policy gate to the
sandbox carrier, on SQLite and PostgreSQL, with 1 and 2 workers, and the cost of the gate.

    .venv/bin/python bench/delivery.py [--scale 0.1] [--backends sqlite,postgresql]
        [--mix blend|campaign|journey] [--history realistic|legacy] [--service-share 0.5]
        [--policy '{…}']
        [--one-worker] [--off-limit N] [--batch 500] [--profile]

The default --scale 0.1 (100,000 messages, 30,000 customers) runs in a few minutes per
backend; --scale 1.0 is the issue's size: 1,000,000 queued marketing messages for 300,000
customers (at that size `--off-limit 100000` takes the gate-off figures from the first
100,000 messages: the gate-off run sends every message and is by far the longest part).

What the database holds: three sandbox accounts (each customer is the contact of one), 5% of
the contacts lost (deleted at some moment of the 60 days since they were added), 90% of the
customers with a marketing consent, 3% with it withdrawn on the sandbox carrier (at some
moment of the last 30 days). The clock is frozen at 10:00 Shanghai time (outside quiet
hours) on a Wednesday. The brand keeps the default policy (1 marketing touch a day and 3 a
week per customer; marketing at most 20% of an account's posts over 7 days; duplicates
within 7 days).

The prior touch history (`--history`):

- `realistic` (default): what a brand that has used Yutang for the last 30 days, within the
  default policy, has sent — a history the gate itself let through, generated day by day
  (`realistic_history`): each account posts content (service, cause `broadcast`) on two
  fixed weekdays and a weekly campaign (marketing, cause `campaign`) on a third, to every
  customer it still holds; journeys send one-to-one service notices (0.05 a day) and
  marketing nudges (0.2 a day) scaled by the customer's engagement (exponential, mean 1: a
  few customers are nudged daily, most rarely). Every marketing touch is sent only where the
  gate would pass it (contact held, consent not withdrawn, 1 a day, 3 in any 7 days, no
  same text within 7 days) and the campaign's audience only as large as keeps the account's
  posts of the last 7 days at most 20% marketing; touches fall between 09:00 and 21:00.
  At --scale 0.1: 14.6 touches per customer in 30 days (57% content posts, 24% journey
  marketing, 10% journey service, 9% campaign posts). The older history was marketing-heavy
  as the gate would never have let it be (one-to-one only, so
  an account had no posts, and 20 campaign posts filled its marketing share): 82.5% of the
  queue was blocked by the share and 60 of 1,000,000 messages sent.
- `legacy`: that older history, for comparison with earlier results: 0–5 one-to-one touches
  per customer (2.5 on average) over the last 30 days, 85% service and 15% marketing, sent
  by journeys, placed at random (not through the policy).

What is queued — every message marketing, due now (`--mix`):

- `blend` (default): journeys' one-to-one messages and campaign posts in the proportion the
  brand's own history has them (with the realistic history 73% / 27%; 50/50 with the legacy
  one). Blocked by the caps where a customer had its touch of the day or week, by the share
  where a campaign post would push an account's posts over 20% marketing (the caps come
  first: most campaign posts meet a customer who had a touch today or three this week).
  At --scale 0.1: 14.1% sent, 66.6% blocked
  by the frequency caps, 12.4% consent, 5.2% lost contacts, 0.9% duplicates, 0.7% the
  marketing share. The caps bound what can go out: 3.3 queued per customer against 1
  marketing touch a day, so at most one per customer reached who has room left today and
  this week (at most ~25% of the queue even with no history at all).
- `campaign`: every message a marketing **campaign post** (one text to many of an account's
  customers), the issue's "queued marketing messages" taken literally: the share decides
  nearly all of them (with the legacy history ~81% blocked by it, 0.2% sent). This measures
  the gate **deciding**, not messages going out.
- `journey`: every message one-to-one marketing from journeys (the share does not apply; the
  frequency caps do): 3.3 messages per customer against 1/day and 3/week. Each sent message
  costs what a real send costs: the sandbox's delivery row, the outbox rewritten twice
  (sending, sent), the `message.sent` event and the customer's aggregates.
- `--service-share 0.5` makes that share of either queue one-to-one service messages.

Per backend, on a fresh database (created and dropped here):

1. one child process runs the delivery pass (claim + gate → send → record, including the
   `message.sent` events) over every message with the gate **disabled**, then the messages are
   reset to queued and the same process runs it again with the gate **enabled**;
2. the messages are reset and two child processes deliver them concurrently (gate enabled;
   `--one-worker` skips this). On SQLite the second worker waits for the loop lease, as
   `yutang worker` does.

Printed: messages/s (decided = sent + blocked + deferred + expired, per second of wall time),
per worker and together; the CPU seconds of the worker and of the PostgreSQL backend serving
it, in all and per phase (claim+gate, send, record+events), and messages per CPU-second (the
figure that does not depend on how much of a shared machine the run got); the share of each
outcome; the gate's own work (`delivery.GateClock`: its lock rows, its reads of consents,
history and post counts, its decisions), measured inside the gate-on run, as a share of that
run's wall time, in µs per message decided and as a share of the worker's CPU (the gate-off
run sends every message, so its time per message is printed for reference only, not as the
gate's cost), and per step of the gate (consents, history, posts, decide, then for the
messages that would pass: lock, locked history, locked posts, locked decide: wall seconds,
worker CPU seconds, times); the load average. `--profile` runs one more gate-on pass under
cProfile. Goal: ≥ 5,000 messages/s per worker on PostgreSQL with the gate on, and the gate
≤ 30% of delivery time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SEED = 20261125
NOW = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
FULL_MESSAGES = 1_000_000
FULL_CUSTOMERS = 300_000
ACCOUNTS = 3
BATCH = 500  # --batch: messages per delivery pass (delivery.BATCH by default)
TEXTS = [f"春季新品第{n}波，会员专享价" for n in range(12)]
POLICY = ""  # --policy, handed to the child processes
SERVICE_SHARE = 0.0  # --service-share, handed to the child processes
MIX = "campaign"  # --mix, handed to the child processes
OFF_LIMIT = 0  # --off-limit, handed to the child processes
HISTORY = "realistic"  # --history, handed to the child processes


#: The default prior history (`--history realistic`): what a brand that has used Yutang for
#: the last 30 days, within the default policy, has sent. Each figure below is a plain
#: operating habit, not fitted to an outcome of the bench.
HISTORY_DAYS = 30
#: Content posts (群发 of tips, new arrivals, group notices: service, cause `broadcast`) per
#: account per week, to every customer it still holds. WeCom lets a customer receive one mass
#: message a day; brands that keep their customers post a few times a week.
CONTENT_POSTS_PER_WEEK = 2
#: Campaign posts (marketing, cause `campaign`) per account per week: a weekly promotion,
#: sent to as many of the account's customers as the gate lets through (consent, the caps,
#: at most 20% of the account's posts in 7 days marketing).
CAMPAIGN_POSTS_PER_WEEK = 1
#: One-to-one journey messages per customer per day, scaled by the customer's engagement (an
#: exponential weight with mean 1, so a few customers are touched far more often than most):
#: service notices (orders, shipping, appointments) and marketing nudges (abandoned cart,
#: repurchase reminders, birthdays). A nudge the caps stop is not sent (the gate blocked it).
JOURNEY_SERVICE_PER_DAY = 0.05
JOURNEY_MARKETING_PER_DAY = 0.2
#: Daytime in Shanghai, outside the default quiet hours (21:30–08:30): 09:00–21:00.
DAY_START_MIN, DAY_END_MIN = 9 * 60, 21 * 60


class Person:
    """One customer as the history generator sees it."""

    __slots__ = ("account", "cid", "granted", "lost_at", "marketing", "weight", "withdrawn_at")

    def __init__(self, cid: int, account: int, weight: float) -> None:
        self.cid, self.account, self.weight = cid, account, weight
        self.granted = False
        self.withdrawn_at: float | None = None  # minutes since the window's start
        self.lost_at: float | None = None
        #: (minute, text index) of the marketing touches sent, oldest first
        self.marketing: list[tuple[float, int]] = []

    def held(self, t: float) -> bool:
        return self.lost_at is None or t < self.lost_at

    def may_market(self, t: float, text: int, day_start: float) -> bool:
        """The default policy's checks for one marketing touch at minute `t`: the contact
        held, marketing consent, 1 a day (local), 3 in 7 days, no duplicate within 7 days."""
        if not self.held(t) or not self.granted:
            return False
        if self.withdrawn_at is not None and t >= self.withdrawn_at:
            return False
        week = t - 7 * 1440
        recent = [(m, x) for m, x in self.marketing if m > week]
        self.marketing = recent
        if len(recent) >= 3 or any(m >= day_start for m, _ in recent):
            return False
        return all(x != text for _, x in recent)


def realistic_history(
    rnd: random.Random, people: list[Person], n_accounts: int
) -> list[tuple[int, int, float, str, str, int]]:
    """The touches a brand operating within the default policy sent over the last
    HISTORY_DAYS days: (customer id, account index, minute since the window's start, kind,
    cause, text index; a negative text index is a content post's own text). Day by day and,
    within a day, in time order per account: journeys' one-to-one messages, the account's
    content post and (weekly) its campaign post, each marketing touch only if the caps,
    consent and the duplicate window allow it, and the campaign's audience only as large as
    keeps the account's posts in the last 7 days at most 20% marketing."""
    touches: list[tuple[int, int, float, str, str, int]] = []
    by_account: list[list[Person]] = [[] for _ in range(n_accounts)]
    for p in people:
        by_account[p.account].append(p)
    #: per account: (minute, posts, marketing posts) of each post sent, for the share window
    posts: list[list[tuple[float, int, int]]] = [[] for _ in range(n_accounts)]
    last_day = HISTORY_DAYS - 1  # today, up to NOW (10:00 local)
    now_min = last_day * 1440 + 10 * 60
    content_text = -1
    for day in range(HISTORY_DAYS):
        start = day * 1440
        end = min(start + DAY_END_MIN, now_min)
        if start + DAY_START_MIN >= end:
            continue

        first, span = start + DAY_START_MIN, end - start - DAY_START_MIN

        def at(first: float = first, span: float = span) -> float:
            return first + rnd.random() * span

        for a, members in enumerate(by_account):
            # Fixed weekdays per account: content on two days, the campaign on a third.
            weekday = (day + 2 * a) % 7
            content_at = at() if weekday in (1, 4) else None
            campaign_at = at() if weekday == 3 else None
            campaign_text = (day // 7) % len(TEXTS)
            journeys: list[tuple[float, Person, str]] = []
            for p in members:
                w = p.weight
                if rnd.random() < JOURNEY_SERVICE_PER_DAY * w:
                    journeys.append((at(), p, "service"))
                if rnd.random() < JOURNEY_MARKETING_PER_DAY * w:
                    journeys.append((at(), p, "marketing"))
            journeys.sort(key=lambda j: j[0])
            plan: list[tuple[float, str]] = []
            if content_at is not None:
                plan.append((content_at, "content"))
            if campaign_at is not None:
                plan.append((campaign_at, "campaign"))
            plan.sort()
            j = 0
            for when, what in [*plan, (float("inf"), "end")]:
                while j < len(journeys) and journeys[j][0] < when:
                    t, p, kind = journeys[j]
                    j += 1
                    if kind == "service":
                        if p.held(t):
                            touches.append((p.cid, a, t, "service", "journey", -2))
                        continue
                    text = rnd.randrange(len(TEXTS))
                    if p.may_market(t, text, start):
                        p.marketing.append((t, text))
                        touches.append((p.cid, a, t, "marketing", "journey", text))
                if what == "content":
                    content_text -= 1
                    sent = 0
                    for p in members:
                        if p.held(when):
                            touches.append((p.cid, a, when, "service", "broadcast", content_text))
                            sent += 1
                    posts[a].append((when, sent, 0))
                elif what == "campaign":
                    window = [x for x in posts[a] if x[0] > when - 7 * 1440]
                    posts[a] = window
                    total = sum(n for _, n, _ in window)
                    marketing = sum(m for _, _, m in window)
                    # (marketing + m) <= 20% of (total + m)  ⇔  m <= (0.2 total − marketing) / 0.8
                    room = max(0, int((0.2 * total - marketing) / 0.8))
                    audience = members[:]
                    rnd.shuffle(audience)
                    sent = 0
                    for p in audience:
                        if sent >= room:
                            break
                        if p.may_market(when, campaign_text, start):
                            p.marketing.append((when, campaign_text))
                            touches.append((p.cid, a, when, "marketing", "campaign", campaign_text))
                            sent += 1
                    posts[a].append((when, sent, sent))
    return touches


def setup_data(scale: float, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    from yutang.carriers import services as carriers
    from yutang.carriers.models import CarrierContact
    from yutang.core import crypto
    from yutang.core import services as core_services
    from yutang.customers.models import Consent, Customer
    from yutang.messaging.models import Message
    from yutang.messaging.services import content_hash

    rnd = random.Random(SEED)
    n_customers = max(10, int(FULL_CUSTOMERS * scale))
    n_messages = max(10, int(FULL_MESSAGES * scale))
    brand = core_services.create_brand(name="Bench brand")
    if policy:
        from yutang.core import clock
        from yutang.messaging.models import MessagingPolicy
        from yutang.messaging.policy import PolicySettings

        settings = PolicySettings.model_validate(policy).model_dump(mode="json")
        MessagingPolicy.objects.create(brand=brand, settings=settings, updated_at=clock.now())
    accounts = []
    for i in range(ACCOUNTS):
        a = core_services.create_carrier_account(
            actor=None,
            brand=brand,
            kind="sandbox",
            external_id=f"bench-{i}",
            display_name=f"导购{i}",
        )
        carriers.connect_carrier(
            actor=None, account=a, credentials={"callback_secret": "b"}, settings={}
        )
        accounts.append(a)
    chunk = 5000
    ids: list[int] = []
    for start in range(0, n_customers, chunk):
        rows = [
            Customer(brand=brand, display_name=f"客户{start + i}", created_at=NOW, updated_at=NOW)
            for i in range(min(chunk, n_customers - start))
        ]
        ids += [c.pk for c in Customer.objects.bulk_create(rows, batch_size=chunk)]
    home = {cid: accounts[rnd.randrange(ACCOUNTS)] for cid in ids}
    contacts, consents, history = [], [], []
    n_history = 0
    hashes = [content_hash({"text": t}) for t in TEXTS]
    # Minute 0 of the realistic history: local midnight, HISTORY_DAYS - 1 days before today.
    origin = NOW - dt.timedelta(hours=10) - dt.timedelta(days=HISTORY_DAYS - 1)
    people: list[Person] = []
    # The realistic history draws from its own stream: the customers, contacts, consents and
    # queue stay those of the legacy history (the same seed, the same draws).
    hrnd = random.Random(SEED + 1)
    for cid in ids:
        account = home[cid]
        external = f"wm{cid:09d}"
        lost = rnd.random() < 0.05
        person = Person(cid, accounts.index(account), hrnd.expovariate(1.0))
        people.append(person)
        if lost:
            # Added 60 days ago, deleted at some moment since (before the window or in it).
            person.lost_at = (hrnd.random() * 60 - 60 + HISTORY_DAYS) * 1440
        contacts.append(
            CarrierContact(
                brand=brand,
                account=account,
                customer_id=cid,
                external_hash=carriers.contact_hash(account.pk, external),
                external_encrypted=crypto.encrypt_pii(external),
                added_at=NOW - dt.timedelta(days=60),
                status="lost" if lost else "active",
            )
        )
        if rnd.random() < 0.9:
            person.granted = True
            consents.append(
                Consent(
                    customer_id=cid,
                    purpose="marketing",
                    carrier="",
                    status="granted",
                    changed_at=NOW,
                    recorded_at=NOW,
                )
            )
        if rnd.random() < 0.03:
            withdrawn_min = hrnd.random() * HISTORY_DAYS * 1440
            person.withdrawn_at = withdrawn_min
            changed = origin + dt.timedelta(minutes=withdrawn_min)
            consents.append(
                Consent(
                    customer_id=cid,
                    purpose="marketing",
                    carrier="sandbox",
                    status="withdrawn",
                    changed_at=min(changed, NOW),
                    recorded_at=min(changed, NOW),
                )
            )
        if HISTORY != "legacy":
            continue
        for h in range(rnd.randrange(6)):
            at = NOW - dt.timedelta(minutes=rnd.randrange(30 * 24 * 60))
            kind = "marketing" if rnd.random() < 0.15 else "service"
            n = rnd.randrange(len(TEXTS))
            history.append(
                Message(
                    brand=brand,
                    customer_id=cid,
                    account=account,
                    carrier="sandbox",
                    kind=kind,
                    content={"text": TEXTS[n]},
                    content_hash=hashes[n],
                    cause="journey",
                    status="sent",
                    idempotency_key=f"hist-{cid}-{h}",
                    due_at=at,
                    passed_at=at,
                    sent_at=at,
                    created_at=at,
                    attempts=1,
                )
            )
    campaign_share = 1.0 if MIX == "campaign" else 0.0
    stats: Counter[str] = Counter()
    if HISTORY == "realistic":
        touches = realistic_history(hrnd, people, len(accounts))
        stats = Counter(f"{kind}/{cause}" for _, _, _, kind, cause, _ in touches)
        marketing = Counter(cause for *_, kind, cause, _ in touches if kind == "marketing")
        if MIX == "blend":
            # The queue's marketing split between campaign posts and journeys' one-to-one
            # messages as the brand's own history has it.
            campaign_share = marketing["campaign"] / max(1, sum(marketing.values()))
        n_history = len(touches)
        # Plain rows (`core.bulk.insert_model_rows`), millions at full size: a model instance
        # per row cost more than the insert. Every column as a Message made here has it.
        from yutang.core.bulk import insert_model_rows

        template = Message(
            brand=brand, account=accounts[0], carrier="sandbox", status="sent", attempts=1
        )
        names = [
            f.attname
            for f in Message._meta.concrete_fields
            if not f.primary_key and f.attname != "id"
        ]
        base = [getattr(template, name) for name in names]
        at_ = {name: names.index(name) for name in names}
        texts: dict[int, tuple[dict[str, str], str]] = {}
        hist_rows: list[list[Any]] = []
        for n, (cid, ai, minute, kind, cause, text) in enumerate(touches):
            at = origin + dt.timedelta(minutes=minute)
            if text not in texts:
                content = {"text": TEXTS[text]} if text >= 0 else {"text": f"内容与通知 {-text}"}
                texts[text] = (content, content_hash(content))
            content, digest = texts[text]
            row = base[:]
            row[at_["customer_id"]], row[at_["account_id"]] = cid, accounts[ai].pk
            row[at_["kind"]], row[at_["cause"]] = kind, cause
            row[at_["content"]], row[at_["content_hash"]] = content, digest
            row[at_["idempotency_key"]] = f"hist-{n}"
            for name in ("due_at", "passed_at", "sent_at", "created_at"):
                row[at_[name]] = at
            hist_rows.append(row)
            if len(hist_rows) == chunk:
                insert_model_rows(Message, names, hist_rows)
                hist_rows = []
        insert_model_rows(Message, names, hist_rows)
        del touches
    elif MIX == "blend":
        campaign_share = 0.5
    CarrierContact.objects.bulk_create(contacts, batch_size=chunk)
    Consent.objects.bulk_create(consents, batch_size=chunk)
    _insert(history)
    if HISTORY == "legacy":
        n_history = len(history)
    queued = []
    for n in range(n_messages):
        cid = ids[rnd.randrange(len(ids))]
        t = rnd.randrange(len(TEXTS))
        # --service-share: that share of the queue is one-to-one service messages (order and
        # shipping notices from journeys); the rest is the mix's marketing: the campaign's
        # posts (--mix campaign) or journeys' one-to-one messages (--mix journey).
        service = SERVICE_SHARE > 0 and rnd.random() < SERVICE_SHARE
        queued.append(
            Message(
                brand=brand,
                customer_id=cid,
                account=home[cid],
                carrier="sandbox",
                kind="service" if service else "marketing",
                content={"text": TEXTS[t]},
                content_hash=hashes[t],
                cause="journey" if service or not _campaign(rnd, campaign_share) else "campaign",
                idempotency_key=f"bench-{n}",
                due_at=NOW - dt.timedelta(seconds=1),
                created_at=NOW,
                not_after=NOW + dt.timedelta(days=3),
            )
        )
        if len(queued) == chunk:
            _insert(queued)
            queued = []
    _insert(queued)
    from django.db import connection

    if connection.vendor == "postgresql":
        # Statistics, as any database in use has them: without them (autovacuum may not have
        # analyzed the fresh tables yet) the planner guesses a few hundred queued rows and
        # sorts the whole queue for every claim instead of reading the due index. VACUUM sets
        # the visibility map as autovacuum's insert-triggered vacuum would on a settled table,
        # so index-only reads (history, consents) stay index-only (this server may run with
        # autovacuum off). Only the tables the set-up filled (the rest are empty or a few
        # rows, and a whole-database VACUUM also walks every catalog); see `settle`.
        settle()
    return {
        "customers": n_customers,
        "messages": n_messages,
        "history": n_history,
        "history_mix": dict(stats),
        "campaign_share": campaign_share,
        "settle_seconds": dict(SETTLE_SECONDS),
    }


#: The tables the set-up fills, which the run reads: the outbox (the gate's history and the
#: share's posts, index-only), consents (index-only), contacts and customers.
FILLED = (
    "messaging_message",
    "customers_consent",
    "carriers_carriercontact",
    "customers_customer",
)


def settle() -> None:
    """`VACUUM (ANALYZE)` of the tables the set-up filled, then statistics for every other
    table (a plain `ANALYZE`: they are empty or hold a few rows, and need no vacuum), each
    step timed. PostgreSQL only."""
    from django.db import connection

    qn = connection.ops.quote_name
    with connection.cursor() as c:
        for table in FILLED:
            t = time.perf_counter()
            c.execute(f"VACUUM (ANALYZE) {qn(table)}")
            SETTLE_SECONDS[table] = time.perf_counter() - t
        rest = sorted(set(connection.introspection.table_names(c)) - set(FILLED))
        t = time.perf_counter()
        if rest:
            c.execute("ANALYZE " + ", ".join(qn(name) for name in rest))
        SETTLE_SECONDS[f"ANALYZE of the other {len(rest)} tables"] = time.perf_counter() - t


#: Seconds of `settle` per table (printed with the set-up's time).
SETTLE_SECONDS: dict[str, float] = {}


def _campaign(rnd: random.Random, share: float) -> bool:
    """Whether a queued marketing message is a campaign post (drawing only for a blend, so
    the single-cause mixes queue what they always did)."""
    return share >= 1 or (share > 0 and rnd.random() < share)


def _insert(messages: list[Any]) -> None:
    """Outbox rows in chunks, one statement each (`core.bulk.insert_models`: arrays bound on
    the server; Django's bulk_create prepares every value on the client)."""
    from yutang.core.bulk import insert_models
    from yutang.messaging.models import Message

    for start in range(0, len(messages), 5000):
        insert_models(Message, messages[start : start + 5000])


def reset() -> None:
    """Queue the benchmark's messages again and forget what the last run did."""
    from django.db import connection

    from yutang.carriers.models import InboundReceipt, SandboxDelivery
    from yutang.events.models import Event
    from yutang.messaging.models import Message, TouchLock

    Message.objects.filter(idempotency_key__startswith="bench-").update(
        status="queued",
        rule="",
        reason="",
        passed_at=None,
        claimed_until=None,
        attempts=0,
        due_at=NOW - dt.timedelta(seconds=1),
        sent_at=None,
        finished_at=None,
        carrier_message_id="",
        not_after=NOW + dt.timedelta(days=3),
    )
    SandboxDelivery.objects.all().delete()
    InboundReceipt.objects.all().delete()
    Event.objects.all().delete()
    TouchLock.objects.all().delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute("VACUUM ANALYZE messaging_message")


def deliver_all(*, gate_enabled: bool, worker_id: str, limit: int = 0) -> dict[str, Any]:
    """Run delivery passes until nothing is due (or `limit` messages are decided); time the
    claim+gate phase apart."""
    from django.db import connection

    from yutang.core import clock
    from yutang.core.worker import LOOPS_LEASE, release_lease
    from yutang.messaging import delivery

    # The pass's brands and policies are reused by record() where it takes them (older code
    # read them again: the bench also runs against older checkouts for comparison).
    record_kw: dict[str, Any] = {}
    claim_s = send_s = record_s = 0.0
    #: CPU seconds of each phase: [worker, PostgreSQL backend] (the backend's in 10 ms ticks)
    phases = {"claim": [0.0, 0.0], "send": [0.0, 0.0], "record": [0.0, 0.0]}
    decided = waits = 0
    ingest_before = INGEST["seconds"]
    gate_before = delivery.GateClock.seconds
    gate_cpu_before = getattr(delivery.GateClock, "cpu", 0.0)  # older checkouts: wall only
    steps = getattr(delivery.GateClock, "steps", {})  # older checkouts: no steps
    steps_before = {name: list(v) for name, v in steps.items()}
    backend = common.backend_pid()
    backend_before, cpu_before = common.proc_cpu(backend), time.process_time()
    started = time.perf_counter()
    with clock.use_clock(clock.FrozenClock(NOW)):
        idle = 0
        while True:
            if connection.vendor == "sqlite" and not _leased(worker_id):
                waits += 1
                time.sleep(0.05)  # the other worker holds the single-writer lease
                continue
            adapters = delivery.Adapters()
            if "adapters" in inspect.signature(delivery.record).parameters:
                record_kw = {"adapters": adapters}
            t0, c0 = time.perf_counter(), _cpus(backend)
            claimed, n = delivery.claim(
                limit=BATCH, now=clock.now(), adapters=adapters, gate_enabled=gate_enabled
            )
            t1, c1 = time.perf_counter(), _cpus(backend)
            outcomes = delivery.send(claimed, adapters=adapters)
            t2, c2 = time.perf_counter(), _cpus(backend)
            delivery.record(outcomes, now=clock.now(), **record_kw)
            t3, c3 = time.perf_counter(), _cpus(backend)
            claim_s, send_s, record_s = claim_s + t1 - t0, send_s + t2 - t1, record_s + t3 - t2
            for phase, (a, b) in (("claim", (c0, c1)), ("send", (c1, c2)), ("record", (c2, c3))):
                phases[phase][0] += b[0] - a[0]
                phases[phase][1] += b[1] - a[1]
            decided += n
            if connection.vendor == "sqlite":
                # Before any way out of the loop: the clock is frozen, so a lease kept by a
                # run that stopped at --off-limit would never expire for the next run.
                release_lease(LOOPS_LEASE, worker_id)
            if limit and decided >= limit:
                break
            if n == 0:
                idle += 1
                if idle >= 2:
                    break
                time.sleep(0.1)
            else:
                idle = 0
    return {
        "seconds": time.perf_counter() - started,
        "decided": decided,
        "claim": claim_s,
        "send": send_s,
        "record": record_s,
        "lease_waits": waits,
        "gate": delivery.GateClock.seconds - gate_before,
        "gate_cpu": getattr(delivery.GateClock, "cpu", 0.0) - gate_cpu_before,
        "gate_steps": {
            name: [a - b for a, b in zip(v, steps_before.get(name, [0.0, 0.0, 0]), strict=True)]
            for name, v in steps.items()
        },
        "cpu": time.process_time() - cpu_before,
        "ingest": INGEST["seconds"] - ingest_before,
        "backend_cpu": common.proc_cpu(backend) - backend_before,
        "phases": phases,
    }


def _cpus(backend: int) -> tuple[float, float]:
    return time.process_time(), common.proc_cpu(backend)


#: Wall seconds inside events.services.ingest_in_batches (the `message.sent` events of the
#: messages that went out), counted by a wrapper installed in each child process (`_time_ingest`).
INGEST = {"seconds": 0.0}


def _time_ingest() -> None:
    from yutang.messaging import delivery

    inner = delivery.ingest_in_batches

    def timed(**kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(**kwargs)
        finally:
            INGEST["seconds"] += time.perf_counter() - t

    delivery.ingest_in_batches = timed  # type: ignore[assignment]


def _cpu(run: dict[str, Any]) -> str:
    """CPU seconds of a delivery run (the worker + the PostgreSQL backend serving it) and the
    messages per CPU-second: what the code does with the CPU it got, whatever the load."""
    total = run["cpu"] + run["backend_cpu"]
    phases = run.get("phases") or {}
    split = ", ".join(f"{name} {w:.1f}+{b:.1f}" for name, (w, b) in phases.items())
    return (
        f"{run['cpu']:.1f}+{run['backend_cpu']:.1f} s = "
        f"{common.rate(run['decided'], total):,.0f} msg/CPU-s" + (f" [{split}]" if split else "")
    )


def profile_pass() -> dict[str, Any]:
    """One gate-on pass under cProfile, with every SQL statement timed (by its first words)."""
    import cProfile
    import io
    import pstats
    from collections import defaultdict

    from django.db import connection

    statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = statements[" ".join(sql.split())[:100]]
            entry[0] += 1
            entry[1] += time.perf_counter() - t

    reset()  # the two-worker run delivered everything
    profiler = cProfile.Profile()
    with connection.execute_wrapper(timed):
        profiler.enable()
        result = deliver_all(gate_enabled=True, worker_id="w-profile")
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats("yutang/", 40)
    top = sorted(statements.items(), key=lambda kv: -kv[1][1])[:15]
    return {
        "pass": result,
        "functions": out.getvalue(),
        "sql": [[n, round(t, 3), sql] for sql, (n, t) in top],
    }


def _leased(worker_id: str) -> bool:
    """SQLite: only the holder of the loops lease delivers (as in `yutang worker`)."""
    from django.db import OperationalError

    from yutang.core.worker import LEASE_TTL, LOOPS_LEASE, acquire_lease

    try:
        return acquire_lease(LOOPS_LEASE, worker_id, LEASE_TTL)
    except OperationalError:  # the other worker is writing right now
        return False


def outcome_counts() -> dict[str, int]:
    from yutang.messaging.models import Message

    counts: Counter[str] = Counter()
    for status, rule, n in _grouped(Message.objects.filter(idempotency_key__startswith="bench-")):
        counts[f"{status}:{rule}" if rule else status] += n
    return dict(counts)


def _grouped(qs: Any) -> list[tuple[str, str, int]]:
    from django.db.models import Count

    return [
        (r["status"], r["rule"], r["n"])
        for r in qs.values("status", "rule").annotate(n=Count("id")).order_by()
    ]


def child(args: argparse.Namespace) -> dict[str, Any]:
    common.django_setup(args._url, args._workdir)
    _time_ingest()
    from django.core.management import call_command

    mode = args._child
    if mode == "setup":
        call_command("migrate", verbosity=0)
        t = time.perf_counter()
        sizes = setup_data(args.scale, json.loads(args.policy) if args.policy else None)
        return {**sizes, "setup_seconds": time.perf_counter() - t}
    if mode == "single":
        off = deliver_all(gate_enabled=False, worker_id="w-off", limit=OFF_LIMIT)
        off_counts = outcome_counts()
        reset()
        on = deliver_all(gate_enabled=True, worker_id="w-on")
        on_counts = outcome_counts()
        reset()
        return {"off": off, "off_counts": off_counts, "on": on, "on_counts": on_counts}
    if mode == "profile":
        return profile_pass()
    if mode.startswith("worker"):
        return deliver_all(gate_enabled=True, worker_id=mode)
    if mode == "counts":
        return outcome_counts()
    raise SystemExit(f"unknown child {mode}")


def spawn(mode: str, url: str, workdir: Path, scale: float) -> subprocess.Popen[bytes]:
    out = workdir / f"{mode}.json"
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_child",
            mode,
            "--_url",
            url,
            "--_workdir",
            str(workdir),
            "--_out",
            str(out),
            "--scale",
            str(scale),
            "--policy",
            POLICY,
            "--service-share",
            str(SERVICE_SHARE),
            "--mix",
            MIX,
            "--batch",
            str(BATCH),
            "--off-limit",
            str(OFF_LIMIT),
            "--history",
            HISTORY,
        ],
        env=dict(os.environ, YUTANG_LOG_LEVEL="WARNING"),
    )


def run(mode: str, url: str, workdir: Path, scale: float) -> dict[str, Any]:
    proc = spawn(mode, url, workdir, scale)
    if proc.wait() != 0:
        raise SystemExit(f"child {mode} failed with {proc.returncode}")
    return json.loads((workdir / f"{mode}.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=0.1, help="1.0 = 1,000,000 messages, 300,000 customers"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--policy", default="", help="touch policy settings as JSON (default: the brand defaults)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile a gate-on pass")
    parser.add_argument(
        "--one-worker", action="store_true", help="skip the two-worker run (quick comparisons)"
    )
    parser.add_argument(
        "--service-share",
        type=float,
        default=0.0,
        help="share of the queue that is service messages (default 0: all marketing posts)",
    )
    parser.add_argument(
        "--mix",
        choices=["blend", "campaign", "journey"],
        default="blend",
        help="what the marketing in the queue is: campaign posts and journeys' one-to-one "
        "messages as the history has them (blend, the default), only campaign posts, or only "
        "journeys' messages",
    )
    parser.add_argument(
        "--history",
        choices=["realistic", "legacy"],
        default="realistic",
        help="the prior touch history: what the brand sent within the default policy over 30 "
        "days (realistic, the default) or the older 0–5 one-to-one touches per customer, 15%% "
        "marketing, placed without the policy (legacy)",
    )
    parser.add_argument("--batch", type=int, default=0, help="messages per pass (default 500)")
    parser.add_argument(
        "--off-limit",
        type=int,
        default=0,
        help="stop the gate-off run after this many messages (its rate and per-message time "
        "are taken from them; at the issue's size the full gate-off run takes the longest)",
    )
    parser.add_argument("--_child")
    parser.add_argument("--_url")
    parser.add_argument("--_workdir", type=Path)
    parser.add_argument("--_out", type=Path)
    args = parser.parse_args()
    global POLICY, SERVICE_SHARE, MIX, BATCH, OFF_LIMIT, HISTORY
    POLICY, SERVICE_SHARE, MIX, HISTORY = args.policy, args.service_share, args.mix, args.history
    OFF_LIMIT = args.off_limit
    BATCH = args.batch or BATCH
    if args._child:
        args._out.write_text(json.dumps(child(args)))
        return 0
    info = common.machine_info()
    print("Yutang delivery benchmark")
    common.print_machine_info(info)
    print(
        f"  scale       {args.scale} ({int(FULL_MESSAGES * args.scale):,} messages, "
        f"{int(FULL_CUSTOMERS * args.scale):,} customers; mix {args.mix}, service share of "
        f"the queue {args.service_share:.0%}; history {args.history})",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="yutang-bench-delivery-"))
    rows = []
    for backend in [b for b in args.backends.split(",") if b]:
        with (
            common.temp_database(backend, "bench_delivery", workdir) as url,
            common.CpuMonitor() as cpu,
        ):
            load_before = os.getloadavg()
            sizes = run("setup", url, workdir, args.scale)
            print(
                f"\n== {backend}: {sizes['messages']:,} queued, {sizes['customers']:,} "
                f"customers, {sizes['history']:,} prior touches "
                f"(set up in {sizes['setup_seconds']:.0f} s) ==",
                flush=True,
            )
            if sizes.get("settle_seconds"):
                print(
                    "  statistics and visibility (set-up's last step): "
                    + ", ".join(f"{t} {s:.1f} s" for t, s in sizes["settle_seconds"].items()),
                    flush=True,
                )
            if sizes.get("history_mix"):
                mix = ", ".join(
                    f"{k} {v / sizes['history']:.1%}"
                    for k, v in sorted(sizes["history_mix"].items(), key=lambda kv: -kv[1])
                )
                print(
                    f"  history ({args.history}): {sizes['history'] / sizes['customers']:.1f} "
                    f"touches per customer in 30 days: {mix}; campaign share of the queued "
                    f"marketing {sizes['campaign_share']:.1%}",
                    flush=True,
                )
            single = run("single", url, workdir, args.scale)
            started = time.perf_counter()
            if args.one_worker:
                two = [single["on"], {**single["on"], "decided": 0}]
            else:
                workers = [spawn(f"worker{i}", url, workdir, args.scale) for i in (1, 2)]
                for w in workers:
                    if w.wait() != 0:
                        raise SystemExit("a worker failed")
                two = [json.loads((workdir / f"worker{i}.json").read_text()) for i in (1, 2)]
            wall = time.perf_counter() - started
            load_after = os.getloadavg()
            profiled = run("profile", url, workdir, args.scale) if args.profile else None
        on, off = single["on"], single["off"]
        total = sizes["messages"]
        # The gate's cost, measured in the gate-on run's own process (delivery.GateClock):
        # the time of its own work (its lock rows, its reads of consents, history and post
        # counts, its decisions) over the whole run's time: what share of the time spent per
        # message decided is the gate's. Wall seconds include the database's side of its
        # reads; the worker's CPU share is printed too. The gate-off run is not a fair
        # denominator per message: with the gate off every message is sent, stored as an
        # event and aggregated, so its per-message time (printed for reference) measures
        # sending, not delivery as decided by the gate.
        gate_s = on["gate"]
        gate_cost = gate_s / on["seconds"]
        gate_cpu = on.get("gate_cpu", 0.0)
        gate_cpu_share = gate_cpu / on["cpu"] if on["cpu"] else 0.0
        gate_vs_off = (gate_s / on["decided"]) / (off["seconds"] / off["decided"])
        extra_claim = on["claim"] - off["claim"]
        print(
            f"  gate off, 1 worker: {common.rate(off['decided'], off['seconds']):,.0f} msg/s "
            f"(claim {off['claim']:.1f} s, send {off['send']:.1f} s, "
            f"record+events {off['record']:.1f} s, of it ingest_events {off['ingest']:.1f} s; "
            f"CPU worker+db {_cpu(off)})"
        )
        print(
            f"  gate on,  1 worker: {common.rate(on['decided'], on['seconds']):,.0f} msg/s "
            f"(claim+gate {on['claim']:.1f} s, send {on['send']:.1f} s, "
            f"record+events {on['record']:.1f} s, of it ingest_events {on['ingest']:.1f} s; "
            f"CPU worker+db {_cpu(on)})"
        )
        per_worker = ", ".join(f"{common.rate(w['decided'], w['seconds']):,.0f}" for w in two)
        if args.one_worker:
            print("  gate on,  2 workers: not run (--one-worker)")
        else:
            print(
                f"  gate on,  2 workers: {common.rate(total, wall):,.0f} msg/s together, "
                f"{per_worker} msg/s each "
                f"(decided {two[0]['decided']:,} + {two[1]['decided']:,}; "
                f"lease waits {two[0]['lease_waits'] + two[1]['lease_waits']:,}; "
                f"CPU worker+db {_cpu(two[0])} and {_cpu(two[1])})"
            )
        print(
            f"  gate: {gate_s:.1f} s of its own work = {gate_cost:.0%} of the gate-on run's "
            f"wall time ({1e6 * gate_s / max(on['decided'], 1):.0f} µs per message decided); "
            f"worker CPU {gate_cpu:.1f} s = {gate_cpu_share:.0%} of the worker's; "
            f"for reference {gate_vs_off:.0%} of a gate-off message's time (every one sent; "
            f"claim phase on − off: {extra_claim:+.1f} s)"
        )
        if on.get("gate_steps"):
            print(
                "  gate steps (gate-on run; wall s / worker CPU s / times): "
                + ", ".join(
                    f"{name} {wall:.1f}/{cpu:.1f}/{int(n)}"
                    for name, (wall, cpu, n) in on["gate_steps"].items()
                )
            )
        print(
            "  load average before/after: "
            + " / ".join(", ".join(f"{x:.1f}" for x in la) for la in (load_before, load_after))
        )
        print("  outcomes (gate on):")
        for key, n in sorted(single["on_counts"].items(), key=lambda kv: -kv[1]):
            print(f"    {key:28} {n:>9,}  {n / total:6.1%}")
        print(f"  cpu: {cpu.usage()}", flush=True)
        if profiled is not None:
            p = profiled["pass"]
            print(
                f"  profile (gate on, under cProfile): {p['decided']:,} in {p['seconds']:.1f} s; "
                "SQL by total time:"
            )
            for n, seconds, sql in profiled["sql"]:
                print(f"    {seconds:7.2f} s {n:6,}x  {sql}")
            print(profiled["functions"])
        rows.append(
            [
                backend,
                f"{common.rate(off['decided'], off['seconds']):,.0f}",
                f"{common.rate(on['decided'], on['seconds']):,.0f}",
                "—" if args.one_worker else f"{common.rate(total, wall):,.0f}",
                f"{gate_cost:.0%}",
            ]
        )
    print()
    common.print_table(
        ["backend", "gate off 1w msg/s", "gate on 1w msg/s", "gate on 2w msg/s", "gate share"],
        rows,
        markdown=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
