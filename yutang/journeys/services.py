"""Journey services: definitions, versions, enrolment by hand (API and CSV), enrollments
and metrics. Keyword arguments, typed errors, scope in the query."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet

from yutang.core import audit, clock
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import Staff
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, require
from yutang.customers.models import Customer
from yutang.journeys import definition as defs
from yutang.journeys import engine, extensions, integrations
from yutang.journeys.models import (
    Enrollment,
    Journey,
    JourneyVersion,
    StaffTask,
    StepRun,
)
from yutang.journeys.tasks import completion_by
from yutang.messaging.models import Message

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates_json"
MAX_CSV_ROWS = 50_000


def _journeys(actor: Staff, action: Action = Action.JOURNEY_VIEW) -> QuerySet[Journey]:
    return Journey.objects.for_actor(actor, action)


def get_journey(*, actor: Staff, journey_id: int, action: Action = Action.JOURNEY_VIEW) -> Journey:
    journey = _journeys(actor, action).filter(pk=journey_id).select_related("live_version").first()
    if journey is None:
        raise NotFound(N_("No such journey."), field="journey_id")
    return journey


def list_journeys(*, actor: Staff) -> list[Journey]:
    return list(_journeys(actor).select_related("live_version"))


def validate_definition(data: Any, *, brand_id: int | None = None) -> defs.Definition:
    """Parse a definition; with the brand, also check what it names there (a segment
    trigger's segment)."""
    definition = defs.parse(data)
    trigger = definition.trigger
    if brand_id is not None and isinstance(trigger, defs.SegmentTrigger):
        problem = integrations.segment_problem(brand_id=brand_id, segment_id=trigger.segment_id)
        if problem:
            raise ValidationFailed(
                N_("{path}: {message}"),
                params={"path": "$.trigger.segment_id", "message": problem},
                field="$.trigger.segment_id",
            )
    for index, step in enumerate(definition.steps):
        if isinstance(step, defs.ExtensionStep) and extensions.action(step.name) is None:
            path = f"$.steps[{index}].name"
            known = ", ".join(extensions.action_names()) or "none yet"
            raise ValidationFailed(
                N_("{path}: no extension action {name!r} is registered (have: {known})"),
                params={"path": path, "name": step.name, "known": known},
                field=path,
            )
    return definition


def create_journey(*, actor: Staff, name: str, definition: Any, description: str = "") -> Journey:
    require(actor, Action.JOURNEY_MANAGE)
    if not name.strip():
        raise ValidationFailed(N_("A journey needs a name."), field="name")
    parsed = validate_definition(definition, brand_id=actor.brand_id)
    now = clock.now()
    try:
        with transaction.atomic():
            journey = Journey.objects.create(
                brand=actor.brand, name=name.strip()[:120], description=description,
                draft=defs.dump(parsed), created_at=now, updated_at=now,
            )  # fmt: skip
            audit.record(brand=actor.brand, actor=actor, action="journey.create", target=journey)
    except IntegrityError:
        raise Conflict(N_("A journey with this name exists."), field="name") from None
    return journey


def update_journey(
    *,
    actor: Staff,
    journey_id: int,
    definition: Any = None,
    name: str | None = None,
    description: str | None = None,
) -> Journey:
    """Edit the draft. A live journey keeps running its published version until you publish."""
    journey = get_journey(actor=actor, journey_id=journey_id, action=Action.JOURNEY_MANAGE)
    if definition is not None:
        journey.draft = defs.dump(validate_definition(definition, brand_id=journey.brand_id))
    if name is not None:
        if not name.strip():
            raise ValidationFailed(N_("A journey needs a name."), field="name")
        journey.name = name.strip()[:120]
    if description is not None:
        journey.description = description
    journey.updated_at = clock.now()
    try:
        with transaction.atomic():
            journey.save()
    except IntegrityError:
        raise Conflict(N_("A journey with this name exists."), field="name") from None
    return journey


def publish(
    *, actor: Staff, journey_id: int, migration: dict[str, str] | None = None
) -> JourneyVersion:
    """Freeze the draft as the next version and make it live. Customers enrolled in earlier
    versions finish those, unless `migration` maps their current step (old id → new id) into
    the new version."""
    now = clock.now()
    with transaction.atomic():
        journey = get_journey(actor=actor, journey_id=journey_id, action=Action.JOURNEY_MANAGE)
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        parsed = validate_definition(journey.draft, brand_id=journey.brand_id)
        previous = journey.live_version
        migration = migration or {}
        if migration:
            if previous is None:
                raise ValidationFailed(N_("Nothing to migrate from."), field="migration")
            old_ids = set(engine.definition_of(previous).index)
            for old, new in migration.items():
                where = f"migration.{old}"
                if old not in old_ids:
                    message = f"{old!r} is not a step of version {previous.number}."
                    raise ValidationFailed(
                        N_("{where}: {message}"),
                        params={"where": where, "message": message},
                        field=where,
                    )
                if new not in parsed.index:
                    message = f"{new!r} is not a step of the new version."
                    raise ValidationFailed(
                        N_("{where}: {message}"),
                        params={"where": where, "message": message},
                        field=where,
                    )
        last = journey.versions.order_by("-number").first()
        number = (last.number + 1) if last else 1
        version = JourneyVersion.objects.create(
            journey=journey, number=number, definition=defs.dump(parsed), migration=migration,
            published_at=now, published_by=actor,
        )  # fmt: skip
        if previous is not None and migration:
            for old, new in migration.items():
                Enrollment.objects.filter(
                    journey=journey, version=previous, state__in=engine.OPEN, current_step=old
                ).update(version=version, current_step=new)
        journey.live_version = version
        journey.status = Journey.Status.LIVE
        journey.updated_at = now
        journey.save(update_fields=["live_version", "status", "updated_at"])
        audit.record(brand=journey.brand, actor=actor, action="journey.publish", target=journey,
                     changes={"version": {"after": number}})  # fmt: skip
    return version


def set_status(*, actor: Staff, journey_id: int, status: str) -> Journey:
    """Pause (no steps run, no one enters; waits keep their due times) or resume."""
    if status not in {Journey.Status.PAUSED, Journey.Status.LIVE, Journey.Status.ARCHIVED}:
        raise ValidationFailed(N_("status must be live, paused or archived."), field="status")
    with transaction.atomic():
        journey = get_journey(actor=actor, journey_id=journey_id, action=Action.JOURNEY_MANAGE)
        if journey.live_version_id is None:
            raise Conflict(N_("Publish the journey first."), field="status")
        journey.status = status
        journey.updated_at = clock.now()
        journey.save(update_fields=["status", "updated_at"])
        audit.record(brand=journey.brand, actor=actor, action=f"journey.{status}", target=journey)
    return journey


def delete_journey(*, actor: Staff, journey_id: int) -> None:
    journey = get_journey(actor=actor, journey_id=journey_id, action=Action.JOURNEY_MANAGE)
    if journey.live_version_id is not None:
        raise Conflict(N_("A published journey is archived, not deleted."), field="journey_id")
    journey.delete()


def export_journey(*, actor: Staff, journey_id: int) -> dict[str, Any]:
    journey = get_journey(actor=actor, journey_id=journey_id)
    return {"name": journey.name, "description": journey.description, "definition": journey.draft}


def import_journey(*, actor: Staff, data: Any) -> Journey:
    if not isinstance(data, dict) or "definition" not in data:
        raise ValidationFailed(N_("Expected {name, description, definition}."), field="definition")
    return create_journey(
        actor=actor,
        name=str(data.get("name", "")),
        description=str(data.get("description", "")),
        definition=data["definition"],
    )


def shipped_templates() -> list[dict[str, Any]]:
    out = []
    for path in sorted(TEMPLATES_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        out.append({"key": path.stem, **data})
    return out


def create_from_template(*, actor: Staff, key: str, name: str | None = None) -> Journey:
    for template in shipped_templates():
        if template["key"] == key:
            return import_journey(actor=actor, data={**template, "name": name or template["name"]})
    raise NotFound(N_("No such template."), field="template")


# --- Enrolment by hand ----------------------------------------------------------------------


def enrol_customers(
    *, actor: Staff, journey_id: int, customer_ids: list[int], source: str = "api"
) -> list[engine.EnrolResult]:
    """Manual enrolment: every id must name a customer the actor may manage, or nothing
    is enrolled (the error names the first bad one)."""
    require(actor, Action.JOURNEY_MANAGE)
    if not customer_ids:
        raise ValidationFailed(N_("Give at least one customer id."), field="customer_ids")
    if len(customer_ids) > MAX_CSV_ROWS:
        raise ValidationFailed(
            N_("At most {MAX_CSV_ROWS} customers at once."),
            params={"MAX_CSV_ROWS": MAX_CSV_ROWS},
            field="customer_ids",
        )
    now = clock.now()
    with transaction.atomic():
        journey = get_journey(actor=actor, journey_id=journey_id, action=Action.JOURNEY_MANAGE)
        if journey.status != Journey.Status.LIVE:
            raise Conflict(N_("Only a live journey takes enrolments."), field="journey_id")
        found = {
            c.pk: c
            for c in Customer.objects.for_actor(actor, Action.CUSTOMER_MANAGE).filter(
                pk__in=customer_ids
            )
        }
        for index, cid in enumerate(customer_ids):
            if cid not in found:
                raise ValidationFailed(
                    N_("customer_ids[{index}]: no such customer {cid}."),
                    params={"index": index, "cid": cid},
                    field=f"customer_ids[{index}]",
                )
        return [
            engine.enrol(journey=journey, customer=found[cid], at=now, source=source)
            for cid in dict.fromkeys(customer_ids)
        ]


def enrol_csv(*, actor: Staff, journey_id: int, text: str) -> list[engine.EnrolResult]:
    """A CSV with a `customer_id` column. A bad row names its line; nothing is enrolled."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames or "customer_id" not in [f.strip() for f in reader.fieldnames]:
        raise ValidationFailed(N_("The CSV needs a customer_id column."), field="file")
    ids = []
    for line, row in enumerate(reader, start=2):
        value = (row.get("customer_id") or "").strip()
        if not value.isdigit() or not 0 < int(value) < 2**63:
            raise ValidationFailed(
                N_("Line {line}: customer_id {value!r} is not an id."),
                params={"line": line, "value": value},
                field=f"line {line}",
            )
        ids.append(int(value))
    try:
        return enrol_customers(actor=actor, journey_id=journey_id, customer_ids=ids, source="csv")
    except ValidationFailed as exc:
        if exc.field and exc.field.startswith("customer_ids["):
            index = int(exc.field[13:-1])
            raise ValidationFailed(
                N_("Line {line}: no such customer {cid}."),
                params={"line": index + 2, "cid": ids[index]},
                field=f"line {index + 2}",
            ) from None
        raise


def _enrollments(*, actor: Staff, journey_id: int, state: str | None) -> QuerySet[Enrollment]:
    journey = get_journey(actor=actor, journey_id=journey_id)
    visible = Customer.objects.for_actor(actor).values("pk")
    qs = Enrollment.objects.filter(journey=journey, customer__in=visible)
    if state:
        if state not in Enrollment.State.values:
            raise ValidationFailed(N_("Unknown state."), field="state")
        qs = qs.filter(state=state)
    return qs.select_related("customer", "version")


def list_enrollments(
    *, actor: Staff, journey_id: int, state: str | None = None, limit: int = 100
) -> list[Enrollment]:
    """The latest enrolments (the console's table)."""
    qs = _enrollments(actor=actor, journey_id=journey_id, state=state)
    return list(qs.order_by("-id")[: max(1, min(limit, 500))])


def page_enrollments(
    *,
    actor: Staff,
    journey_id: int,
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[Enrollment], str | None]:
    """All of a journey's enrolments the actor may see, newest first, a page at a time
    (`core.pagination`: pass the `next_cursor` back as `cursor`)."""
    qs = _enrollments(actor=actor, journey_id=journey_id, state=state)
    return page_by_id_desc(qs, cursor=cursor, limit=limit)


# --- Metrics --------------------------------------------------------------------------------


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (his method 10), 95%."""
    if n1 == 0 or n2 == 0:
        return (0.0, 0.0)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (lower, upper)


def journey_metrics(*, actor: Staff, journey_id: int) -> dict[str, Any]:
    journey = get_journey(actor=actor, journey_id=journey_id)
    rows = Enrollment.objects.filter(journey=journey)
    states = dict(rows.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    reasons = dict(
        rows.filter(state=Enrollment.State.EXITED)
        .values_list("exit_reason")
        .annotate(n=Count("id"))
        .values_list("exit_reason", "n")
    )
    treated = rows.filter(is_holdout=False)
    held = rows.filter(is_holdout=True)
    t_n, t_x = treated.count(), treated.filter(converted_at__isnull=False).count()
    h_n, h_x = held.count(), held.filter(converted_at__isnull=False).count()
    step_counts: dict[str, dict[str, int]] = {}
    for step_id, outcome, n in (
        StepRun.objects.filter(enrollment__journey=journey)
        .values_list("step_id", "outcome")
        .annotate(n=Count("id"))
        .values_list("step_id", "outcome", "n")
    ):
        step_counts.setdefault(step_id, {})[outcome] = n
    at_step = dict(
        rows.filter(state__in=engine.OPEN)
        .values_list("current_step")
        .annotate(n=Count("id"))
        .values_list("current_step", "n")
    )
    order = (
        list(engine.definition_of(journey.live_version_id).index) if journey.live_version_id else []
    )
    prefix = f"journey:{journey.pk}:"
    # One grouped read of the journey's outbox rows: per step, status and blocking rule.
    outbox = (
        Message.objects.filter(
            brand_id=journey.brand_id, cause=Message.Cause.JOURNEY, cause_ref__startswith=prefix
        )
        .values_list("cause_ref", "status", "rule")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_status: dict[str, int] = {}
    blocked_by_rule: dict[str, int] = {}
    step_messages: dict[str, dict[str, Any]] = {}
    for ref, status, rule, n in outbox:
        by_status[status] = by_status.get(status, 0) + n
        entry = step_messages.setdefault(ref.removeprefix(prefix), _message_counts())
        entry["by_status"][status] = entry["by_status"].get(status, 0) + n
        entry["queued"] += n
        if status in SENT_STATES:
            entry["sent"] += n
        elif status == "pending_confirmation":
            entry["pending_confirmation"] += n
        elif status == "blocked":
            entry["blocked"] += n
            entry["blocked_by_rule"][rule or ""] = entry["blocked_by_rule"].get(rule or "", 0) + n
            blocked_by_rule[rule or ""] = blocked_by_rule.get(rule or "", 0) + n
    tasks = StaffTask.objects.filter(enrollment__journey=journey)
    step_tasks: dict[str, dict[str, int]] = {}
    for step_id, status, n in (
        tasks.values_list("step_id", "status").annotate(n=Count("id")).order_by()
    ):
        entry = step_tasks.setdefault(step_id, {"created": 0, "done": 0, "skipped": 0})
        entry["created"] += n
        if status in (StaffTask.Status.DONE, StaffTask.Status.SKIPPED):
            entry[status] += n
    task_counts = {
        "created": sum(t["created"] for t in step_tasks.values()),
        "done": sum(t["done"] for t in step_tasks.values()),
    }
    ids = [*order, *sorted((set(step_counts) | set(step_messages) | set(step_tasks)) - set(order))]
    steps = [
        {"id": s, "runs": sum(step_counts.get(s, {}).values()), "outcomes": step_counts.get(s, {}),
         "current": at_step.get(s, 0),
         "messages": step_messages.get(s, _message_counts()),
         "tasks": step_tasks.get(s, {"created": 0, "done": 0, "skipped": 0})}
        for s in ids
    ]  # fmt: skip
    task_rows = list(
        tasks.values(
            "assignee_id", "assignee__display_name", "store_id", "store__name", "status",
            "created_at", "completed_at",
        )
    )  # fmt: skip
    t_rate = t_x / t_n if t_n else 0.0
    h_rate = h_x / h_n if h_n else 0.0
    return {
        "journey_id": journey.pk,
        "entered": rows.count(),
        "active": states.get("active", 0),
        "waiting": states.get("waiting", 0),
        "completed": states.get("completed", 0),
        "converted": states.get("converted", 0),
        "exited": states.get("exited", 0),
        "exited_by_reason": reasons,
        "holdout": states.get("holdout", 0),
        "messages_queued": sum(by_status.values()),
        "messages_sent": sum(n for st, n in by_status.items() if st in SENT_STATES),
        "messages_pending_confirmation": by_status.get("pending_confirmation", 0),
        "messages_blocked": by_status.get("blocked", 0),
        "messages_blocked_by_rule": blocked_by_rule,
        "messages_by_status": by_status,
        "messages_skipped_no_account": sum(
            c.get("skipped_no_account", 0) for c in step_counts.values()
        ),
        "tasks_created": task_counts["created"],
        "tasks_done": task_counts["done"],
        "task_completion": {
            "staff": completion_by(task_rows, "assignee_id", "assignee__display_name"),
            "stores": completion_by(task_rows, "store_id", "store__name"),
        },
        "confirmations": confirmation_metrics(journey, step_counts),
        "goal": {
            "treated": {
                "n": t_n,
                "converted": t_x,
                "rate": round(t_rate, 4),
                "ci95": [round(v, 4) for v in wilson(t_x, t_n)],
            },
            "holdout": {
                "n": h_n,
                "converted": h_x,
                "rate": round(h_rate, 4),
                "ci95": [round(v, 4) for v in wilson(h_x, h_n)],
            },
            "uplift": round(t_rate - h_rate, 4),
            "uplift_ci95": [round(v, 4) for v in newcombe(t_x, t_n, h_x, h_n)],
        },
        "steps": steps,
    }


SENT_STATES = frozenset({"sent", "delivered", "read"})


def _message_counts() -> dict[str, Any]:
    return {"queued": 0, "sent": 0, "pending_confirmation": 0, "blocked": 0,
            "blocked_by_rule": {}, "by_status": {}}  # fmt: skip


def confirmation_metrics(
    journey: Journey, step_counts: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """Send steps that wait for staff confirmation (WeCom): how many messages were asked for,
    confirmed, not sent (expired, failed, blocked) or timed out, and the confirmation rate
    overall and per sending staff member and store (of the decided ones)."""
    asked = sum(c.get("confirming", 0) for c in step_counts.values())
    done = {
        k: sum(c.get(k, 0) for c in step_counts.values())
        for k in ("confirmed", "not_sent", "timeout")
    }
    decided = sum(done.values())
    steps = set()
    if journey.live_version_id:
        for step in engine.definition_of(journey.live_version_id).steps:
            if getattr(step, "wait_for_confirmation", None) is not None:
                steps.add(step.id)
    groups: dict[tuple[str, Any], dict[str, Any]] = {}
    if steps:
        query = Q()
        for step_id in steps:
            query |= Q(cause_ref=f"journey:{journey.pk}:{step_id}")
        rows = (
            Message.objects.filter(query, brand_id=journey.brand_id, cause=Message.Cause.JOURNEY)
            .values("account__staff_id", "account__staff__display_name", "account__store_id",
                    "account__store__name", "status")
            .annotate(n=Count("id"))
            .order_by()
        )  # fmt: skip
        for row in rows:
            sent = row["status"] in {"sent", "delivered", "read"}
            keys = [
                ("staff", (row["account__staff_id"], row["account__staff__display_name"])),
                ("store", (row["account__store_id"], row["account__store__name"])),
            ]
            for kind, (key_id, name) in keys:
                entry = groups.setdefault(
                    (kind, key_id),
                    {"id": key_id, "name": name or "", "asked": 0, "confirmed": 0},
                )
                entry["asked"] += row["n"]
                entry["confirmed"] += row["n"] if sent else 0
    for entry in groups.values():
        entry["rate"] = round(entry["confirmed"] / entry["asked"], 4) if entry["asked"] else 0.0
    return {
        "asked": asked,
        "waiting": asked - decided,
        **done,
        "rate": round(done["confirmed"] / decided, 4) if decided else 0.0,
        "by_staff": sorted(
            (v for (k, _), v in groups.items() if k == "staff"), key=lambda v: -v["asked"]
        ),
        "by_store": sorted(
            (v for (k, _), v in groups.items() if k == "store"), key=lambda v: -v["asked"]
        ),
    }


def conversions(
    *, brand: Any, customers: QuerySet[Customer], start_at: Any, end_at: Any
) -> list[dict[str, Any]]:
    """Per journey of the brand: customers in `customers` who entered in [start_at, end_at)
    (held-out customers apart) and of them how many reached the journey's goal. One aggregate
    query; the dashboard's "journeys" section (docs/metrics.md)."""
    rows = (
        Enrollment.objects.filter(
            brand=brand, customer__in=customers, entered_at__gte=start_at, entered_at__lt=end_at
        )
        .values("journey_id", "journey__name")
        .annotate(
            entered=Count("customer_id", filter=Q(is_holdout=False), distinct=True),
            converted=Count(
                "customer_id", filter=Q(is_holdout=False, converted_at__isnull=False), distinct=True
            ),
            holdout=Count("customer_id", filter=Q(is_holdout=True), distinct=True),
            holdout_converted=Count(
                "customer_id", filter=Q(is_holdout=True, converted_at__isnull=False), distinct=True
            ),
        )
        .order_by("journey__name", "journey_id")
    )
    return [
        {
            "journey": r["journey__name"],
            "entered": r["entered"],
            "converted": r["converted"],
            "rate": r["converted"] / r["entered"] if r["entered"] else None,
            "holdout": r["holdout"],
            "holdout_rate": r["holdout_converted"] / r["holdout"] if r["holdout"] else None,
        }
        for r in rows
    ]
