"""Standard event types and the schema of their properties (documented in docs/events.md).

Known properties are type-checked; extra properties are kept as sent, so integrations may
carry their own context. Brand-defined types are `custom.<name>` with free properties."""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo

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
    fast = _FAST[event_type]
    if fast is not None:
        stored = fast(properties)
        if stored is not None:
            return stored
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


# --- A fast path for properties that are already exactly as stored --------------------------
#
# Pydantic builds a model and dumps it again for every event (a tenth of ingestion's time).
# Most events arrive canonical: every declared field of its plain type, within its limits,
# without surrounding spaces, and nothing None. For those the stored properties can be
# written down directly; anything else — including every invalid input — goes to pydantic, so
# errors and coercions stay exactly pydantic's. Each schema's checker is derived from its
# declared fields; a schema with a field of another shape has none (always pydantic).
# yutang/events/tests/test_property_fast_path.py holds the two paths to the same outcome.

_Check = Callable[[Any], bool]


def _field_check(info: FieldInfo) -> _Check | None:
    annotation, metadata = info.annotation, list(info.metadata)
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for item in extra:
            metadata += item.metadata if isinstance(item, FieldInfo) else [item]
    low: int = 0
    high: int | None = None
    ge: Any = None
    le: Any = None
    gt: Any = None
    for item in metadata:
        if isinstance(item, MinLen):
            low = item.min_length
        elif isinstance(item, MaxLen):
            high = item.max_length
        elif isinstance(item, Ge):
            ge = item.ge
        elif isinstance(item, Le):
            le = item.le
        elif isinstance(item, Gt):
            gt = item.gt
        else:
            return None
    if annotation is str:
        return lambda v: (
            type(v) is str
            and low <= len(v)
            and (high is None or len(v) <= high)
            and (not v or (not v[0].isspace() and not v[-1].isspace()))
        )
    if annotation is int:
        return lambda v: (
            type(v) is int
            and (ge is None or v >= ge)
            and (le is None or v <= le)
            and (gt is None or v > gt)
        )
    if get_origin(annotation) is Literal and not metadata:
        choices = frozenset(get_args(annotation))
        return lambda v: type(v) is str and v in choices
    return None


def _fast_path(schema: type[Props]) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    if schema.model_config.get("extra") != "allow":
        return None
    fields = []
    for name, info in schema.model_fields.items():
        check = _field_check(info)
        if check is None or info.alias is not None:
            return None
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        fields.append((name, check, required, default))
    declared = frozenset(schema.model_fields)

    def stored(properties: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for name, check, required, default in fields:
            if name in properties:
                value = properties[name]
                if not check(value):
                    return None
                out[name] = value
            elif required:
                return None
            elif default is not None:
                out[name] = default
        for name, value in properties.items():
            if name not in declared:
                if value is None or type(name) is not str:
                    return None
                out[name] = value
        return out

    return stored


_FAST = {name: _fast_path(schema) for name, schema in STANDARD_TYPES.items()}


#: Event types that count as a touch of the customer by the brand (one place for it: the
#: aggregates' touch counters and segments' "touches in the last N days" both read this).
TOUCH_TYPES = frozenset({"message.sent"})
