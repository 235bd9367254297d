"""Console pages for segments: the list, the editor with its visual rule builder and live
preview (HTMX), exports, static lists and refresh. Views validate, call one service, render."""

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

from yutang.console.views import _htmx_redirect, staff_view
from yutang.core.errors import NotFound, YutangError
from yutang.core.models import Staff
from yutang.core.permissions import Action
from yutang.customers import services as customers
from yutang.segments import rules, services
from yutang.segments.models import Segment

RFM_LABELS = {
    "important_value": "重要价值客户", "important_develop": "重要发展客户",
    "important_keep": "重要保持客户", "important_retain": "重要挽留客户",
    "general_value": "一般价值客户", "general_develop": "一般发展客户",
    "general_keep": "一般保持客户", "general_retain": "一般挽留客户",
}  # fmt: skip
STAGE_LABELS = {
    "new_contact": _lazy("New contact"), "engaged": _lazy("Engaged"),
    "first_order": _lazy("First order"), "repeat": _lazy("Repeat"), "loyal": _lazy("Loyal"),
    "at_risk": _lazy("At risk"), "lost": _lazy("Lost"),
}  # fmt: skip
EMPTY_RULE: dict[str, Any] = {
    "and": [{"kind": "aggregate", "field": "order_count", "op": "gte", "value": 1}]
}


def _builder_context(staff: Staff) -> dict[str, Any]:
    """Choices the visual builder offers (tags by id, stores, condition kinds)."""
    return {
        "builder_options": {
            "tags": [
                {"id": t.pk, "label": f"{t.group.name} / {t.name}"}
                for t in customers.list_tags(actor=staff)
            ],
            "stages": list(rules.LIFECYCLE_STAGES),
            "carrier_accounts": services.carrier_account_choices(actor=staff),
            "rfm_classes": list(rules.RFM_CLASSES),
            "kinds": rules.condition_kinds(),
            "labels": {
                "all_of": _("All of (AND)"),
                "any_of": _("Any of (OR)"),
                "not": _("NOT"),
                "add_condition": _("+ Condition"),
                "add_group": _("+ Group"),
                "remove": _("Remove"),
                "between": _("between"),
                "in": _("is one of"),
                "not_in": _("is none of"),
                "contains": _("contains"),
                "exists": _("is set"),
                "none": _("has none"),
                "comma_list": _("comma-separated"),
                "in_last": _("in the last"),
                "days": _("days"),
                "all_time": _("all time"),
                "where": _("where"),
                "property": _("property"),
                "value": _("value"),
                "key": _("attribute key"),
                "type": _("event type"),
                "group_id": _("group id"),
                "carrier": _("carrier (empty = all)"),
                "namespace": _("app id (optional)"),
                "carrier_kinds": {
                    "": _("any carrier"),
                    "wecom": _("WeCom"),
                    "official_account": _("Official account"),
                    "sandbox": _("Sandbox"),
                    "sms": _("SMS"),
                    "email": _("Email"),
                    "webhook": _("Webhook"),
                },
                "carrier_status": {
                    "held": _("holds one now"),
                    "lost": _("deleted every one"),
                    "none": _("never had one"),
                },
                "kinds": {
                    "profile": _("Profile"),
                    "attribute": _("Attribute"),
                    "tag": _("Tag"),
                    "identity": _("Identity (ever had)"),
                    "carrier": _("Carrier held now"),
                    "group": _("In group"),
                    "consent": _("Consent"),
                    "owner": _("Owner"),
                    "channel": _("First-touch channel"),
                    "lifecycle": _("Lifecycle stage"),
                    "rfm": _("RFM class"),
                    "aggregate": _("Figures"),
                    "event": _("Event"),
                    "touches": _("Touches"),
                },
                "values": {
                    "count": _("count"),
                    "sum": _("sum of"),
                    "first": _("first, days ago"),
                    "last": _("last, days ago"),
                    "any": _("any"),
                    "all": _("all"),
                    "order_count": _("orders"),
                    "paid_fen": _("paid (fen)"),
                    "refunded_fen": _("refunded (fen)"),
                    "net_fen": _("net spend (fen)"),
                    "touch_count": _("touches"),
                    "event_count": _("events"),
                    "days_since_first_order": _("days since first order"),
                    "days_since_last_order": _("days since last order"),
                    "days_since_last_touch": _("days since last touch"),
                    "days_since_last_inbound": _("days since last message from them"),
                    "days_since_last_click": _("days since last click"),
                    "days_since_contact_added": _("days since added"),
                    "days_since_last_event": _("days since last event"),
                    "granted": _("granted"),
                    "withdrawn": _("withdrawn"),
                    "unset": _("not stated"),
                    "marketing": _("marketing"),
                    "service": _("service"),
                    "store": _("store"),
                    "staff": _("staff"),
                    "gender": _("gender"),
                    "province": _("province"),
                    "city": _("city"),
                    "display_name": _("name"),
                    "birthday": _("birthday"),
                    "string": _("text"),
                    "number": _("number"),
                    "boolean": _("yes/no"),
                    "date": _("date"),
                    **{c: label for c, label in RFM_LABELS.items()},
                    **{s: str(label) for s, label in STAGE_LABELS.items()},
                },
            },
        }
    }


@staff_view(Action.SEGMENT_VIEW)
def segment_list(request: HttpRequest, staff: Staff) -> HttpResponse:
    return render(
        request,
        "console/segments/list.html",
        {
            "segments": services.list_segments(actor=staff),
            "can_manage": staff.can(Action.SEGMENT_MANAGE),
        },
    )


def _form_values(request: HttpRequest) -> tuple[dict[str, Any], Any]:
    raw_rule = request.POST.get("rule", "")
    refresh = request.POST.get("refresh_minutes", "").strip()
    values: dict[str, Any] = {
        "name": request.POST.get("name", ""),
        "description": request.POST.get("description", ""),
        "refresh_minutes": int(refresh) if refresh.isdigit() else None,
    }
    if refresh and not refresh.isdigit():
        raise YutangError(_("Refresh interval must be whole minutes."), field="refresh_minutes")
    try:
        rule = json.loads(raw_rule) if raw_rule.strip() else None
    except json.JSONDecodeError as exc:
        raise YutangError(
            _("The rule is not valid JSON: %(error)s") % {"error": exc}, field="rule"
        ) from None
    return values, rule


@staff_view(Action.SEGMENT_MANAGE)
def segment_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    error = None
    kind = request.POST.get("kind", "dynamic")
    rule_text = json.dumps(EMPTY_RULE, ensure_ascii=False)
    if request.method == "POST":
        rule_text = request.POST.get("rule", "")
        try:
            values, rule = _form_values(request)
            segment = services.create_segment(
                actor=staff, kind=kind, rule=rule if kind == "dynamic" else None, **values
            )
        except YutangError as exc:
            error = exc
        else:
            messages.success(request, _("Segment %(name)s saved.") % {"name": segment.name})
            return redirect("console:segment", segment_id=segment.pk)
    return render(
        request,
        "console/segments/edit.html",
        {"segment": None, "error": error, "rule_text": rule_text, "kind": kind,
         "form": request.POST,
         "can_manage": True, **_builder_context(staff)},
    )  # fmt: skip


@staff_view(Action.SEGMENT_VIEW)
def segment_detail(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    segment = services.get_segment(actor=staff, segment_id=segment_id)
    error = None
    rule_text = json.dumps(segment.rule, ensure_ascii=False) if segment.rule else ""
    if request.method == "POST":
        rule_text = request.POST.get("rule", "")
        try:
            values, rule = _form_values(request)
            if segment.kind == Segment.Kind.DYNAMIC:
                values["rule"] = rule
            segment = services.update_segment(actor=staff, segment_id=segment.pk, **values)
        except NotFound:
            raise
        except YutangError as exc:
            error = exc
        else:
            messages.success(request, _("Segment %(name)s saved.") % {"name": segment.name})
            return redirect("console:segment", segment_id=segment.pk)
    return render(
        request,
        "console/segments/edit.html",
        {"segment": segment, "error": error, "rule_text": rule_text, "kind": segment.kind,
         "form": request.POST or {"name": segment.name, "description": segment.description,
                                  "refresh_minutes": segment.refresh_minutes or ""},
         "can_manage": staff.can(Action.SEGMENT_MANAGE),
         "can_export": staff.can(Action.SEGMENT_EXPORT), **_builder_context(staff)},
    )  # fmt: skip


@require_POST
@staff_view(Action.SEGMENT_VIEW)
def segment_preview(request: HttpRequest, staff: Staff) -> HttpResponse:
    """The live count and sample as the rule is edited (an HTMX partial)."""
    context: dict[str, Any] = {}
    try:
        rule = json.loads(request.POST.get("rule", "") or "null")
        context["preview"] = services.preview_rule(actor=staff, rule=rule)
    except json.JSONDecodeError as exc:
        context["error"] = _("The rule is not valid JSON: %(error)s") % {"error": exc}
    except YutangError as exc:
        context["error"] = exc.localized()
    return render(request, "console/segments/_preview.html", context)


@staff_view(Action.SEGMENT_VIEW)
def segment_members(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    segment = services.get_segment(actor=staff, segment_id=segment_id)
    try:
        rows, next_cursor = services.list_members(
            actor=staff, segment_id=segment.pk, cursor=request.GET.get("cursor") or None, limit=50
        )
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
        rows, next_cursor = [], None
    return render(
        request,
        "console/segments/members.html",
        {"segment": segment, "rows": [customers.present_customer(staff, c) for c in rows],
         "next_cursor": next_cursor, "can_export": staff.can(Action.SEGMENT_EXPORT)},
    )  # fmt: skip


@staff_view(Action.SEGMENT_EXPORT)
def segment_export(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    format = request.GET.get("format", "csv")
    try:
        body, filename = services.export_members(actor=staff, segment_id=segment_id, format=format)
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
        return redirect("console:segment", segment_id=segment_id)
    content_type = (
        "text/csv; charset=utf-8"
        if format == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
@staff_view(Action.SEGMENT_MANAGE)
def segment_refresh(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    try:
        result = services.refresh_now(actor=staff, segment_id=segment_id)
        messages.success(
            request,
            _("Refreshed: %(members)s members, %(entered)s entered, %(exited)s left.")
            % {"members": result.members, "entered": result.entered, "exited": result.exited},
        )
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:segment", segment_id=segment_id)


@require_POST
@staff_view(Action.SEGMENT_MANAGE)
def segment_upload(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, _("Choose a file."))
        return redirect("console:segment", segment_id=segment_id)
    try:
        count = services.upload_static_members(
            actor=staff, segment_id=segment_id, upload=upload, filename=upload.name or "upload.csv"
        )
        messages.success(request, _("The segment now has %(count)s members.") % {"count": count})
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:segment", segment_id=segment_id)


@require_POST
@staff_view(Action.SEGMENT_MANAGE)
def segment_snapshot(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    try:
        copy = services.snapshot_segment(
            actor=staff, segment_id=segment_id, name=request.POST.get("name", "")
        )
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
        return redirect("console:segment", segment_id=segment_id)
    messages.success(request, _("Snapshot %(name)s saved.") % {"name": copy.name})
    return redirect("console:segment", segment_id=copy.pk)


@require_POST
@staff_view(Action.SEGMENT_MANAGE)
def segment_delete(request: HttpRequest, staff: Staff, segment_id: int) -> HttpResponse:
    services.delete_segment(actor=staff, segment_id=segment_id)
    messages.success(request, _("Segment deleted."))
    return _htmx_redirect(request, reverse("console:segments"))


# --- RFM, lifecycle and auto-tags -----------------------------------------------------------


@staff_view(Action.SEGMENT_VIEW)
def rfm_page(request: HttpRequest, staff: Staff) -> HttpResponse:
    from yutang.segments import scoring

    if request.method == "POST":
        try:
            rfm = scoring.recompute_rfm_for(actor=staff)
            stages = scoring.recompute_lifecycle(brand=staff.brand)
            messages.success(
                request,
                _("Recomputed: %(rfm)s customers scored in %(ms)s ms, %(changed)s stage changes.")
                % {"rfm": rfm.customers, "ms": rfm.elapsed_ms, "changed": stages.changed},
            )
        except YutangError as exc:
            messages.error(request, exc.localized())
        return redirect("console:segments_rfm")
    return render(
        request,
        "console/segments/rfm.html",
        {"rfm": scoring.rfm_table(actor=staff),
         "stages": scoring.lifecycle_distribution(actor=staff),
         "stage_labels": STAGE_LABELS, "settings": scoring.settings_for(staff.brand),
         "can_manage": staff.can(Action.SEGMENT_MANAGE)},
    )  # fmt: skip


@staff_view(Action.SEGMENT_VIEW)
def auto_tag_list(request: HttpRequest, staff: Staff) -> HttpResponse:
    from yutang.segments import autotags

    error = None
    rule_text = json.dumps(EMPTY_RULE, ensure_ascii=False)
    if request.method == "POST":
        rule_text = request.POST.get("rule", "")
        try:
            require_manage(staff)
            try:
                rule = json.loads(rule_text)
            except json.JSONDecodeError as exc:
                raise YutangError(
                    _("The rule is not valid JSON: %(error)s") % {"error": exc}, field="rule"
                ) from None
            tag_id = request.POST.get("tag_id", "")
            created = autotags.create_rule(
                actor=staff, name=request.POST.get("name", ""), rule=rule,
                tag_id=int(tag_id) if tag_id.isdigit() else 0,
            )  # fmt: skip
            result = autotags.apply_rule(created)
        except YutangError as exc:
            error = exc
        else:
            messages.success(
                request, _("Rule saved; %(count)s customers tagged.") % {"count": result.tagged}
            )
            return redirect("console:auto_tags")
    return render(
        request,
        "console/segments/auto_tags.html",
        {"rules": autotags.list_rules(actor=staff), "tags": customers.list_tags(actor=staff),
         "error": error, "rule_text": rule_text, "form": request.POST,
         "can_manage": staff.can(Action.SEGMENT_MANAGE), **_builder_context(staff)},
    )  # fmt: skip


def require_manage(staff: Staff) -> None:
    from yutang.core.permissions import require

    require(staff, Action.SEGMENT_MANAGE)


@require_POST
@staff_view(Action.SEGMENT_MANAGE)
def auto_tag_delete(request: HttpRequest, staff: Staff, rule_id: int) -> HttpResponse:
    from yutang.segments import autotags

    autotags.delete_rule(actor=staff, rule_id=rule_id)
    messages.success(request, _("Rule deleted; the tags it added were removed."))
    return _htmx_redirect(request, reverse("console:auto_tags"))
