"""Standard event types and the schema of their properties (documented in docs/events.md).

Known properties are type-checked; extra properties are kept as sent, so integrations may
carry their own context. Brand-defined types are `custom.<name>` with free properties."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from yutang.core.errors import N_, ValidationFailed

Text = Annotated[str, Field(min_length=1, max_length=200)]
Fen = Annotated[int, Field(ge=0, le=10**12)]


class Props(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class CarrierProps(Props):
    carrier: Text
    account_id: Text | None = None


class ContactAdded(CarrierProps):
    channel: Text | None = None
    live_code: Text | None = None


class GroupProps(Props):
    group_id: Text
    carrier: Text = "wecom"


class MessageReceived(CarrierProps):
    text: Annotated[str, Field(max_length=4000)] = ""
    message_id: Text | None = None


class MessageStatus(CarrierProps):
    message_id: Text
    kind: Literal["service", "marketing"] | None = None


class LinkClicked(Props):
    link: Text
    channel: Text | None = None


class OrderPaid(Props):
    order_id: Text
    source: Text
    amount_fen: Fen
    store_code: Text | None = None


class OrderRefunded(Props):
    order_id: Text
    refund_id: Text
    amount_fen: Annotated[int, Field(gt=0, le=10**12)]


class CouponProps(Props):
    coupon_code: Text


class PointsChanged(Props):
    delta: int
    reason: Text | None = None


class Checkin(Props):
    store_code: Text | None = None


class ReferralConverted(Props):
    referrer_customer_id: int | None = None
    invite_code: Text | None = None


class ConsentChanged(Props):
    purpose: Literal["marketing", "service"]
    status: Literal["granted", "withdrawn"]
    carrier: Annotated[str, Field(max_length=32)] = ""
    proof: Annotated[str, Field(max_length=2000)] = ""


class ProfileUpdated(Props):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    display_name: Annotated[str, Field(max_length=120)] | None = None
    gender: Literal["unknown", "female", "male"] | None = None
    birthday: str | None = None
    province: Annotated[str, Field(max_length=32)] | None = None
    city: Annotated[str, Field(max_length=64)] | None = None
    attributes: dict[str, Any] | None = None


STANDARD_TYPES: dict[str, type[Props]] = {
    "contact.added": ContactAdded,
    "contact.deleted": CarrierProps,
    "contact.removed": CarrierProps,
    "group.joined": GroupProps,
    "group.left": GroupProps,
    "message.received": MessageReceived,
    "message.sent": MessageStatus,
    "message.delivered": MessageStatus,
    "message.read": MessageStatus,
    "link.clicked": LinkClicked,
    "order.paid": OrderPaid,
    "order.refunded": OrderRefunded,
    "coupon.granted": CouponProps,
    "coupon.redeemed": CouponProps,
    "points.changed": PointsChanged,
    "checkin": Checkin,
    "referral.converted": ReferralConverted,
    "consent.changed": ConsentChanged,
    "profile.updated": ProfileUpdated,
}

#: Types a later floor emits (stage changes, segment membership); accepted from the system.
SYSTEM_PREFIXES = ("segment.", "lifecycle.", "journey.")
CUSTOM_TYPE = re.compile(r"^custom\.[a-z0-9_]+(\.[a-z0-9_]+)*$")


def validate_properties(event_type: str, properties: dict[str, Any]) -> dict[str, Any]:
    """Return the properties as stored, or raise ValidationFailed naming the bad field."""
    if not isinstance(properties, dict):
        raise ValidationFailed(N_("properties must be an object."), field="properties")
    schema = STANDARD_TYPES.get(event_type)
    if schema is None:
        if CUSTOM_TYPE.match(event_type) or event_type.startswith(SYSTEM_PREFIXES):
            return properties
        raise ValidationFailed(
            N_("Unknown event type {event_type!r}; use a standard type or custom.<name>."),
            params={"event_type": event_type},
            field="type",
        )
    try:
        model = schema.model_validate(properties)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(
            N_("properties.{where}: {msg}"),
            params={"where": where, "msg": first["msg"]},
            field=f"properties.{where}",
        ) from None
    return model.model_dump(exclude_none=True)


#: Event types that count as a touch of the customer by the brand (one place for it: the
#: aggregates' touch counters and segments' "touches in the last N days" both read this).
TOUCH_TYPES = frozenset({"message.sent"})
