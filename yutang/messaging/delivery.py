"""The delivery loop: claim due messages, run the gate, send, record.

One pass (`deliver_due_messages`):

1. In one transaction: claim up to `limit` due rows (`SELECT … FOR UPDATE SKIP LOCKED` on
   PostgreSQL through the ORM's `select_for_update(skip_locked=True)`; SQLite has one writer
   and its transactions are IMMEDIATE), lock the TouchLock rows of their customers in id
   order, load the gate context, decide each message, and write the outcome. A message that
   passes becomes `sending` with `passed_at` (it now counts toward caps) and a claim lease.
2. Outside any transaction: send each through its adapter with the message's idempotency key.
3. In one transaction: record the results and store `message.sent` events.

A worker killed at any point loses nothing and doubles nothing: a `sending` message whose
lease ran out is claimed again and re-sent with the same idempotency key (the carrier dedupes
it), without passing the gate twice; the sent events carry per-message idempotency keys.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Q

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
from yutang.core import clock
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
    """Adapters of the accounts a pass touches, built once per pass."""

    def __init__(self) -> None:
        self._cache: dict[int, Carrier] = {}
        self.accounts: dict[int, CarrierAccount] = {}

    def get(self, account_id: int) -> Carrier:
        if account_id not in self._cache:
            account = self.accounts.get(account_id) or CarrierAccount.objects.get(pk=account_id)
            self.accounts[account_id] = account
            self._cache[account_id] = build_adapter(carriers.account_config(account))
        return self._cache[account_id]

    def load(self, account_ids: Iterable[int]) -> None:
        missing = set(account_ids) - set(self.accounts)
        if not missing:
            return
        accounts = {a.pk: a for a in CarrierAccount.objects.filter(pk__in=missing)}
        connections = {
            c.account_id: c for c in CarrierConnection.objects.filter(account_id__in=missing)
        }
        for pk, account in accounts.items():
            self.accounts[pk] = account
            self._cache[pk] = build_adapter(carriers.account_config(account, connections.get(pk)))


class GateClock:
    """Seconds this process spent on the gate's own work (its locks, the consent, history and
    post-count reads, and the decisions), apart from what sending needs anyway (claiming,
    recipients, writing outcomes). Read by bench/delivery.py; costs two clock reads a step."""

    seconds = 0.0

    def __enter__(self) -> GateClock:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        GateClock.seconds += time.perf_counter() - self._start


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
    lock: bool = False,
    enabled: bool = True,
) -> gate.GateContext:
    policy = policy or policy_for(brand.pk)
    ctx = gate.GateContext(now=now, tz=brand.tz, policy=policy, enabled=enabled)
    customer_ids = sorted({c.customer_id for c in candidates})
    with GateClock():
        _lock_customers(customer_ids, lock=lock)
    by_account: dict[int, set[int]] = defaultdict(set)
    for c in candidates:
        by_account[c.account_id].add(c.customer_id)
    adapters.load(by_account)
    for account_id, ids in by_account.items():
        found = carriers.recipients(
            account=adapters.accounts[account_id],
            capabilities=adapters.get(account_id).capabilities,
            customer_ids=ids,
        )
        for cid, address in found.items():
            ctx.recipients[(cid, account_id)] = address
    if not enabled:
        return ctx
    with GateClock():
        _load_history(ctx, candidates, customer_ids, list(by_account), lock=lock)
    return ctx


def _lock_rows(model: type[models.Model], key: str, ids: list[int]) -> None:
    """Create the missing lock rows of `ids` and lock them all, in id order, so that two
    passes over the same ids cannot deadlock."""
    manager = model._default_manager
    manager.bulk_create([model(**{key: i}) for i in ids], ignore_conflicts=True)
    list(
        manager.select_for_update()
        .filter(**{f"{key}__in": ids})
        .order_by(key)
        .values_list(key, flat=True)
    )


def _lock_customers(customer_ids: list[int], *, lock: bool) -> None:
    """The batch's TouchLock rows, in id order."""
    if lock and customer_ids:
        _lock_rows(TouchLock, "customer_id", customer_ids)


def _lock_accounts(policy: PolicySettings, candidates: Sequence[gate.Candidate]) -> None:
    """The rows of the accounts whose marketing share this pass may spend, in id order and
    after the customers' rows (every pass takes them in that order: no deadlock), as late as
    possible: right before their posts are counted, so passes through the same accounts
    wait for each other only for the count, the decisions and the write. Service messages
    only add to an account's total (they loosen the share): they lock no account."""
    share_accounts = sorted(
        {
            c.account_id
            for c in candidates
            if c.kind == "marketing" and gate.in_share_scope(policy, c.cause)
        }
    )
    if share_accounts:
        _lock_rows(AccountTouchLock, "account_id", share_accounts)


def _load_history(
    ctx: gate.GateContext,
    candidates: Sequence[gate.Candidate],
    customer_ids: list[int],
    account_ids: list[int],
    *,
    lock: bool,
) -> None:
    """Consents, touch history and every account's post counts, one query each."""
    policy, now = ctx.policy, ctx.now
    for cid, purpose, carrier, status in Consent.objects.filter(
        customer_id__in=customer_ids
    ).values_list("customer_id", "purpose", "carrier", "status"):
        ctx.consents[(cid, purpose, carrier)] = status
    since = now - dt.timedelta(days=max(gate.HISTORY_DAYS, policy.duplicate_window_days))
    for cid, at, kind, carrier, h, cause in Message.objects.filter(
        customer_id__in=customer_ids, passed_at__gte=since
    ).values_list("customer_id", "passed_at", "kind", "carrier", "content_hash", "cause"):
        ctx.touches[cid].append(gate.Touch(at, kind, carrier, h, cause))
    for account_id in account_ids:
        ctx.account_posts[account_id] = [0, 0]
    if policy.marketing_share_max >= 1:
        return  # marketing may be every post: the rule never blocks, nothing to count or lock
    if not any(gate.in_share_scope(policy, c.cause) for c in candidates):
        return  # no post in this pass: the share neither limits it nor needs counting
    if lock:
        _lock_accounts(policy, candidates)
    # Every account's posts in the share window, in one grouped query (read after the account
    # rows are locked, so it includes what other workers let through before us).
    window = now - dt.timedelta(days=policy.marketing_share_window_days)
    counted = Message.objects.filter(account_id__in=account_ids, passed_at__gte=window)
    if policy.marketing_share_scope != "all":
        counted = counted.filter(cause__in=gate.POST_CAUSES)
    for account_id, kind, n in (
        counted.values_list("account_id", "kind").annotate(n=Count("id")).order_by()
    ):
        posts = ctx.account_posts[account_id]
        posts[1] += n
        if kind == "marketing":
            posts[0] += n


def sent_event(m: Message, at: dt.datetime) -> dict[str, Any]:
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


def candidate_of(m: Message) -> gate.Candidate:
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


@dataclass
class Claimed:
    message: Message
    recipient: str


def apply_gate(
    messages: Sequence[Message], *, now: dt.datetime, adapters: Adapters, gate_enabled: bool = True
) -> tuple[list[Claimed], list[Message]]:
    """Decide fresh messages (inside the caller's transaction, their rows locked). Returns
    those that passed (now `sending`) and every changed row to save."""
    passed: list[Claimed] = []
    changed: list[Message] = []
    lease = now + dt.timedelta(seconds=claim_seconds())
    by_brand: dict[int, list[Message]] = defaultdict(list)
    for m in messages:
        by_brand[m.brand_id].append(m)
    for brand_id, group in by_brand.items():
        brand = Brand.objects.get(pk=brand_id)
        policy = policy_for(brand_id)
        candidates = [candidate_of(m) for m in group]
        ctx = load_context(
            brand=brand,
            candidates=candidates,
            now=now,
            adapters=adapters,
            policy=policy,
            lock=True,
            enabled=gate_enabled,
        )
        with GateClock():  # the decisions, in order: each sees those passed before it
            for m, c in zip(group, candidates, strict=True):
                d = gate.evaluate(c, ctx)
                if d.outcome == "pass":
                    ctx.record(c)
                    m.status, m.rule, m.reason = S.SENDING, "", ""
                    m.passed_at, m.claimed_until, m.attempts = now, lease, m.attempts + 1
                    passed.append(Claimed(m, ctx.recipients.get((m.customer_id, m.account_id), "")))
                elif d.outcome == "defer":
                    if m.not_after is None:
                        m.not_after = m.created_at + dt.timedelta(days=policy.defer_max_days)
                        if d.until and d.until > m.not_after:
                            m.not_after = d.until
                    m.status, m.rule, m.reason, m.due_at = (
                        S.DEFERRED,
                        d.rule,
                        d.reason,
                        d.until or now,
                    )
                else:
                    m.status = S.BLOCKED if d.outcome == "block" else S.EXPIRED
                    m.rule, m.reason, m.finished_at = d.rule, d.reason[:500], now
                changed.append(m)
    return passed, changed


FIELDS = [
    "status",
    "rule",
    "reason",
    "passed_at",
    "claimed_until",
    "attempts",
    "due_at",
    "not_after",
    "finished_at",
]
LOAD = [
    "id",
    "brand_id",
    "customer_id",
    "account_id",
    "carrier",
    "kind",
    "content",
    "content_hash",
    "cause",
    "status",
    "attempts",
    "not_after",
    "created_at",
    "idempotency_key",
    "due_at",
    "passed_at",
    "rule",
    "reason",
    "claimed_until",
    "finished_at",
    "carrier_message_id",
    "sent_at",
]


def save_rows(messages: Sequence[Message], fields: Sequence[str]) -> None:
    """Write these fields of these rows in one statement (`core.bulk.update_rows`)."""
    update_rows(Message, messages, fields)


def claim(
    *, limit: int, now: dt.datetime, adapters: Adapters, gate_enabled: bool = True
) -> tuple[list[Claimed], int]:
    """Step 1 of a pass, in one transaction: the messages to send, and how many rows it
    decided in all."""
    # One indexed read per kind of due row (an OR of them would scan and sort the outbox):
    # sends whose lease ran out first, then deferred messages whose time came, then the queue.
    due = (
        (Q(status=S.SENDING, claimed_until__lte=now), ("claimed_until", "id")),
        (Q(status=S.DEFERRED, due_at__lte=now), ("due_at", "id")),
        (Q(status=S.QUEUED, due_at__lte=now), ("due_at", "id")),
    )
    with transaction.atomic():
        rows: list[Message] = []
        for where, order in due:
            if len(rows) >= limit:
                break
            rows += list(
                Message.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(where)
                .order_by(*order)
                .only(*LOAD)[: limit - len(rows)]
            )
        if not rows:
            return [], 0
        fresh = [m for m in rows if m.status != S.SENDING]
        retries = [m for m in rows if m.status == S.SENDING]
        passed, changed = apply_gate(fresh, now=now, adapters=adapters, gate_enabled=gate_enabled)
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
                changed.append(m)
                passed.append(Claimed(m, addresses.get((m.customer_id, m.account_id), "")))
        save_rows(changed, FIELDS)
    _crash_point("after_claim")
    return passed, len(rows)


@dataclass
class Outcome:
    message: Message
    result: SendResult | None = None
    error: CarrierError | None = None


#: Messages per adapter call when the adapter sends in batches (`Carrier.send_batch`).
SEND_CHUNK = 500


def outbound_of(m: Message, recipient: str) -> Outbound:
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


def record(outcomes: Sequence[Outcome], *, now: dt.datetime, emit_events: bool = True) -> None:
    """Step 3: results and `message.sent` events, in one transaction."""
    if not outcomes:
        return
    changed: list[Message] = []
    events: dict[int, list[dict[str, object]]] = defaultdict(list)
    errors: dict[int, str] = {}
    max_attempts = {
        bid: policy_for(bid).max_attempts for bid in {o.message.brand_id for o in outcomes}
    }
    for o in outcomes:
        m = o.message
        if o.result is not None:
            m.carrier_message_id = o.result.carrier_message_id[:200]
            if o.result.pending_confirmation:
                m.status = S.PENDING_CONFIRMATION
                m.claimed_until = now + dt.timedelta(
                    hours=policy_for(m.brand_id).confirm_timeout_hours
                )
            else:
                m.status, m.sent_at, m.claimed_until = S.SENT, now, None
                events[m.brand_id].append(sent_event(m, now))
        else:
            assert o.error is not None
            if o.error.transient and m.attempts < max_attempts[m.brand_id]:
                m.claimed_until = now + backoff(m.attempts)
                m.reason = o.error.reason[:500]
            else:
                m.status, m.reason, m.finished_at = S.FAILED, o.error.reason[:500], now
                m.rule = "carrier" if o.error.code == "carrier" else ""
                m.claimed_until = None
                if o.error.code != "carrier":
                    errors[m.account_id] = o.error.reason
        changed.append(m)
    with transaction.atomic():
        save_rows(
            changed,
            [
                "status",
                "carrier_message_id",
                "sent_at",
                "claimed_until",
                "reason",
                "finished_at",
                "rule",
            ],
        )
        if emit_events:
            for brand_id, items in events.items():
                brand = Brand.objects.get(pk=brand_id)
                ingest_in_batches(brand=brand, items=items)
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
    record(outcomes, now=clock.now(), emit_events=emit_events)
    return decided + expire_unconfirmed(now=now)


def run_loop() -> int:
    """The worker's claim loop (registered as `messaging.deliver`)."""
    return deliver_due_messages()
