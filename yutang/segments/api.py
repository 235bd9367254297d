"""REST handlers for segments: CRUD, preview, members, export, refresh, static lists."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest, HttpResponse
from ninja import File, Router, Schema, Status
from ninja.files import UploadedFile

from yutang.core.apiauth import actor
from yutang.core.apiparams import StrictQuery
from yutang.customers import services as customers
from yutang.segments import services
from yutang.segments.schemas import (
    MemberPage,
    PreviewOut,
    RefreshOut,
    RuleIn,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    SnapshotIn,
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
) -> HttpResponse:
    """The members as CSV or XLSX; identifiers masked unless your role may see them."""
    body, filename = services.export_members(
        actor=actor(request), segment_id=segment_id, format=filters.format
    )
    content_type = (
        "text/csv; charset=utf-8"
        if filters.format == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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
