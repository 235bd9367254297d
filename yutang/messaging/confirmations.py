"""What became of messages waiting for staff confirmation (WeCom mass-message tasks).

A message a carrier accepted as a task staff must confirm is `pending_confirmation` with its
task id (`carrier_message_id`) and its deadline (`claimed_until`, `confirm_timeout_hours`
after it was sent). For carriers that can say what became of each recipient of a task
(`carriers.base.ConfirmationCarrier`: WeCom's get_groupmsg_send_result), the worker's
`messaging.confirmations` loop asks, and moves each message on:

- sent (WeCom status 1) → `sent` at WeCom's send time, with `message.sent` stored through the
  same recording path as every other send (so journeys waiting for the confirmation go on);
- no longer a contact (2) → `failed`, rule `carrier`;
- already received a mass message (3: WeCom's own per-customer limit) → `blocked`, rule
  `platform_limit`;
- not confirmed yet (0) → left waiting and asked again later: every minute for a fresh task,
  less often as it ages (a quarter of its age, at most every 15 minutes), and a last time
  `FINAL_CHECK` before its deadline. Still unconfirmed then, the task is cancelled on the
  carrier (so nobody can send it after Yutang gave up on it) and the message `expired`, rule
  `confirmation`.

Which messages are due is kept in `due_at` (unused once a message has been sent), read in
`(status, due_at, id)` order from the outbox's own index; a pass claims them with a short
lease (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL), asks the carrier outside any
transaction, one call per task (per 1,000 recipients), through the client's rate limiter,
and writes each outcome conditionally on the message still waiting, so a staff member's
manual confirmation, a cancellation or a second worker never collide with it. The loop holds
a database lease, so one worker at a time polls the carriers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction

from yutang.carriers.base import (
    CarrierError,
    ConfirmationCarrier,
    RecipientResult,
    RecipientStatus,
    confirming_kinds,
)
from yutang.carriers.models import CarrierContact
from yutang.core import clock, crypto
from yutang.core.models import Brand
from yutang.events.services import ingest_in_batches
from yutang.messaging import delivery
from yutang.messaging.models import Message

logger = logging.getLogger("yutang.messaging")

S = Message.Status
BATCH = 500
#: A fresh task is asked about every minute; older ones every quarter of their age, at most
#: every 15 minutes.
MIN_INTERVAL = dt.timedelta(minutes=1)
MAX_INTERVAL = dt.timedelta(minutes=15)
#: The last look before the deadline: a task still unconfirmed then is cancelled.
FINAL_CHECK = dt.timedelta(minutes=1)
#: How long a claimed row is left to the pass that claimed it.
LEASE = dt.timedelta(minutes=2)
LOOP_LEASE = "messaging.confirmations"
LOOP_LEASE_TTL = dt.timedelta(minutes=5)

LOAD = (
    "id", "brand_id", "customer_id", "account_id", "carrier", "kind", "status",
    "carrier_message_id", "passed_at", "created_at", "claimed_until", "due_at",
)  # fmt: skip


def next_check(m: Message, now: dt.datetime) -> dt.datetime:
    """When to ask about a message still waiting: sooner while it is young, and never later
    than its last look before the deadline."""
    age = now - (m.passed_at or m.created_at)
    interval = min(max(age / 4, MIN_INTERVAL), MAX_INTERVAL)
    at = now + interval
    if m.claimed_until is not None:
        at = min(at, max(m.claimed_until - FINAL_CHECK, now + dt.timedelta(seconds=1)))
    return at


def _final(m: Message, now: dt.datetime) -> bool:
    return m.claimed_until is not None and now >= m.claimed_until - FINAL_CHECK


@dataclass
class Poll:
    """What one pass decided: rows per outcome, ready to write."""

    sent: list[tuple[Message, dt.datetime]]
    failed: list[tuple[Message, str]]
    blocked: list[tuple[Message, str]]
    expired: list[Message]
    waiting: list[Message]


def _addresses(messages: Sequence[Message]) -> dict[tuple[int, int], str]:
    """(account, customer) → the contact id the carrier knows the customer by (any status:
    a customer who deleted the member after the task was created still has a result)."""
    pairs = {(m.account_id, m.customer_id) for m in messages}
    rows = CarrierContact.objects.filter(
        account_id__in={a for a, _ in pairs}, customer_id__in={c for _, c in pairs}
    ).values_list("account_id", "customer_id", "external_encrypted")
    return {(a, c): crypto.decrypt_pii(enc) for a, c, enc in rows if (a, c) in pairs}


def ask(
    messages: Sequence[Message], *, now: dt.datetime, adapters: delivery.Adapters | None = None
) -> Poll:
    """Ask the carriers about these waiting messages, one call per task; decide each."""
    adapters = adapters or delivery.Adapters()
    adapters.load({m.account_id for m in messages})
    addresses = _addresses(messages)
    poll = Poll([], [], [], [], [])
    tasks: dict[tuple[int, str], list[Message]] = defaultdict(list)
    for m in messages:
        tasks[(m.account_id, m.carrier_message_id)].append(m)
    for (account_id, task_id), group in tasks.items():
        adapter = adapters.get(account_id)
        if not task_id or not isinstance(adapter, ConfirmationCarrier):
            poll.waiting.extend(group)
            continue
        try:
            results = adapter.confirmation_results(task_id)
        except CarrierError as exc:
            logger.warning("confirmation results of task %s: %s", task_id, exc.reason)
            poll.waiting.extend(group)
            continue
        unconfirmed = []
        for m in group:
            result = results.get(addresses.get((account_id, m.customer_id), ""))
            if not _decide(poll, m, result, now):
                unconfirmed.append(m)
        final = [m for m in unconfirmed if _final(m, now)]
        if final and len(final) == len(unconfirmed):
            try:
                adapter.cancel_task(task_id)
            except CarrierError as exc:
                logger.warning("cancelling task %s: %s", task_id, exc.reason)
            poll.expired.extend(final)
        else:
            poll.waiting.extend(unconfirmed)
    return poll


def _decide(poll: Poll, m: Message, result: RecipientResult | None, now: dt.datetime) -> bool:
    """File a message under its outcome; False while it is still unconfirmed."""
    if result is None or result.status == RecipientStatus.PENDING:
        return False
    if result.status == RecipientStatus.SENT:
        poll.sent.append((m, result.at or now))
    elif result.status == RecipientStatus.NOT_A_CONTACT:
        poll.failed.append(
            (m, "the customer is no longer a contact of this member (WeCom status 2)")
        )
    elif result.status == RecipientStatus.LIMIT_REACHED:
        poll.blocked.append(
            (m, "the customer had already received a mass message (WeCom status 3)")
        )
    else:
        poll.failed.append((m, "the task was cancelled on the carrier"))
    return True


def record(poll: Poll, *, now: dt.datetime) -> tuple[int, int]:
    """Write the outcomes, each only while the message still waits; store `message.sent`
    for those sent. Returns how many messages were decided, and how many of them sent."""
    decided = 0
    events: dict[int, list[dict[str, object]]] = defaultdict(list)
    waiting = Message.objects.filter(status=S.PENDING_CONFIRMATION)
    with transaction.atomic():
        for m, at in poll.sent:
            if waiting.filter(pk=m.pk).update(status=S.SENT, sent_at=at, claimed_until=None):
                events[m.brand_id].append(delivery.sent_event(m, at))
                decided += 1
        for rows, status, rule in (
            (poll.failed, S.FAILED, "carrier"),
            (poll.blocked, S.BLOCKED, "platform_limit"),
        ):
            for m, reason in rows:
                decided += waiting.filter(pk=m.pk).update(
                    status=status, rule=rule, reason=reason, finished_at=now, claimed_until=None
                )
        if poll.expired:
            decided += waiting.filter(pk__in=[m.pk for m in poll.expired]).update(
                status=S.EXPIRED,
                rule="confirmation",
                reason="staff did not confirm it in time; the task was cancelled",
                finished_at=now,
                claimed_until=None,
            )
        for m in poll.waiting:
            waiting.filter(pk=m.pk).update(due_at=next_check(m, now))
        for brand_id, items in events.items():
            ingest_in_batches(brand=Brand.objects.get(pk=brand_id), items=items)
    return decided, sum(len(items) for items in events.values())


def claim(
    *, now: dt.datetime, limit: int = BATCH, kinds: Iterable[str] | None = None
) -> list[Message]:
    """The waiting messages due for a look, taken for `LEASE` (their `due_at` moves on)."""
    kinds = list(kinds if kinds is not None else confirming_kinds())
    if not kinds:
        return []
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=S.PENDING_CONFIRMATION, due_at__lte=now, carrier__in=kinds)
            .order_by("due_at", "id")
            .only(*LOAD)[:limit]
        )
        if rows:
            Message.objects.filter(pk__in=[m.pk for m in rows]).update(due_at=now + LEASE)
    return rows


def poll_due(*, now: dt.datetime | None = None, limit: int = BATCH) -> int:
    """One pass: claim what is due, ask the carriers, record. Returns messages looked at."""
    now = now or clock.now()
    rows = claim(now=now, limit=limit)
    if not rows:
        return 0
    record(ask(rows, now=now), now=now)
    return len(rows)


#: At most this many tasks are asked about while a staff member waits (`check_now`); the
#: rest are made due at once for the worker's loop.
CHECK_NOW_TASKS = 50


def check_now(messages: Sequence[Message], *, now: dt.datetime | None = None) -> int:
    """Ask at once about these waiting messages (a staff member says they confirmed a
    broadcast). Returns how many are sent now."""
    now = now or clock.now()
    tasks = list(dict.fromkeys((m.account_id, m.carrier_message_id) for m in messages))
    asked = set(tasks[:CHECK_NOW_TASKS])
    later = [m.pk for m in messages if (m.account_id, m.carrier_message_id) not in asked]
    if later:
        Message.objects.filter(pk__in=later, status=S.PENDING_CONFIRMATION).update(due_at=now)
    now_ = [m for m in messages if (m.account_id, m.carrier_message_id) in asked]
    return record(ask(now_, now=now), now=now)[1] if now_ else 0


def run_loop() -> int:
    """The worker loop (registered as `messaging.confirmations`): one worker at a time."""
    from yutang.core.worker import acquire_lease, release_lease

    holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]
    if not acquire_lease(LOOP_LEASE, holder, LOOP_LEASE_TTL):
        return 0
    try:
        return poll_due()
    finally:
        release_lease(LOOP_LEASE, holder)
