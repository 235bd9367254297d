"""Console pages for customers: list with filters and saved views, the portrait, the merge
review queue and imports. Views validate, call one service and render."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from yutang.console.views import _htmx_redirect, staff_view
from yutang.core import services as core_services
from yutang.core.errors import NotFound, YutangError
from yutang.core.models import Staff
from yutang.core.permissions import Action
from yutang.core.services import is_valid_id
from yutang.customers import imports
from yutang.customers import services as customers
from yutang.customers.services import SAVED_VIEW_KEYS
from yutang.events import services as events
from yutang.messaging import services as messaging
from yutang.segments import services as segment_services

FILTER_KEYS = SAVED_VIEW_KEYS


def _int_or_none(value: str | None) -> int | None:
    number = int(value) if value and value.isdigit() else None
    return number if is_valid_id(number) else None


@staff_view(Action.CUSTOMER_VIEW)
def customer_list(request: HttpRequest, staff: Staff) -> HttpResponse:
    params = {k: request.GET.get(k, "").strip() for k in FILTER_KEYS}
    error = None
    try:
        rows, next_cursor = customers.list_customers(
            actor=staff,
            tag_id=_int_or_none(params["tag_id"]),
            store_id=_int_or_none(params["store_id"]),
            staff_id=_int_or_none(params["staff_id"]),
            channel=params["channel"] or None,
            search=params["search"],
            phone=params["phone"],
            cursor=request.GET.get("cursor") or None,
            limit=50,
        )
    except YutangError as exc:
        rows, next_cursor, error = [], None, exc.localized()
    query = urlencode({k: v for k, v in params.items() if v})
    return render(
        request,
        "console/customers/list.html",
        {
            "rows": [customers.present_customer(staff, c) for c in rows],
            "owners": {c.pk: (c.owner_store, c.owner_staff) for c in rows},
            "params": params,
            "query": query,
            "next_cursor": next_cursor,
            "error": error,
            "tags": customers.list_tags(actor=staff),
            "stores": core_services.list_stores(actor=staff),
            "saved_views": customers.list_saved_views(actor=staff),
        },
    )


@require_POST
@staff_view(Action.CUSTOMER_VIEW)
def saved_view_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    try:
        view = customers.save_view(
            actor=staff, name=request.POST.get("name", ""), query=request.POST
        )
    except YutangError as exc:
        messages.error(request, exc.localized())
        return redirect("console:customers")
    messages.success(request, _("View %(name)s saved.") % {"name": view.name})
    return redirect(reverse("console:customers") + "?" + view.query)


@require_POST
@staff_view(Action.CUSTOMER_VIEW)
def saved_view_delete(request: HttpRequest, staff: Staff, view_id: int) -> HttpResponse:
    customers.delete_saved_view(actor=staff, view_id=view_id)
    return _htmx_redirect(request, reverse("console:customers"))


@staff_view(Action.CUSTOMER_VIEW)
def customer_detail(request: HttpRequest, staff: Staff, customer_id: int) -> HttpResponse:
    p = events.portrait(actor=staff, customer_id=customer_id)
    touches = (
        messaging.touch_history(actor=staff, customer_id=customer_id)
        if staff.can(Action.MESSAGE_VIEW)
        else None
    )
    seg = segment_services.portrait_extras(actor=staff, customer_id=customer_id)
    return render(
        request, "console/customers/portrait.html", {"p": p, "touches": touches, "seg": seg}
    )


@require_POST
@staff_view(Action.CUSTOMER_MANAGE)
def customer_tags(request: HttpRequest, staff: Staff, customer_id: int) -> HttpResponse:
    add = [_int_or_none(v) for v in request.POST.getlist("add")]
    remove = [_int_or_none(v) for v in request.POST.getlist("remove")]
    try:
        if request.POST.get("new_tag", "").strip():
            group, _sep, name = request.POST["new_tag"].strip().rpartition(":")
            tag = customers.create_tag(
                actor=staff, brand=staff.brand, group=group or _("Manual"), name=name
            )
            add.append(tag.pk)
        customers.change_customer_tags(
            actor=staff,
            customer_id=customer_id,
            add=[t for t in add if t],
            remove=[t for t in remove if t],
        )
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:customer", customer_id=customer_id)


@require_POST
@staff_view(Action.CUSTOMER_MANAGE)
def customer_note(request: HttpRequest, staff: Staff, customer_id: int) -> HttpResponse:
    try:
        customers.add_note(actor=staff, customer_id=customer_id, body=request.POST.get("body", ""))
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:customer", customer_id=customer_id)


@require_POST
@staff_view(Action.CUSTOMER_MANAGE)
def customer_consent(request: HttpRequest, staff: Staff, customer_id: int) -> HttpResponse:
    try:
        events.record_consent(
            actor=staff,
            customer_id=customer_id,
            purpose=request.POST.get("purpose", ""),
            status=request.POST.get("status", ""),
            carrier=request.POST.get("carrier", ""),
            proof=request.POST.get("proof", ""),
            source="console",
        )
        messages.success(request, _("Consent recorded."))
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:customer", customer_id=customer_id)


@staff_view(Action.CUSTOMER_MANAGE)
def merge_queue(request: HttpRequest, staff: Staff) -> HttpResponse:
    return render(
        request,
        "console/customers/merges.html",
        {"candidates": customers.list_candidates(actor=staff)},
    )


@require_POST
@staff_view(Action.CUSTOMER_MANAGE)
def merge_decide(request: HttpRequest, staff: Staff, candidate_id: int) -> HttpResponse:
    merge = request.POST.get("decision") == "merge"
    customers.decide_candidate(actor=staff, candidate_id=candidate_id, merge=merge)
    messages.success(request, _("Customers merged.") if merge else _("Marked as different people."))
    return _htmx_redirect(request, reverse("console:merges"))


@require_POST
@staff_view(Action.CUSTOMER_MANAGE)
def merge_undo(request: HttpRequest, staff: Staff, merge_id: int) -> HttpResponse:
    try:
        merge = customers.unmerge(actor=staff, merge_id=merge_id)
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
        return redirect("console:customers")
    messages.success(request, _("Merge undone."))
    return redirect("console:customer", customer_id=merge.kept_id)


# --- Imports --------------------------------------------------------------------------------


@staff_view(Action.CUSTOMER_MANAGE)
def import_list(request: HttpRequest, staff: Staff) -> HttpResponse:
    error = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        mapping = request.FILES.get("mapping")
        if upload is None:
            error = _("Choose a file.")
        else:
            try:
                job = imports.create_import(
                    actor=staff,
                    brand=staff.brand,
                    kind=request.POST.get("kind", ""),
                    upload=upload,
                    filename=upload.name or "upload.csv",
                    mapping_json=mapping.read() if mapping else None,
                    all_or_nothing=request.POST.get("all_or_nothing") == "on",
                    encoding=request.POST.get("encoding", "").strip(),
                    start=False,
                )
            except YutangError as exc:
                error = exc.localized()
            else:
                return redirect("console:import", job_id=job.pk)
    return render(
        request,
        "console/customers/imports.html",
        {"jobs": imports.list_imports(actor=staff), "error": error},
    )


@staff_view(Action.CUSTOMER_MANAGE)
def import_detail(request: HttpRequest, staff: Staff, job_id: int) -> HttpResponse:
    job = imports.get_import(actor=staff, job_id=job_id)
    context: dict[str, Any] = {"job": job, "summary": imports.job_summary(job)}
    if job.status == job.Status.DRAFT:
        try:
            context["preview"] = imports.preview_job(actor=staff, job_id=job.pk)
        except YutangError as exc:
            context["preview_error"] = exc.localized()
    template = (
        "console/customers/_import_progress.html"
        if request.headers.get("HX-Request")
        else "console/customers/import.html"
    )
    return render(request, template, context)


@require_POST
@staff_view(Action.CUSTOMER_MANAGE)
def import_start(request: HttpRequest, staff: Staff, job_id: int) -> HttpResponse:
    imports.start_import(actor=staff, job_id=job_id)
    return redirect("console:import", job_id=job_id)


@staff_view(Action.CUSTOMER_MANAGE)
def import_errors(request: HttpRequest, staff: Staff, job_id: int) -> FileResponse:
    job = imports.get_import(actor=staff, job_id=job_id)
    return FileResponse(
        imports.open_error_file(job),
        as_attachment=True,
        filename=f"import-{job.pk}-errors.csv",
        content_type="text/csv; charset=utf-8",
    )
