"""The delivery loop: claim due messages, run the gate, send, record.

One pass (`deliver_due_messages`):

1. In one transaction: claim up to `limit` due rows (`SELECT … FOR UPDATE SKIP LOCKED` on
   PostgreSQL through the ORM's `select_for_update(skip_locked=True)`; SQLite has one writer
   and its transactions are IMMEDIATE), load the gate context, decide each message (see
   `decide`: the messages that would pass are decided again with their customers' TouchLock
   rows, and the accounts' rows their marketing share spends, locked in id order), and
   write the outcome. A message that passes becomes `sending` with `passed_at` (it now
   counts toward caps) and a claim lease.
2. Outside any transaction: send each through its adapter with the message's idempotency key.
3. Store the `message.sent` events of the messages that went out (keyed per message, in the
   events app's own short transactions), then record the results in one transaction.

A worker killed at any point loses nothing and doubles nothing: a `sending` message whose
lease ran out is claimed again and re-sent with the same idempotency key (the carrier dedupes
it), without passing the gate twice; the sent events carry per-message idempotency keys, so
the events of a pass killed before its results were recorded are found stored on the retry.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import BooleanField, OuterRef, Q, Subquery, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from yutang.carriers import services as carriers
from yutang.carriers.base import (
    Carrier,
    CarrierError,
    Outbound,
    SendResult,
    build_adapter,
    send_many,
)
from yutang.carriers.models import CarrierConnection
from yutang.core import bulk, clock, db
from yutang.core.bulk import update_rows
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Consent
from yutang.events.services import ingest_in_batches
from yutang.messaging import gate
from yutang.messaging.models import AccountTouchLock, Message, TouchLock
from yutang.messaging.policy import PolicySettings

logger = logging.getLogger("yutang.messaging")

BATCH = 500
BASE_BACKOFF = dt.timedelta(seconds=30)
MAX_BACKOFF = dt.timedelta(hours=1)
S = Message.Status


def claim_seconds() -> float:
    """How long a claimed message is left alone before another pass may take it over."""
    return float(
        os.environ.get("YUTANG_MESSAGING_CLAIM_SECONDS", "")
        or getattr(settings, "MESSAGING_CLAIM_SECONDS", 120)
    )


def _crash_point(name: str) -> None:
    """For the SIGKILL test only: `YUTANG_MESSAGING_CRASH_AT=<name>[:<after n hits>]` makes
    this process kill itself with SIGKILL at that point of the loop."""
    spec = os.environ.get("YUTANG_MESSAGING_CRASH_AT", "")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    hits = _CRASH_HITS[name] = _CRASH_HITS.get(name, 0) + 1
    if hits >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_HITS: dict[str, int] = {}


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff with full jitter: up to 30 s, 60 s, 120 s … capped at an hour."""
    ceiling = min(BASE_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)
    return dt.timedelta(
        # Jitter spreads retries; it needs no cryptographic randomness.
        seconds=random.uniform(ceiling.total_seconds() / 2, ceiling.total_seconds())  # noqa: S311
    )


# --- Context ---------------------------------------------------------------------------------


class Adapters:
    """What a pass reads once: the adapters of the accounts it touches, and each brand with
    its touch policy."""

    def __init__(self) -> None:
        self._cache: dict[int, Carrier] = {}
        self.accounts: dict[int, CarrierAccount] = {}
        self._brands: dict[int, tuple[Brand, PolicySettings]] = {}

    def get(self, account_id: int) -> Carrier:
        if account_id not in self._cache:
            account = self.accounts.get(account_id) or CarrierAccount.objects.get(pk=account_id)
            self.accounts[account_id] = account
            self._cache[account_id] = build_adapter(carriers.account_config(account))
        return self._cache[account_id]

    def load(self, account_ids: Iterable[int]) -> None:
        """The accounts and their connections, in one query."""
        missing = set(account_ids) - set(self.accounts)
        if not missing:
            return
        for account in CarrierAccount.objects.filter(pk__in=missing).select_related("connection"):
            try:
                connection_: CarrierConnection | None = account.connection
            except CarrierConnection.DoesNotExist:
                connection_ = None
            self.accounts[account.pk] = account
            self._cache[account.pk] = build_adapter(carriers.account_config(account, connection_))

    def brand(self, brand_id: int) -> tuple[Brand, PolicySettings]:
        """The brand and its touch policy, read together once per pass."""
        if brand_id not in self._brands:
            from yutang.messaging.models import MessagingPolicy

            brand = (
                Brand.objects.filter(pk=brand_id)
                .annotate(
                    policy_settings=Subquery(
                        MessagingPolicy.objects.filter(brand_id=OuterRef("pk")).values("settings")[
                            :1
                        ]
                    )
                )
                .get()
            )
            settings_ = getattr(brand, "policy_settings", None)
            self._brands[brand_id] = (brand, _policy_of(settings_))
        return self._brands[brand_id]


def _policy_of(settings_: Any) -> PolicySettings:
    """A brand's stored policy settings (JSON, or None without a row), validated."""
    if isinstance(settings_, str):  # a JSON column read through a subquery may stay text
        settings_ = json.loads(settings_)
    return _validated_policy(json.dumps(settings_ or {}, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _validated_policy(settings_json: str) -> PolicySettings:
    """Validated once per distinct settings text: the gate only reads a policy."""
    return PolicySettings.model_validate(json.loads(settings_json))


class GateClock:
    """Seconds this process spent on the gate's own work (its locks, the consent, history and
    post-count reads, and the decisions), apart from what sending needs anyway (claiming,
    recipients, writing outcomes): wall seconds (`seconds`, which include waiting for the
    database) and this process's CPU seconds (`cpu`). Read by bench/delivery.py; costs four
    clock reads a step, a few steps a pass."""

    seconds = 0.0
    cpu = 0.0
    #: per step (consents, history, posts, decide, lock, …): [wall seconds, CPU seconds, times]
    steps: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])

    def __init__(self, step: str) -> None:
        self.step = step

    def __enter__(self) -> GateClock:
        self._start = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._start
        cpu = time.process_time() - self._cpu
        GateClock.seconds += wall
        GateClock.cpu += cpu
        step = GateClock.steps[self.step]
        step[0] += wall
        step[1] += cpu
        step[2] += 1


def policy_for(brand_id: int) -> PolicySettings:
    from yutang.messaging.models import MessagingPolicy

    row = MessagingPolicy.objects.filter(brand_id=brand_id).first()
    return PolicySettings.model_validate(row.settings if row else {})


def load_context(
    *,
    brand: Brand,
    candidates: Sequence[gate.Candidate],
    now: dt.datetime,
    adapters: Adapters,
    policy: PolicySettings | None = None,
    enabled: bool = True,
    count_posts: bool = True,
) -> gate.GateContext:
    """What the gate reads for these candidates, without locking anything: who holds each
    account (addresses still sealed), consents, the touch history of the customers the first
    two rules do not stop already, and the accounts' post counts (`count_posts` False: not
    counted; the marketing share then passes its messages provisionally, see `decide`)."""
    policy = policy or policy_for(brand.pk)
    ctx = gate.GateContext(now=now, tz=brand.tz, policy=policy, enabled=enabled)
    by_account: dict[int, set[int]] = defaultdict(set)
    for c in candidates:
        by_account[c.account_id].add(c.customer_id)
    adapters.load(by_account)
    for account_id, ids in by_account.items():
        found = carriers.sealed_recipients(
            account=adapters.accounts[account_id],
            capabilities=adapters.get(account_id).capabilities,
            customer_ids=ids,
        )
        for cid, sealed in found.items():
            ctx.recipients[(cid, account_id)] = sealed
    if not enabled:
        return ctx
    with GateClock("consents"):
        _read_consents(ctx, sorted({c.customer_id for c in candidates}))
    with GateClock("history"):
        # Rules 1 and 2 (the carrier, consent) read no history: their customers need none.
        reaching = [c for c in candidates if gate.reaches(c, ctx)]
        ctx.history_since = gate.history_since(ctx, reaching)
        ctx.needed = gate.touches_needed(ctx, reaching)
        _read_touches(ctx, sorted({c.customer_id for c in reaching}))
    if _share_applies(policy, candidates):
        if not count_posts:
            ctx.posts_counted = False
        else:
            with GateClock("posts"):
                _count_posts(ctx, sorted(by_account))
    return ctx


def _read_consents(ctx: gate.GateContext, customer_ids: list[int]) -> None:
    for cid, purpose, carrier, status in bulk.lookup(
        Consent._meta.db_table,
        ["customer_id", "purpose", "carrier", "status"],
        where={},
        key="customer_id",
        values=customer_ids,
    ):
        ctx.consents[(cid, purpose, carrier)] = status


def _read_touches(ctx: gate.GateContext, customer_ids: list[int]) -> None:
    """The customers' touches since `ctx.history_since` (what the rules look back over for
    the batch's candidates; replacing any read before), only those `ctx.needed` names
    besides the marketing ones: an index-only range per customer of
    `message_customer_passed`."""
    since = ctx.history_since
    if since is None:
        since = ctx.now - dt.timedelta(
            days=max(gate.HISTORY_DAYS, ctx.policy.duplicate_window_days)
        )
    for cid in customer_ids:
        ctx.touches.pop(cid, None)
    needed = ctx.needed
    any_of: list[tuple[str, list[str]]] = []
    if needed is not None:
        any_of = [
            ("kind", [Message.Kind.MARKETING.value]),
            ("content_hash", sorted(needed.hashes)),
            ("carrier", sorted(needed.carriers)),
        ]
    for cid, at, kind, carrier, h, cause in bulk.lookup_since_any(
        Message._meta.db_table,
        ["customer_id", "passed_at", "kind", "carrier", "content_hash", "cause"],
        key="customer_id",
        values=customer_ids,
        since=("passed_at", since),
        any_of=any_of,
    ):
        if at.tzinfo is None:  # SQLite's driver gives the stored UTC time without its zone
            at = at.replace(tzinfo=dt.UTC)
        ctx.touches[cid].append(gate.Touch(at, kind, carrier, h, cause))


def _share_applies(policy: PolicySettings, candidates: Iterable[gate.Candidate]) -> bool:
    """Whether the marketing share can stop any of these: not at 100% (marketing may be every
    post: nothing to count or lock), and only for messages in its scope (an account's posts
    by default)."""
    return policy.marketing_share_max < 1 and any(
        c.kind == "marketing" and gate.in_share_scope(policy, c.cause) for c in candidates
    )


def _count_posts(ctx: gate.GateContext, account_ids: list[int]) -> None:
    """These accounts' posts in the share window (replacing any count made before): marketing
    and all, per account, read through `PostCounts`."""
    policy = ctx.policy
    window = ctx.now - dt.timedelta(days=policy.marketing_share_window_days)
    # The causes are named even for scope `all`: the count then reads one index range per
    # (account, cause) of `message_passed_posts` instead of every message the account sent.
    causes = gate.POST_CAUSES if policy.marketing_share_scope != "all" else Message.Cause.values
    for account_id, counts in POST_COUNTS.counts(account_ids, sorted(causes), window, ctx.now):
        ctx.account_posts[account_id] = counts


def _posts_between(
    account_ids: list[int], causes: list[str], since: dt.datetime, before: dt.datetime | None
) -> dict[int, list[int]]:
    """[marketing, all] posts per account that passed the gate in [since, before) (before
    None: no upper end), in one grouped statement: an index-only range per (account, cause) of
    `message_passed_posts`. Ids, causes and times are bound."""
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    params: list[Any]
    if connection.vendor == "postgresql":
        where, params = "account_id = ANY(%s) AND cause = ANY(%s)", [account_ids, causes]
    else:
        marks = ", ".join("%s" for _ in account_ids), ", ".join("%s" for _ in causes)
        where, params = (
            f"account_id IN ({marks[0]}) AND cause IN ({marks[1]})",
            [
                *account_ids,
                *causes,
            ],
        )
    where += " AND passed_at >= %s"
    params.append(connection.ops.adapt_datetimefield_value(since))
    if before is not None:
        where += " AND passed_at < %s"
        params.append(connection.ops.adapt_datetimefield_value(before))
    # One plain statement: building it as an ORM queryset cost more than running it.
    sql = f"SELECT account_id, kind, COUNT(*) FROM {table} WHERE {where} GROUP BY account_id, kind"  # noqa: S608
    out: dict[int, list[int]] = {a: [0, 0] for a in account_ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for account_id, kind, n in cursor.fetchall():
            out[account_id][1] += n
            if kind == "marketing":
                out[account_id][0] += n
    return out


def _posts_and_tallies(
    account_ids: list[int], causes: list[str], since: dt.datetime, split: dt.datetime
) -> tuple[dict[int, list[int]], dict[int, list[int]], dict[int, list[int]]]:
    """In one statement (one snapshot): [marketing, all] posts per account that passed in
    [since, split) and since `split`, and the accounts' running tallies
    (`AccountTouchLock.marketing_posts`, `.posts`; [0, 0] without a row yet). Reading them
    together is what makes a later tally's difference count exactly the posts committed
    after this read (`PostCounts`)."""
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    locks = qn(AccountTouchLock._meta.db_table)
    cut = connection.ops.adapt_datetimefield_value(split)
    start = connection.ops.adapt_datetimefield_value(since)
    if connection.vendor == "postgresql":
        accounts, in_causes = "account_id = ANY(%s)", "cause = ANY(%s)"
        ids_params: list[Any] = [account_ids]
        cause_params: list[Any] = [causes]
    else:
        accounts = f"account_id IN ({', '.join('%s' for _ in account_ids)})"
        in_causes = f"cause IN ({', '.join('%s' for _ in causes)})"
        ids_params, cause_params = list(account_ids), list(causes)
    # Tables and columns are ours; ids, causes and times are bound. A tally row has no kind.
    sql = (
        f"SELECT account_id, kind, CASE WHEN passed_at >= %s THEN 1 ELSE 0 END, COUNT(*) "  # noqa: S608
        f"FROM {table} WHERE {accounts} AND {in_causes} AND passed_at >= %s "
        f"GROUP BY 1, 2, 3 "
        f"UNION ALL SELECT account_id, NULL, marketing_posts, posts FROM {locks} "
        f"WHERE {accounts}"
    )
    params = [cut, *ids_params, *cause_params, start, *ids_params]
    before: dict[int, list[int]] = {a: [0, 0] for a in account_ids}
    after: dict[int, list[int]] = {a: [0, 0] for a in account_ids}
    tallies: dict[int, list[int]] = {a: [0, 0] for a in account_ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for account_id, kind, third, fourth in cursor.fetchall():
            if kind is None:
                tallies[account_id] = [int(third), int(fourth)]
                continue
            side = after if third else before
            side[account_id][1] += fourth
            if kind == "marketing":
                side[account_id][0] += fourth
    return before, after, tallies


def _tallies(account_ids: list[int]) -> dict[int, list[int]]:
    """The accounts' running post tallies, [marketing, all] ([0, 0] without a row yet)."""
    out: dict[int, list[int]] = {a: [0, 0] for a in account_ids}
    for account_id, m, t in bulk.lookup(
        AccountTouchLock._meta.db_table,
        ["account_id", "marketing_posts", "posts"],
        where={},
        key="account_id",
        values=account_ids,
    ):
        out[account_id] = [int(m), int(t)]
    return out


POSTS = gate.POST_CAUSES

#: The causes `AccountTouchLock`'s tallies count (an account's posts, the marketing share's
#: default scope), as `_count_posts` names them.
TALLIED_CAUSES = tuple(sorted(gate.POST_CAUSES))


def add_posts(posts: dict[int, list[int]], *, locked: bool = False) -> None:
    """Add posts that pass the gate now to their accounts' running tallies ([marketing, all]
    per account), in the transaction that sets their `passed_at`: every path that lets a post
    (a message whose cause is in `gate.POST_CAUSES`) through must call it, or `PostCounts`
    would miss the post until the settled part of its window moves past it. The rows are
    created if missing and locked in id order first (`locked`: this transaction already
    holds them, as `decide` does on PostgreSQL), so the update takes no lock out of order."""
    ids = sorted(a for a, (_, t) in posts.items() if t)
    if not ids:
        return
    if not locked:
        _lock_rows(AccountTouchLock, "account_id", ids)
    qn = connection.ops.quote_name
    table = qn(AccountTouchLock._meta.db_table)
    marketing = [posts[a][0] for a in ids]
    total = [posts[a][1] for a in ids]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} AS t SET marketing_posts = t.marketing_posts + v.m, "  # noqa: S608
                f"posts = t.posts + v.n FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) "
                f"AS v(id, m, n) WHERE t.account_id = v.id",
                [ids, marketing, total],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET marketing_posts = marketing_posts + %s, "  # noqa: S608
                f"posts = posts + %s WHERE account_id = %s",
                list(zip(marketing, total, ids, strict=True)),
            )


class PostCounts:
    """Accounts' post counts for the marketing share, without reading every post of the
    window for every pass.

    A large account posts hundreds of thousands of messages a week (a broadcast to each of its
    customers is one post per customer); counting them for every pass of 500 messages read
    the whole window each time (an account with 250,000 posts in the window: 11 ms of
    database CPU per count, twice per pass that spends the share). Once an account's window
    holds `min_posts` posts, each thread keeps its counts of the *settled* part of the
    window — posts that passed before `SETTLE` ago, whose transactions have committed — and
    each later count reads only the edges: the posts that left the window since (subtracted)
    and those that passed since the settled part ends. The settled part moves forward in
    steps of `STEP`. A count whose window starts before the kept one (a clock set back) or
    past its settled end reads the whole window again.

    What passed since the settled part ends is read every time (so what other workers just
    sent is always seen). For the default scope (the causes `AccountTouchLock`'s tallies
    count, `TALLIED_CAUSES`) it is not counted post by post: when the settled part is
    (re)set, the posts since its end and the accounts' running tallies are read in one
    snapshot (`_posts_and_tallies`), and each later count reads only the tallies: the posts
    since = those counted then + how much the tallies grew. Counting the recent posts
    themselves cost O(posts sent so far) per pass under the account's lock — heap visits of
    outbox rows no vacuum has yet marked visible, two versions per post — which grew through
    a run (20 s of a million-message run). Other scopes count the recent posts.

    The result equals the full count for every post whose transaction committed within
    `SETTLE` of setting `passed_at` (a pass commits within a second; the gate writes
    `passed_at` as its clock's now) and that `add_posts` added to its account's tallies
    (every delivery pass does, in the transaction that sets `passed_at`; a message deleted
    within the recent part stays counted until the settled part moves past it). Under
    concurrency a pass that spends an account's share counts after locking the account
    (`AccountTouchLock`), which every other pass that lets a post through the account
    holds until commit, so no post is missed."""

    SETTLE = dt.timedelta(minutes=2)
    STEP = dt.timedelta(minutes=10)

    def __init__(self, min_posts: int = 5000) -> None:
        self.min_posts = min_posts
        self._local = threading.local()

    @property
    def kept(self) -> dict[tuple[str, int, tuple[str, ...]], list[Any]]:
        """(database, account, causes) -> [window start, settled end, marketing, all,
        recent offset] per thread (each thread has its own connection and transactions); the
        offset ([marketing, all] posts since the settled end minus the tallies, read
        together) is None where the causes are not the tallies'."""
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = {}
        return kept

    def clear(self) -> None:
        self.kept.clear()

    def counts(
        self, account_ids: list[int], causes: list[str], window: dt.datetime, now: dt.datetime
    ) -> list[tuple[int, list[int]]]:
        database = str(connection.settings_dict.get("NAME"))
        key_of = {a: (database, a, tuple(causes)) for a in account_ids}
        tallied = tuple(causes) == TALLIED_CAUSES
        out: dict[int, list[int]] = {}
        cold = [
            a
            for a in account_ids
            if (kept := self.kept.get(key_of[a])) is None or not kept[0] <= window < kept[1] <= now
        ]
        if cold:
            settled = now - self.SETTLE
            offsets: dict[int, list[int] | None] = dict.fromkeys(cold)
            if tallied:
                old, recent, tallies = _posts_and_tallies(cold, causes, window, settled)
                for a in cold:
                    offsets[a] = [recent[a][0] - tallies[a][0], recent[a][1] - tallies[a][1]]
            else:
                old = _posts_between(cold, causes, window, settled)
                recent = _posts_between(cold, causes, settled, None)
            for a in cold:
                (m, t), (rm, rt) = old[a], recent[a]
                out[a] = [m + rm, t + rt]
                if t >= self.min_posts:
                    self.kept[key_of[a]] = [window, settled, m, t, offsets[a]]
                else:
                    self.kept.pop(key_of[a], None)
        warm = [a for a in account_ids if a not in out]
        if warm:
            # The posts that left the window, per account (each read from its own start).
            for start in sorted({self.kept[key_of[a]][0] for a in warm}):
                group = [a for a in warm if self.kept[key_of[a]][0] == start]
                if start < window:
                    left = _posts_between(group, causes, start, window)
                    for a in group:
                        kept = self.kept[key_of[a]]
                        kept[0], kept[2], kept[3] = (
                            window,
                            kept[2] - left[a][0],
                            kept[3] - left[a][1],
                        )
            # The settled part moves forward in steps; then what passed since it ends.
            for end in sorted({self.kept[key_of[a]][1] for a in warm}):
                group = [a for a in warm if self.kept[key_of[a]][1] == end]
                settled = now - self.SETTLE
                moves = settled - end >= self.STEP
                if tallied and moves:
                    more, recent, tallies = _posts_and_tallies(group, causes, end, settled)
                    for a in group:
                        kept = self.kept[key_of[a]]
                        kept[1], kept[2], kept[3] = (
                            settled,
                            kept[2] + more[a][0],
                            kept[3] + more[a][1],
                        )
                        kept[4] = [recent[a][0] - tallies[a][0], recent[a][1] - tallies[a][1]]
                        out[a] = [kept[2] + recent[a][0], kept[3] + recent[a][1]]
                    continue
                if tallied:
                    tallies = _tallies(group)
                    for a in group:
                        kept = self.kept[key_of[a]]
                        offset = kept[4]
                        out[a] = [
                            kept[2] + tallies[a][0] + offset[0],
                            kept[3] + tallies[a][1] + offset[1],
                        ]
                    continue
                if moves:
                    more = _posts_between(group, causes, end, settled)
                    for a in group:
                        kept = self.kept[key_of[a]]
                        kept[1], kept[2], kept[3] = (
                            settled,
                            kept[2] + more[a][0],
                            kept[3] + more[a][1],
                        )
                    end = settled
                recent = _posts_between(group, causes, end, None)
                for a in group:
                    kept = self.kept[key_of[a]]
                    out[a] = [kept[2] + recent[a][0], kept[3] + recent[a][1]]
        return [(a, out[a]) for a in account_ids]


#: The kept counts of this process's threads (see PostCounts).
POST_COUNTS = PostCounts()


def _lock_rows(model: type[models.Model], key: str, ids: list[int]) -> None:
    """Create the missing lock rows of `ids` (one `INSERT … ON CONFLICT DO NOTHING`) and lock
    them all, in id order, so that two passes over the same ids cannot deadlock."""
    table = model._meta.db_table
    bulk.insert_new_rows(table, [(key, "int")], [(i,) for i in ids])
    bulk.lookup(table, [key], where={}, key=key, values=ids, for_update=True)


def _concurrent() -> bool:
    """Whether another pass can decide at the same time as this one (PostgreSQL). On SQLite
    the claim's transaction is IMMEDIATE: it is the only writer from its first statement,
    so what it read is current until it commits, and no lock rows are needed."""
    return connection.vendor == "postgresql"


def sent_event(m: Message | Row, at: dt.datetime) -> dict[str, Any]:
    """The `message.sent` event of a message that reached the customer (or that staff
    confirmed): the one shape every path stores, keyed so it is stored once."""
    return {
        "type": "message.sent",
        "occurred_at": at,
        "source": "messaging",
        "idempotency_key": f"message.sent:{m.pk}",
        "customer_id": m.customer_id,
        "properties": {
            "carrier": m.carrier,
            "account_id": str(m.account_id),
            "message_id": str(m.pk),
            "kind": m.kind,
        },
    }


def candidate_of(m: Row) -> gate.Candidate:
    return gate.Candidate(
        customer_id=m.customer_id,
        account_id=m.account_id,
        carrier=m.carrier,
        kind=m.kind,
        content_hash=m.content_hash,
        not_after=m.not_after,
        message_id=m.pk,
        cause=m.cause,
    )


# --- The pass --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Row:
    """A claimed outbox row: the columns a pass reads (`CLAIM`) and writes, without the cost
    of a `Message` instance. `content` stays JSON text until the message goes out."""

    id: int
    brand_id: int
    customer_id: int
    account_id: int
    carrier: str
    kind: str
    cause: str
    content_hash: str
    status: str
    attempts: int
    not_after: dt.datetime | None
    created_at: dt.datetime
    passed_at: dt.datetime | None
    idempotency_key: str
    due_at: dt.datetime
    claimed_until: dt.datetime | None
    content_json: str
    rule: str = ""
    reason: str = ""
    finished_at: dt.datetime | None = None
    carrier_message_id: str = ""
    sent_at: dt.datetime | None = None

    @property
    def pk(self) -> int:
        return self.id

    @property
    def content(self) -> dict[str, Any]:
        value = json.loads(self.content_json) if self.content_json else {}
        return value if isinstance(value, dict) else {}


#: The columns a claim reads (`Row`'s fields up to `content_json`, which is `content` as text).
CLAIM = [
    "id",
    "brand_id",
    "customer_id",
    "account_id",
    "carrier",
    "kind",
    "cause",
    "content_hash",
    "status",
    "attempts",
    "not_after",
    "created_at",
    "passed_at",
    "idempotency_key",
    "due_at",
    "claimed_until",
]


@dataclass
class Claimed:
    message: Row
    recipient: str


class Writes:
    """A pass's row changes, grouped by the columns each kind of change sets: one UPDATE per
    group (`core.bulk.update_rows`), and no column written that the change leaves alone."""

    PASSED = ("status", "rule", "reason", "passed_at", "claimed_until", "attempts")
    DEFERRED = ("status", "rule", "reason", "due_at", "not_after")
    FINISHED = ("status", "rule", "reason", "finished_at")
    RETRIED = ("claimed_until", "attempts")
    SENT = ("status", "carrier_message_id", "sent_at", "claimed_until")
    PENDING = ("status", "carrier_message_id", "claimed_until")
    BACKED_OFF = ("claimed_until", "reason")
    FAILED = ("status", "reason", "finished_at", "rule", "claimed_until")

    def __init__(self) -> None:
        self.groups: dict[tuple[str, ...], list[Row]] = defaultdict(list)

    def add(self, fields: tuple[str, ...], row: Row) -> None:
        self.groups[fields].append(row)

    def save(self) -> None:
        for fields, rows in self.groups.items():
            save_rows(rows, fields)


def save_rows(rows: Sequence[Row], fields: Sequence[str]) -> None:
    """Write these fields of these rows in one statement (`core.bulk.update_rows`, which
    reads only each row's `pk` and the fields' attributes)."""
    update_rows(Message, cast("Sequence[Message]", rows), fields)


def _decide_all(
    candidates: Sequence[gate.Candidate], ctx: gate.GateContext, decisions: list[gate.Decision]
) -> None:
    """Decide candidates in order (each sees those passed before it); `decisions` is filled
    in place, where it is None."""
    for n, c in enumerate(candidates):
        if decisions[n] is not None:
            continue
        d = decisions[n] = gate.evaluate(c, ctx)
        if d.outcome == "pass":
            ctx.record(c)


#: `decide` counts an account's posts before its first decision after all when more than
#: this many customers (or a tenth of the batch, if that is more) have a message the share
#: could stop.
PROVISIONAL_MAX = 50


def decide(
    *,
    brand: Brand,
    policy: PolicySettings,
    candidates: Sequence[gate.Candidate],
    now: dt.datetime,
    adapters: Adapters,
    enabled: bool = True,
) -> tuple[gate.GateContext, list[gate.Decision]]:
    """The gate's decisions for a batch, each as if the batch ran alone, and no cap or share
    exceeded by concurrent passes.

    First every candidate is decided on what is committed now, without locks. A block,
    deferral or expiry needs no lock: what it rests on (a missing contact or consent, touches
    already made, posts already counted, the clock) only stays true or tightens while other
    passes spend caps. Only a pass spends: when some passed, their customers' TouchLock rows
    are locked (in id order, then the rows of the accounts whose marketing share they may
    spend), those customers' history and those accounts' posts are read again, and their
    messages decided again in batch order. On SQLite the first decision is final (the pass
    is the only writer).

    On PostgreSQL the first decision does not count the accounts' posts: a message the
    marketing share could stop passes provisionally (`gate.PROVISIONAL`) and is decided
    again with every rule, as every pass is, with its customer and account locked and the
    posts counted — the posts are counted once per pass instead of twice, and a message the
    share blocks locks its rows like a pass. Where many messages of the batch reach the share
    (more than `PROVISIONAL_MAX` customers, or a tenth of a larger batch: an account's share is
    full, say), the posts are counted before the first decision after all, as on SQLite,
    and a block by the share locks nothing. Either way each message gets the decision the
    counts give."""
    ctx = load_context(
        brand=brand,
        candidates=candidates,
        now=now,
        adapters=adapters,
        policy=policy,
        enabled=enabled,
        count_posts=not _concurrent(),
    )
    decisions: list[gate.Decision] = [None] * len(candidates)  # type: ignore[list-item]
    read = {cid: len(touches) for cid, touches in ctx.touches.items()}
    with GateClock("decide"):  # the decisions, in order: each sees those passed before it
        _decide_all(candidates, ctx, decisions)
    provisional = {
        c.customer_id for c, d in zip(candidates, decisions, strict=True) if d == gate.PROVISIONAL
    }
    if len(provisional) > max(PROVISIONAL_MAX, len(candidates) // 10):
        # Many messages the share could stop (an account's share is full, say): counted now,
        # most are blocked without locking their customers and accounts.
        with GateClock("posts"):
            for cid, touches in ctx.touches.items():
                del touches[read.get(cid, 0) :]  # what the first decision recorded
            ctx.posts_counted = True
            _count_posts(ctx, sorted({c.account_id for c in candidates}))
        decisions = [None] * len(candidates)  # type: ignore[list-item]
        with GateClock("decide"):
            _decide_all(candidates, ctx, decisions)
    posts_before = {a: list(p) for a, p in ctx.account_posts.items()}
    if not enabled or not _concurrent():
        return ctx, decisions
    passing = sorted(
        {c.customer_id for c, d in zip(candidates, decisions, strict=True) if d.outcome == "pass"}
    )
    if not passing:
        return ctx, decisions
    again = set(passing)
    # The accounts whose share these customers' marketing may spend (service messages only
    # loosen a share: they lock no account).
    share: list[int] = []
    if _share_applies(policy, candidates):
        share = sorted(
            {
                c.account_id
                for c in candidates
                if c.customer_id in again
                and c.kind == "marketing"
                and gate.in_share_scope(policy, c.cause)
            }
        )
    # And the accounts whose posts these customers' messages may add to (`add_posts` adds
    # them to the account's tallies under its lock: a share count made under the lock then
    # misses no post, service posts included).
    posting = sorted(
        set(share)
        | {c.account_id for c in candidates if c.customer_id in again and c.cause in POSTS}
    )
    with GateClock("lock"):
        _lock_rows(TouchLock, "customer_id", passing)
        if posting:
            _lock_rows(AccountTouchLock, "account_id", posting)
    fresh = gate.GateContext(
        now=now,
        tz=ctx.tz,
        policy=policy,
        recipients=ctx.recipients,
        consents=ctx.consents,
        touches=ctx.touches,
        account_posts=defaultdict(lambda: [0, 0], posts_before),
        history_since=ctx.history_since,
        needed=ctx.needed,
    )
    with GateClock("locked history"):
        _read_touches(fresh, passing)
    if share:
        with GateClock("locked posts"):
            _count_posts(fresh, share)
    with GateClock("locked decide"):
        for n, c in enumerate(candidates):
            if c.customer_id in again:
                decisions[n] = None  # type: ignore[call-overload]
        _decide_all(candidates, fresh, decisions)
    _check_final(decisions)
    return fresh, decisions


class GateError(RuntimeError):
    """The gate broke one of its own invariants (a bug, never a property of the data)."""


def _check_final(decisions: Sequence[gate.Decision]) -> None:
    """Every provisional pass (`gate.PROVISIONAL`: the posts were not counted) must have been
    decided again under the lock before the pass writes anything: a real check, not an
    `assert` (which `python -O` drops), because sending such a message could exceed the
    marketing share. Raising inside the claim's transaction rolls the pass back."""
    for d in decisions:
        if d == gate.PROVISIONAL:
            raise GateError("a provisional pass was not decided again with the posts counted")


def apply_gate(
    rows: Sequence[Row],
    *,
    now: dt.datetime,
    adapters: Adapters,
    writes: Writes,
    gate_enabled: bool = True,
) -> list[Claimed]:
    """Decide fresh messages (inside the caller's transaction, their rows locked): those
    that passed become `sending` and are returned; every change is added to `writes`."""
    passed: list[Claimed] = []
    lease = now + dt.timedelta(seconds=claim_seconds())
    by_brand: dict[int, list[Row]] = defaultdict(list)
    for m in rows:
        by_brand[m.brand_id].append(m)
    # Brands in id order: a pass locks (brand, customers then accounts, ids) in one global
    # order, so two passes over several brands cannot deadlock either.
    for brand_id, group in sorted(by_brand.items()):
        brand, policy = adapters.brand(brand_id)
        candidates = [candidate_of(m) for m in group]
        ctx, decisions = decide(
            brand=brand,
            policy=policy,
            candidates=candidates,
            now=now,
            adapters=adapters,
            enabled=gate_enabled,
        )
        posts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for m, d in zip(group, decisions, strict=True):
            if d.outcome == "pass":
                if m.cause in POSTS:
                    tally = posts[m.account_id]
                    tally[0] += m.kind == Message.Kind.MARKETING
                    tally[1] += 1
                m.status, m.rule, m.reason = S.SENDING, "", ""
                m.passed_at, m.claimed_until, m.attempts = now, lease, m.attempts + 1
                sealed = ctx.recipients.get((m.customer_id, m.account_id))
                passed.append(Claimed(m, carriers.open_address(sealed) if sealed else ""))
                writes.add(Writes.PASSED, m)
            elif d.outcome == "defer":
                if m.not_after is None:
                    m.not_after = m.created_at + dt.timedelta(days=policy.defer_max_days)
                    if d.until and d.until > m.not_after:
                        m.not_after = d.until
                m.status, m.rule, m.reason = S.DEFERRED, d.rule, d.reason
                m.due_at = d.until or now
                writes.add(Writes.DEFERRED, m)
            else:
                m.status = S.BLOCKED if d.outcome == "block" else S.EXPIRED
                m.rule, m.reason, m.finished_at = d.rule, d.reason[:500], now
                writes.add(Writes.FINISHED, m)
        # Per brand, right after its decisions: its accounts come before the next brand's
        # customers in the pass's lock order (`decide` holds them already on PostgreSQL
        # with the gate on).
        add_posts(posts, locked=gate_enabled and _concurrent())
    return passed


#: Where this process's last claim of each kind of due row stopped, per database:
#: (status, database alias) -> (due column value, id) of the last row it took.
_SWEEP: dict[tuple[str, str], tuple[dt.datetime, int]] = {}
db.forget_on_flush(_SWEEP.clear)


def _claim_rows(*, limit: int, now: dt.datetime) -> list[Row]:
    """Lock up to `limit` due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL), one indexed read
    per kind of due row (an OR of them would scan and sort the outbox): sends whose lease ran
    out first, then deferred messages whose time came, then the queue.

    Each kind is read as a sweep: a claim starts after the last row this process took of that
    kind, and the sweep starts over once a read finds fewer rows than it wants (the backlog
    is drained). On PostgreSQL every row a pass decides leaves a dead entry in the index,
    which stays until a vacuum (a long transaction anywhere on the server delays it); read
    from the start each time, a claim would walk every row decided so far, so a backlog of a
    million would cost O(n²). Rows behind the sweep (taken by another worker and given back,
    or queued late with an earlier due time) are read when it starts over."""
    alias = connection.alias
    kinds = (
        (S.SENDING, Q(status=S.SENDING, claimed_until__lte=now), "claimed_until"),
        (S.DEFERRED, Q(status=S.DEFERRED, due_at__lte=now), "due_at"),
        (S.QUEUED, Q(status=S.QUEUED, due_at__lte=now), "due_at"),
    )
    rows: list[Row] = []
    for status, where, column in kinds:
        if len(rows) >= limit:
            break
        key = (str(status), alias)
        after = _SWEEP.get(key)
        got = _due_rows(where, column, limit - len(rows), after=after)
        if len(got) < limit - len(rows) and after is not None:
            # The end of the sweep: start over for the rest (without the rows just taken).
            taken = [r.id for r in got]
            got += _due_rows(where, column, limit - len(rows) - len(got), exclude=taken)
            _SWEEP.pop(key, None)
        if got and len(got) == limit - len(rows):
            last = got[-1]
            _SWEEP[key] = (getattr(last, column), last.id)
        rows += got
    return rows


def _due_rows(
    where: Q,
    column: str,
    limit: int,
    *,
    after: tuple[dt.datetime, int] | None = None,
    exclude: Sequence[int] = (),
) -> list[Row]:
    qs = Message.objects.select_for_update(skip_locked=True, of=("self",)).filter(where)
    if after is not None:
        # Row comparison: the index range starts right after the last row taken.
        # `column` is one of ours (never input); the values are bound.
        sql = f"({column}, id) > (%s, %s)"
        bound = (connection.ops.adapt_datetimefield_value(after[0]), after[1])
        qs = qs.filter(RawSQL(sql, bound, output_field=BooleanField()))  # noqa: S611
    if exclude:
        qs = qs.exclude(id__in=exclude)
    due = (
        qs.order_by(column, "id")
        .annotate(content_json=Cast("content", TextField()))
        .values_list(*CLAIM, "content_json")[:limit]
    )
    return [Row(*values) for values in bulk.fetch_values(due)]


def claim(
    *, limit: int, now: dt.datetime, adapters: Adapters, gate_enabled: bool = True
) -> tuple[list[Claimed], int]:
    """Step 1 of a pass, in one transaction: the messages to send, and how many rows it
    decided in all."""
    with transaction.atomic():
        rows = _claim_rows(limit=limit, now=now)
        if not rows:
            return [], 0
        writes = Writes()
        fresh = [m for m in rows if m.status != S.SENDING]
        retries = [m for m in rows if m.status == S.SENDING]
        passed = apply_gate(
            fresh, now=now, adapters=adapters, writes=writes, gate_enabled=gate_enabled
        )
        lease = now + dt.timedelta(seconds=claim_seconds())
        if retries:
            adapters.load({m.account_id for m in retries})
            by_account: dict[int, set[int]] = defaultdict(set)
            for m in retries:
                by_account[m.account_id].add(m.customer_id)
            addresses: dict[tuple[int, int], str] = {}
            for account_id, ids in by_account.items():
                found = carriers.recipients(
                    account=adapters.accounts[account_id],
                    capabilities=adapters.get(account_id).capabilities,
                    customer_ids=ids,
                )
                addresses.update({(cid, account_id): a for cid, a in found.items()})
            for m in retries:
                m.claimed_until, m.attempts = lease, m.attempts + 1
                writes.add(Writes.RETRIED, m)
                passed.append(Claimed(m, addresses.get((m.customer_id, m.account_id), "")))
        writes.save()
    _crash_point("after_claim")
    return passed, len(rows)


@dataclass
class Outcome:
    message: Row
    result: SendResult | None = None
    error: CarrierError | None = None


#: Messages per adapter call when the adapter sends in batches (`Carrier.send_batch`).
SEND_CHUNK = 500


def outbound_of(m: Row, recipient: str) -> Outbound:
    return Outbound(
        idempotency_key=f"{m.brand_id}:{m.idempotency_key}",
        brand_id=m.brand_id,
        account_id=m.account_id,
        customer_id=m.customer_id,
        recipient=recipient,
        kind=m.kind,
        content=m.content,
        cause=m.cause,
        attempt=m.attempts,
        first_passed_at=m.passed_at,
    )


def send(claimed: Sequence[Claimed], *, adapters: Adapters) -> list[Outcome]:
    """Step 2: every send outside any transaction, each with the message's idempotency key;
    per account in chunks through `send_batch` when the adapter has it, else one by one."""
    outcomes = []
    by_account: dict[int, list[Claimed]] = defaultdict(list)
    for item in claimed:
        if not item.recipient:
            outcomes.append(
                Outcome(
                    item.message,
                    error=CarrierError(
                        "the customer no longer holds this account", transient=False, code="carrier"
                    ),
                )
            )
            continue
        by_account[item.message.account_id].append(item)
    for account_id, items in by_account.items():
        adapter = adapters.get(account_id)
        for start in range(0, len(items), SEND_CHUNK):
            chunk = items[start : start + SEND_CHUNK]
            results = send_many(adapter, [outbound_of(i.message, i.recipient) for i in chunk])
            for item, result in zip(chunk, results, strict=True):
                if isinstance(result, CarrierError):
                    outcomes.append(Outcome(item.message, error=result))
                else:
                    outcomes.append(Outcome(item.message, result=result))
                _crash_point("after_send")
    return outcomes


def record(
    outcomes: Sequence[Outcome],
    *,
    now: dt.datetime,
    emit_events: bool = True,
    adapters: Adapters | None = None,
) -> None:
    """Step 3: the `message.sent` events, then the results in one transaction (inside a
    caller's transaction, both in it); `adapters`: the pass's, whose brands and policies it
    reuses."""
    if not outcomes:
        return
    adapters = adapters or Adapters()
    writes = Writes()
    events: dict[int, list[dict[str, object]]] = defaultdict(list)
    errors: dict[int, str] = {}
    policies = {bid: adapters.brand(bid)[1] for bid in {o.message.brand_id for o in outcomes}}
    for o in outcomes:
        m = o.message
        if o.result is not None:
            m.carrier_message_id = o.result.carrier_message_id[:200]
            if o.result.pending_confirmation:
                m.status = S.PENDING_CONFIRMATION
                m.claimed_until = now + dt.timedelta(
                    hours=policies[m.brand_id].confirm_timeout_hours
                )
                writes.add(Writes.PENDING, m)
            else:
                m.status, m.sent_at, m.claimed_until = S.SENT, now, None
                events[m.brand_id].append(sent_event(m, now))
                writes.add(Writes.SENT, m)
        else:
            assert o.error is not None
            if o.error.transient and m.attempts < policies[m.brand_id].max_attempts:
                m.claimed_until = now + backoff(m.attempts)
                m.reason = o.error.reason[:500]
                writes.add(Writes.BACKED_OFF, m)
            else:
                m.status, m.reason, m.finished_at = S.FAILED, o.error.reason[:500], now
                m.rule = "carrier" if o.error.code == "carrier" else ""
                m.claimed_until = None
                if o.error.code != "carrier":
                    errors[m.account_id] = o.error.reason
                writes.add(Writes.FAILED, m)
    if emit_events and not connection.in_atomic_block:
        # The events first, in their own transactions: storing them serialises per brand
        # (`events.services.ingest_events` resolves under the brand's lock, then folds the
        # aggregates under another), and inside the outbox's transaction a second worker
        # would wait for this one's whole record step. Killed between the two, the messages
        # stay `sending`: their lease runs out, they are re-sent with the same idempotency
        # key (the carrier dedupes it) and recorded again, and their events, keyed per
        # message, are found stored: nothing is lost or doubled.
        for brand_id, items in events.items():
            ingest_in_batches(brand=adapters.brand(brand_id)[0], items=items)
        events.clear()
        _crash_point("after_events")
    with transaction.atomic():
        writes.save()
        if emit_events:  # inside a caller's transaction: with its outbox writes
            for brand_id, items in events.items():
                ingest_in_batches(brand=adapters.brand(brand_id)[0], items=items)
    for account_id, reason in errors.items():
        carriers.record_send_error(account_id=account_id, reason=reason)


def expire_unconfirmed(*, now: dt.datetime) -> int:
    """Broadcasts staff never confirmed on the carrier expire at their timeout."""
    return Message.objects.filter(status=S.PENDING_CONFIRMATION, claimed_until__lte=now).update(
        status=S.EXPIRED,
        rule="confirmation",
        reason="staff did not confirm it in time",
        finished_at=now,
        claimed_until=None,
    )


def deliver_due_messages(
    *, limit: int = BATCH, gate_enabled: bool = True, emit_events: bool = True
) -> int:
    """One bounded pass; returns how many messages it decided or sent."""
    now = clock.now()
    adapters = Adapters()
    claimed, decided = claim(limit=limit, now=now, adapters=adapters, gate_enabled=gate_enabled)
    outcomes = send(claimed, adapters=adapters)
    _crash_point("before_record")
    record(outcomes, now=clock.now(), emit_events=emit_events, adapters=adapters)
    return decided + expire_unconfirmed(now=now)


def run_loop() -> int:
    """The worker's claim loop (registered as `messaging.deliver`)."""
    return deliver_due_messages()
