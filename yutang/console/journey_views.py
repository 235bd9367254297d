"""Console pages for journeys (list, builder, published diagram, metrics) and the staff task
inbox. Views validate, call one service and render."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_POST

from yutang.console.views import staff_view
from yutang.core.errors import ValidationFailed, YutangError
from yutang.core.models import Staff
from yutang.core.permissions import Action
from yutang.journeys import services, tasks
from yutang.journeys.definition import dump, parse
from yutang.journeys.engine import definition_of
from yutang.journeys.models import StaffTask

STEP_TYPES = [
    ("send_message", _lazy("Send message")), ("wait", _lazy("Wait a duration")),
    ("wait_until", _lazy("Wait until a time of day")), ("wait_event", _lazy("Wait for an event")),
    ("branch", _lazy("Branch on a condition")), ("split", _lazy("Random split")),
    ("create_task", _lazy("Staff task")), ("add_tag", _lazy("Add tag")),
    ("remove_tag", _lazy("Remove tag")),
    ("set_attribute", _lazy("Set attribute")), ("webhook", _lazy("Signed webhook")),
    ("extension", _lazy("Extension (coupon, points)")), ("exit", _lazy("Exit")),
]  # fmt: skip
INT_FIELDS = ("days", "hours", "minutes")
TEXT_FIELDS = ["content", "time", "event", "title", "script", "group", "name", "url", "secret",
               "then", "else", "next", "on_timeout"]  # fmt: skip


def _pop_duration(step: dict[str, Any]) -> dict[str, int]:
    """The days/hours/minutes boxes, taken out of the step as one duration (a timeout)."""
    return {k: step.pop(k) for k in INT_FIELDS if k in step}


def _step_from_form(post: Any) -> dict[str, Any]:
    """A typed step form → step JSON; the definition validator names any bad field."""
    step: dict[str, Any] = {"id": post.get("id", "").strip(), "type": post.get("type", "")}
    for name in TEXT_FIELDS:
        value = post.get(name, "").strip()
        if value:
            step[name] = value
    for name in INT_FIELDS:
        value = post.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise ValidationFailed(f"{name}: a whole number, please.", field=name)
            step[name] = int(value)
    if step["type"] == "wait_event":
        step["timeout"] = _pop_duration(step)
    if step["type"] == "create_task" and post.get("wait_for_completion"):
        step["wait_for_completion"] = True
        step["timeout"] = _pop_duration(step)
    if step["type"] == "send_message":
        if post.get("kind"):
            step["kind"] = post["kind"]
        if post.get("skip_if_welcomed"):
            step["skip_if_welcomed"] = True
        if post.get("wait_for_confirmation"):
            # days/hours/minutes are the confirmation's timeout; on_timeout its branch
            wait: dict[str, Any] = {"timeout": _pop_duration(step)}
            if "on_timeout" in step:
                wait["on_timeout"] = step.pop("on_timeout")
            step["wait_for_confirmation"] = wait
    if post.get("condition", "").strip():
        try:
            step["condition"] = json.loads(post["condition"])
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"condition: not JSON ({exc.msg}).", field="condition") from None
    if step["type"] == "split":
        targets = (step.pop("then", None), step.pop("else", None))
        step["paths"] = [{"weight": 1, "next": t} for t in targets if t]
    return step


@staff_view(Action.JOURNEY_VIEW)
def journey_list(request: HttpRequest, staff: Staff) -> HttpResponse:
    return render(
        request,
        "console/journeys/list.html",
        {"journeys": services.list_journeys(actor=staff), "templates": services.shipped_templates(),
         "can_manage": staff.can(Action.JOURNEY_MANAGE)},
    )  # fmt: skip


@require_POST
@staff_view(Action.JOURNEY_MANAGE)
def journey_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    template = request.POST.get("template", "")
    try:
        if template:
            journey = services.create_from_template(actor=staff, key=template, name=name or None)
        elif request.POST.get("import", "").strip():
            journey = services.import_journey(actor=staff, data=json.loads(request.POST["import"]))
        else:
            first = {"id": "hello", "type": "send_message", "content": _("Hello {name}!")}
            journey = services.create_journey(
                actor=staff, name=name, definition={"trigger": {"type": "manual"}, "steps": [first]}
            )
    except json.JSONDecodeError as exc:
        messages.error(request, _("The import is not JSON: %(error)s") % {"error": exc.msg})
        return redirect("console:journeys")
    except YutangError as exc:
        messages.error(request, exc.localized())
        return redirect("console:journeys")
    return redirect("console:journey", journey_id=journey.pk)


def _journey_context(staff: Staff, journey_id: int, **extra: Any) -> dict[str, Any]:
    journey = services.get_journey(actor=staff, journey_id=journey_id)
    draft = parse(journey.draft)
    published = definition_of(journey.live_version_id) if journey.live_version_id else None
    metrics = services.journey_metrics(actor=staff, journey_id=journey_id)
    steps = metrics["steps"]
    # The charts draw the metrics function's own numbers (the API's), nothing recomputed.
    chart = {
        "steps": [s["id"] for s in steps],
        "runs": [s["runs"] for s in steps],
        "current": [s["current"] for s in steps],
        "sent": [s["messages"]["sent"] for s in steps],
        "blocked": [s["messages"]["blocked"] for s in steps],
        "pending": [s["messages"]["pending_confirmation"] for s in steps],
        "tasks_created": [s["tasks"]["created"] for s in steps],
        "tasks_done": [s["tasks"]["done"] for s in steps],
        "staff": [r["name"] or "—" for r in metrics["task_completion"]["staff"]],
        "staff_rate": [r["completion_rate"] for r in metrics["task_completion"]["staff"]],
    }
    return {
        "journey": journey, "draft": draft, "published": published, "metrics": metrics,
        "chart_data": chart, "step_types": STEP_TYPES,
        "draft_json": json.dumps(dump(draft), ensure_ascii=False, indent=2),
        "can_manage": staff.can(Action.JOURNEY_MANAGE), "error_step": None, "error": None,
        "enrollments": services.list_enrollments(actor=staff, journey_id=journey_id, limit=20),
        **extra,
    }  # fmt: skip


def _error_step(exc: YutangError) -> int | None:
    field = exc.field or ""
    if field.startswith("$.steps["):
        return int(field[len("$.steps[") : field.index("]")])
    return None


@staff_view(Action.JOURNEY_VIEW)
def journey_detail(request: HttpRequest, staff: Staff, journey_id: int) -> HttpResponse:
    return render(request, "console/journeys/detail.html", _journey_context(staff, journey_id))


@require_POST
@staff_view(Action.JOURNEY_MANAGE)
def journey_edit(request: HttpRequest, staff: Staff, journey_id: int) -> HttpResponse:
    """Add or remove a step with the typed form, or replace the whole JSON."""
    journey = services.get_journey(actor=staff, journey_id=journey_id)
    data = dict(journey.draft)
    op = request.POST.get("op", "")
    try:
        if op == "add":
            data["steps"] = [*data.get("steps", []), _step_from_form(request.POST)]
        elif op == "remove":
            data["steps"] = [s for s in data["steps"] if s["id"] != request.POST.get("step")]
        elif op == "json":
            try:
                data = json.loads(request.POST.get("definition", ""))
            except json.JSONDecodeError as exc:
                raise ValidationFailed(f"$: not JSON ({exc.msg})", field="$") from None
        services.update_journey(actor=staff, journey_id=journey_id, definition=data)
    except YutangError as exc:
        context = _journey_context(staff, journey_id, error=exc.localized(),
                                   error_step=_error_step(exc))  # fmt: skip
        return render(request, "console/journeys/detail.html", context, status=422)
    messages.success(request, _("Draft saved."))
    return redirect("console:journey", journey_id=journey_id)


@require_POST
@staff_view(Action.JOURNEY_MANAGE)
def journey_action(request: HttpRequest, staff: Staff, journey_id: int) -> HttpResponse:
    op = request.POST.get("op", "")
    try:
        if op == "publish":
            version = services.publish(actor=staff, journey_id=journey_id)
            messages.success(request, _("Published version %(n)s.") % {"n": version.number})
        elif op in {"paused", "live"}:
            services.set_status(actor=staff, journey_id=journey_id, status=op)
            messages.success(
                request, _("Journey paused.") if op == "paused" else _("Journey resumed.")
            )
        elif op == "enrol":
            raw = request.POST.get("customer_ids", "").replace("，", ",")
            ids = [int(x) for x in raw.split(",") if x.strip().isdigit()]
            results = services.enrol_customers(actor=staff, journey_id=journey_id, customer_ids=ids)
            enrolled = sum(r.status in {"enrolled", "holdout"} for r in results)
            messages.success(request, _("%(n)s customers enrolled.") % {"n": enrolled})
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:journey", journey_id=journey_id)


@staff_view(Action.TASK_VIEW)
def task_inbox(request: HttpRequest, staff: Staff) -> HttpResponse:
    box = request.GET.get("box", "mine")
    box = box if box in {"mine", "store", "all"} else "mine"
    return render(
        request,
        "console/journeys/tasks.html",
        {"tasks": tasks.list_tasks(actor=staff, box=box), "box": box,
         "outcomes": tasks.OUTCOME_CODES, "metrics": tasks.task_metrics(actor=staff),
         "can_manage": staff.can(Action.TASK_MANAGE), "overdue": StaffTask.Status.OVERDUE},
    )  # fmt: skip


@require_POST
@staff_view(Action.TASK_MANAGE)
def task_complete(request: HttpRequest, staff: Staff, task_id: int) -> HttpResponse:
    try:
        tasks.complete_task(
            actor=staff, task_id=task_id, outcome_code=request.POST.get("outcome_code", ""),
            outcome_note=request.POST.get("outcome_note", ""),
            skipped=request.POST.get("skipped") == "1",
        )  # fmt: skip
        messages.success(request, _("Task closed."))
    except YutangError as exc:
        messages.error(request, exc.localized())
    return _back_to_inbox(request)


def _back_to_inbox(request: HttpRequest) -> HttpResponse:
    box = request.POST.get("box", "mine")
    return redirect(
        f"{reverse('console:tasks')}?box={box if box in {'mine', 'store', 'all'} else 'mine'}"
    )


@require_POST
@staff_view(Action.TASK_MANAGE)
def task_send(request: HttpRequest, staff: Staff, task_id: int) -> HttpResponse:
    """One-click send of the (possibly edited) script through the outbox and policy gate."""
    try:
        tasks.send_task_message(
            actor=staff, task_id=task_id, text=request.POST.get("text"),
            kind="service" if request.POST.get("kind") == "service" else "marketing",
        )  # fmt: skip
        messages.success(
            request, _("Sent to the outbox: the policy gate decides when it reaches the customer.")
        )
    except YutangError as exc:
        messages.error(request, exc.localized())
    return _back_to_inbox(request)
