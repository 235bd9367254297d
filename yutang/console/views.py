"""Console views: authenticate, validate, call one service, render. No queries here."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from yutang.analytics import dashboard as analytics_dashboard
from yutang.console.forms import error_for, form_data, validate
from yutang.console.middleware import SESSION_BRAND_KEY
from yutang.core import services
from yutang.core.errors import NotFound, PermissionDenied, YutangError
from yutang.core.models import CarrierAccount, Staff, Store
from yutang.core.permissions import ROLE_LABELS, Action, Role, require
from yutang.core.schemas import (
    BrandSettings,
    BrandUpdate,
    CarrierAccountIn,
    CarrierAccountPatch,
    StaffIn,
    StaffPatch,
    StoreIn,
    StorePatch,
    TokenIn,
)

View = Callable[..., HttpResponseBase]


def staff_view(action: Action) -> Callable[[View], View]:
    """Logged in, with a role in some brand, allowed to do `action`. A missing row or one
    outside the caller's scope is a plain 404, whatever the reason."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            staff = request.staff  # type: ignore[attr-defined]
            if staff is None:
                return render(request, "console/no_role.html", status=403)
            try:
                require(staff, action)
                return view(request, staff, *args, **kwargs)
            except NotFound:
                raise Http404 from None
            except PermissionDenied as exc:
                return render(
                    request, "console/forbidden.html", {"message": exc.localized()}, status=403
                )

        return wrapped

    return decorator


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


@require_POST
@login_required
def switch_brand(request: HttpRequest) -> HttpResponse:
    brand_id = request.POST.get("brand_id", "")
    allowed = {s.brand_id for s in services.staff_brands(user=request.user)}
    if brand_id.isdigit() and int(brand_id) in allowed:
        request.session[SESSION_BRAND_KEY] = int(brand_id)
    return redirect("console:home")


@staff_view(Action.BRAND_VIEW)
def home(request: HttpRequest, staff: Staff) -> HttpResponse:
    context: dict[str, Any] = {"overview": services.brand_overview(actor=staff)}
    if staff.can(Action.ANALYTICS_VIEW):  # the operations overview (yutang.analytics)
        context["dashboard"] = analytics_dashboard.for_console(actor=staff, query=request.GET)
    return render(request, "console/home.html", context)


# --- Stores ---------------------------------------------------------------------------------

STORE_FORM_FIELDS = [
    "code",
    "name",
    "kind",
    "city",
    "address",
    "latitude",
    "longitude",
    "is_active",
]


def _store_form(request: HttpRequest) -> dict[str, Any]:
    return form_data(
        request.POST, fields=STORE_FORM_FIELDS, checkboxes=["is_active"],
        optional=["latitude", "longitude"],
    )  # fmt: skip


@staff_view(Action.STORE_VIEW)
def stores(request: HttpRequest, staff: Staff) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    kind = request.GET.get("kind") or None
    rows = services.list_stores(actor=staff, search=search, kind=kind)
    return render(
        request,
        "console/stores.html",
        {"stores": rows, "q": search, "kind": kind or "", "kinds": Store.Kind.choices,
         "can_create": staff.can(Action.STORE_CREATE),
         "can_update": staff.can(Action.STORE_UPDATE),
         "can_delete": staff.can(Action.STORE_DELETE)},
    )  # fmt: skip


@staff_view(Action.STORE_CREATE)
def store_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {"kind": "direct", "is_active": True}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = _store_form(request)
        payload, errors = validate(StoreIn, values)
        if payload is not None:
            try:
                store = services.create_store(actor=staff, **payload.model_dump())
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Store %(name)s created.") % {"name": store.name})
                return redirect("console:stores")
    return render(
        request,
        "console/store_form.html",
        {"values": values, "errors": errors, "kinds": Store.Kind.choices},
    )


@staff_view(Action.STORE_UPDATE)
def store_edit(request: HttpRequest, staff: Staff, store_id: int) -> HttpResponse:
    store = services.get_store(actor=staff, store_id=store_id, action=Action.STORE_UPDATE)
    values: dict[str, Any] = {f: getattr(store, f) for f in STORE_FORM_FIELDS}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = _store_form(request)
        payload, errors = validate(StorePatch, values)
        if payload is not None:
            try:
                services.update_store(actor=staff, store_id=store.pk, **payload.model_dump())
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Store %(name)s saved.") % {"name": values["name"]})
                return redirect("console:stores")
    return render(
        request,
        "console/store_form.html",
        {"store": store, "values": values, "errors": errors, "kinds": Store.Kind.choices,
         "can_change_kind": staff.can(Action.BRAND_MANAGE)},
    )  # fmt: skip


@require_POST
@staff_view(Action.STORE_DELETE)
def store_delete(request: HttpRequest, staff: Staff, store_id: int) -> HttpResponse:
    try:
        services.delete_store(actor=staff, store_id=store_id)
        messages.success(request, _("Store deleted."))
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return _htmx_redirect(request, reverse("console:stores"))


# --- Staff ----------------------------------------------------------------------------------


def _staff_context(staff: Staff, **extra: Any) -> dict[str, Any]:
    return {
        "roles": [(r.value, ROLE_LABELS[r]) for r in services.assignable_roles(staff)],
        "store_choices": services.list_stores(actor=staff),
        **extra,
    }


@staff_view(Action.STAFF_VIEW)
def staff_list(request: HttpRequest, staff: Staff) -> HttpResponse:
    rows = services.list_staff(actor=staff, role=request.GET.get("role") or None)
    shown = [
        {"staff": services.present_staff(staff, s), "role_label": ROLE_LABELS[Role(s.role)],
         "stores": list(s.stores.all())}
        for s in rows
    ]  # fmt: skip
    return render(request, "console/staff_list.html", {
        "rows": shown, "role": request.GET.get("role", ""),
        "roles": [(r.value, ROLE_LABELS[r]) for r in Role],
        "can_manage": staff.can(Action.STAFF_MANAGE),
    })  # fmt: skip


@staff_view(Action.STAFF_MANAGE)
def staff_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {"store_ids": []}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = form_data(
            request.POST,
            fields=["username", "display_name", "role", "store_ids", "password", "phone"],
            lists=["store_ids"], optional=["password"],
        )  # fmt: skip
        payload, errors = validate(StaffIn, values)
        if payload is not None:
            try:
                created = services.create_staff(actor=staff, **payload.model_dump())
            except YutangError as exc:
                errors = error_for(exc)
            else:
                if created.initial_password:
                    messages.info(
                        request,
                        _("%(name)s added. Initial password (shown once): %(password)s")
                        % {
                            "name": created.staff.display_name,
                            "password": created.initial_password,
                        },
                    )
                else:
                    messages.success(
                        request, _("%(name)s added.") % {"name": created.staff.display_name}
                    )
                return redirect("console:staff")
    values["store_ids"] = [int(v) for v in values.get("store_ids", []) if str(v).isdigit()]
    return render(
        request,
        "console/staff_form.html",
        _staff_context(staff, values=values, errors=errors, creating=True),
    )


#: What anyone may change about themself; the rest of their record is their manager's.
OWN_STAFF_FIELDS = ["display_name", "password", "phone"]
STAFF_EDIT_FIELDS = ["display_name", "role", "store_ids", "password", "phone", "is_active"]


@staff_view(Action.STAFF_VIEW)
def staff_edit(request: HttpRequest, staff: Staff, staff_id: int) -> HttpResponse:
    member = services.get_staff_to_edit(actor=staff, staff_id=staff_id)
    is_self = member.pk == staff.pk
    shown = services.present_staff(staff, member)
    values: dict[str, Any] = {
        "display_name": member.display_name, "role": member.role, "is_active": member.is_active,
        "store_ids": member.store_ids, "phone": shown["phone"],
    }  # fmt: skip
    errors: dict[str, str] = {}
    if request.method == "POST":
        fields = OWN_STAFF_FIELDS if is_self else STAFF_EDIT_FIELDS
        values = {
            **values,
            **form_data(
                request.POST, fields=fields, lists=["store_ids"], checkboxes=["is_active"],
                optional=["password"],
            ),
        }  # fmt: skip
        # An empty phone clears it; the value we showed (perhaps masked) keeps the stored one.
        submitted = {f: values[f] for f in fields}
        if submitted["phone"] == shown["phone"]:
            submitted["phone"] = None
        payload, errors = validate(StaffPatch, submitted)
        if payload is not None:
            try:
                services.update_staff(
                    actor=staff, staff_id=member.pk, **payload.model_dump(exclude_none=True)
                )
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("%(name)s saved.") % {"name": payload.display_name})
                return redirect("console:staff")
    values["store_ids"] = [int(v) for v in values.get("store_ids", []) if str(v).isdigit()]
    return render(
        request,
        "console/staff_form.html",
        _staff_context(staff, member=member, values=values, errors=errors, is_self=is_self),
    )


@require_POST
@staff_view(Action.STAFF_MANAGE)
def staff_delete(request: HttpRequest, staff: Staff, staff_id: int) -> HttpResponse:
    try:
        services.delete_staff(actor=staff, staff_id=staff_id)
        messages.success(request, _("Staff member removed from this brand."))
    except NotFound:
        raise
    except YutangError as exc:
        messages.error(request, exc.localized())
    return _htmx_redirect(request, reverse("console:staff"))


# --- Carrier accounts -----------------------------------------------------------------------

CARRIER_FORM_FIELDS = [
    "kind", "external_id", "display_name", "staff_id", "store_id", "avatar_url", "signature",
    "cover_url", "persona", "daily_add_cap", "is_active",
]  # fmt: skip


def _carrier_form(request: HttpRequest, fields: list[str]) -> dict[str, Any]:
    return form_data(
        request.POST, fields=fields, checkboxes=["is_active"],
        optional=["staff_id", "store_id", "daily_add_cap"],
    )  # fmt: skip


def _carrier_context(staff: Staff, **extra: Any) -> dict[str, Any]:
    return {
        "kinds": CarrierAccount.Kind.choices,
        "staff_choices": services.list_staff(actor=staff),
        "store_choices": services.list_stores(actor=staff),
        **extra,
    }


@staff_view(Action.CARRIER_ACCOUNT_VIEW)
def carrier_accounts(request: HttpRequest, staff: Staff) -> HttpResponse:
    rows = services.list_carrier_accounts(actor=staff, kind=request.GET.get("kind") or None)
    shown = [{"account": a, "shown": services.present_carrier_account(staff, a)} for a in rows]
    return render(request, "console/carrier_accounts.html", {
        "rows": shown, "kind": request.GET.get("kind", ""), "kinds": CarrierAccount.Kind.choices,
        "can_manage": staff.can(Action.CARRIER_ACCOUNT_MANAGE),
    })  # fmt: skip


@staff_view(Action.CARRIER_ACCOUNT_MANAGE)
def carrier_account_create(request: HttpRequest, staff: Staff) -> HttpResponse:
    values: dict[str, Any] = {"kind": "wecom", "is_active": True}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = _carrier_form(request, CARRIER_FORM_FIELDS)
        payload, errors = validate(CarrierAccountIn, values)
        if payload is not None:
            try:
                services.create_carrier_account(actor=staff, **payload.model_dump())
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Carrier account added."))
                return redirect("console:carrier_accounts")
    return render(
        request,
        "console/carrier_account_form.html",
        _carrier_context(staff, values=values, errors=errors, creating=True),
    )


@staff_view(Action.CARRIER_ACCOUNT_MANAGE)
def carrier_account_edit(request: HttpRequest, staff: Staff, account_id: int) -> HttpResponse:
    account = services.get_carrier_account(
        actor=staff, account_id=account_id, action=Action.CARRIER_ACCOUNT_MANAGE
    )
    editable = [f for f in CARRIER_FORM_FIELDS if f not in ("kind", "external_id")]
    shown = services.present_carrier_account(staff, account)
    values: dict[str, Any] = {f: shown[f] for f in CARRIER_FORM_FIELDS}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {**values, **_carrier_form(request, editable)}
        payload, errors = validate(CarrierAccountPatch, {f: values[f] for f in editable})
        if payload is not None:
            try:
                services.update_carrier_account(
                    actor=staff, account_id=account.pk, **payload.model_dump()
                )
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Carrier account saved."))
                return redirect("console:carrier_accounts")
    return render(
        request,
        "console/carrier_account_form.html",
        _carrier_context(staff, account=account, values=values, errors=errors),
    )


@require_POST
@staff_view(Action.CARRIER_ACCOUNT_MANAGE)
def carrier_account_delete(request: HttpRequest, staff: Staff, account_id: int) -> HttpResponse:
    services.delete_carrier_account(actor=staff, account_id=account_id)
    messages.success(request, _("Carrier account deleted."))
    return _htmx_redirect(request, reverse("console:carrier_accounts"))


# --- Tokens ---------------------------------------------------------------------------------


@staff_view(Action.TOKEN_MANAGE)
def tokens(request: HttpRequest, staff: Staff) -> HttpResponse:
    errors: dict[str, str] = {}
    new_token = None
    if request.method == "POST":
        payload, errors = validate(TokenIn, {"name": request.POST.get("name", "")})
        if payload is not None:
            try:
                _, new_token = services.create_api_token(
                    actor=staff, staff=staff, name=payload.name
                )
            except YutangError as exc:
                errors = error_for(exc)
    return render(request, "console/tokens.html", {
        "tokens": services.list_api_tokens(actor=staff), "new_token": new_token, "errors": errors,
    })  # fmt: skip


@require_POST
@staff_view(Action.TOKEN_MANAGE)
def token_revoke(request: HttpRequest, staff: Staff, token_id: int) -> HttpResponse:
    token = services.revoke_api_token(actor=staff, token_id=token_id)
    messages.success(request, _("Token %(name)s revoked.") % {"name": token.name})
    return _htmx_redirect(request, reverse("console:tokens"))


# --- Audit, brand settings ------------------------------------------------------------------


@staff_view(Action.AUDIT_VIEW)
def audit(request: HttpRequest, staff: Staff) -> HttpResponse:
    action = request.GET.get("action") or None
    problem = None
    try:
        rows, next_cursor = services.list_audit(
            actor=staff, cursor=request.GET.get("cursor") or None, limit=50, action=action
        )
    except YutangError as exc:
        rows, next_cursor = [], None
        problem = _("This page link is not valid; start again from the newest entries.")
        if exc.field != "cursor":
            problem = exc.localized()
    return render(
        request,
        "console/audit.html",
        {"rows": rows, "next_cursor": next_cursor, "action": action or "", "problem": problem},
    )


@staff_view(Action.BRAND_MANAGE)
def brand_settings(request: HttpRequest, staff: Staff) -> HttpResponse:
    brand = staff.brand
    values: dict[str, Any] = {
        "name": brand.name,
        "time_zone": brand.time_zone,
        **brand.policy.model_dump(),
    }
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = form_data(
            request.POST,
            fields=["name", "time_zone", "hq_can_view_franchise_customers", "staff_language"],
            checkboxes=["hq_can_view_franchise_customers"],
        )
        # Settings the form does not show keep their values.
        settings_in, errors = validate(
            BrandSettings,
            {
                **brand.policy.model_dump(),
                "hq_can_view_franchise_customers": values["hq_can_view_franchise_customers"],
                "staff_language": values["staff_language"] or brand.policy.staff_language,
            },
        )
        payload, more = validate(
            BrandUpdate, {"name": values["name"], "time_zone": values["time_zone"]}
        )
        errors.update(more)
        if payload is not None and settings_in is not None:
            try:
                services.update_brand(
                    actor=staff,
                    name=payload.name,
                    time_zone=payload.time_zone,
                    settings=settings_in,
                )
            except YutangError as exc:
                errors = error_for(exc)
            else:
                messages.success(request, _("Brand settings saved."))
                return redirect("console:brand_settings")
    return render(request, "console/brand_settings.html", {"values": values, "errors": errors})


def _htmx_redirect(request: HttpRequest, url: str) -> HttpResponse:
    """HTMX requests follow HX-Redirect; plain form posts get an ordinary redirect."""
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return HttpResponseRedirect(url)
