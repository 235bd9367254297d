"""Staff tasks: created by journeys or by hand, completed in the inbox; overdue reminders
through the registered staff notifier, at most 30 per staff member per minute (WeCom's limit
for app messages to one member)."""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from typing import Any

from django.db import transaction
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import translation
from django.utils.translation import gettext as _

from yutang.carriers.staff_notify import NotifyFailed
from yutang.core import clock
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import CarrierAccount, Staff
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, Role, require
from yutang.customers.services import get_customer
from yutang.journeys import extensions, integrations
from yutang.journeys.models import Enrollment, StaffNotification, StaffTask

logger = logging.getLogger("yutang.journeys")

REMINDERS_PER_MINUTE = 30
OUTCOME_CODES = ("reached", "no_answer", "purchased", "declined", "sent", "other")


def _scoped(actor: Staff, action: Action = Action.TASK_VIEW) -> QuerySet[StaffTask]:
    return StaffTask.objects.for_actor(actor, action)


def _inbox(*, actor: Staff, box: str, status: str) -> QuerySet[StaffTask]:
    qs = _scoped(actor)
    if box == "mine":
        qs = qs.filter(assignee=actor)
    elif box == "store":
        qs = qs.filter(Q(store__in=actor.store_ids) | Q(assignee=actor))
    elif box != "all":
        raise ValidationFailed(N_("box must be mine, store or all."), field="box")
    if status == "open":
        qs = qs.filter(status__in=[StaffTask.Status.OPEN, StaffTask.Status.OVERDUE])
    elif status in StaffTask.Status.values:
        qs = qs.filter(status=status)
    elif status != "any":
        raise ValidationFailed(N_("Unknown status."), field="status")
    return qs.select_related("customer", "assignee", "store")


def list_tasks(
    *, actor: Staff, box: str = "mine", status: str = "open", limit: int = 200
) -> list[StaffTask]:
    """The inbox: `mine` (assigned to me), `store` (my stores' queues and people), `all`.
    Overdue first, then by due time."""
    qs = _inbox(actor=actor, box=box, status=status).annotate(
        overdue_first=Case(
            When(status=StaffTask.Status.OVERDUE, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
    )
    return list(qs.order_by("overdue_first", "due_at", "id")[:limit])


def page_tasks(
    *,
    actor: Staff,
    box: str = "mine",
    status: str = "open",
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[StaffTask], str | None]:
    """Every task of the box, newest first, a page at a time (`core.pagination`)."""
    return page_by_id_desc(_inbox(actor=actor, box=box, status=status), cursor=cursor, limit=limit)


def get_task(*, actor: Staff, task_id: int, action: Action = Action.TASK_VIEW) -> StaffTask:
    task = _scoped(actor, action).filter(pk=task_id).first()
    if task is None:
        raise NotFound(N_("No such task."), field="task_id")
    return task


def create_task(
    *,
    actor: Staff,
    customer_id: int,
    title: str,
    script: str = "",
    due_at: dt.datetime,
    assignee_id: int | None = None,
) -> StaffTask:
    require(actor, Action.TASK_MANAGE)
    customer = get_customer(actor=actor, customer_id=customer_id, action=Action.CUSTOMER_MANAGE)
    if not title.strip():
        raise ValidationFailed(N_("A task needs a title."), field="title")
    if due_at.tzinfo is None:
        raise ValidationFailed(N_("due_at needs a time zone."), field="due_at")
    assignee = None
    if assignee_id is not None:
        assignee = Staff.objects.for_actor(actor, Action.STAFF_VIEW).filter(pk=assignee_id).first()
        if assignee is None:
            raise ValidationFailed(N_("No such staff member."), field="assignee_id")
    elif customer.owner_staff_id is not None:
        assignee = customer.owner_staff
    return StaffTask.objects.create(
        brand=customer.brand,
        customer=customer,
        assignee=assignee,
        store_id=customer.owner_store_id,
        title=title.strip(),
        script=script,
        due_at=due_at,
        created_by=actor,
        created_at=clock.now(),
    )


def update_task(
    *, actor: Staff, task_id: int, due_at: dt.datetime | None = None, assignee_id: int | None = None
) -> StaffTask:
    task = get_task(actor=actor, task_id=task_id, action=Action.TASK_MANAGE)
    if task.status in {StaffTask.Status.DONE, StaffTask.Status.SKIPPED}:
        raise Conflict(N_("This task is closed."), field="status")
    if due_at is not None:
        task.due_at = due_at
        if task.status == StaffTask.Status.OVERDUE and due_at > clock.now():
            task.status = StaffTask.Status.OPEN
    if assignee_id is not None:
        staff = Staff.objects.for_actor(actor, Action.STAFF_VIEW).filter(pk=assignee_id).first()
        if staff is None:
            raise ValidationFailed(N_("No such staff member."), field="assignee_id")
        task.assignee = staff
    task.save()
    return task


def complete_task(
    *,
    actor: Staff,
    task_id: int,
    outcome_code: str,
    outcome_note: str = "",
    skipped: bool = False,
    text: str | None = None,
    kind: str = "marketing",
) -> StaffTask:
    """Close the task; a journey waiting for it goes on to its next step now.

    Outcome ``sent`` means the message went out through Yutang: it writes the task's script
    (or `text`) to the outbox for the customer (`send_task_message`), where the policy gate
    decides as for every other message — a staff member cannot record a touch the gate never
    saw. The task keeps a link to that message."""
    if outcome_code not in OUTCOME_CODES:
        raise ValidationFailed(
            N_("outcome_code must be one of {codes}."),
            params={"codes": ", ".join(OUTCOME_CODES)},
            field="outcome_code",
        )
    if outcome_code == "sent" and skipped:
        raise ValidationFailed(N_("A skipped task sends nothing."), field="skipped")
    now = clock.now()
    with transaction.atomic():
        task = get_task(actor=actor, task_id=task_id, action=Action.TASK_MANAGE)
        task = (
            StaffTask.objects.select_for_update(of=("self",))
            .select_related("brand", "customer", "enrollment")
            .get(pk=task.pk)
        )
        if task.status in {StaffTask.Status.DONE, StaffTask.Status.SKIPPED}:
            raise Conflict(N_("This task is already closed."), field="status")
        if outcome_code == "sent":
            task.message = _send(actor, task, text=text, kind=kind)
        task.status = StaffTask.Status.SKIPPED if skipped else StaffTask.Status.DONE
        task.outcome_code = outcome_code
        task.outcome_note = outcome_note[:4000]
        task.completed_by = actor
        task.completed_at = now
        task.save()
        if task.enrollment_id is not None:
            from yutang.journeys.engine import resume_waiting

            e = (
                Enrollment.objects.select_for_update()
                .filter(pk=task.enrollment_id, state=Enrollment.State.WAITING)
                .first()
            )
            if e is not None and e.waiting_for.get("task") == task.pk:
                resume_waiting(e, now, outcome="task_done" if not skipped else "task_skipped")
    return task


def send_task_message(
    *,
    actor: Staff,
    task_id: int,
    text: str | None = None,
    kind: str = "marketing",
    outcome_note: str = "",
) -> StaffTask:
    """One-click send from the inbox: the task's suggested script (or the edited `text`) goes
    to the customer through the outbox and the policy gate, from the staff member's own
    carrier account the customer holds (else the account a journey would use, if the staff
    member may use it), and the task closes with outcome ``sent``. On WeCom the message waits
    for the member's confirmation in the WeCom app like every one-to-one message."""
    return complete_task(
        actor=actor, task_id=task_id, outcome_code="sent", outcome_note=outcome_note,
        text=text, kind=kind,
    )  # fmt: skip


def _send(actor: Staff, task: StaffTask, *, text: str | None, kind: str) -> Any:
    from yutang.messaging.services import enqueue_message

    require(actor, Action.MESSAGE_SEND)
    body = (task.script if text is None else text).strip()
    if not body:
        raise ValidationFailed(
            N_("Nothing to send: the task has no script; write the text."), field="text"
        )
    account = _sender_account(actor, task.customer)
    if account is None:
        raise Conflict(
            N_("The customer holds none of the carrier accounts you may send from."),
            field="task_id",
        )
    if task.enrollment is not None:
        cause, ref = "journey", f"journey:{task.enrollment.journey_id}:{task.step_id}"
    else:
        cause, ref = "manual", f"task:{task.pk}"
    return enqueue_message(
        brand=task.brand,
        customer=task.customer,
        account=account,
        kind=kind,
        content={"type": "text", "text": body},
        cause=cause,
        cause_ref=ref,
        idempotency_key=f"task:{task.pk}",
        staff=actor,
    )


def _sender_account(actor: Staff, customer: Any) -> CarrierAccount | None:
    """Among the accounts the customer holds as an active contact and the actor may use:
    the actor's own, else the one a journey would send from, else the oldest."""
    from yutang.carriers.models import CarrierContact

    held = CarrierContact.objects.filter(
        customer=customer, status=CarrierContact.Status.ACTIVE
    ).values("account_id")
    usable = list(
        CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW)
        .filter(pk__in=held, is_active=True)
        .order_by("pk")
    )
    own = [a for a in usable if a.staff_id == actor.pk]
    if own:
        return own[0]
    preferred = integrations.account_for(customer)
    if preferred is not None and preferred.pk in {a.pk for a in usable}:
        return preferred
    return usable[0] if usable else None


def reminder_recipients(task: StaffTask) -> list[Staff]:
    """Who is reminded of an overdue task: its assignee; for a queue task (a store and role,
    no one assigned — or an assignee who left) the managers of its store; without a store or
    a store manager, the brand's operations leads, else its brand admins."""
    if task.assignee is not None and task.assignee.is_active:
        return [task.assignee]
    people = Staff.objects.filter(brand_id=task.brand_id, is_active=True).order_by("pk")
    if task.store_id is not None:
        managers = list(people.filter(role=Role.STORE_MANAGER, stores=task.store_id))
        if managers:
            return managers
    for role in (Role.OPERATIONS_LEAD, Role.BRAND_ADMIN):
        found = list(people.filter(role=role))
        if found:
            return found
    return []


def reminder_text(task: StaffTask, person: Staff) -> str:
    """The reminder in the brand's staff language (brand setting ``staff_language``,
    zh-hans by default), whatever language the worker runs in."""
    brand = task.brand
    due = task.due_at.astimezone(brand.tz).strftime("%m-%d %H:%M")
    values = {"title": task.title, "customer": task.customer.display_name or f"#{task.customer_id}",
              "due": due}  # fmt: skip
    with translation.override(brand.policy.staff_language):
        if task.assignee_id == person.pk:
            return _("Overdue task: %(title)s (customer %(customer)s, due %(due)s)") % values
        return (
            _("Overdue task in a queue you manage: %(title)s (customer %(customer)s, due %(due)s)")
            % values
        )


def remind_overdue_once(*, batch: int = 500) -> int:
    """Mark open tasks past due as overdue and remind each of their recipients once
    (`reminder_recipients`) through the staff notifier, within the per-member rate limit:
    a member over it, or a carrier that asks to try later, is reminded on a later pass. A
    task's `reminded_at` is set when all its recipients have been reminded."""
    now = clock.now()
    with transaction.atomic():
        marked = StaffTask.objects.filter(status=StaffTask.Status.OPEN, due_at__lt=now).update(
            status=StaffTask.Status.OVERDUE
        )
    sent = 0
    due = list(
        StaffTask.objects.filter(status=StaffTask.Status.OVERDUE, reminded_at__isnull=True)
        .select_related("assignee", "customer", "brand")
        .order_by("due_at", "id")[:batch]
    )
    window = now - dt.timedelta(minutes=1)
    for task in due:
        complete = True
        for person in reminder_recipients(task):
            outcome = _remind(task, person, now, window)
            sent += outcome == "sent"
            complete = complete and outcome != "later"
        if complete:
            StaffTask.objects.filter(pk=task.pk, reminded_at__isnull=True).update(reminded_at=now)
    return marked + sent


def _remind(task: StaffTask, person: Staff, now: dt.datetime, window: dt.datetime) -> str:
    """One reminder to one person: "sent", "done" (already reminded of this task) or
    "later" (over the rate limit, or the carrier asked to try again)."""
    with transaction.atomic():
        Staff.objects.select_for_update().filter(pk=person.pk).first()  # one member at a time
        if StaffNotification.objects.filter(task=task, staff=person).exists():
            return "done"
        if (
            StaffNotification.objects.filter(staff=person, sent_at__gt=window).count()
            >= REMINDERS_PER_MINUTE
        ):
            return "later"
        try:
            channel = extensions.notify_staff(
                staff=person, task=task, text=reminder_text(task, person), at=now
            )
        except NotifyFailed as exc:
            if exc.retry_later:
                logger.info("reminder of task %s to staff %s later: %s", task.pk, person.pk, exc)
                return "later"
            logger.warning("reminder of task %s to staff %s failed: %s", task.pk, person.pk, exc)
            channel = "failed"
        StaffNotification.objects.create(staff=person, task=task, sent_at=now, channel=channel)
    return "sent"


def task_metrics(*, actor: Staff) -> dict[str, Any]:
    """Completion rate and median minutes to completion per staff member and per store."""
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in _scoped(actor).values(
            "assignee_id", "assignee__display_name", "store_id", "store__name", "status",
            "created_at", "completed_at",
        )
    ]  # fmt: skip
    return {"staff": completion_by(rows, "assignee_id", "assignee__display_name"),
            "stores": completion_by(rows, "store_id", "store__name")}  # fmt: skip


def completion_by(rows: list[dict[str, Any]], key: str, label: str) -> list[dict[str, Any]]:
    """Tasks (rows with status, created_at, completed_at) grouped by `key`: total, done, the
    completion rate (done / total) and the median minutes from creation to completion of
    the done ones. Rows without a `key` (a queue task has no assignee) are left out."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        if row[key] is not None:
            groups.setdefault((row[key], row[label]), []).append(row)
    out = []
    for (ident, name), items in sorted(groups.items(), key=lambda kv: str(kv[0][1])):
        done = [r for r in items if r["status"] == StaffTask.Status.DONE]
        minutes = [(r["completed_at"] - r["created_at"]).total_seconds() / 60 for r in done]
        out.append({
            "id": ident, "name": name, "total": len(items), "done": len(done),
            "completion_rate": round(len(done) / len(items), 4) if items else 0.0,
            "median_minutes": round(statistics.median(minutes), 1) if minutes else None,
        })  # fmt: skip
    return out
