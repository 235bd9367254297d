"""Console pages for messaging: carrier connections, the outbox, the broadcast composer with
its policy preview, and the touch policy. Views validate, call one service and render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_POST

from yutang.api import segment_broadcasts
from yutang.carriers import services as carriers
from yutang.console.views import staff_view
from yutang.core import services as core_services
from yutang.core.errors import YutangError
from yutang.core.models import Staff
from yutang.core.permissions import Action
from yutang.messaging import gate
from yutang.messaging import services as messaging
from yutang.messaging.models import Message
from yutang.messaging.policy import PolicySettings
from yutang.segments import services as segments

OUTBOX_FILTERS = ("status", "rule", "carrier", "staff_id")


@staff_view(Action.CARRIER_ACCOUNT_VIEW)
def carrier_settings(request: HttpRequest, staff: Staff) -> HttpResponse:
    return render(request, "console/messaging/carriers.html", {
        "rows": carriers.list_carriers(actor=staff),
        "settings_keys": {k: sorted(v) for k, v in carriers.SETTINGS_KEYS.items()},
        "credential_keys": {k: sorted(v) for k, v in carriers.CREDENTIAL_KEYS.items()},
        "can_manage": staff.can(Action.CARRIER_ACCOUNT_MANAGE),
    })  # fmt: skip


@staff_view(Action.CARRIER_ACCOUNT_MANAGE)
def carrier_handover(request: HttpRequest, staff: Staff, account_id: int) -> HttpResponse:
    """移交客户: hand this WeCom member's customers to another member (carriers.handover)."""
    from yutang.carriers import handover
    from yutang.core.models import CarrierAccount

    accounts = CarrierAccount.objects.for_actor(staff, Action.CARRIER_ACCOUNT_MANAGE).filter(
        kind="wecom"
    )
    account = accounts.filter(pk=account_id).first()
    if account is None:
        messages.error(request, _("No such WeCom account."))
        return redirect("console:carrier_settings")
    if request.method == "POST":
        try:
            started = handover.start_handover(
                actor=staff,
                from_account_id=account.pk,
                to_account_id=int(request.POST.get("to_account_id") or 0),
                kind=request.POST.get("kind", "in_service"),
                message=request.POST.get("message", "").strip(),
            )
        except YutangError as exc:
            messages.error(request, exc.localized())
        else:
            summary = handover.handover_summary(started)
            messages.success(
                request,
                _("Handover started: %(queued)s customers queued, %(skipped)s skipped.")
                % {"queued": summary["counts"]["queued"], "skipped": summary["counts"]["skipped"]},
            )
            return redirect("console:carrier_handover", account_id=account.pk)
    recent = [
        handover.handover_summary(h)
        for h in handover.list_handovers(actor=staff)
        if h.from_account_id == account.pk
    ]
    return render(request, "console/messaging/handover.html", {
        "account": account,
        "targets": accounts.filter(is_active=True).exclude(pk=account.pk),
        "recent": recent,
    })  # fmt: skip


@require_POST
@staff_view(Action.CARRIER_ACCOUNT_MANAGE)
def carrier_connect(request: HttpRequest, staff: Staff, account_id: int) -> HttpResponse:
    settings: dict[str, Any] = {}
    credentials: dict[str, Any] = {}
    for name in request.POST:
        value = request.POST.get(name, "")
        if name == "settings.opt_out_keywords" and value.strip():
            settings["opt_out_keywords"] = [k for k in value.replace("，", ",").split(",") if k]
        elif name.startswith("settings.") and value.strip():
            settings[name.removeprefix("settings.")] = value.strip()
        elif name.startswith("credentials.") and value.strip():
            credentials[name.removeprefix("credentials.")] = value.strip()
    try:
        carriers.connect_carrier(actor=staff, account_id=account_id, credentials=credentials,
                                 settings=settings)  # fmt: skip
        connection = carriers.test_connection(actor=staff, account_id=account_id)
    except YutangError as exc:
        messages.error(request, exc.localized())
        return redirect("console:carrier_settings")
    if connection.status == "connected":
        messages.success(request, _("Connected."))
    else:
        messages.error(request, _("Not connected: %(error)s") % {"error": connection.last_error})
    return redirect("console:carrier_settings")


@staff_view(Action.MESSAGE_VIEW)
def outbox(request: HttpRequest, staff: Staff) -> HttpResponse:
    params = {k: request.GET.get(k, "").strip() for k in OUTBOX_FILTERS}
    error = None
    try:
        rows, next_cursor = messaging.list_messages(
            actor=staff, filters=params, cursor=request.GET.get("cursor") or None, limit=50
        )
    except YutangError as exc:
        rows, next_cursor, error = [], None, exc.localized()
    return render(request, "console/messaging/outbox.html", {
        "rows": rows, "params": params, "next_cursor": next_cursor, "error": error,
        "statuses": Message.Status.choices, "rules": gate.RULES,
        "carriers": sorted(carriers.SETTINGS_KEYS),
        "query": "&".join(f"{k}={v}" for k, v in params.items() if v),
    })  # fmt: skip


@require_POST
@staff_view(Action.MESSAGE_SEND)
def outbox_cancel(request: HttpRequest, staff: Staff, message_id: int) -> HttpResponse:
    try:
        messaging.cancel_message(actor=staff, message_id=message_id)
        messages.success(request, _("Message cancelled."))
    except YutangError as exc:
        messages.error(request, exc.localized())
    return redirect("console:outbox")


def _composer_input(request: HttpRequest) -> dict[str, Any]:
    raw_ids = request.POST.get("customer_ids", "").replace(",", " ").split()
    ids = [int(x) for x in raw_ids if x.isdigit() and core_services.is_valid_id(int(x))]
    bad = [x for x in raw_ids if not (x.isdigit() and core_services.is_valid_id(int(x)))]
    return {
        "account_id": int(request.POST.get("account_id") or 0),
        "kind": request.POST.get("kind", "marketing"),
        "content": {"type": "text", "text": request.POST.get("text", "")},
        "customer_ids": ids, "bad": bad,
    }  # fmt: skip


@staff_view(Action.MESSAGE_BROADCAST)
def broadcast_composer(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {"kind": "marketing", "text": "", "customer_ids": "", "account_id": "",
                              "segment_id": ""}  # fmt: skip
    preview = None
    segment = None
    error = None
    if request.method == "POST":
        values = {k: request.POST.get(k, "") for k in values}
        data = _composer_input(request)
        bad = data.pop("bad")
        # A segment, when chosen, is the target; it resolves to its customers right here
        # (messaging sits below segments: yutang/api/segment_broadcasts.py).
        segment_id = values["segment_id"].strip()
        try:
            if segment_id:
                if not segment_id.isdigit():
                    raise YutangError(_("Choose a segment."), field="segment_id")
                data.pop("customer_ids")
                if request.POST.get("action") == "send":
                    b = segment_broadcasts.create_segment_broadcast(
                        actor=staff, segment_id=int(segment_id), **data)  # fmt: skip
                    messages.success(
                        request, _("Broadcast queued to %(n)s customers.") % {"n": b.total}
                    )
                    return redirect("console:outbox")
                segment, preview = segment_broadcasts.preview_segment_broadcast(
                    actor=staff, segment_id=int(segment_id), **data)  # fmt: skip
            else:
                if bad:
                    raise YutangError(_("Not a customer id: %(value)s") % {"value": bad[0]},
                                      field="customer_ids")  # fmt: skip
                if request.POST.get("action") == "send":
                    b = messaging.create_broadcast(actor=staff, **data)
                    messages.success(
                        request, _("Broadcast queued to %(n)s customers.") % {"n": b.total}
                    )
                    return redirect("console:outbox")
                preview = messaging.preview_for_actor(actor=staff, **data)
        except YutangError as exc:
            error = exc.localized()
    template = "console/messaging/_preview.html" if request.headers.get("HX-Request") else (
        "console/messaging/broadcast.html")  # fmt: skip
    return render(request, template, {
        "values": values, "preview": preview, "error": error, "segment": segment,
        "accounts": [s.account for s in carriers.list_carriers(actor=staff)],
        "segments": segments.list_segments(actor=staff) if staff.can(Action.SEGMENT_VIEW) else [],
    })  # fmt: skip


@staff_view(Action.MESSAGE_VIEW)
def policy_settings(request: HttpRequest, staff: Staff) -> HttpResponse:
    policy = messaging.get_policy(brand=staff.brand)
    error = None
    if request.method == "POST":
        changes: dict[str, Any] = {}
        for name in SIMPLE_POLICY_FIELDS:
            if name in request.POST:
                changes[name] = request.POST[name].strip()
        changes["quiet_hours_enabled"] = request.POST.get("quiet_hours_enabled") == "on"
        changes["unsubscribe_keywords"] = [
            k.strip() for k in request.POST.get("unsubscribe_keywords", "").split(",") if k.strip()
        ]
        try:
            messaging.update_policy(actor=staff, changes=changes)
            messages.success(request, _("Policy saved."))
            return redirect("console:messaging_policy")
        except YutangError as exc:
            error = exc.localized()
    return render(request, "console/messaging/policy.html", {
        "policy": policy, "error": error, "fields": SIMPLE_POLICY_FIELDS,
        "can_manage": staff.can(Action.MESSAGING_POLICY_MANAGE),
        "descriptions": {n: f.description for n, f in PolicySettings.model_fields.items()},
        "labels": POLICY_LABELS,
    })  # fmt: skip


POLICY_LABELS = {
    "marketing_per_day": _lazy("Marketing messages per customer per day"),
    "marketing_per_week": _lazy("Marketing messages per customer per 7 days"),
    "service_per_day": _lazy("Service messages per customer per day"),
    "quiet_start": _lazy("Quiet hours start"),
    "quiet_end": _lazy("Quiet hours end"),
    "marketing_share_max": _lazy("Highest marketing share of an account's posts (0–1)"),
    "marketing_share_window_days": _lazy("Marketing share window (days)"),
    "marketing_share_min_posts": _lazy("Posts before the marketing share is judged"),
    "marketing_share_scope": _lazy("Marketing share counts (broadcasts or all)"),
    "duplicate_window_days": _lazy("No repeated content within (days)"),
    "defer_max_days": _lazy("A deferred message expires after (days)"),
    "max_attempts": _lazy("Delivery attempts"),
    "confirm_timeout_hours": _lazy("Staff confirmation expires after (hours)"),
    "unsubscribe_confirmation": _lazy("Unsubscribe confirmation text"),
    "default_welcome": _lazy("Default welcome"),
}

SIMPLE_POLICY_FIELDS = [
    "marketing_per_day", "marketing_per_week", "service_per_day", "quiet_start", "quiet_end",
    "marketing_share_max", "marketing_share_window_days", "marketing_share_min_posts",
    "marketing_share_scope", "duplicate_window_days", "defer_max_days", "max_attempts",
    "confirm_timeout_hours", "unsubscribe_confirmation", "default_welcome",
]  # fmt: skip
