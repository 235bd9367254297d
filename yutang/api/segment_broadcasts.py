"""Broadcasts (群发) to a segment: the API and console floor resolves the segment to the
customers the staff member may reach, through `segments.services`, and hands the list to
`messaging.services` — messaging sits below segments and never imports them.

The segment is resolved when the broadcast is previewed or created: a dynamic segment gives
its rule's answer at that moment, a static one its stored members. The broadcast keeps the
segment's id and name in its `target` next to the customer ids it was sent to.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Router, Status
from pydantic import Field

from yutang.core.apiauth import actor
from yutang.core.errors import N_, ValidationFailed
from yutang.core.models import Staff
from yutang.core.schemas import DbId, StrictInput
from yutang.messaging import services as messaging
from yutang.messaging.schemas import BroadcastOut, Kind, PreviewOut
from yutang.segments import services as segments
from yutang.segments.models import Segment

router = Router(tags=["messaging"])


def segment_customer_ids(*, actor: Staff, segment_id: int) -> tuple[Segment, list[int]]:
    """The segment and, in id order, its customers this staff member may see."""
    segment = segments.get_segment(actor=actor, segment_id=segment_id)
    limit = messaging.MAX_BROADCAST
    ids = list(
        segments.members_queryset(actor=actor, segment=segment)
        .order_by("id")
        .values_list("id", flat=True)[: limit + 1]
    )
    if not ids:
        raise ValidationFailed(
            N_("The segment {name!r} has no customers you may reach."),
            params={"name": segment.name},
            field="segment_id",
        )
    if len(ids) > limit:
        raise ValidationFailed(
            N_(
                "The segment {name!r} has more than {limit:,} customers; "
                "narrow it before broadcasting."
            ),
            params={"name": segment.name, "limit": limit},
            field="segment_id",
        )
    return segment, ids


def segment_target(segment: Segment) -> dict[str, Any]:
    return {"segment_id": segment.pk, "segment_name": segment.name}


def preview_segment_broadcast(
    *, actor: Staff, segment_id: int, account_id: int, kind: str, content: Any
) -> tuple[Segment, messaging.PolicyPreview]:
    segment, ids = segment_customer_ids(actor=actor, segment_id=segment_id)
    preview = messaging.preview_for_actor(
        actor=actor, account_id=account_id, kind=kind, content=content, customer_ids=ids
    )
    return segment, preview


def create_segment_broadcast(
    *,
    actor: Staff,
    segment_id: int,
    account_id: int,
    kind: str,
    content: Any,
    name: str = "",
    not_after: dt.datetime | None = None,
) -> Any:
    segment, ids = segment_customer_ids(actor=actor, segment_id=segment_id)
    return messaging.create_broadcast(
        actor=actor,
        account_id=account_id,
        kind=kind,
        content=content,
        customer_ids=ids,
        name=name or segment.name,
        not_after=not_after,
        target=segment_target(segment),
    )


class SegmentPreviewIn(StrictInput):
    segment_id: DbId
    account_id: DbId
    kind: Kind = "marketing"
    content: dict[str, Any]


class SegmentBroadcastIn(SegmentPreviewIn):
    name: Annotated[str, Field(max_length=120)] = ""
    not_after: dt.datetime | None = None


class SegmentPreviewOut(PreviewOut):
    segment_id: int
    segment_name: str


class SegmentBroadcastOut(BroadcastOut):
    segment_id: int
    segment_name: str


@router.post("/broadcasts/segment/preview", response=SegmentPreviewOut)
def preview(request: HttpRequest, payload: SegmentPreviewIn) -> object:
    """How many of the segment's customers the gate would block or defer now, and why."""
    segment, result = preview_segment_broadcast(actor=actor(request), **payload.model_dump())
    return {**vars(result), **segment_target(segment)}


@router.post("/broadcasts/segment", response={201: SegmentBroadcastOut})
def broadcast(request: HttpRequest, payload: SegmentBroadcastIn) -> object:
    """A broadcast to the segment's customers (resolved now); each message passes the gate
    at send time."""
    b = create_segment_broadcast(actor=actor(request), **payload.model_dump())
    return Status(
        201,
        {
            "id": b.pk,
            "account_id": b.account_id,
            "kind": b.kind,
            "total": b.total,
            "created_at": b.created_at,
            "segment_id": b.target["segment_id"],
            "segment_name": b.target["segment_name"],
        },
    )
