"""REST handlers for messages, broadcasts, the policy preview and the touch policy."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema, Status

from yutang.core.apiauth import actor
from yutang.core.apiparams import StrictQuery
from yutang.messaging import services
from yutang.messaging.policy import PolicySettings
from yutang.messaging.schemas import (
    BroadcastIn,
    BroadcastOut,
    ConfirmOut,
    MessageOut,
    MessagePage,
    PreviewIn,
    PreviewOut,
    SendIn,
)

router = Router(tags=["messaging"])


class MessageFilters(Schema):
    status: str | None = None
    rule: str | None = None
    carrier: str | None = None
    staff_id: int | None = None
    customer_id: int | None = None
    account_id: int | None = None
    broadcast_id: int | None = None
    cursor: str | None = None
    limit: int = 50


@router.post("/messages", response={201: MessageOut})
def send(request: HttpRequest, payload: SendIn) -> object:
    """Queue one message; the gate decides at send time."""
    return Status(201, services.send_message(actor=actor(request), **payload.model_dump()))


@router.get("/messages", response=MessagePage)
def list_messages(request: HttpRequest, filters: StrictQuery[MessageFilters]) -> object:
    data = filters.model_dump()
    cursor, limit = data.pop("cursor"), data.pop("limit")
    items, next_cursor = services.list_messages(
        actor=actor(request), filters=data, cursor=cursor, limit=limit
    )
    return {"items": items, "next_cursor": next_cursor}


@router.post("/messages/{message_id}/cancel", response=MessageOut)
def cancel(request: HttpRequest, message_id: int) -> object:
    return services.cancel_message(actor=actor(request), message_id=message_id)


@router.post("/broadcasts/preview", response=PreviewOut)
def preview(request: HttpRequest, payload: PreviewIn) -> object:
    """How many of these customers the gate would block or defer now, and by which rule."""
    return services.preview_for_actor(actor=actor(request), **payload.model_dump())


@router.post("/broadcasts", response={201: BroadcastOut})
def broadcast(request: HttpRequest, payload: BroadcastIn) -> object:
    return Status(201, services.create_broadcast(actor=actor(request), **payload.model_dump()))


@router.post("/broadcasts/{broadcast_id}/confirm", response=ConfirmOut)
def confirm(request: HttpRequest, broadcast_id: int) -> object:
    """Staff confirmed the mass message on the carrier: the waiting messages count as sent."""
    return {"sent": services.confirm_broadcast(actor=actor(request), broadcast_id=broadcast_id)}


@router.get("/messaging/policy", response=PolicySettings)
def get_policy(request: HttpRequest) -> object:
    return services.get_policy(brand=actor(request).brand)


@router.patch("/messaging/policy", response=PolicySettings)
def update_policy(request: HttpRequest, payload: PolicySettings) -> object:
    """Change the settings given (others keep their values); unknown or invalid ones are a
    422 naming the field."""
    return services.update_policy(
        actor=actor(request), changes=payload.model_dump(exclude_unset=True)
    )
