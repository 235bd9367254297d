"""Services of the core app: the only code that changes brands, stores, staff, carrier
accounts and API tokens. Plain functions with keyword arguments; each checks the actor's
permission through the scoped queryset, changes state, and writes its audit row in the same
transaction. ``actor=None`` is the system itself (CLI set-up), which needs no permission.

Services never commit on their own behalf beyond their own atomic block, and raise typed
errors from yutang.core.errors."""

from __future__ import annotations

import hashlib
import re
import secrets
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import ProtectedError, QuerySet

from yutang.core import audit, clock, crypto
from yutang.core.errors import N_, Conflict, NotFound, PermissionDenied, ValidationFailed
from yutang.core.identifiers import normalize_phone
from yutang.core.models import ApiToken, AuditLog, Brand, CarrierAccount, Staff, Store
from yutang.core.pagination import MAX_ID, page_by_id_desc
from yutang.core.permissions import (
    ASSIGNABLE_ROLES,
    STORE_ROLES,
    Action,
    Role,
    Scope,
    can_assign_role,
    require,
)
from yutang.core.schemas import BrandSettings

User = get_user_model()

STORE_FIELDS = ["code", "name", "kind", "city", "address", "latitude", "longitude", "is_active"]
STAFF_FIELDS = ["display_name", "role", "store_ids", "phone", "is_active"]
STAFF_SENSITIVE = {"phone": "phone"}
CARRIER_FIELDS = [
    "kind", "external_id", "display_name", "staff_id", "store_id", "avatar_url", "signature",
    "cover_url", "persona", "daily_add_cap", "is_active",
]  # fmt: skip
#: What an update may change; the carrier and its account id are the account's identity.
CARRIER_EDITABLE = [f for f in CARRIER_FIELDS if f not in ("kind", "external_id")]
CARRIER_SENSITIVE = {"external_id": "text"}
TOKEN_PREFIX = "ytk_"
M = TypeVar("M", bound=models.Model)


# --- Shared checks --------------------------------------------------------------------------


def is_valid_id(value: object) -> bool:
    """Whether `value` can be a primary key. Anything else cannot name a row, so lookups
    treat it as missing instead of letting the database overflow."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _get_scoped(queryset: QuerySet[M], pk: object, *, message: str, field: str) -> M:
    """The row `pk` of an already scoped queryset, or NotFound (also for impossible ids)."""
    if not is_valid_id(pk):
        raise NotFound(message, field=field)
    try:
        return queryset.get(pk=pk)
    except ObjectDoesNotExist:
        raise NotFound(message, field=field) from None


def reject_nulls(model: type[models.Model], values: Mapping[str, Any]) -> None:
    """Refuse an explicit None for a column that cannot hold NULL, naming the field, before
    it reaches the database as an IntegrityError."""
    for name, value in values.items():
        if value is not None:
            continue
        try:
            column = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if not getattr(column, "null", True):
            raise ValidationFailed(
                N_("{name} cannot be empty (null)."), params={"name": name}, field=name
            )


def reject_unknown_fields(
    given: Iterable[str], allowed: Iterable[str], *, message: str = N_("Unknown field {value!r}.")
) -> None:
    """Refuse input that names a field the caller does not take, naming the first (sorted)
    unknown one; `message` is an N_ template with `{value}`."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValidationFailed(message, params={"value": unknown[0]}, field=unknown[0])


def validate_time_zone(value: str, *, field: str = "time_zone") -> str:
    if value not in zoneinfo.available_timezones():
        raise ValidationFailed(
            N_("Unknown time zone {value!r}; use an IANA name such as Asia/Shanghai."),
            params={"value": value},
            field=field,
        )
    return value


def _check_web_url(value: str | None, *, field: str) -> None:
    """Persona images are shown in the console: only http(s) links, never `javascript:`."""
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValidationFailed(N_("Use an http:// or https:// address."), field=field)


# --- Brands ---------------------------------------------------------------------------------


def create_brand(*, name: str, time_zone: str = "Asia/Shanghai", is_sample: bool = False) -> Brand:
    """Create a tenant. Only the system (CLI `yutang init`) creates brands."""
    if not name.strip():
        raise ValidationFailed(N_("A brand needs a name."), field="name")
    validate_time_zone(time_zone)
    BrandSettings.model_validate({})
    with transaction.atomic():
        brand = Brand.objects.create(name=name.strip(), time_zone=time_zone, is_sample=is_sample)
        audit.record(
            brand=brand,
            actor=None,
            action="brand.create",
            target=brand,
            changes=audit.diff(None, {"name": brand.name, "time_zone": time_zone}),
        )
    return brand


def current_brand(actor: Staff) -> Brand:
    """The brand the actor works in, if their role may see it."""
    require(actor, Action.BRAND_VIEW)
    return actor.brand


def update_brand(
    *,
    actor: Staff,
    name: str | None = None,
    time_zone: str | None = None,
    settings: BrandSettings | None = None,
) -> Brand:
    require(actor, Action.BRAND_MANAGE)
    if name is not None and not name.strip():
        raise ValidationFailed(N_("A brand needs a name."), field="name")
    if time_zone is not None:
        validate_time_zone(time_zone)
    with transaction.atomic():
        brand = Brand.objects.select_for_update().get(pk=actor.brand_id)
        before = {"name": brand.name, "time_zone": brand.time_zone, "settings": brand.settings}
        if name is not None:
            brand.name = name.strip()
        if time_zone is not None:
            brand.time_zone = time_zone
        if settings is not None:
            brand.settings = settings.model_dump()
        brand.save()
        after = {"name": brand.name, "time_zone": brand.time_zone, "settings": brand.settings}
        audit.record(
            brand=brand, actor=actor, action="brand.update", target=brand,
            changes=audit.diff(before, after),
        )  # fmt: skip
    actor.brand = brand
    return brand


# --- Stores ---------------------------------------------------------------------------------


def get_store(*, actor: Staff, store_id: int, action: Action = Action.STORE_VIEW) -> Store:
    return _get_scoped(
        Store.objects.for_actor(actor, action), store_id, message="No such store.", field="store_id"
    )


def _store_code_taken(*, brand_id: int, code: str, exclude_pk: int | None = None) -> bool:
    qs = Store.objects.filter(brand_id=brand_id, code=code)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


def create_store(*, actor: Staff | None, brand: Brand | None = None, **fields: Any) -> Store:
    if actor is not None:
        require(actor, Action.STORE_CREATE)
        brand = actor.brand
    assert brand is not None
    _check_store_fields(fields)
    with transaction.atomic():
        if _store_code_taken(brand_id=brand.pk, code=fields["code"]):
            raise Conflict(
                N_("A store with code {code!r} exists."),
                params={"code": fields["code"]},
                field="code",
            )
        store = Store.objects.create(brand=brand, **fields)
        audit.record(
            brand=brand, actor=actor, action="store.create", target=store, store=store,
            changes=audit.diff(None, audit.snapshot(store, STORE_FIELDS)),
        )  # fmt: skip
    return store


def update_store(*, actor: Staff, store_id: int, **changes: Any) -> Store:
    _check_store_fields(changes)
    with transaction.atomic():
        store = get_store(actor=actor, store_id=store_id, action=Action.STORE_UPDATE)
        store = Store.objects.select_for_update().get(pk=store.pk)
        # Turning a franchise into a direct store (or back) moves who owns its customers'
        # data, so only brand admins may do it.
        kind_changes = "kind" in changes and changes["kind"] != store.kind
        if kind_changes and not actor.can(Action.BRAND_MANAGE):
            raise PermissionDenied(
                N_("Only brand admins may change whether a store is direct or franchise."),
                field="kind",
            )
        before = audit.snapshot(store, STORE_FIELDS)
        new_code = changes.get("code", store.code)
        if new_code != store.code and _store_code_taken(
            brand_id=store.brand_id, code=new_code, exclude_pk=store.pk
        ):
            raise Conflict(
                N_("A store with code {new_code!r} exists."),
                params={"new_code": new_code},
                field="code",
            )
        for name, value in changes.items():
            setattr(store, name, value)
        try:
            with transaction.atomic():
                store.save()
        except IntegrityError:
            # Another request took the code between our check and our write.
            if _store_code_taken(brand_id=store.brand_id, code=new_code, exclude_pk=store.pk):
                raise Conflict(
                    N_("A store with code {new_code!r} exists."),
                    params={"new_code": new_code},
                    field="code",
                ) from None
            raise
        audit.record(
            brand=actor.brand, actor=actor, action="store.update", target=store, store=store,
            changes=audit.diff(before, audit.snapshot(store, STORE_FIELDS)),
        )  # fmt: skip
    return store


def delete_store(*, actor: Staff, store_id: int) -> None:
    with transaction.atomic():
        store = get_store(actor=actor, store_id=store_id, action=Action.STORE_DELETE)
        store = Store.objects.select_for_update().get(pk=store.pk)
        if store.staff.exists():
            # Deleting would silently unbind them, leaving a store role with no store.
            raise Conflict(
                N_(
                    "Staff still work in this store; move them to another store or remove them "
                    "first, or deactivate the store instead."
                ),
                field="store_id",
            )
        before = audit.snapshot(store, STORE_FIELDS)
        label = str(store)
        try:
            with transaction.atomic():
                store.delete()
        except ProtectedError:
            raise Conflict(
                N_(
                    "This store still has carrier accounts or other records; "
                    "deactivate it instead, or move them first."
                ),
                field="store_id",
            ) from None
        store.pk = store_id
        audit.record(
            brand=actor.brand, actor=actor, action="store.delete", target=store,
            target_label=label, changes=audit.diff(before, None),
        )  # fmt: skip


def _check_store_fields(fields: dict[str, Any]) -> None:
    reject_unknown_fields(fields, STORE_FIELDS, message=N_("Unknown store field {value!r}."))
    reject_nulls(Store, fields)
    if "kind" in fields:
        fields["kind"] = str(fields["kind"])
        if fields["kind"] not in Store.Kind.values:
            raise ValidationFailed(N_("kind must be 'direct' or 'franchise'."), field="kind")


# --- Staff ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffCreated:
    staff: Staff
    initial_password: str | None


def _staff_snapshot(staff: Staff) -> dict[str, Any]:
    return {
        "display_name": staff.display_name,
        "role": staff.role,
        "store_ids": sorted(staff.stores.values_list("pk", flat=True)),
        "phone": staff.phone,
        "is_active": staff.is_active,
    }


def _resolve_stores(
    *, actor: Staff | None, brand: Brand, role: str, store_ids: Iterable[int]
) -> list[Store]:
    ids = sorted(set(store_ids))
    impossible = [i for i in ids if not is_valid_id(i)]
    if impossible:
        raise ValidationFailed(
            N_("No such store: {value}."), params={"value": impossible[0]}, field="store_ids"
        )
    stores = list(Store.objects.filter(brand=brand, pk__in=ids))
    if len(stores) != len(ids):
        missing = sorted(set(ids) - {s.pk for s in stores})
        raise ValidationFailed(
            N_("No such store: {value}."), params={"value": missing[0]}, field="store_ids"
        )
    if actor is not None and require(actor, Action.STAFF_MANAGE) is Scope.STORE:
        outside = [s.pk for s in stores if s.pk not in actor.store_ids]
        if outside:
            raise ValidationFailed(
                N_("No such store: {value}."), params={"value": outside[0]}, field="store_ids"
            )
    if Role(role) in STORE_ROLES and not stores:
        raise ValidationFailed(N_("A store role needs at least one store."), field="store_ids")
    return stores


def _check_password(password: str, user: Any = None) -> None:
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages), field="password") from None


def _check_assignable(actor: Staff | None, role: Role | str) -> None:
    if actor is not None and not can_assign_role(actor, role):
        raise PermissionDenied(
            N_("Your role may not grant the role {role}."), params={"role": role}, field="role"
        )


def assignable_roles(actor: Staff) -> list[Role]:
    """The roles the actor may hand out, in the matrix's order (for forms)."""
    allowed = ASSIGNABLE_ROLES.get(Role(actor.role), frozenset())
    return [role for role in Role if role in allowed]


def _controls_user(actor: Staff, user: Any) -> bool:
    """Whether the actor may act for this login beyond their own brand: attach it to their
    brand, or set its password. One login can be staff of several brands, so this holds only
    when every brand the login works in is the actor's current brand or one where the actor
    (the same person) is an active brand admin.

    A person always controls their own login. Django superusers and admin-site users are
    never brand staff to be taken over."""
    if user.pk == actor.user_id:
        return True
    if user.is_superuser or user.is_staff:
        return False
    administered = Staff.objects.filter(
        user_id=actor.user_id, role=Role.BRAND_ADMIN, is_active=True
    ).values("brand_id")
    elsewhere = (
        Staff.objects.filter(user=user)
        .exclude(brand_id=actor.brand_id)
        .exclude(brand_id__in=administered)
    )
    return not elsewhere.exists()


def create_staff(
    *,
    actor: Staff | None,
    brand: Brand | None = None,
    username: str,
    display_name: str,
    role: Role | str,
    store_ids: Iterable[int] = (),
    password: str | None = None,
    phone: str = "",
) -> StaffCreated:
    """Add a person to a brand. A new user gets the given password or a generated one,
    returned once. An existing user (same username) gains a role in this brand only when the
    system asks, or when the actor controls that login (`_controls_user`); anyone else is
    told the username is taken, so nobody can pull another brand's staff into their own."""
    if actor is not None:
        require(actor, Action.STAFF_MANAGE)
        brand = actor.brand
    assert brand is not None
    role = Role(role)
    _check_assignable(actor, role)
    phone_e164 = normalize_phone(phone) if phone else ""
    with transaction.atomic():
        stores = _resolve_stores(actor=actor, brand=brand, role=role, store_ids=store_ids)
        user = User.objects.filter(username=username).first()
        generated = None
        if user is None:
            if password is None:
                generated = password = secrets.token_urlsafe(12)
            _check_password(password)
            user = User.objects.create_user(username=username, password=password)
        else:
            if Staff.objects.filter(brand=brand, user=user).exists():
                raise Conflict(
                    N_("{username} is already staff of this brand."),
                    params={"username": username},
                    field="username",
                )
            if actor is not None and not _controls_user(actor, user):
                raise Conflict(N_("This username is taken; choose another."), field="username")
            if password is not None:
                raise Conflict(
                    N_("This username already exists; it keeps its own password."), field="password"
                )
        staff = Staff.objects.create(
            brand=brand,
            user=user,
            display_name=display_name,
            role=role,
            phone_encrypted=crypto.encrypt_pii(phone_e164) if phone_e164 else "",
            phone_hash=crypto.hash_pii(phone_e164) if phone_e164 else "",
        )
        staff.stores.set(stores)
        audit.record(
            brand=brand, actor=actor, action="staff.create", target=staff,
            store=stores[0] if stores else None,
            changes=audit.diff(None, _staff_snapshot(staff), sensitive=STAFF_SENSITIVE),
        )  # fmt: skip
    return StaffCreated(staff=staff, initial_password=generated)


def get_staff(*, actor: Staff, staff_id: int, action: Action = Action.STAFF_VIEW) -> Staff:
    queryset = (
        Staff.objects.for_actor(actor, action).select_related("user").prefetch_related("stores")
    )
    return _get_scoped(queryset, staff_id, message="No such staff member.", field="staff_id")


def _check_manages(actor: Staff, member: Staff) -> None:
    """May the actor change this (other) person at all? Only a role they may grant, and for
    store roles only people who work nowhere but the actor's stores."""
    _check_assignable(actor, member.role)
    if require(actor, Action.STAFF_MANAGE) is Scope.STORE and not set(member.store_ids) <= set(
        actor.store_ids
    ):
        raise PermissionDenied(
            N_("This person also works in stores you do not manage."), field="staff_id"
        )


def get_staff_to_edit(*, actor: Staff, staff_id: int) -> Staff:
    """The staff member the actor may edit: themself (own name, phone and password), or
    someone they manage."""
    if staff_id == actor.pk:
        return get_staff(actor=actor, staff_id=staff_id, action=Action.STAFF_VIEW)
    member = get_staff(actor=actor, staff_id=staff_id, action=Action.STAFF_MANAGE)
    _check_manages(actor, member)
    return member


def _check_own_changes(
    staff: Staff,
    *,
    role: Role | str | None,
    store_ids: Iterable[int] | None,
    is_active: bool | None,
) -> None:
    message = "You cannot change your own role, stores or active status."
    if role is not None and Role(role) != staff.role:
        raise Conflict(message, field="role")
    if store_ids is not None and sorted(set(store_ids)) != staff.store_ids:
        raise Conflict(message, field="store_ids")
    if is_active is not None and is_active != staff.is_active:
        raise Conflict(message, field="is_active")


def update_staff(
    *,
    actor: Staff,
    staff_id: int,
    display_name: str | None = None,
    role: Role | str | None = None,
    store_ids: Iterable[int] | None = None,
    password: str | None = None,
    phone: str | None = None,
    is_active: bool | None = None,
) -> Staff:
    """Change a staff member. Everyone may change their own display name, phone and
    password; changing anyone else needs STAFF_MANAGE over them (`get_staff_to_edit`)."""
    with transaction.atomic():
        member = get_staff_to_edit(actor=actor, staff_id=staff_id)
        staff = Staff.objects.select_for_update().select_related("user").get(pk=member.pk)
        before = _staff_snapshot(staff)
        if staff.pk == actor.pk:
            _check_own_changes(staff, role=role, store_ids=store_ids, is_active=is_active)
            role = store_ids = is_active = None
        if password is not None and not _controls_user(actor, staff.user):
            raise PermissionDenied(
                N_(
                    "This person also works for a brand you do not administer; they must change "
                    "their password themselves."
                ),
                field="password",
            )
        if role is not None:
            role = Role(role)
            _check_assignable(actor, role)
            staff.role = role
        if display_name is not None:
            staff.display_name = display_name
        if is_active is not None:
            staff.is_active = is_active
        if phone is not None:
            e164 = normalize_phone(phone) if phone else ""
            staff.phone_encrypted = crypto.encrypt_pii(e164) if e164 else ""
            staff.phone_hash = crypto.hash_pii(e164) if e164 else ""
        if store_ids is not None or role is not None:
            ids = store_ids if store_ids is not None else before["store_ids"]
            stores = _resolve_stores(actor=actor, brand=actor.brand, role=staff.role, store_ids=ids)
            staff.stores.set(stores)
        if password is not None:
            _check_password(password, staff.user)
            staff.user.set_password(password)
            staff.user.save(update_fields=["password"])
        staff.save()
        changes = audit.diff(before, _staff_snapshot(staff), sensitive=STAFF_SENSITIVE)
        if password is not None:
            changes["password"] = {"after": "(changed)"}
        first_store = staff.stores.order_by("pk").first()
        audit.record(
            brand=actor.brand, actor=actor, action="staff.update", target=staff,
            store=first_store, changes=changes,
        )  # fmt: skip
    if hasattr(staff, "_store_ids"):
        del staff._store_ids
    return staff


def delete_staff(*, actor: Staff, staff_id: int) -> None:
    """Remove a person's role in this brand. Their Django user stays (they may work for
    another brand); their API tokens in this brand go with the role."""
    with transaction.atomic():
        staff = get_staff(actor=actor, staff_id=staff_id, action=Action.STAFF_MANAGE)
        if staff.pk == actor.pk:
            raise Conflict(N_("You cannot remove yourself."), field="staff_id")
        _check_manages(actor, staff)
        before = _staff_snapshot(staff)
        label = str(staff)
        staff.delete()
        staff.pk = staff_id
        audit.record(
            brand=actor.brand, actor=actor, action="staff.delete", target=staff,
            target_label=label, changes=audit.diff(before, None, sensitive=STAFF_SENSITIVE),
        )  # fmt: skip


# --- Carrier accounts -----------------------------------------------------------------------


def get_carrier_account(
    *, actor: Staff, account_id: int, action: Action = Action.CARRIER_ACCOUNT_VIEW
) -> CarrierAccount:
    return _get_scoped(
        CarrierAccount.objects.for_actor(actor, action),
        account_id,
        message="No such carrier account.",
        field="account_id",
    )


def _check_carrier_links(
    *, actor: Staff | None, brand: Brand, staff_id: int | None, store_id: int | None
) -> None:
    scope = require(actor, Action.CARRIER_ACCOUNT_MANAGE) if actor is not None else Scope.BRAND
    if staff_id is not None:
        staff_qs = Staff.objects.filter(brand=brand)
        if scope is Scope.SELF:
            staff_qs = staff_qs.filter(pk=actor.pk if actor else None)
        elif scope is Scope.STORE and actor is not None:
            staff_qs = staff_qs.filter(stores__in=actor.store_ids)
        if not is_valid_id(staff_id) or not staff_qs.filter(pk=staff_id).exists():
            raise ValidationFailed(
                N_("No such staff member: {staff_id}."),
                params={"staff_id": staff_id},
                field="staff_id",
            )
    if store_id is not None:
        store_qs = Store.objects.filter(brand=brand)
        if scope is not Scope.BRAND and actor is not None:
            store_qs = store_qs.filter(pk__in=actor.store_ids)
        if not is_valid_id(store_id) or not store_qs.filter(pk=store_id).exists():
            raise ValidationFailed(
                N_("No such store: {store_id}."), params={"store_id": store_id}, field="store_id"
            )
    elif scope is Scope.STORE:
        raise ValidationFailed(N_("Choose one of your stores."), field="store_id")


def _check_carrier_fields(fields: Mapping[str, Any], allowed: Iterable[str]) -> None:
    reject_unknown_fields(fields, allowed, message=N_("Unknown carrier account field {value!r}."))
    reject_nulls(CarrierAccount, fields)
    for name in ("avatar_url", "cover_url"):
        _check_web_url(fields.get(name), field=name)


def _carrier_account_taken(*, brand_id: int, kind: str, external_id: str) -> bool:
    return CarrierAccount.objects.filter(
        brand_id=brand_id, kind=kind, external_id=external_id
    ).exists()


def create_carrier_account(
    *, actor: Staff | None, brand: Brand | None = None, **fields: Any
) -> CarrierAccount:
    if actor is not None:
        scope = require(actor, Action.CARRIER_ACCOUNT_MANAGE)
        brand = actor.brand
        if scope is Scope.SELF:
            fields["staff_id"] = actor.pk
    assert brand is not None
    _check_carrier_fields(fields, CARRIER_FIELDS)
    fields["kind"] = str(fields["kind"])
    _check_carrier_links(
        actor=actor, brand=brand, staff_id=fields.get("staff_id"), store_id=fields.get("store_id")
    )
    duplicate = Conflict(
        N_("This carrier account is already registered in this brand."), field="external_id"
    )
    key = {"brand_id": brand.pk, "kind": fields["kind"], "external_id": fields["external_id"]}
    if _carrier_account_taken(**key):
        raise duplicate
    try:
        with transaction.atomic():
            account = CarrierAccount.objects.create(brand=brand, **fields)
            audit.record(
                brand=brand, actor=actor, action="carrier_account.create", target=account,
                store=account.store,
                changes=audit.diff(
                    None, audit.snapshot(account, CARRIER_FIELDS), sensitive=CARRIER_SENSITIVE
                ),
            )  # fmt: skip
    except IntegrityError:
        # Only a concurrent registration of the same account is a duplicate; any other
        # integrity failure is a bug and must surface as one.
        if _carrier_account_taken(**key):
            raise duplicate from None
        raise
    return account


def update_carrier_account(*, actor: Staff, account_id: int, **changes: Any) -> CarrierAccount:
    _check_carrier_fields(changes, CARRIER_EDITABLE)
    with transaction.atomic():
        account = get_carrier_account(
            actor=actor, account_id=account_id, action=Action.CARRIER_ACCOUNT_MANAGE
        )
        account = CarrierAccount.objects.select_for_update().get(pk=account.pk)
        scope = require(actor, Action.CARRIER_ACCOUNT_MANAGE)
        if scope is Scope.SELF and changes.get("staff_id", actor.pk) != actor.pk:
            raise ValidationFailed(N_("You can only hold your own accounts."), field="staff_id")
        _check_carrier_links(
            actor=actor,
            brand=actor.brand,
            staff_id=changes.get("staff_id"),
            store_id=changes.get("store_id", account.store_id),
        )
        before = audit.snapshot(account, CARRIER_FIELDS)
        for name, value in changes.items():
            setattr(account, name, value)
        account.save()
        audit.record(
            brand=actor.brand, actor=actor, action="carrier_account.update", target=account,
            store=account.store,
            changes=audit.diff(
                before, audit.snapshot(account, CARRIER_FIELDS), sensitive=CARRIER_SENSITIVE
            ),
        )  # fmt: skip
    return account


def delete_carrier_account(*, actor: Staff, account_id: int) -> None:
    with transaction.atomic():
        account = get_carrier_account(
            actor=actor, account_id=account_id, action=Action.CARRIER_ACCOUNT_MANAGE
        )
        before = audit.snapshot(account, CARRIER_FIELDS)
        label, store = str(account), account.store
        account.delete()
        account.pk = account_id
        audit.record(
            brand=actor.brand, actor=actor, action="carrier_account.delete", target=account,
            target_label=label, store=store,
            changes=audit.diff(before, None, sensitive=CARRIER_SENSITIVE),
        )  # fmt: skip


# --- API tokens -----------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(*, actor: Staff | None, staff: Staff, name: str) -> tuple[ApiToken, str]:
    """Create a token for `staff` (an actor may only create their own). Returns the row and
    the secret, which is never stored and cannot be shown again."""
    if actor is not None:
        require(actor, Action.TOKEN_MANAGE)
        if staff.pk != actor.pk:
            raise PermissionDenied(N_("You can only create tokens for yourself."), field="staff_id")
    if not name.strip():
        raise ValidationFailed(N_("A token needs a name."), field="name")
    secret = secrets.token_urlsafe(32)
    prefix = secret[:8]
    plain = f"{TOKEN_PREFIX}{secret}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            brand_id=staff.brand_id,
            staff=staff,
            name=name.strip(),
            prefix=prefix,
            token_hash=_token_hash(plain),
        )
        audit.record(
            brand=staff.brand, actor=actor, action="token.create", target=token,
            changes=audit.diff(None, {"name": token.name, "staff_id": staff.pk, "prefix": prefix}),
        )  # fmt: skip
    return token, plain


def revoke_api_token(*, actor: Staff, token_id: int) -> ApiToken:
    with transaction.atomic():
        token = _get_scoped(
            ApiToken.objects.for_actor(actor, Action.TOKEN_MANAGE),
            token_id,
            message="No such token.",
            field="token_id",
        )
        if token.revoked_at is not None:
            return token
        token.revoked_at = clock.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            brand=actor.brand, actor=actor, action="token.revoke", target=token,
            changes={"revoked_at": {"before": None, "after": token.revoked_at.isoformat()}},
        )  # fmt: skip
    return token


#: last_used_at is written at most this often per token, so busy integrations do not turn
#: every API read into a write.
TOKEN_TOUCH_SECONDS = 60


def authenticate_token(plain: str) -> Staff | None:
    """The staff member a token belongs to, or None for an unknown, revoked or inactive one."""
    if not plain.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("staff__brand", "staff__user")
        .filter(token_hash=_token_hash(plain), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.staff.is_active or not token.staff.user.is_active:
        return None
    now = clock.now()
    if (
        token.last_used_at is None
        or (now - token.last_used_at).total_seconds() >= TOKEN_TOUCH_SECONDS
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.staff


# --- Reads ----------------------------------------------------------------------------------
# Lists live here too, so API handlers and console views share one scoped query each.


def list_stores(
    *, actor: Staff, search: str = "", kind: str | None = None, is_active: bool | None = None
) -> list[Store]:
    qs = Store.objects.for_actor(actor, Action.STORE_VIEW)
    if search:
        qs = qs.filter(name__icontains=search) | qs.filter(code__icontains=search)
    if kind:
        qs = qs.filter(kind=kind)
    if is_active is not None:
        qs = qs.filter(is_active=is_active)
    return list(qs.order_by("code"))


def list_staff(*, actor: Staff, role: str | None = None) -> list[Staff]:
    qs = Staff.objects.for_actor(actor, Action.STAFF_VIEW)
    if role:
        qs = qs.filter(role=role)
    return list(qs.select_related("user").prefetch_related("stores").order_by("id"))


def list_carrier_accounts(*, actor: Staff, kind: str | None = None) -> list[CarrierAccount]:
    qs = CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW)
    if kind:
        qs = qs.filter(kind=kind)
    return list(qs.select_related("staff", "store").order_by("id"))


def list_api_tokens(*, actor: Staff) -> list[ApiToken]:
    # Brand admins see (and may revoke) every token of the brand; everyone else their own.
    qs = ApiToken.objects.for_actor(actor, Action.TOKEN_MANAGE)
    return list(qs.select_related("staff").order_by("-id"))


def list_audit(
    *,
    actor: Staff,
    cursor: str | None = None,
    limit: int = 50,
    action: str | None = None,
    target_type: str | None = None,
) -> tuple[list[AuditLog], str | None]:
    qs = AuditLog.objects.for_actor(actor, Action.AUDIT_VIEW).select_related("actor")
    if action:
        qs = qs.filter(action=action)
    if target_type:
        qs = qs.filter(target_type=target_type)
    return page_by_id_desc(qs, cursor=cursor, limit=limit)


def staff_brands(*, user: Any) -> list[Staff]:
    """The active roles a user holds, one per brand, for the brand switcher."""
    return list(
        Staff.objects.filter(user=user, is_active=True).select_related("brand").order_by("brand_id")
    )


def current_staff_role(*, user: Any, brand_id: int | None) -> Staff | None:
    """The active role a logged-in user works as: the one in the brand they chose (the
    console keeps the choice in the session), else their first brand's."""
    roles = Staff.objects.select_related("brand", "user").filter(user=user, is_active=True)
    staff = roles.filter(brand_id=brand_id).first() if is_valid_id(brand_id) else None
    return staff or roles.order_by("brand_id").first()


# --- Presenting identifiers -----------------------------------------------------------------
# The one place that decides which identifiers a viewer sees in clear. The API and the
# console both render staff and carrier accounts through these presenters.


def identifier_for(actor: Staff, kind: str, value: str) -> str:
    """An identifier as this actor may see it: clear for roles that may view identifiers,
    masked otherwise (analysts never see them)."""
    if not value:
        return value
    if actor.can(Action.IDENTIFIERS_VIEW):
        return value
    return crypto.mask_identifier(kind, value)


def _username_kind(username: str) -> str:
    """Usernames are often phone numbers or emails; mask them as such."""
    if re.fullmatch(r"\+?\d{7,15}", username):
        return "phone"
    return "email" if "@" in username else "text"


def present_staff(viewer: Staff, staff: Staff) -> dict[str, Any]:
    """A staff member as `viewer` may see them (the API's StaffOut). Username and phone are
    masked for roles without identifiers.view; everyone sees their own record in clear."""
    username = staff.user.get_username()
    own = viewer.pk == staff.pk
    return {
        "id": staff.pk,
        "username": username if own else identifier_for(viewer, _username_kind(username), username),
        "display_name": staff.display_name,
        "role": staff.role,
        "store_ids": sorted(s.pk for s in staff.stores.all()),
        "phone": staff.phone if own else identifier_for(viewer, "phone", staff.phone),
        "is_active": staff.is_active,
        "created_at": staff.created_at,
    }


CARRIER_OUT_FIELDS = ["id", *CARRIER_FIELDS, "created_at"]


def present_carrier_account(viewer: Staff, account: CarrierAccount) -> dict[str, Any]:
    """A carrier account as `viewer` may see it (the API's CarrierAccountOut); the account id
    on the carrier is masked for roles without identifiers.view."""
    data = {name: getattr(account, name) for name in CARRIER_OUT_FIELDS}
    data["external_id"] = identifier_for(viewer, "text", account.external_id)
    return data


def brand_overview(*, actor: Staff) -> dict[str, Any]:
    """Counts for the console's overview page, each within the actor's scope."""
    require(actor, Action.BRAND_VIEW)
    overview: dict[str, Any] = {"brand": actor.brand}
    if actor.can(Action.STORE_VIEW):
        stores = Store.objects.for_actor(actor, Action.STORE_VIEW)
        overview["stores"] = stores.count()
        overview["franchise_stores"] = stores.filter(kind=Store.Kind.FRANCHISE).count()
    if actor.can(Action.STAFF_VIEW):
        overview["staff"] = Staff.objects.for_actor(actor, Action.STAFF_VIEW).count()
    if actor.can(Action.CARRIER_ACCOUNT_VIEW):
        overview["carrier_accounts"] = CarrierAccount.objects.for_actor(
            actor, Action.CARRIER_ACCOUNT_VIEW
        ).count()
    if actor.can(Action.AUDIT_VIEW):
        overview["recent_audit"] = list(
            AuditLog.objects.for_actor(actor, Action.AUDIT_VIEW).order_by("-id")[:8]
        )
    return overview
