"""Console pages for acquisition: channels, live codes (editor, preview, QR and poster),
the channel report with charts, partners and settlements. Views validate, call one service
and render."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from yutang.acquisition import qr, reports, services
from yutang.acquisition.models import ChannelType, CpaEvent, Partner, Platform, RoutingRule
from yutang.acquisition.schemas import ChannelIn, PartnerIn, SettlementIn
from yutang.console.forms import error_for, form_data, validate
from yutang.console.views import staff_view
from yutang.core import clock
from yutang.core import services as core_services
from yutang.core.errors import ValidationFailed, YutangError
from yutang.core.models import Staff
from yutang.core.permissions import Action

CHANNEL_FORM_FIELDS = [
    "code", "name", "type", "platform", "hook_description", "hook_coupon_code", "hook_gift",
    "tags", "starts_on", "ends_on", "cost_per_reach_fen", "cost_per_add_fen", "cpa_fen",
    "cpa_event", "cps_bp", "attribution_window_days", "partner_id", "is_active",
]  # fmt: skip
CHANNEL_OPTIONAL = ["platform", "starts_on", "ends_on", "partner_id"]
CHANNEL_DEFAULTED = {
    "cost_per_reach_fen", "cost_per_add_fen", "cpa_fen", "cps_bp", "attribution_window_days",
    "cpa_event", "hook_description", "hook_coupon_code", "hook_gift",
}  # fmt: skip


def _today(staff: Staff) -> dt.date:
    return clock.now().astimezone(staff.brand.tz).date()


def _date(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default


def _download(data: bytes | str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Channels ---------------------------------------------------------------------------------


@staff_view(Action.CHANNEL_VIEW)
def channels(request: HttpRequest, staff: Staff) -> HttpResponse:
    today = _today(staff)
    report = reports.channel_report(
        actor=staff, date_from=today - dt.timedelta(days=29), date_to=today
    )
    return render(
        request,
        "console/acquisition/channels.html",
        {"rows": report.rows, "sparklines": report.adds_by_day, "days": report.days,
         "types": dict(ChannelType.choices),
         "can_manage": staff.can(Action.CHANNEL_MANAGE)},
    )  # fmt: skip


def _channel_form(request: HttpRequest) -> dict[str, Any]:
    values = form_data(request.POST, fields=CHANNEL_FORM_FIELDS, checkboxes=["is_active"],
                       optional=CHANNEL_OPTIONAL)  # fmt: skip
    values["tags"] = [t.strip() for t in str(values["tags"]).split(",") if t.strip()]
    # An empty number keeps the schema's default (0 fen, 30 days) instead of failing.
    return {k: v for k, v in values.items() if not (v == "" and k in CHANNEL_DEFAULTED)}


def _channel_context(staff: Staff, **extra: Any) -> dict[str, Any]:
    return {
        "types": ChannelType.choices, "platforms": Platform.choices,
        "cpa_events": CpaEvent.choices,
        "partners": services.list_partners(actor=staff) if staff.can(Action.PARTNER_VIEW) else [],
        **extra,
    }  # fmt: skip


@staff_view(Action.CHANNEL_MANAGE)
def channel_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {
        "type": "package_card", "is_active": True, "attribution_window_days": 30,
        "cpa_event": "added", "cost_per_reach_fen": 0, "cost_per_add_fen": 0, "cpa_fen": 0,
        "cps_bp": 0,
    }  # fmt: skip
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = _channel_form(request)
        payload, errors = validate(ChannelIn, values)
        if payload is not None:
            data = payload.model_dump()
            data["platform"] = data["platform"] or ""
            try:
                channel = services.create_channel(actor=staff, brand=staff.brand, **data)
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Channel %(name)s created.") % {"name": channel.name})
                return redirect("console:channels")
        values["tags"] = ", ".join(values.get("tags") or [])
    return render(
        request,
        "console/acquisition/channel_form.html",
        _channel_context(staff, values=values, errors=errors),
    )


@staff_view(Action.CHANNEL_MANAGE)
def channel_edit(request: HttpRequest, staff: Staff, channel_id: int) -> HttpResponse:
    channel = services.get_channel(actor=staff, channel_id=channel_id, action=Action.CHANNEL_MANAGE)
    values: dict[str, Any] = {f: getattr(channel, f) for f in CHANNEL_FORM_FIELDS}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = _channel_form(request)
        payload, errors = validate(ChannelIn, values)
        if payload is not None:
            data = payload.model_dump()
            data["platform"] = data["platform"] or ""
            try:
                services.update_channel(actor=staff, channel_id=channel.pk, **data)
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Channel %(name)s saved.") % {"name": data["name"]})
                return redirect("console:channels")
    values["tags"] = ", ".join(values.get("tags") or [])
    return render(
        request,
        "console/acquisition/channel_form.html",
        _channel_context(staff, channel=channel, values=values, errors=errors),
    )


# --- Live codes -------------------------------------------------------------------------------


@staff_view(Action.CHANNEL_VIEW)
def live_codes(request: HttpRequest, staff: Staff) -> HttpResponse:
    return render(
        request,
        "console/acquisition/live_codes.html",
        {"codes": services.list_live_codes(actor=staff),
         "alerts": services.list_alerts(actor=staff),
         "rules": dict(RoutingRule.choices),
         "can_manage": staff.can(Action.LIVE_CODE_MANAGE)},
    )  # fmt: skip


def _live_code_form(request: HttpRequest) -> tuple[dict[str, Any], dict[str, str]]:
    post = request.POST
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "channel_id": post.get("channel_id", ""),
        "name": post.get("name", ""),
        "rule": post.get("rule", ""),
        "store_id": post.get("store_id") or None,
        "welcome_text": post.get("welcome_text", ""),
        "is_active": post.get("is_active") in ("on", "true", "1"),
    }
    members = []
    for account_id in post.getlist("account_ids"):
        if not account_id.isdigit():
            continue
        weight = post.get(f"weight_{account_id}", "1")
        members.append(
            {"account_id": int(account_id),
             "weight": int(weight) if weight.isdigit() else weight,
             "is_backup": post.get(f"backup_{account_id}") == "on"}
        )  # fmt: skip
    values["members"] = members
    for name in ("schedule", "welcome_attachments"):
        raw = post.get(name, "").strip()
        try:
            values[name] = json.loads(raw) if raw else ({} if name == "schedule" else [])
        except json.JSONDecodeError as exc:
            errors[name] = _("Not valid JSON: %(error)s") % {"error": exc.msg}
            values[name] = {} if name == "schedule" else []
    for name in ("channel_id", "store_id"):
        value = values[name]
        if isinstance(value, str) and value.isdigit():
            values[name] = int(value)
    return values, errors


def _live_code_context(staff: Staff, **extra: Any) -> dict[str, Any]:
    values = extra.get("values", {})
    return {
        "channels": services.list_channels(actor=staff),
        "stores": core_services.list_stores(actor=staff),
        "accounts": core_services.list_carrier_accounts(actor=staff),
        "rules": RoutingRule.choices,
        "selected": {m["account_id"]: m for m in values.get("members", [])},
        "schedule_json": json.dumps(values.get("schedule") or {}, ensure_ascii=False, indent=2),
        "attachments_json": json.dumps(
            values.get("welcome_attachments") or [], ensure_ascii=False, indent=2
        ),
        **extra,
    }


@staff_view(Action.LIVE_CODE_MANAGE)
def live_code_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {"rule": "round_robin", "is_active": True, "members": []}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values, errors = _live_code_form(request)
        if not errors:
            try:
                code = services.create_live_code(actor=staff, brand=staff.brand, **values)
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Live code %(name)s created.") % {"name": code.name})
                return redirect("console:live_code_edit", live_code_id=code.pk)
    return render(
        request,
        "console/acquisition/live_code_form.html",
        _live_code_context(staff, values=values, errors=errors),
    )


@staff_view(Action.CHANNEL_VIEW)
def live_code_edit(request: HttpRequest, staff: Staff, live_code_id: int) -> HttpResponse:
    code = services.get_live_code(actor=staff, live_code_id=live_code_id)
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "channel_id": code.channel_id, "name": code.name, "rule": code.rule,
        "store_id": code.store_id, "welcome_text": code.welcome_text,
        "welcome_attachments": code.welcome_attachments, "schedule": code.schedule,
        "is_active": code.is_active,
        "members": [
            {"account_id": m.account_id, "weight": m.weight, "is_backup": m.is_backup}
            for m in code.members.all()
        ],
    }  # fmt: skip
    if request.method == "POST":
        values, errors = _live_code_form(request)
        if not errors:
            changes = {k: v for k, v in values.items() if k != "channel_id"}
            try:
                services.update_live_code(actor=staff, live_code_id=code.pk, **changes)
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Live code %(name)s saved.") % {"name": code.name})
                return redirect("console:live_code_edit", live_code_id=code.pk)
    landing = services.live_code_url(code, base=request.build_absolute_uri("/"))
    return render(
        request,
        "console/acquisition/live_code_form.html",
        _live_code_context(
            staff, code=code, values=values, errors=errors, landing_url=landing,
            state=services.state_for(code),
            capacity=services.capacity_status(actor=staff, live_code_id=code.pk, at=clock.now()),
            can_manage=staff.can(Action.LIVE_CODE_MANAGE),
        ),
    )  # fmt: skip


@require_POST
@staff_view(Action.CHANNEL_VIEW)
def live_code_preview(request: HttpRequest, staff: Staff) -> HttpResponse:
    """The welcome as the customer will see it, from the editor's current values."""
    values, errors = _live_code_form(request)
    accounts = {a.pk: a for a in core_services.list_carrier_accounts(actor=staff)}
    first = next((accounts[m["account_id"]] for m in values["members"]
                  if m["account_id"] in accounts), None)  # fmt: skip
    stores = {s.pk: s for s in core_services.list_stores(actor=staff)}
    store = stores.get(values["store_id"]) if isinstance(values["store_id"], int) else None
    store = store or (first.store if first else None)
    text = services.render_welcome(
        values["welcome_text"] or services.FALLBACK_WELCOME,
        name=_("Xiaomei"), staff=first.display_name if first else _("Advisor"),
        store=store.name if store else "",
    )  # fmt: skip
    attachments = values["welcome_attachments"] if isinstance(
        values["welcome_attachments"], list) else []  # fmt: skip
    return render(
        request,
        "console/acquisition/_welcome_preview.html",
        {"text": text, "attachments": attachments[:9], "errors": errors,
         "persona": first.display_name if first else _("Advisor"),
         "avatar": first.avatar_url if first else ""},
    )  # fmt: skip


@staff_view(Action.CHANNEL_VIEW)
def live_code_qr(request: HttpRequest, staff: Staff, live_code_id: int) -> HttpResponse:
    code = services.get_live_code(actor=staff, live_code_id=live_code_id)
    url = services.live_code_url(code, base=request.build_absolute_uri("/"))
    logo = services.brand_logo(brand=staff.brand)
    fmt = request.GET.get("format", "png")
    if fmt == "svg":
        return _download(qr.svg(url, logo=logo), "image/svg+xml", f"live-code-{code.pk}.svg")
    if fmt == "poster":
        html = qr.poster_html(
            title=code.channel.name, hook=code.channel.hook_description, url=url, logo=logo
        )
        return HttpResponse(html, content_type="text/html; charset=utf-8")
    return _download(qr.png(url, logo=logo), "image/png", f"live-code-{code.pk}.png")


@require_POST
@staff_view(Action.LIVE_CODE_MANAGE)
def live_code_carrier_sync(request: HttpRequest, staff: Staff, live_code_id: int) -> HttpResponse:
    result = services.sync_live_code(actor=staff, live_code_id=live_code_id)
    if result.status == "error":
        messages.error(request, _("WeCom refused the contact way: %(m)s") % {"m": result.message})
    elif result.status == "skipped":
        messages.warning(request, _("Nothing to sync: %(m)s") % {"m": result.message})
    else:
        messages.success(request, _("WeCom contact way is up to date."))
    return redirect("console:live_code_edit", live_code_id=live_code_id)


@staff_view(Action.CHANNEL_VIEW)
def acquisition_settings(request: HttpRequest, staff: Staff) -> HttpResponse:
    """The brand's fallback welcome and the logo in the middle of its QR codes."""
    errors: dict[str, str] = {}
    defaults = services.acquisition_defaults(actor=staff)
    values: dict[str, Any] = {"default_welcome_text": defaults.default_welcome_text}
    if request.method == "POST":
        what = request.POST.get("what", "")
        try:
            if what == "welcome":
                values["default_welcome_text"] = request.POST.get("default_welcome_text", "")
                services.set_default_welcome(actor=staff, text=values["default_welcome_text"])
                messages.success(request, _("Default welcome saved."))
            elif what == "logo":
                upload = request.FILES.get("logo")
                if upload is None:
                    raise ValidationFailed(_("Choose an image file."), field="logo")
                services.set_brand_logo(actor=staff, data=upload.read())
                messages.success(request, _("Logo saved."))
            elif what == "remove_logo":
                services.set_brand_logo(actor=staff, data=None)
                messages.success(request, _("Logo removed."))
            else:
                raise ValidationFailed(_("Unknown form."), field="what")
        except YutangError as exc:
            errors = error_for(exc)
        else:
            return redirect("console:acquisition_settings")
    preview = services.render_welcome(
        values["default_welcome_text"] or services.FALLBACK_WELCOME,
        name=_("Xiaomei"), staff=_("Advisor"), store="",
    )  # fmt: skip
    return render(
        request,
        "console/acquisition/settings.html",
        {"values": values, "errors": errors, "has_logo": defaults.has_logo,
         "preview": preview, "can_manage": staff.can(Action.CHANNEL_MANAGE)},
    )  # fmt: skip


@staff_view(Action.CHANNEL_VIEW)
def acquisition_logo(request: HttpRequest, staff: Staff) -> HttpResponse:
    return HttpResponse(services.get_brand_logo(actor=staff), content_type="image/png")


@require_POST
@staff_view(Action.LIVE_CODE_MANAGE)
def alert_resolve(request: HttpRequest, staff: Staff, alert_id: int) -> HttpResponse:
    services.resolve_alert(actor=staff, alert_id=alert_id)
    messages.success(request, _("Alert marked as handled."))
    return redirect("console:live_codes")


# --- Report -----------------------------------------------------------------------------------


@staff_view(Action.CHANNEL_VIEW)
def channel_report(request: HttpRequest, staff: Staff) -> HttpResponse:
    today = _today(staff)
    date_to = _date(request.GET.get("date_to"), today)
    date_from = _date(request.GET.get("date_from"), date_to - dt.timedelta(days=29))
    granularity = request.GET.get("granularity") or "none"
    error = None
    try:
        report = reports.channel_report(
            actor=staff, date_from=date_from, date_to=date_to, granularity=granularity
        )
    except ValidationFailed as exc:
        error = exc.localized()
        report = reports.channel_report(actor=staff, date_from=date_to, date_to=date_to)
    fmt = request.GET.get("format")
    if fmt in ("csv", "xlsx") and error is None:
        content_type = (
            "text/csv; charset=utf-8" if fmt == "csv"
            else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )  # fmt: skip
        name = f"channels-{date_from}-{date_to}.{fmt}"
        return _download(reports.export_report(report, fmt), content_type, name)
    return render(
        request,
        "console/acquisition/report.html",
        {"report": report, "chart_data": report.as_dict(), "error": error,
         "date_from": date_from, "date_to": date_to, "granularity": granularity},
    )  # fmt: skip


# --- Partners and settlements -----------------------------------------------------------------

PARTNER_FORM_FIELDS = [
    "name", "kind", "phone", "contact_note", "cps_bp", "cpa_fen", "cpa_event", "fixed_fee_fen",
    "attribution_window_days", "is_active",
]  # fmt: skip


@staff_view(Action.PARTNER_VIEW)
def partners(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {
        "kind": "kol",
        "cpa_event": "added",
        "attribution_window_days": 30,
        "cps_bp": 0,
        "cpa_fen": 0,
        "fixed_fee_fen": 0,
        "is_active": True,
    }
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = form_data(request.POST, fields=PARTNER_FORM_FIELDS, checkboxes=["is_active"])
        payload, errors = validate(PartnerIn, values)
        if payload is not None:
            try:
                partner = services.create_partner(
                    actor=staff, brand=staff.brand, **payload.model_dump()
                )
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Partner %(name)s added.") % {"name": partner.name})
                return redirect("console:partner", partner_id=partner.pk)
    rows = [services.present_partner(staff, p) for p in services.list_partners(actor=staff)]
    return render(
        request,
        "console/acquisition/partners.html",
        {"rows": rows, "values": values, "errors": errors, "kinds": Partner.Kind.choices,
         "cpa_events": CpaEvent.choices, "can_manage": staff.can(Action.PARTNER_MANAGE)},
    )  # fmt: skip


@staff_view(Action.PARTNER_VIEW)
def partner_detail(request: HttpRequest, staff: Staff, partner_id: int) -> HttpResponse:
    partner = services.get_partner(actor=staff, partner_id=partner_id)
    errors: dict[str, str] = {}
    today = _today(staff)
    first = today.replace(day=1)
    last_month_end = first - dt.timedelta(days=1)
    values: dict[str, Any] = {
        "period_start": last_month_end.replace(day=1).isoformat(),
        "period_end": last_month_end.isoformat(),
    }
    if request.method == "POST":
        values = form_data(request.POST, fields=["period_start", "period_end"])
        payload, errors = validate(SettlementIn, values)
        if payload is not None:
            try:
                services.compute_settlement(
                    actor=staff, partner_id=partner.pk, **payload.model_dump()
                )
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Settlement computed."))
                return redirect("console:partner", partner_id=partner.pk)
    return render(
        request,
        "console/acquisition/partner.html",
        {"partner": services.present_partner(staff, partner),
         "channels": services.list_channels(actor=staff, partner_id=partner.pk),
         "settlements": services.list_settlements(actor=staff, partner_id=partner.pk),
         "columns": services.SETTLEMENT_COLUMNS, "values": values, "errors": errors,
         "can_manage": staff.can(Action.PARTNER_MANAGE)},
    )  # fmt: skip


@require_POST
@staff_view(Action.PARTNER_MANAGE)
def settlement_lock(request: HttpRequest, staff: Staff, settlement_id: int) -> HttpResponse:
    try:
        settlement = services.lock_settlement(actor=staff, settlement_id=settlement_id)
    except YutangError as exc:
        messages.error(request, exc.localized())
        settlement = services.get_settlement(actor=staff, settlement_id=settlement_id)
    else:
        messages.success(request, _("Settlement locked."))
    return redirect(reverse("console:partner", args=[settlement.partner_id]))


@staff_view(Action.PARTNER_VIEW)
def settlement_xlsx(request: HttpRequest, staff: Staff, settlement_id: int) -> HttpResponse:
    data = services.settlement_xlsx(actor=staff, settlement_id=settlement_id)
    return _download(
        data, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        f"settlement-{settlement_id}.xlsx",
    )  # fmt: skip
