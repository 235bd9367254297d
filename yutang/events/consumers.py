"""In-process consumers of the event log.

A consumer is a named handler that sees every event once it is stored, in id order, from an
offset kept in the database (`ConsumerOffset`). Later floors (auto-tags, journeys, segment
refresh) register one in their AppConfig.ready():

    from yutang.events.consumers import register_consumer

    register_consumer("journeys.triggers", handle_event, types={"contact.added", "order.paid"})

`types` is the set of event types the handler acts on, or a function asked at each pass (for
handlers whose interest follows their configuration, e.g. the live journeys' triggers): the
pass reads the window's ids and types first and loads full rows only for those types; the
others are passed over (the offset moves past them) without being read.

Guarantees:

- At least once, in order: a handler's database writes and the offset move commit in the same
  transaction, so a crash replays the batch. Handlers must be idempotent (e.g. unique rows).
- One failing event does not stop the consumer or others: the failure is recorded in
  `ConsumerFailure`, the offset moves on, and the event is retried with exponential backoff;
  after MAX_ATTEMPTS it is parked with its error, visible in the admin and `yutang consumers`.
- Nothing is skipped when transactions commit out of order: ids are drawn at insert, not at
  commit, so the log is read in (transaction id, id) order and only up to the oldest
  transaction still running (events/txids.py); the offset is that pair. Events are also
  handed over only once they are LAG old, which gives handlers a settled view.

`yutang worker` runs every registered consumer in its loop; `run_consumer` runs one pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Q

from yutang.core import clock
from yutang.events import txids
from yutang.events.models import ConsumerFailure, ConsumerOffset, Event

logger = logging.getLogger("yutang.events.consumers")

Handler = Callable[[Event], None]
BatchHandler = Callable[[list[Event]], None]
#: What a consumer is asked to see: None (every event), or the event types its handler acts
#: on, or a function giving one of those at the start of each pass.
Types = frozenset[str] | Callable[[], Collection[str] | None] | None
MAX_ATTEMPTS = 6
BASE_BACKOFF = dt.timedelta(seconds=30)
LAG = dt.timedelta(seconds=5)


@dataclass(frozen=True)
class Consumer:
    name: str
    handler: Handler
    types: Types = None
    batch_handler: BatchHandler | None = None

    def wanted(self) -> frozenset[str] | None:
        """The event types of this pass (None: all)."""
        if callable(self.types):
            found = self.types()
            return None if found is None else frozenset(found)
        return self.types


@dataclass
class PassResult:
    handled: int = 0
    passed_over: int = 0  # events of types the consumer does not read: the offset moved on
    failed: int = 0
    retried: int = 0
    parked: int = 0
    errors: list[str] = field(default_factory=list)


_CONSUMERS: dict[str, Consumer] = {}


def register_consumer(
    name: str,
    handler: Handler,
    *,
    types: Collection[str] | Callable[[], Collection[str] | None] | None = None,
    batch_handler: BatchHandler | None = None,
) -> None:
    """`batch_handler`, when given, handles a pass's whole window at once (it must have the
    same effect as `handler` on each event in order); if it raises, the window is rolled
    back and handed to `handler` one event at a time, so failures are still per event.
    `types` (a set, or a function called at each pass returning a set or None for all):
    only events of these types reach the handlers; both handlers must do nothing for the
    others, so that passing them over changes nothing."""
    wanted: Types = types if callable(types) else frozenset(types) if types else None
    _CONSUMERS[name] = Consumer(
        name=name, handler=handler, types=wanted, batch_handler=batch_handler
    )


def unregister_consumer(name: str) -> None:
    _CONSUMERS.pop(name, None)


def registered() -> list[str]:
    return sorted(_CONSUMERS)


def backoff(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min, 4 min, … doubling per attempt."""
    return BASE_BACKOFF * (2 ** max(attempts - 1, 0))


def _record_failure(
    consumer: str, event: Event, error: str, now: dt.datetime, result: PassResult
) -> None:
    failure = ConsumerFailure.objects.filter(consumer=consumer, event=event).first()
    if failure is None:
        ConsumerFailure.objects.create(
            consumer=consumer,
            event=event,
            attempts=1,
            error=error,
            created_at=now,
            updated_at=now,
            next_attempt_at=now + backoff(1),
        )
        result.failed += 1
        return
    failure.attempts += 1
    failure.error = error
    failure.updated_at = now
    if failure.attempts >= MAX_ATTEMPTS:
        failure.parked, failure.next_attempt_at = True, None
        result.parked += 1
        logger.error(
            "consumer %s parked event %s after %s attempts", consumer, event.pk, failure.attempts
        )
    else:
        failure.next_attempt_at = now + backoff(failure.attempts)
    failure.save()


def _handle(consumer: Consumer, event: Event, now: dt.datetime, result: PassResult) -> bool:
    try:
        with transaction.atomic():
            consumer.handler(event)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        _record_failure(consumer.name, event, message[:4000], now, result)
        result.errors.append(f"event {event.pk}: {type(exc).__name__}: {exc}")
        return False
    result.handled += 1
    return True


def _handle_batch(consumer: Consumer, chosen: list[Event], result: PassResult) -> bool:
    if consumer.batch_handler is None or not chosen:
        return False
    try:
        with transaction.atomic():
            consumer.batch_handler(chosen)
    except Exception:
        logger.info("consumer %s: batch failed, handling one by one", consumer.name)
        return False
    result.handled += len(chosen)
    return True


def run_consumer(name: str, *, batch: int = 500) -> PassResult:
    """One pass: retry due failures, then handle up to `batch` new events."""
    consumer = _CONSUMERS[name]
    now = clock.now()
    result = PassResult()
    with transaction.atomic():
        created, _ = ConsumerOffset.objects.get_or_create(name=name, defaults={"updated_at": now})
        offset = (
            ConsumerOffset.objects.select_for_update(skip_locked=connection.vendor == "postgresql")
            .filter(pk=created.pk)
            .first()
        )
        if offset is None:  # another worker holds it (PostgreSQL): skip this round
            return result
        # The window of new events is read before any handler runs, so events a retried
        # handler writes in this transaction are not mistaken for settled ones.
        events = Event.objects.filter(
            Q(txid__gt=offset.txid) | Q(txid=offset.txid, pk__gt=offset.position),
            txids.readable(),
            received_at__lte=now - LAG,
        ).order_by("txid", "pk")
        types = consumer.wanted()
        if types is None:  # every event: the window's full rows in one read
            rows = list(events[:batch])
            window = [(e.txid, e.pk, e.type) for e in rows]
        else:
            window = list(events.values_list("txid", "pk", "type")[:batch])
        due = ConsumerFailure.objects.filter(
            consumer=name, parked=False, next_attempt_at__lte=now
        ).select_related("event")[:batch]
        for failure in due:
            result.retried += 1
            if _handle(consumer, failure.event, now, result):
                failure.delete()
        if not window:
            return result
        # Only the window's events of the consumer's types are read in full.
        if types is None:
            chosen = rows
        else:
            ids = [pk for _, pk, kind in window if kind in types]
            result.passed_over = len(window) - len(ids)
            chosen = list(Event.objects.filter(pk__in=ids).order_by("txid", "pk")) if ids else []
        if not _handle_batch(consumer, chosen, result):
            for event in chosen:
                _handle(consumer, event, now, result)
        offset.txid, offset.position, _type = window[-1]
        offset.updated_at = now
        offset.save(update_fields=["txid", "position", "updated_at"])
    return result


def run_all(*, batch: int = 500) -> int:
    """One pass of every consumer; returns events handled or passed over (0 means idle: a
    window of only other types still moves the offset, and more may follow it)."""
    total = 0
    for name in registered():
        result = run_consumer(name, batch=batch)
        total += result.handled + result.passed_over
    return total


def park_report() -> list[ConsumerFailure]:
    return list(
        ConsumerFailure.objects.filter(parked=True).select_related("event").order_by("-updated_at")
    )


def replay_parked(*, consumer: str, event_id: int | None = None) -> int:
    """Put parked events back in the retry queue (after fixing the handler)."""
    qs = ConsumerFailure.objects.filter(consumer=consumer, parked=True)
    if event_id is not None:
        qs = qs.filter(event_id=event_id)
    return qs.update(parked=False, attempts=0, next_attempt_at=clock.now())
