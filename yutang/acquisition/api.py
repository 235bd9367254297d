"""REST handlers for acquisition: validate (schemas), call one service, render."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import File, Router, Schema, Status
from ninja.files import UploadedFile

from yutang.acquisition import qr, reports, services
from yutang.acquisition.schemas import (
    AlertOut,
    BatchIn,
    BatchOut,
    CapacityOut,
    CarrierSyncOut,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    CostIn,
    CostOut,
    LiveCodeIn,
    LiveCodeOut,
    LiveCodePatch,
    PartnerIn,
    PartnerOut,
    PartnerPatch,
    ReachImportOut,
    ReachIn,
    ReachOut,
    ReportFilters,
    SettlementIn,
    SettlementOut,
    ShortLinkIn,
    ShortLinkOut,
)
from yutang.core import clock
from yutang.core.apiauth import actor
from yutang.core.apiparams import StrictQuery
from yutang.core.errors import N_, ValidationFailed
from yutang.core.schemas import DbId

router = Router(tags=["acquisition"])


class NoFilters(Schema):
    pass


class QrFilters(Schema):
    format: str = "png"


class LiveCodeFilters(Schema):
    channel_id: DbId | None = None


class AlertFilters(Schema):
    open_only: bool = True


def _live_code_payload(payload: Any, *, exclude_unset: bool) -> dict[str, Any]:
    data = payload.model_dump(exclude_unset=exclude_unset)
    if "schedule" in data and data["schedule"] is not None:
        data["schedule"] = payload.schedule.model_dump()
    if "welcome_attachments" in data and data["welcome_attachments"] is not None:
        data["welcome_attachments"] = [
            a.model_dump(exclude_none=True) for a in payload.welcome_attachments
        ]
    return data


# --- Channels, costs, reach -------------------------------------------------------------------


@router.get("/channels", response=list[ChannelOut])
def list_channels(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    return services.list_channels(actor=actor(request))


@router.post("/channels", response={201: ChannelOut})
def create_channel(request: HttpRequest, payload: ChannelIn) -> object:
    viewer = actor(request)
    data = payload.model_dump()
    data["platform"] = data["platform"] or ""
    return Status(201, services.create_channel(actor=viewer, brand=viewer.brand, **data))


@router.get("/channels/{channel_id}", response=ChannelOut)
def get_channel(request: HttpRequest, channel_id: DbId) -> object:
    return services.get_channel(actor=actor(request), channel_id=channel_id)


@router.patch("/channels/{channel_id}", response=ChannelOut)
def update_channel(request: HttpRequest, channel_id: DbId, payload: ChannelPatch) -> object:
    return services.update_channel(
        actor=actor(request), channel_id=channel_id, **payload.model_dump(exclude_unset=True)
    )


@router.get("/channels/{channel_id}/costs", response=list[CostOut])
def list_costs(request: HttpRequest, channel_id: DbId) -> object:
    return services.list_costs(actor=actor(request), channel_id=channel_id)


@router.post("/channels/{channel_id}/costs", response={201: CostOut})
def add_cost(request: HttpRequest, channel_id: DbId, payload: CostIn) -> object:
    return Status(
        201,
        services.add_cost(actor=actor(request), channel_id=channel_id, **payload.model_dump()),
    )


@router.put("/channels/{channel_id}/reach", response=ReachOut)
def record_reach(request: HttpRequest, channel_id: DbId, payload: ReachIn) -> object:
    return services.record_reach(
        actor=actor(request), channel_id=channel_id, **payload.model_dump()
    )


@router.post("/reach/import", response={200: ReachImportOut, 422: ReachImportOut})
def import_reach(request: HttpRequest, file: File[UploadedFile]) -> object:
    result = services.import_reach(actor=actor(request), source=file.file, filename=file.name)  # type: ignore[arg-type]
    return Status(422 if result.errors else 200, result)


@router.get("/channels/{channel_id}/batches", response=list[BatchOut])
def list_batches(request: HttpRequest, channel_id: DbId) -> object:
    return services.list_batches(actor=actor(request), channel_id=channel_id)


@router.post("/channels/{channel_id}/batches", response={201: BatchOut})
def create_batch(request: HttpRequest, channel_id: DbId, payload: BatchIn) -> object:
    return Status(
        201,
        services.create_batch(actor=actor(request), channel_id=channel_id, **payload.model_dump()),
    )


# --- Live codes -------------------------------------------------------------------------------


@router.get("/live-codes", response=list[LiveCodeOut])
def list_live_codes(request: HttpRequest, filters: StrictQuery[LiveCodeFilters]) -> object:
    return services.list_live_codes(actor=actor(request), channel_id=filters.channel_id)


@router.post("/live-codes", response={201: LiveCodeOut})
def create_live_code(request: HttpRequest, payload: LiveCodeIn) -> object:
    viewer = actor(request)
    data = _live_code_payload(payload, exclude_unset=False)
    return Status(201, services.create_live_code(actor=viewer, brand=viewer.brand, **data))


@router.get("/live-codes/{live_code_id}", response=LiveCodeOut)
def get_live_code(request: HttpRequest, live_code_id: DbId) -> object:
    return services.get_live_code(actor=actor(request), live_code_id=live_code_id)


@router.patch("/live-codes/{live_code_id}", response=LiveCodeOut)
def update_live_code(request: HttpRequest, live_code_id: DbId, payload: LiveCodePatch) -> object:
    return services.update_live_code(
        actor=actor(request), live_code_id=live_code_id,
        **_live_code_payload(payload, exclude_unset=True),
    )  # fmt: skip


@router.delete("/live-codes/{live_code_id}", response={204: None})
def deactivate_live_code(request: HttpRequest, live_code_id: DbId) -> object:
    """Live codes are printed on cards and posters, so they are switched off, not deleted."""
    services.update_live_code(actor=actor(request), live_code_id=live_code_id, is_active=False)
    return Status(204, None)


@router.get("/live-codes/{live_code_id}/capacity", response=list[CapacityOut])
def capacity(request: HttpRequest, live_code_id: DbId) -> object:
    return services.capacity_status(actor=actor(request), live_code_id=live_code_id, at=clock.now())


@router.post("/live-codes/{live_code_id}/carrier-sync", response=CarrierSyncOut)
def sync_live_code(request: HttpRequest, live_code_id: DbId) -> object:
    """Write the live code's WeCom contact way now (the worker loop also does it)."""
    return services.sync_live_code(actor=actor(request), live_code_id=live_code_id)


@router.get("/live-codes/{live_code_id}/qr")
def live_code_qr(
    request: HttpRequest, live_code_id: DbId, filters: StrictQuery[QrFilters]
) -> HttpResponse:
    format = filters.format
    viewer = actor(request)
    code = services.get_live_code(actor=viewer, live_code_id=live_code_id)
    url = services.live_code_url(code, base=request.build_absolute_uri("/"))
    logo = services.brand_logo(brand=viewer.brand)
    if format == "png":
        response = HttpResponse(qr.png(url, logo=logo), content_type="image/png")
    elif format == "svg":
        response = HttpResponse(qr.svg(url, logo=logo), content_type="image/svg+xml")
    elif format == "poster":
        hook = code.channel.hook_description
        response = HttpResponse(
            qr.poster_html(title=code.channel.name, hook=hook, url=url, logo=logo),
            content_type="text/html; charset=utf-8",
        )
    else:
        raise ValidationFailed(N_("format is png, svg or poster."), field="format")
    extension = {"png": "png", "svg": "svg", "poster": "html"}[format]
    response["Content-Disposition"] = f'attachment; filename="live-code-{code.pk}.{extension}"'
    return response


@router.get("/alerts", response=list[AlertOut])
def list_alerts(request: HttpRequest, filters: StrictQuery[AlertFilters]) -> object:
    return services.list_alerts(actor=actor(request), open_only=filters.open_only)


@router.post("/alerts/{alert_id}/resolve", response=AlertOut)
def resolve_alert(request: HttpRequest, alert_id: DbId) -> object:
    return services.resolve_alert(actor=actor(request), alert_id=alert_id)


# --- Brand defaults: fallback welcome and QR logo --------------------------------------------


class WelcomeDefaultIn(Schema):
    default_welcome_text: str


class AcquisitionDefaultsOut(Schema):
    default_welcome_text: str
    has_logo: bool


@router.get("/acquisition/default-welcome", response=AcquisitionDefaultsOut)
def get_default_welcome(request: HttpRequest) -> object:
    return services.acquisition_defaults(actor=actor(request))


@router.put("/acquisition/default-welcome", response={204: None})
def set_default_welcome(request: HttpRequest, payload: WelcomeDefaultIn) -> object:
    services.set_default_welcome(actor=actor(request), text=payload.default_welcome_text)
    return Status(204, None)


@router.post("/acquisition/logo", response={204: None})
def set_logo(request: HttpRequest, file: File[UploadedFile]) -> object:
    services.set_brand_logo(actor=actor(request), data=file.read())
    return Status(204, None)


@router.get("/acquisition/logo")
def get_logo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(services.get_brand_logo(actor=actor(request)), content_type="image/png")


@router.delete("/acquisition/logo", response={204: None})
def remove_logo(request: HttpRequest) -> object:
    services.set_brand_logo(actor=actor(request), data=None)
    return Status(204, None)


# --- Short links ------------------------------------------------------------------------------


@router.get("/short-links", response=list[ShortLinkOut])
def list_short_links(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    return services.list_short_links(actor=actor(request))


@router.post("/short-links", response={201: ShortLinkOut})
def create_short_link(request: HttpRequest, payload: ShortLinkIn) -> object:
    return Status(201, services.create_short_link(actor=actor(request), **payload.model_dump()))


# --- Partners and settlements -----------------------------------------------------------------


@router.get("/partners", response=list[PartnerOut])
def list_partners(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    viewer = actor(request)
    return [services.present_partner(viewer, p) for p in services.list_partners(actor=viewer)]


@router.post("/partners", response={201: PartnerOut})
def create_partner(request: HttpRequest, payload: PartnerIn) -> object:
    viewer = actor(request)
    partner = services.create_partner(actor=viewer, brand=viewer.brand, **payload.model_dump())
    return Status(201, services.present_partner(viewer, partner))


@router.patch("/partners/{partner_id}", response=PartnerOut)
def update_partner(request: HttpRequest, partner_id: DbId, payload: PartnerPatch) -> object:
    viewer = actor(request)
    partner = services.update_partner(
        actor=viewer, partner_id=partner_id, **payload.model_dump(exclude_unset=True)
    )
    return services.present_partner(viewer, partner)


@router.get("/partners/{partner_id}/settlements", response=list[SettlementOut])
def list_settlements(request: HttpRequest, partner_id: DbId) -> object:
    viewer = actor(request)
    services.get_partner(actor=viewer, partner_id=partner_id)
    return services.list_settlements(actor=viewer, partner_id=partner_id)


@router.post("/partners/{partner_id}/settlements", response={200: SettlementOut})
def compute_settlement(request: HttpRequest, partner_id: DbId, payload: SettlementIn) -> object:
    return services.compute_settlement(
        actor=actor(request), partner_id=partner_id, **payload.model_dump()
    )


@router.post("/settlements/{settlement_id}/lock", response=SettlementOut)
def lock_settlement(request: HttpRequest, settlement_id: DbId) -> object:
    return services.lock_settlement(actor=actor(request), settlement_id=settlement_id)


@router.get("/settlements/{settlement_id}.xlsx")
def settlement_xlsx(request: HttpRequest, settlement_id: DbId) -> HttpResponse:
    data = services.settlement_xlsx(actor=actor(request), settlement_id=settlement_id)
    response = HttpResponse(
        data, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response["Content-Disposition"] = f'attachment; filename="settlement-{settlement_id}.xlsx"'
    return response


# --- Report -----------------------------------------------------------------------------------


@router.get("/reports/channels")
def channel_report(request: HttpRequest, filters: StrictQuery[ReportFilters]) -> object:
    report = reports.channel_report(
        actor=actor(request), date_from=filters.date_from, date_to=filters.date_to,
        granularity=filters.granularity,
    )  # fmt: skip
    return report.as_dict()
