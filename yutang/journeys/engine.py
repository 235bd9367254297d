"""The journey engine: enrolment, one step per enrolment per transaction, triggers from the
event log, schedules, and fast-forward.

Time: every step runs at its *due* time, not at the moment a worker got to it. A step reached
at T computes its wait from T, so a late or restarted worker catches up to exactly the same
schedule, and a branch after a wait never waits again (no doubled waits). Real time decides
only *when* a due step runs (``clock.now()``).

Exactly-once: a step's effects (outbox row, task, tag, StepRun) commit together with the
enrolment's move to its next step. StepRun is unique on (enrollment, step, attempt key), and
workers lock the rows they claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; the single
worker holding the loop lease on SQLite)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Min, Q, QuerySet

from yutang.core import clock, db
from yutang.core.bulk import insert_model_rows, insert_models, update_rows
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand, Staff
from yutang.core.permissions import Role
from yutang.customers.models import Customer
from yutang.events.models import Event
from yutang.journeys import definition as defs
from yutang.journeys import extensions, integrations, timing, variables, webhooks
from yutang.journeys.models import (
    Enrollment,
    Journey,
    JourneyVersion,
    ScheduleSlot,
    StaffTask,
    StepRun,
)

logger = logging.getLogger("yutang.journeys")

OPEN = [Enrollment.State.ACTIVE, Enrollment.State.WAITING]
MAX_FAILURES = 5
RETRY_BASE = dt.timedelta(minutes=1)
BATCH = 1000
# How often a send step waiting for staff confirmation re-reads its message's status (a
# confirmation arrives sooner as a message.sent event; failures and expiry do not emit one).
CONFIRM_CHECK = dt.timedelta(hours=1)
RECHECK = "recheck"
CONFIRMED_EVENTS = {"message.sent", "message.delivered", "message.read"}

_DEFINITIONS: dict[int, defs.Definition] = {}
db.forget_on_flush(_DEFINITIONS.clear)


def definition_of(version: JourneyVersion | int) -> defs.Definition:
    """Versions never change once published, so their parsed definitions are cached."""
    version_id = version if isinstance(version, int) else version.pk
    found = _DEFINITIONS.get(version_id)
    if found is None:
        row = version if isinstance(version, JourneyVersion) else None
        data = row.definition if row else JourneyVersion.objects.get(pk=version_id).definition
        found = _DEFINITIONS[version_id] = defs.Definition.model_validate(data)
    return found


def in_holdout(journey_id: int, customer_id: int, percent: int) -> bool:
    """Deterministic: the same customer is always in or out of a journey's control group,
    across versions, workers and restarts."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"holdout:{journey_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10000 < percent * 100


def _split_choice(enrollment_id: int, step_id: str, seq: int, weights: list[int]) -> int:
    digest = hashlib.sha256(f"split:{enrollment_id}:{step_id}:{seq}".encode()).digest()
    point = int.from_bytes(digest[:4], "big") % sum(weights)
    for index, weight in enumerate(weights):
        if point < weight:
            return index
        point -= weight
    return len(weights) - 1


# --- Enrolment ------------------------------------------------------------------------------


@dataclass
class EnrolResult:
    customer_id: int
    status: str  # enrolled, holdout, already_enrolled, no_reentry, condition_false, not_live
    enrollment_id: int | None = None


def enrol(
    *, journey: Journey, customer: Customer, at: dt.datetime, source: str = ""
) -> EnrolResult:
    """Enter the customer into the journey's live version if the entry rules allow it.
    Call inside a transaction; a concurrent enrolment of the same person loses cleanly."""
    if journey.status != Journey.Status.LIVE or journey.live_version_id is None:
        return EnrolResult(customer.pk, "not_live")
    definition = definition_of(journey.live_version_id)
    entry = definition.entry
    history = Enrollment.objects.filter(journey=journey, customer=customer)
    if history.filter(state__in=OPEN).exists():
        return EnrolResult(customer.pk, "already_enrolled")
    if entry.reentry == "never" and history.exists():
        return EnrolResult(customer.pk, "no_reentry")
    if entry.reentry == "after_days":
        assert entry.after_days is not None
        since = at - dt.timedelta(days=entry.after_days)
        if history.filter(entered_at__gt=since).exists():
            return EnrolResult(customer.pk, "no_reentry")
    if entry.condition and not integrations.condition_holds(
        customer=customer, rule=entry.condition
    ):
        return EnrolResult(customer.pk, "condition_false")
    holdout = in_holdout(journey.pk, customer.pk, definition.holdout_percent)
    try:
        with transaction.atomic():
            row = Enrollment.objects.create(
                brand_id=journey.brand_id,
                journey=journey,
                version_id=journey.live_version_id,
                customer=customer,
                state=Enrollment.State.HOLDOUT if holdout else Enrollment.State.ACTIVE,
                current_step="" if holdout else definition.steps[0].id,
                next_due_at=None if holdout else at,
                entered_at=at,
                is_holdout=holdout,
                source=source[:64],
            )
    except IntegrityError:
        return EnrolResult(customer.pk, "already_enrolled")
    return EnrolResult(customer.pk, "holdout" if holdout else "enrolled", row.pk)


def enrol_many(*, items: Sequence[tuple[Journey, int, str]], at: dt.datetime) -> list[EnrolResult]:
    """The batch form of `enrol`: (journey, customer id, source) items entered at `at`, with
    the same rows and answers as calling `enrol` for each item in turn. The journeys'
    enrolment history of the items' customers is read in one query and the new enrolments
    are inserted in one statement. A journey with an entry condition is enrolled one by one
    (`enrol`); so is everything when the insert meets a concurrent enrolment."""
    if not items:
        return []
    results: list[EnrolResult | None] = [None] * len(items)
    wanted = {(journey.pk, cid) for journey, cid, _source in items}
    history: dict[tuple[int, int], list[tuple[str, dt.datetime]]] = {}
    rows = Enrollment.objects.filter(
        journey_id__in={j for j, _c in wanted}, customer_id__in={c for _j, c in wanted}
    ).values_list("journey_id", "customer_id", "state", "entered_at")
    for journey_id, cid, state, entered_at in rows:
        history.setdefault((journey_id, cid), []).append((state, entered_at))
    fresh: list[tuple[int, Enrollment]] = []
    one_by_one: list[int] = []
    for i, (journey, cid, source) in enumerate(items):
        if journey.status != Journey.Status.LIVE or journey.live_version_id is None:
            results[i] = EnrolResult(cid, "not_live")
            continue
        definition = definition_of(journey.live_version_id)
        entry = definition.entry
        if entry.condition:
            one_by_one.append(i)
            continue
        past = history.setdefault((journey.pk, cid), [])
        status = None
        if any(state in OPEN for state, _at in past):
            status = "already_enrolled"
        elif entry.reentry == "never" and past:
            status = "no_reentry"
        elif entry.reentry == "after_days":
            assert entry.after_days is not None
            since = at - dt.timedelta(days=entry.after_days)
            if any(entered_at > since for _s, entered_at in past):
                status = "no_reentry"
        if status is not None:
            results[i] = EnrolResult(cid, status)
            continue
        holdout = in_holdout(journey.pk, cid, definition.holdout_percent)
        state = Enrollment.State.HOLDOUT if holdout else Enrollment.State.ACTIVE
        past.append((state, at))
        fresh.append(
            (
                i,
                Enrollment(
                    brand_id=journey.brand_id,
                    journey=journey,
                    version_id=journey.live_version_id,
                    customer_id=cid,
                    state=state,
                    current_step="" if holdout else definition.steps[0].id,
                    next_due_at=None if holdout else at,
                    entered_at=at,
                    is_holdout=holdout,
                    source=source[:64],
                ),
            )
        )
    if one_by_one and fresh:
        # Keep the one-by-one order of inserts: fall back for the whole batch.
        return [_enrol_one(journey, cid, at, source) for journey, cid, source in items]
    for i in one_by_one:
        journey, cid, source = items[i]
        results[i] = _enrol_one(journey, cid, at, source)
    if fresh:
        try:
            with transaction.atomic():
                ids = insert_models(Enrollment, [row for _i, row in fresh])
        except IntegrityError:
            return [_enrol_one(journey, cid, at, source) for journey, cid, source in items]
        # One statement numbers its rows in insertion order.
        for (i, row), pk in zip(fresh, sorted(pk for (pk,) in ids), strict=True):
            status = "holdout" if row.is_holdout else "enrolled"
            results[i] = EnrolResult(row.customer_id, status, pk)
    return [r for r in results if r is not None]


def _enrol_one(journey: Journey, customer_id: int, at: dt.datetime, source: str) -> EnrolResult:
    customer = Customer.objects.get(pk=customer_id)
    return enrol(journey=journey, customer=customer, at=at, source=source)


# --- One step -------------------------------------------------------------------------------


def _finish(e: Enrollment, state: str, reason: str, at: dt.datetime) -> None:
    e.state = state
    e.exit_reason = reason
    e.exited_at = at
    e.next_due_at = None
    e.waiting_for = {}


def _goto(e: Enrollment, step_id: str | None, at: dt.datetime) -> None:
    if step_id is None:
        _finish(e, Enrollment.State.COMPLETED, "completed", at)
        return
    e.state = Enrollment.State.ACTIVE
    e.current_step = step_id
    e.next_due_at = at
    e.waiting_for = {}


def _render(
    text: str, customer: Customer, brand: Brand, extra: dict[str, str] | None = None
) -> str:
    """Script variables: {name}, {brand}, {city}, and the lazy ones of `variables` ({channel},
    {hook}, {product} …) given in `extra`. Unknown braces stay as written."""
    values = {"name": customer.display_name or "", "brand": brand.name, "city": customer.city}
    if extra:
        values.update(extra)
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _texts(step: Any) -> list[str]:
    """The texts a step renders for the customer."""
    if step.type == "send_message":
        return [step.content]
    if step.type == "create_task":
        return [step.title, step.script]
    return []


def _extra(e: Enrollment, step: Any, batch: _Batch | None) -> dict[str, str]:
    """The lazy template variables the step's texts use, for the enrolment's customer."""
    names = variables.needed(_texts(step))
    if not names:
        return {}
    if batch is not None and e.customer_id in batch.variables:
        return batch.variables[e.customer_id]
    return variables.values_for(e.brand_id, [e.customer_id], names)[e.customer_id]


#: A welcome step with skip_if_welcomed does nothing after an automatic welcome this recent.
WELCOME_WINDOW = dt.timedelta(days=1)


def _welcomed(e: Enrollment, at: dt.datetime, batch: _Batch | None) -> bool:
    since = at - WELCOME_WINDOW
    if batch is not None:
        last = batch.welcomes.get(e.customer_id)
        return last is not None and last >= since
    return e.customer_id in integrations.welcomes([e.customer_id], since=since)


def _run(e: Enrollment, now: dt.datetime, batch: _Batch | None = None) -> str:
    """Execute the enrolment's current step (or end its wait). Returns the outcome.
    With a batch, conditions, accounts and messages go through the batch's bulk queries."""
    journey = e.journey
    brand = journey.brand
    definition = definition_of(e.version_id)
    step = definition.step(e.current_step)
    base = e.next_due_at or now
    key = f"journey:{e.pk}:{step.id}:{e.seq}"

    if e.state == Enrollment.State.WAITING:  # the wait ran out
        if step.type == "send_message" and "message" in (e.waiting_for or {}):
            return _check_confirmation(e, step, definition, base)
        timed_out = step.type in {"wait_event", "create_task"}
        target = (step.on_timeout or definition.following(step)) if timed_out else None
        _goto(e, target if timed_out else definition.following(step), base)
        return "timeout" if timed_out else "waited"

    exit_rule = definition.exit_rules.condition
    if exit_rule and _holds(e, exit_rule, batch):
        _finish(e, Enrollment.State.EXITED, "exit_condition", base)
        return "exit_condition"

    kind = step.type
    if kind == "wait":
        e.state, e.next_due_at = (
            Enrollment.State.WAITING,
            timing.after(base, brand.tz, days=step.days, hours=step.hours, minutes=step.minutes),
        )
        return "waiting"
    if kind == "wait_until":
        due = timing.next_time_of_day(base, brand.tz, step.time, step.weekdays)
        if due == base:
            _goto(e, definition.following(step), base)
            return "no_wait"
        e.state, e.next_due_at = Enrollment.State.WAITING, due
        return "waiting"
    if kind == "wait_event":
        e.state = Enrollment.State.WAITING
        e.next_due_at = base + step.timeout.delta()
        e.waiting_for = {"event": step.event, "since": base.isoformat()}
        return "waiting"
    if kind == "branch":
        holds = _holds(e, step.condition, batch)
        chosen = step.then if holds else step.otherwise
        _goto(e, chosen or definition.following(step), base)
        return "then" if holds else "else"
    if kind == "split":
        index = _split_choice(e.pk, step.id, e.seq, [p.weight for p in step.paths])
        _goto(e, step.paths[index].next or definition.following(step), base)
        return f"path{index}"
    if kind == "send_message":
        if step.skip_if_welcomed and _welcomed(e, base, batch):
            _goto(e, definition.following(step), base)
            return "welcomed"
        customer = e.customer
        account = batch.accounts.get(customer.pk) if batch else integrations.account_for(customer)
        wait = step.wait_for_confirmation
        if account is None:
            skip_to = (wait.on_timeout if wait else None) or definition.following(step)
            _goto(e, skip_to, base)
            return "skipped_no_account"
        item = {
            "brand": brand,
            "customer": customer,
            "account": account,
            "kind": step.kind,
            "content": _render(step.content, customer, brand, _extra(e, step, batch)),
            "journey_id": journey.pk,
            "step_id": step.id,
            "idempotency_key": key,
            "due_at": base,
        }
        if batch is not None:
            batch.messages.append(item)
        else:
            integrations.send_message(**item)
        if wait is None:
            _goto(e, definition.following(step), base)
            return "sent"
        deadline = base + wait.timeout.delta()
        e.state = Enrollment.State.WAITING
        e.next_due_at = min(deadline, base + CONFIRM_CHECK)
        e.waiting_for = {"message": key, "until": deadline.isoformat()}
        return "confirming"
    if kind == "create_task":
        task = create_task_for(e, step, base, _extra(e, step, batch))
        if step.wait_for_completion:
            e.state = Enrollment.State.WAITING
            e.next_due_at = base + step.timeout.delta()
            e.waiting_for = {"task": task.pk}
            return "task_waiting"
        _goto(e, definition.following(step), base)
        return "task_created"
    if kind in {"add_tag", "remove_tag"}:
        from yutang.customers import services as customers

        tag = customers.create_tag(actor=None, brand=brand, group=step.group, name=step.name)
        change = {"add": [tag.pk]} if kind == "add_tag" else {"remove": [tag.pk]}
        customers.set_tags(actor=None, customer=e.customer, source="journey", **change)
        _goto(e, definition.following(step), base)
        return "tagged" if kind == "add_tag" else "untagged"
    if kind == "set_attribute":
        from yutang.customers.services import validate_attributes

        customer = e.customer
        values = validate_attributes(brand, {step.name: step.value})
        customer.attributes = {**(customer.attributes or {}), **values}
        customer.updated_at = now
        customer.save(update_fields=["attributes", "updated_at"])
        _goto(e, definition.following(step), base)
        return "attribute_set"
    if kind == "webhook":
        payload = {
            "journey_id": journey.pk,
            "version": e.version.number,
            "enrollment_id": e.pk,
            "customer_id": e.customer_id,
            "step_id": step.id,
            "due_at": base.isoformat(),
        }
        webhooks.call(url=step.url, secret=step.secret, payload=payload, key=key, at=now)
        _goto(e, definition.following(step), base)
        return "called"
    if kind == "extension":
        handler = extensions.action(step.name)
        if handler is None:
            raise LookupError(f"no extension action {step.name!r} is registered")
        handler(brand=brand, customer=e.customer, params=step.params, idempotency_key=key, at=base)
        _goto(e, definition.following(step), base)
        return "extension"
    if kind == "exit":
        _finish(e, Enrollment.State.EXITED, "exit_step", base)
        return "exit_step"
    raise AssertionError(f"unknown step type {kind}")


def _check_confirmation(
    e: Enrollment, step: Any, definition: defs.Definition, at: dt.datetime
) -> str:
    """A send step waiting for its message: sent → next step; never to be sent (failed,
    blocked, expired, cancelled) or still unsent at the deadline → on_timeout; else look
    again later (RECHECK: no StepRun, the wait goes on)."""
    wait = step.wait_for_confirmation
    following = definition.following(step)
    on_timeout = (wait.on_timeout if wait else None) or following
    status = integrations.message_status(
        brand_id=e.brand_id, idempotency_key=e.waiting_for["message"]
    )
    if status in integrations.SENT_STATES:
        _goto(e, following, at)
        return "confirmed"
    if status is None or status in integrations.UNSENT_STATES:
        _goto(e, on_timeout, at)
        return "not_sent"
    deadline = dt.datetime.fromisoformat(e.waiting_for["until"])
    if at >= deadline:
        _goto(e, on_timeout, at)
        return "timeout"
    e.next_due_at = min(deadline, at + CONFIRM_CHECK)
    return RECHECK


def _rule_key(e: Enrollment, rule: dict[str, Any]) -> tuple[int, str]:
    return e.brand_id, json.dumps(rule, sort_keys=True, ensure_ascii=False)


def _holds(e: Enrollment, rule: dict[str, Any], batch: _Batch | None) -> bool:
    """A condition for the enrolment's customer: from the batch's one-query-per-rule result
    when it has one, else evaluated for the customer now."""
    if batch is not None:
        found = batch.holds.get(_rule_key(e, rule))
        if found is not None and e.customer_id in found[0]:
            return e.customer_id in found[1]
    return integrations.condition_holds(customer=e.customer, rule=rule)


# Steps that change what a condition may read: their customers' conditions in the same batch
# are evaluated one by one, in order, as without a batch.
_MUTATING = {"add_tag", "remove_tag", "set_attribute", "extension"}


class _Batch:
    """What the steps of one claimed batch share: each rule evaluated with one query for
    all the batch's customers it concerns, the carrier accounts of the customers at a send
    step (one query), and the rows written at the end in bulk (outbox messages, StepRuns,
    enrolments)."""

    def __init__(self, rows: list[Enrollment]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.runs: list[tuple[Any, ...]] = []  # RUN_FIELDS of each StepRun
        self.changed: list[Enrollment] = []
        # (brand id, rule) -> (customers evaluated, customers it holds for)
        self.holds: dict[tuple[int, str], tuple[set[int], set[int]]] = {}
        steps = {e.pk: definition_of(e.version_id).step(e.current_step) for e in rows}
        active = [e for e in rows if e.state == Enrollment.State.ACTIVE]
        touched = {e.customer_id for e in active if steps[e.pk].type in _MUTATING}
        wanted: dict[tuple[int, str], tuple[Enrollment, dict[str, Any], set[int]]] = {}
        for e in active:
            rules = [definition_of(e.version_id).exit_rules.condition]
            if steps[e.pk].type == "branch":
                rules.append(steps[e.pk].condition)
            rules = [rule for rule in rules if rule]
            if not rules or e.customer_id in touched or e.customer.merged_into_id is not None:
                continue
            for rule in rules:
                key = _rule_key(e, rule)
                wanted.setdefault(key, (e, rule, set()))[2].add(e.customer_id)
        for key, (e, rule, ids) in wanted.items():
            found = integrations.customers_holding(
                brand=e.journey.brand, rule=rule, customer_ids=sorted(ids)
            )
            self.holds[key] = (ids, found)
        senders = [e.customer for e in active if steps[e.pk].type == "send_message"]
        self.accounts = integrations.accounts_for(senders)
        # Lazy template variables ({channel}, {product} …) and recent automatic welcomes:
        # read once for the batch's steps that use them (nothing when none does).
        self.variables: dict[int, dict[str, str]] = {}
        by_brand: dict[int, tuple[set[str], list[int]]] = {}
        for e in active:
            names = variables.needed(_texts(steps[e.pk]))
            if names:
                wanted_names, who = by_brand.setdefault(e.brand_id, (set(), []))
                wanted_names.update(names)
                who.append(e.customer_id)
        for brand_id, (names, who) in by_brand.items():
            self.variables.update(variables.values_for(brand_id, who, names))
        welcome_steps = [e for e in active if getattr(steps[e.pk], "skip_if_welcomed", False)]
        self.welcomes: dict[int, dt.datetime] = (
            integrations.welcomes(
                [e.customer_id for e in welcome_steps],
                since=min((e.next_due_at or clock.now()) for e in welcome_steps) - WELCOME_WINDOW,
            )
            if welcome_steps
            else {}
        )

    def flush(self) -> None:
        if self.messages:
            integrations.send_messages(self.messages)
        if self.runs:
            insert_runs(self.runs)
        if self.changed:
            save_ticks(self.changed)


RUN_FIELDS = [
    "enrollment_id", "step_id", "step_type", "attempt_key", "due_at", "ran_at", "outcome",
]  # fmt: skip


def insert_runs(runs: list[tuple[Any, ...]]) -> None:
    """Insert StepRuns (RUN_FIELDS tuples) in one statement (`core.bulk.insert_model_rows`), no
    model instances. A duplicate (enrollment, step, attempt) raises IntegrityError."""
    insert_model_rows(StepRun, [*RUN_FIELDS, "detail"], [(*run, {}) for run in runs])


def save_ticks(rows: list[Enrollment]) -> None:
    """Write TICK_FIELDS of many enrolments in one statement (`core.bulk.update_rows`)."""
    update_rows(Enrollment, rows, TICK_FIELDS)


def create_task_for(
    e: Enrollment, step: Any, at: dt.datetime, extra: dict[str, str] | None = None
) -> StaffTask:
    customer = e.customer
    brand = e.journey.brand
    assignee: Staff | None = None
    if step.assign_to == "owner" and customer.owner_staff_id is not None:
        assignee = customer.owner_staff
    return StaffTask.objects.create(
        brand=brand,
        customer=customer,
        assignee=assignee,
        store_id=customer.owner_store_id,
        queue_role="" if assignee else Role.ADVISOR.value,
        title=_render(step.title, customer, brand, extra),
        script=_render(step.script, customer, brand, extra),
        due_at=timing.after(
            at, brand.tz, days=step.due.days, hours=step.due.hours, minutes=step.due.minutes
        ),
        enrollment=e,
        step_id=step.id,
        created_at=at,
    )


TICK_FIELDS = [
    "state", "current_step", "seq", "next_due_at", "waiting_for", "exited_at", "exit_reason",
    "failures",
]  # fmt: skip


def tick(e: Enrollment, now: dt.datetime, *, batch: _Batch | None = None) -> str:
    """Run one step of a locked enrolment and record it; the caller holds the transaction.
    With a batch, the StepRun and the enrolment are written by the batch's flush."""
    step_id, seq, due = e.current_step, e.seq, e.next_due_at or now
    step_type = definition_of(e.version_id).step(step_id).type
    outcome = _run(e, now, batch)
    if outcome == RECHECK:  # a confirmation wait goes on: no step ran
        if batch is not None:
            batch.changed.append(e)
        else:
            e.save(update_fields=["next_due_at"])
        return outcome
    run = (e.pk, step_id, step_type, str(seq), due, now, outcome)
    e.seq = seq + 1
    e.failures = 0
    if batch is not None:
        batch.runs.append(run)
        batch.changed.append(e)
    else:
        StepRun.objects.create(**dict(zip(RUN_FIELDS, run, strict=True)))
        e.save(update_fields=TICK_FIELDS)
    return outcome


#: PostgreSQL: where the last claim of this process started, per journey filter: the next
#: claim reads the due index from there, not from its front (see `_claim`).
_claim_floor: dict[tuple[int, ...] | None, tuple[dt.datetime, int]] = {}
#: Claims in a row that may start at the floor; the next one reads from the front.
FLOOR_CLAIMS = 20
#: Only a full claim of at least this many rows (a backlog) sets a floor.
FLOOR_MIN_BATCH = 100
_floor_uses: dict[tuple[int, ...] | None, int] = {}
db.forget_on_flush(_claim_floor.clear)
db.forget_on_flush(_floor_uses.clear)


def _claim(now: dt.datetime, batch: int, journey_ids: Iterable[int] | None) -> list[Enrollment]:
    """Lock and load up to `batch` due enrolments, earliest due first.

    PostgreSQL: every step rewrites its enrolment, and the old entries of rewritten rows
    stay at the front of the due index until VACUUM removes them (or later scans mark them
    dead, which no transaction may do while an older snapshot is open anywhere on the
    server). A claim that reads from the front walks them all: its cost grows with the
    rows processed since the last VACUUM. So a claim reads from where the previous claim
    of this process started (its first row: whatever that claim ran is due later or at the
    same key now), and from the front only when that part comes up short, and every
    FLOOR_CLAIMS-th claim, so that a due row behind the floor (released by another worker's
    rolled-back batch, or written by hand) waits at most that many claims. Only a full claim
    of FLOOR_MIN_BATCH rows or more sets a floor: small claims and the end of a backlog read
    from the front, in due order exactly."""
    qs = Enrollment.objects.filter(
        state__in=OPEN, next_due_at__lte=now, journey__status=Journey.Status.LIVE
    )
    key = None if journey_ids is None else tuple(sorted(set(journey_ids)))
    if key is not None:
        qs = qs.filter(journey_id__in=key)
    qs = qs.order_by("next_due_at", "id")
    if connection.vendor != "postgresql":
        rows = list(qs[:batch])
        _attach(rows)
        return rows
    qs = qs.select_for_update(skip_locked=True, of=("self",))
    floor = _claim_floor.get(key)
    uses = _floor_uses.get(key, 0)
    rows = []
    if floor is not None and uses < FLOOR_CLAIMS:
        _floor_uses[key] = uses + 1
        # A row comparison bounds the index scan on both columns (Q objects cannot); the
        # SQL is constant and the values are bound.
        after = "(journeys_enrollment.next_due_at, journeys_enrollment.id) >= (%s, %s)"
        rows = list(qs.extra(where=[after], params=list(floor))[:batch])  # noqa: S610
        if len(rows) < batch:  # the part before the floor, from the front
            before = after.replace(">=", "<")
            earlier = qs.extra(where=[before], params=list(floor))  # noqa: S610
            rows += list(earlier[: batch - len(rows)])
            rows.sort(key=lambda e: (e.next_due_at, e.pk))
    else:
        _floor_uses[key] = 0
        rows = list(qs[:batch])
    if len(rows) == batch >= FLOOR_MIN_BATCH:  # a backlog: the next claim starts here
        first = rows[0]
        assert first.next_due_at is not None
        _claim_floor[key] = (first.next_due_at, first.pk)
    else:
        _claim_floor.pop(key, None)
    _attach(rows)
    return rows


# Steps that never read the customer (when the journey has no exit condition).
_NO_CUSTOMER = {"wait", "wait_until", "wait_event", "split", "exit"}


def _needs_customer(e: Enrollment) -> bool:
    if e.state != Enrollment.State.ACTIVE:
        return False  # the end of a wait, a confirmation check
    definition = definition_of(e.version_id)
    return bool(definition.exit_rules.condition) or (
        definition.step(e.current_step).type not in _NO_CUSTOMER
    )


#: What a send step reads of its customer (the texts' {name} and {city}, the account rule,
#: the outbox row). A batch whose customers are all read by such steps alone loads only
#: these columns (no attributes JSON, no times to parse); any other is loaded on first use.
_SEND_FIELDS = ("brand", "display_name", "city", "owner_staff", "owner_store", "merged_into")


def _sends_only(e: Enrollment) -> bool:
    definition = definition_of(e.version_id)
    return (
        not definition.exit_rules.condition
        and definition.step(e.current_step).type == "send_message"
    )


def _attach(rows: list[Enrollment]) -> None:
    """One query for the batch's journeys and brands, one for the customers of the steps that
    read them (a wait's end needs none; a missed one would load on first use)."""
    ids = {e.journey_id for e in rows}
    journeys = Journey.objects.filter(pk__in=ids).select_related("brand").in_bulk()
    readers = [e for e in rows if _needs_customer(e)]
    people = Customer.objects.all()
    if all(_sends_only(e) for e in readers):
        people = people.only(*_SEND_FIELDS)
    customers = people.in_bulk([e.customer_id for e in readers]) if readers else {}
    for e in rows:
        e.journey = journeys[e.journey_id]
        if e.customer_id in customers:
            e.customer = customers[e.customer_id]


def _record_failure(enrollment_id: int, error: str, now: dt.datetime) -> None:
    e = Enrollment.objects.select_for_update().get(pk=enrollment_id)
    e.failures += 1
    e.last_error = error[:300]
    if e.failures >= MAX_FAILURES:
        _finish(e, Enrollment.State.EXITED, "step_failed", now)
    else:
        e.next_due_at = now + RETRY_BASE * (2 ** (e.failures - 1))
    e.save(
        update_fields=[
            "failures", "last_error", "state", "exit_reason", "exited_at", "next_due_at",
            "waiting_for",
        ]
    )  # fmt: skip
    logger.warning("journey enrollment %s step failed (%s)", enrollment_id, error[:120])


def run_due_once(
    *, batch: int = BATCH, journey_ids: Iterable[int] | None = None, bulk: bool = True
) -> int:
    """Claim up to `batch` due enrolments and run one step of each; returns steps run.

    The whole batch runs in one transaction with bulk reads and writes (`_Batch`). If
    anything in it fails, the batch is rolled back to its savepoint and run again one
    enrolment per savepoint, so one bad enrolment cannot hold up the others; its failure is
    recorded (retry with backoff, then exit). ``bulk=False`` runs one by one from the start
    (the benchmark's baseline)."""
    now = clock.now()
    done = 0
    failed: list[tuple[int, str]] = []
    with transaction.atomic():
        rows = _claim(now, batch, journey_ids)
        if not rows:
            return 0
        # The enrolment whose step raised in the batch is not run again right away: its
        # failure is recorded (retry with backoff) and its effects are not repeated.
        broken: dict[int, str] = {}
        if bulk:
            try:
                with transaction.atomic():
                    shared = _Batch(rows)
                    for e in rows:
                        try:
                            tick(e, now, batch=shared)
                        except Exception as exc:
                            broken[e.pk] = f"{type(exc).__name__}: {exc}"
                            raise
                    shared.flush()
                return len(rows)
            except Exception as exc:
                logger.info(
                    "journey batch failed (%s: %s); running it one by one",
                    type(exc).__name__,
                    exc,
                )
            # The failed attempt changed the rows in memory: read them again (still locked).
            rows = list(
                Enrollment.objects.filter(pk__in=[e.pk for e in rows]).order_by("next_due_at", "id")
            )
            _attach(rows)
        for e in rows:
            if e.pk in broken:
                failed.append((e.pk, broken[e.pk]))
                continue
            try:
                with transaction.atomic():
                    tick(e, now)
                done += 1
            except Exception as exc:
                failed.append((e.pk, f"{type(exc).__name__}: {exc}"))
    for enrollment_id, error in failed:
        with transaction.atomic():
            _record_failure(enrollment_id, error, now)
    return done + len(failed)


# --- Reacting to events ---------------------------------------------------------------------


def _live_journeys(brand_id: int) -> list[tuple[Journey, defs.Definition]]:
    journeys = Journey.objects.filter(
        brand_id=brand_id, status=Journey.Status.LIVE, live_version__isnull=False
    ).select_related("brand")
    return [(j, definition_of(j.live_version_id)) for j in journeys if j.live_version_id]


def _matches(
    trigger: defs.EventTrigger, event: Event, first_orders: dict[int, int] | None = None
) -> bool:
    """Whether the event fires the trigger. `first_orders` ({customer id: first order.paid
    event id}, `_first_orders`) answers `first_order_only` without a query."""
    if trigger.event != event.type:
        return False
    for key, expected in trigger.where.items():
        if str(event.properties.get(key)) != str(expected):
            return False
    if trigger.first_order_only and first_orders is not None:
        return first_orders.get(event.customer_id, event.pk) >= event.pk
    if trigger.first_order_only:
        earlier = Event.objects.filter(
            customer_id=event.customer_id, type="order.paid", pk__lt=event.pk
        )
        if earlier.exists():
            return False
    return True


def handle_event(event: Event) -> None:
    """Consumer of the event log (registered as ``journeys.events``): goals, exits, event
    waits, then triggers. Idempotent: a replayed event finds nothing left to change."""
    now = clock.now()
    customer = Customer.objects.filter(pk=event.customer_id).select_related("brand").first()
    if customer is None:
        return
    props = event.properties or {}
    open_rows = Enrollment.objects.filter(customer=customer, state__in=OPEN)
    exits = _exits_of(event)
    rows = list(open_rows.select_for_update().select_related("journey__brand", "version"))
    message_key = None
    if event.type in CONFIRMED_EVENTS and any("message" in e.waiting_for for e in rows):
        message_key = integrations.message_key(props.get("message_id"))
    for e in rows:
        definition = definition_of(e.version_id)
        rules = definition.exit_rules
        goal = definition.goal
        if goal and goal.event == event.type and _in_window(e, goal, event):
            e.converted_at = event.occurred_at
            _finish(e, Enrollment.State.CONVERTED, "goal", now)
            _save_end(e)
            continue
        reason = _exit_rule_hit(exits, rules)
        if (
            reason is None
            and rules.condition
            and integrations.condition_holds(customer=customer, rule=rules.condition)
        ):
            reason = "exit_condition"
        if reason:
            _finish(e, Enrollment.State.EXITED, reason, now)
            _save_end(e)
            continue
        if e.state == Enrollment.State.WAITING and e.waiting_for.get("event") == event.type:
            since = dt.datetime.fromisoformat(e.waiting_for["since"])
            if event.occurred_at >= since:
                resume_waiting(e, now, outcome="event")
        if (
            e.state == Enrollment.State.WAITING
            and event.type in CONFIRMED_EVENTS
            and "message" in e.waiting_for
            and e.waiting_for["message"] == message_key
        ):
            resume_waiting(e, now, outcome="confirmed")
    # The goal is measured the same way for everyone who entered (intent to treat): held-out
    # customers, and enrolments that already completed or exited, convert too when the goal
    # event falls within the window after their entry (their state stays as it is).
    for pk in _closed_goal_hits(customer.pk, event):
        Enrollment.objects.filter(pk=pk, converted_at__isnull=True).update(
            converted_at=event.occurred_at
        )
    for journey, definition in _live_journeys(customer.brand_id):
        trigger = definition.trigger
        if isinstance(trigger, defs.EventTrigger) and _matches(trigger, event):
            enrol(journey=journey, customer=customer, at=now, source=f"event:{event.pk}")
        elif isinstance(trigger, defs.SegmentTrigger) and _entered(trigger, event):
            enrol(journey=journey, customer=customer, at=now, source=f"segment:{event.pk}")
        elif isinstance(trigger, defs.ConditionTrigger) and integrations.condition_holds(
            customer=customer, rule=trigger.condition
        ):
            enrol(journey=journey, customer=customer, at=now, source=f"condition:{event.pk}")


def event_types() -> set[str] | None:
    """The event types `handle_event` can act on now (the consumer reads only these; None:
    every type): the live journeys' event triggers (`segment.entered` for a segment
    trigger), and for every version — an open or closed enrolment may be on an older one —
    its goal's event, the exit rules' events and the events its steps wait for (an event
    wait; the confirmation events for a send that waits for its confirmation). A condition
    trigger or an exit condition can hold after any event: then every type."""
    live = set(
        Journey.objects.filter(status=Journey.Status.LIVE, live_version__isnull=False).values_list(
            "live_version_id", flat=True
        )
    )
    types: set[str] = set()
    for pk in JourneyVersion.objects.values_list("pk", flat=True):
        definition = definition_of(pk)
        trigger = definition.trigger
        if pk in live:
            if isinstance(trigger, defs.ConditionTrigger):
                return None
            if isinstance(trigger, defs.EventTrigger):
                types.add(trigger.event)
            elif isinstance(trigger, defs.SegmentTrigger):
                types.add("segment.entered")
        rules = definition.exit_rules
        if rules.condition:
            return None
        if rules.contact_deleted:
            types.add("contact.deleted")
        if rules.consent_withdrawn:
            types.add("consent.changed")
        if definition.goal is not None:
            types.add(definition.goal.event)
        for step in definition.steps:
            if isinstance(step, defs.WaitEventStep):
                types.add(step.event)
            elif isinstance(step, defs.SendMessageStep) and step.wait_for_confirmation:
                types |= CONFIRMED_EVENTS
    return types


def _entered(trigger: defs.SegmentTrigger, event: Event) -> bool:
    """The segment.entered event of the trigger's segment (recorded by its refresh)."""
    return event.type == "segment.entered" and str(
        (event.properties or {}).get("segment_id")
    ) == str(trigger.segment_id)


def _exits_of(event: Event) -> set[str]:
    """The exit rules this event can fire: `contact_deleted`, `consent_withdrawn` (marketing)."""
    props = event.properties or {}
    exits: set[str] = set()
    if event.type == "contact.deleted":
        exits.add("contact_deleted")
    if (
        event.type == "consent.changed"
        and props.get("status") == "withdrawn"
        and props.get("purpose") == "marketing"
    ):
        exits.add("consent_withdrawn")
    return exits


def _exit_rule_hit(exits: set[str], rules: defs.ExitRules) -> str | None:
    """The first of the event's exits that the journey's exit rules act on."""
    if "contact_deleted" in exits and rules.contact_deleted:
        return "contact_deleted"
    if "consent_withdrawn" in exits and rules.consent_withdrawn:
        return "consent_withdrawn"
    return None


def handle_events(batch: list[Event]) -> None:
    """The consumer's batch form: the same effect as `handle_event` on each event in order.
    The batch's open enrolments, its closed ones not yet converted (held out, completed,
    exited) and each brand's live journeys are read once; an event that no live trigger
    matches, no closed enrolment's goal converts and no open enrolment
    reacts to (its goal, exit rules, exit condition, or a wait for that event or message)
    changes nothing and costs no further query. An event whose only effect is to enrol its
    customer through event triggers (a `contact.added`, a first `order.paid`) waits in a
    run that `enrol_many` enrols together (before any other event of that customer, and
    before any event that goes through `handle_event`, so rows are made in the same order).
    Every other event goes through `handle_event`, after which that customer's enrolments
    are read again."""
    ids = {event.customer_id for event in batch}
    open_rows: dict[int, list[Enrollment]] = {i: [] for i in ids}
    closed: dict[int, list[Enrollment]] = {i: [] for i in ids}
    goals = _goal_windows({event.brand_id for event in batch})
    earliest = min((event.occurred_at for event in batch), default=None)
    _load_enrollments(ids, open_rows, closed, goals, earliest)
    first_orders = _first_orders(batch)
    live: dict[int, list[tuple[Journey, defs.Definition]]] = {}
    stale: set[int] = set()
    pending: list[tuple[Event, list[Journey]]] = []
    waiting: set[int] = set()

    def enrol_pending() -> None:
        if not pending:
            return
        known = set(
            Customer.objects.filter(pk__in={e.customer_id for e, _j in pending}).values_list(
                "pk", flat=True
            )
        )
        now = clock.now()
        enrol_many(
            items=[
                (journey, e.customer_id, f"event:{e.pk}")
                for e, journeys in pending
                if e.customer_id in known
                for journey in journeys
            ],
            at=now,
        )
        # The run's customers' enrolments are read again together (nothing else changed
        # them since they were last read).
        _load_enrollments(waiting, open_rows, closed, goals, earliest)
        stale.difference_update(waiting)
        pending.clear()
        waiting.clear()

    exits: dict[str, list[int]] = {}
    exiting: set[int] = set()

    def exit_pending() -> None:
        """The run's exits, one statement per reason: what `handle_event` writes for each
        (`_finish` + `_save_end`; `converted_at` is not touched by an exit)."""
        if not exits:
            return
        now = clock.now()
        for reason, pks in exits.items():
            Enrollment.objects.filter(pk__in=pks, state__in=OPEN).update(
                state=Enrollment.State.EXITED,
                exit_reason=reason,
                exited_at=now,
                next_due_at=None,
                waiting_for={},
            )
        exits.clear()
        exiting.clear()

    for event in batch:
        cid = event.customer_id
        if cid in waiting:
            enrol_pending()
        if cid in exiting:
            exit_pending()
        if cid in stale:
            _load_enrollments({cid}, open_rows, closed, goals, earliest)
            stale.discard(cid)
        if event.brand_id not in live:
            live[event.brand_id] = _live_journeys(event.brand_id)
        journeys = _enrols_only(
            event, live[event.brand_id], open_rows[cid], closed[cid], first_orders
        )
        if journeys is not None:
            if journeys:
                pending.append((event, journeys))
                waiting.add(cid)
            continue
        leaving = _exits_only(event, live[event.brand_id], open_rows[cid], closed[cid])
        if leaving is not None:
            for e, reason in leaving:
                exits.setdefault(reason, []).append(e.pk)
            exiting.add(cid)
            stale.add(cid)
            continue
        enrol_pending()
        exit_pending()
        handle_event(event)
        stale.add(cid)
    enrol_pending()
    exit_pending()


def _exits_only(
    event: Event,
    live: list[tuple[Journey, defs.Definition]],
    open_rows: list[Enrollment],
    closed: list[Enrollment],
) -> list[tuple[Enrollment, str]] | None:
    """When the event's only effect in `handle_event` is to end open enrolments through
    their exit rules (a `contact.deleted`, a withdrawn consent), those enrolments and their
    exit reasons; None when it could do anything else: reach an open enrolment's goal, hold
    an exit condition, end a wait, reach a closed enrolment's goal, or fire a trigger."""
    exits = _exits_of(event)
    if not exits:
        return None
    leaving = []
    for e in open_rows:
        definition = definition_of(e.version_id)
        rules = definition.exit_rules
        goal = definition.goal
        if (goal and goal.event == event.type) or rules.condition:
            return None
        reason = _exit_rule_hit(exits, rules)
        if reason is not None:
            leaving.append((e, reason))
            continue
        if _waits_for(e, event):
            return None
    for e in closed:
        goal = definition_of(e.version_id).goal
        if goal and goal.event == event.type:
            return None
    for _journey, definition in live:
        trigger = definition.trigger
        if isinstance(trigger, defs.ConditionTrigger):
            return None
        if isinstance(trigger, defs.SegmentTrigger) and _entered(trigger, event):
            return None
        if isinstance(trigger, defs.EventTrigger) and trigger.event == event.type:
            return None
    return leaving


def _first_orders(batch: list[Event]) -> dict[int, int]:
    """{customer id: id of their first `order.paid` event} for the batch's customers with an
    `order.paid` in it (what a `first_order_only` trigger asks of each)."""
    ids = {e.customer_id for e in batch if e.type == "order.paid"}
    if not ids:
        return {}
    return dict(
        Event.objects.filter(customer_id__in=ids, type="order.paid")
        .values("customer_id")
        .annotate(first=Min("pk"))
        .values_list("customer_id", "first")
    )


def _enrols_only(
    event: Event,
    live: list[tuple[Journey, defs.Definition]],
    open_rows: list[Enrollment],
    closed: list[Enrollment],
    first_orders: dict[int, int],
) -> list[Journey] | None:
    """None when `handle_event` could change something besides enrolling through event
    triggers (`_reacts`, or a condition or segment trigger); else the live journeys whose
    event trigger the event matches (empty: the event changes nothing)."""
    if _reacts(event, open_rows, closed):
        return None
    journeys = []
    for journey, definition in live:
        trigger = definition.trigger
        if isinstance(trigger, defs.ConditionTrigger):
            return None
        if isinstance(trigger, defs.SegmentTrigger) and _entered(trigger, event):
            return None
        if isinstance(trigger, defs.EventTrigger) and _matches(trigger, event, first_orders):
            journeys.append(journey)
    return journeys


def _goal_windows(brand_ids: set[int]) -> dict[int, int]:
    """{version id: goal window in days} of the brands' journey versions that have a goal."""
    versions = JourneyVersion.objects.filter(journey__brand_id__in=brand_ids).values_list(
        "pk", flat=True
    )
    found = {}
    for pk in versions:
        goal = definition_of(pk).goal
        if goal is not None:
            found[pk] = goal.within_days
    return found


def _load_enrollments(
    ids: set[int],
    open_rows: dict[int, list[Enrollment]],
    closed: dict[int, list[Enrollment]],
    goals: dict[int, int],
    earliest: dt.datetime | None,
) -> None:
    """The customers' open enrolments, and the closed unconverted ones whose goal an event
    from `earliest` on could still reach (a version with a goal, entered within its window)."""
    for i in ids:
        open_rows[i], closed[i] = [], []
    wanted = Q(state__in=OPEN)
    if goals and earliest is not None:
        since = earliest - dt.timedelta(days=max(goals.values()))
        wanted |= Q(
            state__in=CLOSED,
            converted_at__isnull=True,
            version_id__in=sorted(goals),
            entered_at__gte=since,
        )
    rows = Enrollment.objects.filter(customer_id__in=ids).filter(wanted)
    for e in rows:
        (open_rows if e.state in OPEN else closed)[e.customer_id].append(e)


def _reacts(event: Event, open_rows: list[Enrollment], closed: list[Enrollment]) -> bool:
    """Whether one of the customer's open enrolments, or closed unconverted ones, reacts to
    the event in `handle_event` (a goal, an exit rule or condition, a wait)."""
    exits = _exits_of(event)
    for e in open_rows:
        definition = definition_of(e.version_id)
        rules = definition.exit_rules
        goal = definition.goal
        if goal and goal.event == event.type:
            return True
        if _exit_rule_hit(exits, rules) is not None:
            return True
        if rules.condition:
            return True
        if _waits_for(e, event):
            return True
    for e in closed:
        goal = definition_of(e.version_id).goal
        if goal and goal.event == event.type and _in_window(e, goal, event):
            return True
    return False


def _waits_for(e: Enrollment, event: Event) -> bool:
    """Whether the enrolment is waiting for this kind of event: the event it waits for, or a
    confirmation of the message it waits on (whose message it confirms is `handle_event`'s
    to check)."""
    if e.state != Enrollment.State.WAITING:
        return False
    waiting = e.waiting_for or {}
    return waiting.get("event") == event.type or (
        event.type in CONFIRMED_EVENTS and "message" in waiting
    )


def _in_window(e: Enrollment, goal: defs.Goal, event: Event) -> bool:
    return e.entered_at <= event.occurred_at <= e.entered_at + dt.timedelta(days=goal.within_days)


#: Enrolments that run no more steps but may still reach their goal (for the goal rate).
CLOSED = [
    Enrollment.State.HOLDOUT,
    Enrollment.State.COMPLETED,
    Enrollment.State.EXITED,
]


def _closed_goal_hits(customer_id: int, event: Event) -> list[int]:
    """The customer's closed, not yet converted enrolments (held out, completed, exited)
    whose goal this event is, within the goal window after entry."""
    rows = Enrollment.objects.filter(
        customer_id=customer_id,
        state__in=CLOSED,
        converted_at__isnull=True,
        entered_at__lte=event.occurred_at,
    ).values_list("pk", "version_id", "entered_at")
    hits = []
    for pk, version_id, entered_at in rows:
        goal = definition_of(version_id).goal
        if (
            goal is not None
            and goal.event == event.type
            and event.occurred_at <= entered_at + dt.timedelta(days=goal.within_days)
        ):
            hits.append(pk)
    return hits


def _save_end(e: Enrollment) -> None:
    e.save(
        update_fields=[
            "state", "exit_reason", "exited_at", "next_due_at", "waiting_for", "converted_at",
        ]
    )  # fmt: skip


def resume_waiting(e: Enrollment, now: dt.datetime, *, outcome: str) -> None:
    """An event or a task completion ends a wait early: record it as the wait's run and go on
    to the next step. The caller holds the row lock."""
    definition = definition_of(e.version_id)
    step = definition.step(e.current_step)
    StepRun.objects.create(
        enrollment=e,
        step_id=step.id,
        step_type=step.type,
        attempt_key=str(e.seq),
        due_at=now,
        ran_at=now,
        outcome=outcome,
    )
    e.seq += 1
    _goto(e, definition.following(step), now)
    e.save(update_fields=["state", "current_step", "seq", "next_due_at", "waiting_for",
                          "exited_at", "exit_reason"])  # fmt: skip


# --- Schedules and date triggers ------------------------------------------------------------


def _slot_key(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M")


def _pending_slots(journey: Journey, trigger: Any, now: dt.datetime) -> list[dt.datetime]:
    version = journey.live_version
    assert version is not None
    last = (
        ScheduleSlot.objects.filter(journey=journey)
        .order_by("-slot")
        .values_list("slot", flat=True)
    ).first()
    start = version.published_at
    if last:
        start = max(start, dt.datetime.strptime(last, "%Y%m%dT%H%M").replace(tzinfo=dt.UTC))
    weekdays, monthdays = _days_of(trigger)
    return timing.slots_between(
        start, now, journey.brand.tz, trigger.time, weekdays, monthdays=monthdays
    )


def _days_of(trigger: Any) -> tuple[list[int] | None, list[int] | None]:
    """(weekdays, monthdays) of a schedule trigger; a date trigger runs every day."""
    if isinstance(trigger, defs.ScheduleTrigger):
        return trigger.weekdays, trigger.monthdays or None
    return None, None


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def date_trigger_customers(brand: Brand, field: str, day: dt.date) -> QuerySet[Customer]:
    """The brand's customers whose birthday or membership anniversary is `day` (a date in
    the brand's time zone), as one query. The anniversary is the local date the customer
    joined (``Customer.created_at`` in the brand's time zone), from the first anniversary
    on. 29 February is celebrated on 28 February in other years."""
    from django.db.models.functions import ExtractDay, ExtractMonth

    customers = Customer.objects.filter(brand=brand, merged_into__isnull=True)
    days = [day.day]
    if (day.month, day.day) == (2, 28) and not _leap(day.year):
        days.append(29)
    if field == "birthday":
        return customers.filter(birthday__month=day.month, birthday__day__in=days)
    tz = brand.tz
    new_year = dt.datetime(day.year, 1, 1, tzinfo=tz).astimezone(dt.UTC)
    return (
        customers.filter(created_at__lt=new_year)
        .annotate(
            joined_month=ExtractMonth("created_at", tzinfo=tz),
            joined_day=ExtractDay("created_at", tzinfo=tz),
        )
        .filter(joined_month=day.month, joined_day__in=days)
    )


def run_schedules_once() -> int:
    """Enrol the audiences of schedule and date triggers whose time has come. Each slot is
    claimed once (ScheduleSlot is unique), in the same transaction as its enrolments."""
    now = clock.now()
    done = 0
    journeys = Journey.objects.filter(
        status=Journey.Status.LIVE, live_version__isnull=False
    ).select_related("brand", "live_version")
    for journey in journeys:
        trigger = definition_of(journey.live_version_id or 0).trigger
        if not isinstance(trigger, defs.ScheduleTrigger | defs.DateTrigger):
            continue
        for slot in _pending_slots(journey, trigger, now):
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        ScheduleSlot.objects.create(
                            journey=journey, slot=_slot_key(slot), done_at=now
                        )
                except IntegrityError:
                    continue
                done += 1 + _enrol_slot(journey, trigger, slot)
    return done


def _enrol_slot(journey: Journey, trigger: Any, slot: dt.datetime) -> int:
    enrolled = 0
    if isinstance(trigger, defs.DateTrigger):
        day = slot.astimezone(journey.brand.tz).date() + dt.timedelta(days=trigger.days_before)
        for customer in date_trigger_customers(journey.brand, trigger.field, day).iterator():
            result = enrol(journey=journey, customer=customer, at=slot, source="date")
            enrolled += result.status in {"enrolled", "holdout"}
        return enrolled
    # One SQL query for the whole brand (segments compiles the rule).
    matching = integrations.matching_customers(brand=journey.brand, rule=trigger.condition)
    for customer in matching.iterator():
        result = enrol(journey=journey, customer=customer, at=slot, source="schedule")
        enrolled += result.status in {"enrolled", "holdout"}
    return enrolled


def next_schedule_at(now: dt.datetime) -> dt.datetime | None:
    soonest = None
    for journey in Journey.objects.filter(
        status=Journey.Status.LIVE, live_version__isnull=False
    ).select_related("brand"):
        trigger = definition_of(journey.live_version_id or 0).trigger
        if isinstance(trigger, defs.ScheduleTrigger | defs.DateTrigger):
            weekdays, monthdays = _days_of(trigger)
            moment = timing.next_time_of_day(
                now + dt.timedelta(seconds=1),
                journey.brand.tz,
                trigger.time,
                weekdays,
                monthdays,
            )
            soonest = moment if soonest is None or moment < soonest else soonest
    return soonest


# --- Fast-forward ---------------------------------------------------------------------------


@dataclass
class FastForward:
    steps: int
    until: dt.datetime


def fast_forward(
    *,
    until: dt.datetime,
    start: dt.datetime | None = None,
    brand_id: int | None = None,
    batch: int = BATCH,
    on_pass: Callable[[int], None] | None = None,
) -> FastForward:
    """Run journey time from `start` (default: now) to `until` in seconds: jump the clock to
    each next due moment, run consumers, schedules and due steps. Used by tests, the
    simulator and `yutang journeys fast-forward` (never on a production brand's live data
    unless you mean it: messages are queued for real)."""
    from yutang.events.consumers import LAG, run_all

    current = start or clock.now()
    frozen = FrozenClock(current)
    steps = 0
    journey_ids = (
        list(Journey.objects.filter(brand_id=brand_id).values_list("pk", flat=True))
        if brand_id is not None
        else None
    )
    with use_clock(frozen):
        # Let events received just now pass the consumers' read lag.
        frozen.set(min(current + LAG + dt.timedelta(seconds=1), max(until, current)))
        while True:
            for _ in range(100000):
                did = run_all() + run_schedules_once()
                did += run_due_once(batch=batch, journey_ids=journey_ids)
                steps += did
                if on_pass is not None and did:
                    on_pass(did)
                if not did:
                    break
            now = frozen.now()
            pending = Enrollment.objects.filter(state__in=OPEN, next_due_at__gt=now)
            if journey_ids is not None:
                pending = pending.filter(journey_id__in=journey_ids)
            candidates = [
                pending.aggregate(m=Min("next_due_at"))["m"],
                next_schedule_at(now),
            ]
            upcoming = min((c for c in candidates if c is not None), default=None)
            if upcoming is None or upcoming > until:
                frozen.set(max(until, now))
                run_all()
                break
            frozen.set(upcoming)
    return FastForward(steps=steps, until=until)


def open_q() -> Q:
    return Q(state__in=OPEN)
