"""REST handlers for brands, stores, staff, carrier accounts, tokens and the audit log.
Each handler validates (through its schema), calls one service and renders."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema, Status

from yutang.core import services
from yutang.core.apiauth import actor
from yutang.core.apiparams import StrictQuery
from yutang.core.models import CarrierAccount, Store
from yutang.core.permissions import Role
from yutang.core.schemas import (
    AuditPage,
    BrandOut,
    BrandUpdate,
    CarrierAccountIn,
    CarrierAccountOut,
    CarrierAccountPatch,
    StaffCreated,
    StaffIn,
    StaffOut,
    StaffPatch,
    StoreIn,
    StoreOut,
    StorePatch,
    TokenCreated,
    TokenIn,
    TokenOut,
)

router = Router()


# --- Brand ----------------------------------------------------------------------------------


@router.get("/brands/current", response=BrandOut, tags=["brands"])
def get_current_brand(request: HttpRequest) -> object:
    return services.current_brand(actor(request))


@router.patch("/brands/current", response=BrandOut, tags=["brands"])
def update_current_brand(request: HttpRequest, payload: BrandUpdate) -> object:
    return services.update_brand(
        actor=actor(request),
        **payload.model_dump(exclude_unset=True, exclude={"settings"}),
        settings=payload.settings,
    )


# --- Stores ---------------------------------------------------------------------------------


class StoreFilters(Schema):
    search: str = ""
    kind: Store.Kind | None = None
    is_active: bool | None = None


@router.get("/stores", response=list[StoreOut], tags=["stores"])
def list_stores(request: HttpRequest, filters: StrictQuery[StoreFilters]) -> object:
    return services.list_stores(
        actor=actor(request), search=filters.search, kind=filters.kind, is_active=filters.is_active
    )


@router.post("/stores", response={201: StoreOut}, tags=["stores"])
def create_store(request: HttpRequest, payload: StoreIn) -> object:
    return Status(201, services.create_store(actor=actor(request), **payload.model_dump()))


@router.get("/stores/{store_id}", response=StoreOut, tags=["stores"])
def get_store(request: HttpRequest, store_id: int) -> object:
    return services.get_store(actor=actor(request), store_id=store_id)


@router.patch("/stores/{store_id}", response=StoreOut, tags=["stores"])
def update_store(request: HttpRequest, store_id: int, payload: StorePatch) -> object:
    return services.update_store(
        actor=actor(request), store_id=store_id, **payload.model_dump(exclude_unset=True)
    )


@router.delete("/stores/{store_id}", response={204: None}, tags=["stores"])
def delete_store(request: HttpRequest, store_id: int) -> object:
    services.delete_store(actor=actor(request), store_id=store_id)
    return Status(204, None)


# --- Staff ----------------------------------------------------------------------------------


class StaffFilters(Schema):
    role: Role | None = None


@router.get("/staff", response=list[StaffOut], tags=["staff"])
def list_staff(request: HttpRequest, filters: StrictQuery[StaffFilters]) -> object:
    viewer = actor(request)
    return [
        services.present_staff(viewer, s)
        for s in services.list_staff(actor=viewer, role=filters.role)
    ]


@router.post("/staff", response={201: StaffCreated}, tags=["staff"])
def create_staff(request: HttpRequest, payload: StaffIn) -> object:
    viewer = actor(request)
    created = services.create_staff(actor=viewer, **payload.model_dump())
    return Status(
        201,
        {
            **services.present_staff(viewer, created.staff),
            "initial_password": created.initial_password,
        },
    )


@router.get("/staff/{staff_id}", response=StaffOut, tags=["staff"])
def get_staff(request: HttpRequest, staff_id: int) -> object:
    viewer = actor(request)
    return services.present_staff(viewer, services.get_staff(actor=viewer, staff_id=staff_id))


@router.patch("/staff/{staff_id}", response=StaffOut, tags=["staff"])
def update_staff(request: HttpRequest, staff_id: int, payload: StaffPatch) -> object:
    viewer = actor(request)
    staff = services.update_staff(
        actor=viewer, staff_id=staff_id, **payload.model_dump(exclude_unset=True)
    )
    return services.present_staff(viewer, staff)


@router.delete("/staff/{staff_id}", response={204: None}, tags=["staff"])
def delete_staff(request: HttpRequest, staff_id: int) -> object:
    services.delete_staff(actor=actor(request), staff_id=staff_id)
    return Status(204, None)


# --- Carrier accounts -----------------------------------------------------------------------


class CarrierFilters(Schema):
    kind: CarrierAccount.Kind | None = None


@router.get("/carrier-accounts", response=list[CarrierAccountOut], tags=["carrier accounts"])
def list_carrier_accounts(request: HttpRequest, filters: StrictQuery[CarrierFilters]) -> object:
    viewer = actor(request)
    accounts = services.list_carrier_accounts(actor=viewer, kind=filters.kind)
    return [services.present_carrier_account(viewer, a) for a in accounts]


@router.post("/carrier-accounts", response={201: CarrierAccountOut}, tags=["carrier accounts"])
def create_carrier_account(request: HttpRequest, payload: CarrierAccountIn) -> object:
    viewer = actor(request)
    account = services.create_carrier_account(actor=viewer, **payload.model_dump())
    return Status(201, services.present_carrier_account(viewer, account))


@router.get("/carrier-accounts/{account_id}", response=CarrierAccountOut, tags=["carrier accounts"])
def get_carrier_account(request: HttpRequest, account_id: int) -> object:
    viewer = actor(request)
    return services.present_carrier_account(
        viewer, services.get_carrier_account(actor=viewer, account_id=account_id)
    )


@router.patch(
    "/carrier-accounts/{account_id}", response=CarrierAccountOut, tags=["carrier accounts"]
)
def update_carrier_account(
    request: HttpRequest, account_id: int, payload: CarrierAccountPatch
) -> object:
    viewer = actor(request)
    account = services.update_carrier_account(
        actor=viewer, account_id=account_id, **payload.model_dump(exclude_unset=True)
    )
    return services.present_carrier_account(viewer, account)


@router.delete("/carrier-accounts/{account_id}", response={204: None}, tags=["carrier accounts"])
def delete_carrier_account(request: HttpRequest, account_id: int) -> object:
    services.delete_carrier_account(actor=actor(request), account_id=account_id)
    return Status(204, None)


# --- Tokens ---------------------------------------------------------------------------------


class NoFilters(Schema):
    pass


@router.get("/tokens", response=list[TokenOut], tags=["tokens"])
def list_tokens(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    return services.list_api_tokens(actor=actor(request))


@router.post("/tokens", response={201: TokenCreated}, tags=["tokens"])
def create_token(request: HttpRequest, payload: TokenIn) -> object:
    viewer = actor(request)
    token, plain = services.create_api_token(actor=viewer, staff=viewer, name=payload.name)
    return Status(201, {**TokenOut.from_orm(token).model_dump(), "token": plain})


@router.delete("/tokens/{token_id}", response=TokenOut, tags=["tokens"])
def revoke_token(request: HttpRequest, token_id: int) -> object:
    return services.revoke_api_token(actor=actor(request), token_id=token_id)


# --- Audit ----------------------------------------------------------------------------------


class AuditFilters(Schema):
    cursor: str | None = None
    limit: int = 50
    action: str | None = None
    target_type: str | None = None


@router.get("/audit", response=AuditPage, tags=["audit"])
def list_audit(request: HttpRequest, filters: StrictQuery[AuditFilters]) -> object:
    rows, next_cursor = services.list_audit(actor=actor(request), **filters.model_dump())
    return {"items": rows, "next_cursor": next_cursor}
