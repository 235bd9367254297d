"""REST handlers for segments: CRUD, preview, members, export, refresh, static lists."""

from __future__ import annotations

from typing import Literal

from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase
from ninja import File, Router, Schema, Status
from ninja.files import UploadedFile

from yutang.core.apiauth import actor
from yutang.core.apiparams import StrictQuery
from yutang.core.permissions import Action, require
from yutang.customers import services as customers
from yutang.segments import autotags, scoring, services
from yutang.segments.schemas import (
    ApplyOut,
    AutoTagIn,
    AutoTagOut,
    AutoTagPatch,
    MemberPage,
    PortraitOut,
    PreviewOut,
    RecomputeOut,
    RefreshOut,
    RfmRow,
    RuleIn,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    SettingsIn,
    SettingsOut,
    SnapshotIn,
    StageRow,
    UploadOut,
)

router = Router(tags=["segments"])


class NoFilters(Schema):
    pass


class MemberFilters(Schema):
    cursor: str | None = None
    limit: int = 50


class ExportFilters(Schema):
    format: Literal["csv", "xlsx"] = "csv"


@router.get("/segments", response=list[SegmentOut])
def list_segments(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    return services.list_segments(actor=actor(request))


@router.post("/segments", response={201: SegmentOut})
def create_segment(request: HttpRequest, payload: SegmentIn) -> object:
    return Status(201, services.create_segment(actor=actor(request), **payload.model_dump()))


@router.post("/segments/preview", response=PreviewOut)
def preview_rule(request: HttpRequest, payload: RuleIn) -> object:
    """Count and a sample of 20 customers matching a rule, with the query time."""
    return services.preview_rule(actor=actor(request), rule=payload.rule)


@router.get("/segments/{segment_id}", response=SegmentOut)
def get_segment(request: HttpRequest, segment_id: int) -> object:
    return services.get_segment(actor=actor(request), segment_id=segment_id)


@router.patch("/segments/{segment_id}", response=SegmentOut)
def update_segment(request: HttpRequest, segment_id: int, payload: SegmentPatch) -> object:
    return services.update_segment(
        actor=actor(request), segment_id=segment_id, **payload.model_dump(exclude_unset=True)
    )


@router.delete("/segments/{segment_id}", response={204: None})
def delete_segment(request: HttpRequest, segment_id: int) -> object:
    services.delete_segment(actor=actor(request), segment_id=segment_id)
    return Status(204, None)


@router.get("/segments/{segment_id}/preview", response=PreviewOut)
def preview_segment(request: HttpRequest, segment_id: int) -> object:
    return services.preview_segment(actor=actor(request), segment_id=segment_id)


@router.get("/segments/{segment_id}/members", response=MemberPage)
def list_members(
    request: HttpRequest, segment_id: int, filters: StrictQuery[MemberFilters]
) -> object:
    viewer = actor(request)
    rows, next_cursor = services.list_members(
        actor=viewer, segment_id=segment_id, cursor=filters.cursor, limit=filters.limit
    )
    return {
        "items": [customers.present_customer(viewer, c) for c in rows],
        "next_cursor": next_cursor,
    }


@router.get("/segments/{segment_id}/export")
def export_members(
    request: HttpRequest, segment_id: int, filters: StrictQuery[ExportFilters]
) -> HttpResponseBase:
    """The members as CSV or XLSX; identifiers masked unless your role may see them."""
    body, filename = services.export_members_file(
        actor=actor(request), segment_id=segment_id, format=filters.format
    )
    content_type = (
        "text/csv; charset=utf-8"
        if filters.format == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    # Streamed from the spooled file in blocks; the response closes it.
    return FileResponse(body, as_attachment=True, filename=filename, content_type=content_type)


@router.post("/segments/{segment_id}/refresh", response=RefreshOut)
def refresh_segment(request: HttpRequest, segment_id: int) -> object:
    """Materialise a dynamic segment now; changes are segment.entered/exited events."""
    return services.refresh_now(actor=actor(request), segment_id=segment_id)


@router.post("/segments/{segment_id}/snapshot", response={201: SegmentOut})
def snapshot_segment(request: HttpRequest, segment_id: int, payload: SnapshotIn) -> object:
    """A static copy of the segment's current members."""
    return Status(
        201,
        services.snapshot_segment(actor=actor(request), segment_id=segment_id, name=payload.name),
    )


@router.post("/segments/{segment_id}/members/upload", response=UploadOut)
def upload_members(request: HttpRequest, segment_id: int, file: File[UploadedFile]) -> object:
    """Replace a static segment's members with a CSV/XLSX of phones (手机号) or
    customer_id; all rows or none."""
    count = services.upload_static_members(
        actor=actor(request), segment_id=segment_id, upload=file,
        filename=file.name or "upload.csv",
    )  # fmt: skip
    return {"members": count}


# --- RFM, lifecycle, settings ----------------------------------------------------------------


@router.get("/rfm", response=list[RfmRow], tags=["rfm"])
def rfm_table(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    """Customers per RFM class (重要价值客户 … 一般挽留客户) within your reach."""
    return scoring.rfm_table(actor=actor(request))


@router.get("/lifecycle", response=list[StageRow], tags=["rfm"])
def lifecycle_distribution(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    """Customers per lifecycle stage ("" = not computed yet)."""
    return scoring.lifecycle_distribution(actor=actor(request))


@router.post("/rfm/recompute", response=RecomputeOut, tags=["rfm"])
def recompute(request: HttpRequest) -> object:
    """Recompute RFM scores and lifecycle stages now (the worker does it nightly)."""
    viewer = actor(request)
    rfm = scoring.recompute_rfm_for(actor=viewer)
    stages = scoring.recompute_lifecycle(brand=viewer.brand)
    return {
        "rfm_customers": rfm.customers, "rfm_ms": rfm.elapsed_ms,
        "lifecycle_customers": stages.customers, "lifecycle_changed": stages.changed,
    }  # fmt: skip


@router.get("/segment-settings", response=SettingsOut, tags=["rfm"])
def get_settings(request: HttpRequest) -> object:
    viewer = actor(request)
    require(viewer, Action.SEGMENT_VIEW)
    return scoring.settings_for(viewer.brand)


@router.patch("/segment-settings", response=SettingsOut, tags=["rfm"])
def patch_settings(request: HttpRequest, payload: SettingsIn) -> object:
    return scoring.update_settings(actor=actor(request), **payload.model_dump(exclude_unset=True))


# --- Auto-tag rules -----------------------------------------------------------------------------


@router.get("/auto-tags", response=list[AutoTagOut], tags=["auto-tags"])
def list_auto_tags(request: HttpRequest, filters: StrictQuery[NoFilters]) -> object:
    return autotags.list_rules(actor=actor(request))


@router.post("/auto-tags", response={201: AutoTagOut}, tags=["auto-tags"])
def create_auto_tag(request: HttpRequest, payload: AutoTagIn) -> object:
    return Status(201, autotags.create_rule(actor=actor(request), **payload.model_dump()))


@router.get("/auto-tags/{rule_id}", response=AutoTagOut, tags=["auto-tags"])
def get_auto_tag(request: HttpRequest, rule_id: int) -> object:
    return autotags.get_rule(actor=actor(request), rule_id=rule_id)


@router.patch("/auto-tags/{rule_id}", response=AutoTagOut, tags=["auto-tags"])
def update_auto_tag(request: HttpRequest, rule_id: int, payload: AutoTagPatch) -> object:
    return autotags.update_rule(
        actor=actor(request), rule_id=rule_id, **payload.model_dump(exclude_unset=True)
    )


@router.delete("/auto-tags/{rule_id}", response={204: None}, tags=["auto-tags"])
def delete_auto_tag(request: HttpRequest, rule_id: int) -> object:
    autotags.delete_rule(actor=actor(request), rule_id=rule_id)
    return Status(204, None)


@router.post("/auto-tags/{rule_id}/apply", response=ApplyOut, tags=["auto-tags"])
def apply_auto_tag(request: HttpRequest, rule_id: int) -> object:
    """Tag every matching customer and untag those who stopped matching, now."""
    return autotags.apply_now(actor=actor(request), rule_id=rule_id)


@router.get("/customers/{customer_id}/segmentation", response=PortraitOut, tags=["customers"])
def customer_segmentation(request: HttpRequest, customer_id: int) -> object:
    """The portrait's segmentation: RFM, lifecycle stage, segments the customer is in,
    auto-tags, predicted next purchase date."""
    return services.portrait_extras(actor=actor(request), customer_id=customer_id)
