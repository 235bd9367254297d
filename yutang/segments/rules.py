"""The rule language: one validated tree shared by segments, auto-tags and journey conditions.

A rule is JSON. Groups are ``{"and": [...]}``, ``{"or": [...]}`` and ``{"not": {...}}``;
leaves are conditions ``{"kind": "...", ...}`` (see docs/segments.md for every kind).

Each condition class knows two things: how to compile itself to a Django ``Q`` (one
parameterised query for a whole set of customers) and how to evaluate itself for one customer
in memory (``Facts``). A property test proves the two agree. Later floors add condition kinds
with ``register_condition`` in their AppConfig.ready without touching this module.

Semantics, the same in SQL and in memory:

- every comparison is false when the value is missing (no attribute, no aggregate row, no
  event); ``NOT`` is plain two-valued negation, so ``NOT (attribute x = 1)`` includes the
  customers without ``x``;
- counts and sums over no events are 0 (so "count = 0" matches customers with no event);
- relative windows and "days ago" are calendar days in the brand's time zone: a window of
  N days is today plus the N-1 days before it.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from django.db.models import Count, F, Max, Min, Q, Subquery, Sum, Value
from django.db.models.expressions import Expression
from django.db.models.functions import Coalesce, NullIf
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
)
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from yutang.core.errors import N_, ValidationFailed
from yutang.customers.models import Consent, Customer, CustomerTag, Identity, IdentityKind
from yutang.events.aggregates import TIME_FIELDS as AGGREGATE_TIME_FIELDS
from yutang.events.models import CustomerAggregate, Event
from yutang.events.types import TOUCH_TYPES
from yutang.segments.sqlfuncs import (
    IdSet,
    JsonBool,
    JsonBoolIs,
    JsonHas,
    JsonNumber,
    JsonNumberIs,
    JsonStringIs,
    JsonText,
    MemberOf,
    StrPos,
)

MAX_DEPTH = 12
MAX_NODES = 300
MAX_DAYS = 3650
StageName = Literal["new_contact", "engaged", "first_order", "repeat", "loyal", "at_risk", "lost"]
RfmClass = Literal[
    "important_value", "important_develop", "important_keep", "important_retain",
    "general_value", "general_develop", "general_keep", "general_retain",
]  # fmt: skip
LIFECYCLE_STAGES: tuple[str, ...] = get_args(StageName)
RFM_CLASSES: tuple[str, ...] = get_args(RfmClass)


# --- Value types with messages that read well after a JSON path ---------------------------


def _between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return check


def _key(value: str) -> str:
    if not re.fullmatch(r"[\w\-]{1,64}", value):
        raise ValueError("must be 1–64 letters, digits, _ or - (no spaces or quotes)")
    return value


def _iso_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date YYYY-MM-DD")
    return value


Days = Annotated[int, AfterValidator(_between(1, MAX_DAYS))]
DaysAgo = Annotated[int, AfterValidator(_between(0, 36500))]
Key = Annotated[str, AfterValidator(_key)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
IdList = Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]], Field(max_length=500)]
Number = (
    Annotated[int, Field(ge=-(10**15), le=10**15)]
    | Annotated[float, Field(ge=-(10**15), le=10**15, allow_inf_nan=False)]
)
IsoDate = Annotated[str, AfterValidator(_iso_date)]

NumOp = Literal["eq", "ne", "gt", "gte", "lt", "lte", "between"]
TextOp = Literal["eq", "ne", "in", "not_in", "contains", "exists"]
NUM_OPS: tuple[str, ...] = NumOp.__args__  # type: ignore[attr-defined]


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    days: Days


# --- Evaluation context and per-customer facts -------------------------------------------


@dataclass(frozen=True)
class Context:
    """When and where a rule is evaluated: the brand and "now" (from the injectable clock)."""

    brand_id: int
    tz: zoneinfo.ZoneInfo
    now: dt.datetime

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(self.tz).date()

    def day_start(self, day: dt.date) -> dt.datetime:
        """Midnight of `day` in the brand's time zone, as an aware UTC time."""
        local = dt.datetime.combine(day, dt.time.min).replace(tzinfo=self.tz)
        return local.astimezone(dt.UTC)

    def window_start(self, window: Window) -> dt.datetime:
        return self.day_start(self.today - dt.timedelta(days=window.days - 1))

    def days_ago(self, moment: dt.datetime) -> int:
        return (self.today - moment.astimezone(self.tz).date()).days


@dataclass
class Facts:
    """What the in-memory evaluator knows about one customer."""

    customer: Customer
    tag_ids: set[int] = field(default_factory=set)
    identities: set[tuple[str, str]] = field(default_factory=set)
    consents: dict[tuple[str, str], str] = field(default_factory=dict)
    aggregate: CustomerAggregate | None = None
    rfm: Any = None
    events: list[Event] = field(default_factory=list)  # sorted by (occurred_at, id)
    #: (account kind, account id, status) of each carrier contact, loaded when a rule asks.
    contacts: list[tuple[str, int, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # for registered condition kinds


# --- Comparisons, shared by every condition ----------------------------------------------


def _value_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def compare_q(expr: Any, op: str, value: Any) -> Q:
    """`expr op value`, false (never NULL) when expr is NULL, so NOT stays two-valued."""
    guard = Q(IsNull(expr, False))
    if op == "exists":
        return guard
    if op == "eq":
        return guard & Q(Exact(expr, value))
    if op == "ne":
        return guard & ~Q(Exact(expr, value))
    if op == "gt":
        return guard & Q(GreaterThan(expr, value))
    if op == "gte":
        return guard & Q(GreaterThanOrEqual(expr, value))
    if op == "lt":
        return guard & Q(LessThan(expr, value))
    if op == "lte":
        return guard & Q(LessThanOrEqual(expr, value))
    if op == "between":
        low, high = value
        return guard & Q(GreaterThanOrEqual(expr, low)) & Q(LessThanOrEqual(expr, high))
    if op == "in":
        return guard & Q(In(expr, _value_list(value)))
    if op == "not_in":
        return guard & ~Q(In(expr, _value_list(value)))
    if op == "contains":
        return guard & Q(GreaterThan(StrPos(expr, Value(value)), 0))
    raise ValueError(op)


def compare_py(actual: Any, op: str, value: Any) -> bool:
    if actual is None:
        return False
    if op == "exists":
        return True
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    if op == "lte":
        return bool(actual <= value)
    if op == "between":
        return bool(value[0] <= actual <= value[1])
    if op == "in":
        return actual in _value_list(value)
    if op == "not_in":
        return actual not in _value_list(value)
    if op == "contains":
        return isinstance(actual, str) and value in actual
    raise ValueError(op)


def _days_ago_bounds(op: str, value: Any) -> tuple[int | None, int | None]:
    """The inclusive (min, max) of days-ago an op accepts; None for an open end."""
    if op == "between":
        return value[0], value[1]
    return {
        "eq": (value, value),
        "gt": (value + 1, None),
        "gte": (value, None),
        "lt": (None, value - 1),
        "lte": (None, value),
    }[op]


def days_ago_q(expr: Any, op: str, value: Any, ctx: Context) -> Q:
    """`days_ago(expr) op value` as comparisons of the timestamp with local-midnight bounds,
    so an index on the timestamp serves it and no time-zone function runs in SQL."""
    guard = Q(IsNull(expr, False))
    if op == "ne":
        return guard & ~days_ago_q(expr, "eq", value, ctx)
    low, high = _days_ago_bounds(op, value)
    q = guard
    if low is not None:  # days_ago >= low  <=>  local date <= today - low
        q &= Q(LessThan(expr, ctx.day_start(ctx.today - dt.timedelta(days=low - 1))))
    if high is not None:  # days_ago <= high  <=>  local date >= today - high
        q &= Q(GreaterThanOrEqual(expr, ctx.day_start(ctx.today - dt.timedelta(days=high))))
    return q


def days_ago_py(moment: dt.datetime | None, op: str, value: Any, ctx: Context) -> bool:
    if moment is None:
        return False
    return compare_py(ctx.days_ago(moment), op, value)


def check_comparison(op: str, value: Any) -> None:
    """A numeric op takes one number, or [low, high] for between."""
    if op == "between":
        if not (isinstance(value, list) and len(value) == 2):
            raise ValueError("value must be [low, high] for between")
        if value[0] > value[1]:
            raise ValueError("value: low must not be above high")
    elif isinstance(value, list):
        raise ValueError(f"value must be one number for {op}")


NumValue = Number | list[Number]


# --- Conditions -------------------------------------------------------------------------


class Condition(BaseModel):
    """Base of every leaf. Subclasses set `kind` (a Literal) and implement compile/evaluate."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: str

    #: Event types the evaluator must load for this condition (None: none needed).
    def event_types(self) -> set[str] | None:
        return None

    def trigger_types(self) -> set[str] | None:
        """The event types whose arrival can change this condition's answer for a customer
        (None: it may change with any event, or without one — evaluate on every event). The
        auto-tag consumer skips rules that no condition ties to the event's type."""
        return self.event_types()

    def aggregate_row(self, ctx: Context) -> AggregateRow | None:
        """The condition as a test of the customer's CustomerAggregate row, when it is one
        (None otherwise): compile_rule merges such tests of one group into one subquery."""
        return None

    def compile(self, ctx: Context) -> Q:
        raise NotImplementedError

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class AggregateRow:
    """A condition that is a test of the customer's one CustomerAggregate row: `row` (a filter
    on the row that is never NULL, so it negates cleanly) for customers with a row,
    `without_row` for customers without one. Tests of one AND / OR / NOT group combine into
    one (the row and the constant combined alike), so the group reads the aggregates once."""

    row: Q
    without_row: bool

    def member_q(self, ctx: Context) -> Q:
        rows = CustomerAggregate.objects.filter(brand_id=ctx.brand_id)
        # One row per customer (customer_id is its primary key): no fence (MemberOf).
        if self.without_row:
            return ~Q(MemberOf(rows.filter(~self.row).values("customer_id"), fence=False))
        return Q(MemberOf(rows.filter(self.row).values("customer_id"), fence=False))

    def negated(self) -> AggregateRow:
        return AggregateRow(~self.row, not self.without_row)

    @staticmethod
    def all(parts: list[AggregateRow]) -> AggregateRow:
        row = Q()
        for part in parts:
            row &= part.row
        return AggregateRow(row, all(p.without_row for p in parts))

    @staticmethod
    def any(parts: list[AggregateRow]) -> AggregateRow:
        row = parts[0].row
        for part in parts[1:]:
            row |= part.row
        return AggregateRow(row, any(p.without_row for p in parts))


ProfileField = Literal["gender", "province", "city", "display_name", "birthday"]


class ProfileCondition(Condition):
    """A profile column. Text fields: eq/ne/in/not_in/contains/exists; birthday: a date."""

    kind: Literal["profile"]
    field: ProfileField
    op: Literal["eq", "ne", "in", "not_in", "contains", "exists", "gt", "gte", "lt", "lte"]
    value: Text | list[Text] | None = None

    @model_validator(mode="after")
    def _check(self) -> ProfileCondition:
        _check_text_value(self.op, self.value, date=self.field == "birthday")
        return self

    def compile(self, ctx: Context) -> Q:
        if self.field == "birthday":
            return compare_q(F("birthday"), self.op, _as_date(self.op, self.value))
        # The text columns are never NULL, and "" is missing. A rule's value is never "" (1–200
        # characters), so eq / in are plain comparisons of the column, which an index on it
        # (customers' customer_seg_city_gender) answers; the others keep the "" guard.
        if self.op == "eq":
            return Q(Exact(F(self.field), self.value))
        if self.op == "in":
            return Q(In(F(self.field), _value_list(self.value)))
        return compare_q(NullIf(F(self.field), Value("")), self.op, self.value)

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        actual = getattr(facts.customer, self.field)
        if self.field == "birthday":
            return compare_py(actual, self.op, _as_date(self.op, self.value))
        return compare_py(actual or None, self.op, self.value)


def _as_date(op: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [dt.date.fromisoformat(v) for v in value]
    return dt.date.fromisoformat(value)


def _check_text_value(op: str, value: Any, *, date: bool = False) -> None:
    if op == "exists":
        if value is not None:
            raise ValueError("value must be left out for exists")
        return
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"value must be a non-empty list for {op}")
        if len(value) > 500:
            raise ValueError("value: at most 500 entries")
    elif not isinstance(value, str):
        raise ValueError(f"value must be text for {op}")
    if date:
        if op == "contains":
            raise ValueError("contains does not apply to dates")
        for item in _value_list(value):
            _iso_date(item)
    elif op in ("gt", "gte", "lt", "lte"):
        raise ValueError(f"{op} applies to numbers and dates, not text")


class AttributeCondition(Condition):
    """A custom attribute (customer.attributes), read as the given type; a value of another
    type counts as missing."""

    kind: Literal["attribute"]
    key: Key
    type: Literal["string", "number", "boolean", "date"] = "string"
    op: Literal[
        "eq", "ne", "in", "not_in", "contains", "exists", "gt", "gte", "lt", "lte", "between"
    ]
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> AttributeCondition:
        _check_typed_value(self.type, self.op, self.value)
        return self

    def compile(self, ctx: Context) -> Q:
        return typed_json_q(F("attributes"), self.key, self.type, self.op, self.value)

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        return typed_json_py(facts.customer.attributes, self.key, self.type, self.op, self.value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_typed_value(kind: str, op: str, value: Any) -> None:
    if op == "exists":
        if value is not None:
            raise ValueError("value must be left out for exists")
        return
    if kind == "string" or kind == "date":
        if op == "between":
            if kind == "string":
                raise ValueError("between applies to numbers and dates")
            if not (isinstance(value, list) and len(value) == 2):
                raise ValueError("value must be [low, high] for between")
            for item in value:
                _iso_date(item)
            return
        _check_text_value(op, value, date=kind == "date")
        if isinstance(value, list | str):
            for item in _value_list(value):
                if not isinstance(item, str) or not 1 <= len(item) <= 200:
                    raise ValueError("value: each entry must be 1–200 characters of text")
        return
    if kind == "boolean":
        if op not in ("eq", "ne") or not isinstance(value, bool):
            raise ValueError("a yes/no attribute takes eq or ne with true or false")
        return
    # number
    if op in ("contains",):
        raise ValueError("contains applies to text")
    if op == "between":
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))):
            raise ValueError("value must be [low, high] for between")
        if value[0] > value[1]:
            raise ValueError("value: low must not be above high")
        return
    if op in ("in", "not_in"):
        if not (isinstance(value, list) and value and all(map(_is_number, value))):
            raise ValueError(f"value must be a non-empty list of numbers for {op}")
        return
    if not _is_number(value):
        raise ValueError(f"value must be a number for {op}")
    if abs(value) > 10**15:
        raise ValueError("value must be between -10^15 and 10^15")


def typed_json_q(column: Any, key: str, kind: str, op: str, value: Any) -> Q:
    if kind == "string" and op == "eq":
        return Q(JsonStringIs(column, key, value))
    if kind == "boolean" and op in ("eq", "ne"):
        # eq true / ne false: holds true; eq false / ne true: holds false.
        return Q(JsonBoolIs(column, key, value if op == "eq" else not value))
    if kind == "number" and op in ("eq", "ne", "gt", "gte", "lt", "lte", "between"):
        return Q(JsonNumberIs(column, key, op, value))
    expr: Expression
    if kind == "number":
        expr = JsonNumber(column, key)
    elif kind == "boolean":
        expr = JsonBool(column, key)
    else:
        expr = JsonText(column, key)
    # "exists" means a value of the type (text, number, true/false).
    return compare_q(expr, op, value)


def typed_json_py(data: Any, key: str, kind: str, op: str, value: Any) -> bool:
    raw = data.get(key) if isinstance(data, dict) else None
    if kind == "number":
        actual = raw if _is_number(raw) else None
    elif kind == "boolean":
        if not isinstance(raw, bool):
            return False
        return raw == value if op == "eq" else raw != value
    else:
        actual = raw if isinstance(raw, str) else None
    return compare_py(actual, op, value)


class PropertyFilter(BaseModel):
    """A filter on an event's properties: {"property": "category", "op": "eq", "value": "护肤"}.
    The type follows the value (text, number or true/false) unless given."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    property: Key
    type: Literal["string", "number", "boolean"] | None = None
    op: Literal[
        "eq", "ne", "in", "not_in", "contains", "exists", "gt", "gte", "lt", "lte", "between"
    ]
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> PropertyFilter:
        _check_typed_value(self.value_type(), self.op, self.value)
        return self

    def value_type(self) -> str:
        if self.type:
            return self.type
        sample = self.value[0] if isinstance(self.value, list) and self.value else self.value
        if isinstance(sample, bool):
            return "boolean"
        if _is_number(sample):
            return "number"
        return "string"

    def compile(self) -> Q:
        if self.op == "exists":
            return Q(Exact(JsonHas(F("properties"), self.property), 1))
        return typed_json_q(F("properties"), self.property, self.value_type(), self.op, self.value)

    def evaluate(self, properties: dict[str, Any]) -> bool:
        if self.op == "exists":
            return isinstance(properties, dict) and self.property in properties
        return typed_json_py(properties, self.property, self.value_type(), self.op, self.value)


class TagCondition(Condition):
    kind: Literal["tag"]
    tag_ids: Annotated[IdList, Field(min_length=1)]
    match: Literal["any", "all"] = "any"

    def compile(self, ctx: Context) -> Q:
        if self.match == "any":
            return Q(
                MemberOf(CustomerTag.objects.filter(tag_id__in=self.tag_ids).values("customer"))
            )
        each = [
            Subquery(CustomerTag.objects.filter(tag_id=tag_id).values("customer"))
            for tag_id in sorted(set(self.tag_ids))
        ]
        return Q(MemberOf(IdSet("INTERSECT", each) if len(each) > 1 else each[0]))

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        wanted = set(self.tag_ids)
        if self.match == "any":
            return bool(wanted & facts.tag_ids)
        return wanted <= facts.tag_ids


class IdentityCondition(Condition):
    """Has had an identity of this kind (a WeCom external_userid, an openid of one official
    account…). Identities are never removed, so this stays true after the customer deleted
    the staff member: for the carriers held now, use `carrier`."""

    kind: Literal["identity"]
    identity_kind: Literal[tuple(IdentityKind.values)]  # type: ignore[valid-type]
    namespace: Annotated[str, Field(max_length=64)] | None = None

    def compile(self, ctx: Context) -> Q:
        rows = Identity.objects.filter(brand_id=ctx.brand_id, kind=self.identity_kind)
        if self.namespace is not None:
            rows = rows.filter(namespace=self.namespace)
        return Q(MemberOf(rows.values("customer")))

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        return any(
            kind == self.identity_kind and (self.namespace is None or ns == self.namespace)
            for kind, ns in facts.identities
        )


GROUP_TYPES = ("group.joined", "group.left")


class GroupCondition(Condition):
    """Currently in the group: the latest group.joined / group.left event for it is a join."""

    kind: Literal["group"]
    group_id: Text

    def event_types(self) -> set[str]:
        return set(GROUP_TYPES)

    def compile(self, ctx: Context) -> Q:
        from django.db.models import Exists, OuterRef

        same_group = Q(Exact(JsonText(F("properties"), "group_id"), self.group_id))
        later = (
            Event.objects.filter(
                customer_id=OuterRef("customer_id"), type__in=GROUP_TYPES, brand_id=ctx.brand_id
            )
            .filter(same_group)
            .filter(
                Q(occurred_at__gt=OuterRef("occurred_at"))
                | Q(occurred_at=OuterRef("occurred_at"), pk__gt=OuterRef("pk"))
            )
        )
        joins = (
            Event.objects.filter(brand_id=ctx.brand_id, type="group.joined")
            .filter(same_group)
            .filter(~Exists(later))
        )
        return Q(MemberOf(joins.values("customer_id")))

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        mine = [
            e
            for e in facts.events
            if e.type in GROUP_TYPES and e.properties.get("group_id") == self.group_id
        ]
        return bool(mine) and mine[-1].type == "group.joined"


CarrierKind = Literal["wecom", "official_account", "sms", "email", "webhook", "sandbox"]


class CarrierCondition(Condition):
    """The carrier contacts the customer holds now (carriers' CarrierContact rows, not the
    identity history): on accounts of one carrier kind (omitted: any) and, optionally, one of
    these accounts. `held`: at least one active contact; `lost`: had at least one and every
    one is lost (the customer deleted the staff member, or was deleted); `none`: never had
    one. A customer is in exactly one of the three."""

    kind: Literal["carrier"]
    carrier: CarrierKind | None = None
    account_ids: IdList = []
    status: Literal["held", "lost", "none"] = "held"

    def trigger_types(self) -> set[str] | None:
        return {"contact.added", "contact.deleted"}

    def _contacts(self, ctx: Context) -> Any:
        from yutang.carriers.models import CarrierContact

        rows = CarrierContact.objects.filter(brand_id=ctx.brand_id)
        if self.carrier is not None:
            rows = rows.filter(account__kind=self.carrier)
        if self.account_ids:
            rows = rows.filter(account_id__in=self.account_ids)
        return rows

    def compile(self, ctx: Context) -> Q:
        from yutang.carriers.models import CarrierContact

        rows = self._contacts(ctx)
        active = rows.filter(status=CarrierContact.Status.ACTIVE).values("customer_id")
        if self.status == "held":
            return Q(MemberOf(active))
        if self.status == "none":
            return ~Q(MemberOf(rows.values("customer_id")))
        return Q(MemberOf(rows.values("customer_id"))) & ~Q(MemberOf(active))

    def _mine(self, facts: Facts) -> list[str]:
        return [
            status
            for kind, account_id, status in facts.contacts
            if (self.carrier is None or kind == self.carrier)
            and (not self.account_ids or account_id in self.account_ids)
        ]

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        mine = self._mine(facts)
        held = "active" in mine
        if self.status == "held":
            return held
        if self.status == "none":
            return not mine
        return bool(mine) and not held


class ConsentCondition(Condition):
    """The customer's recorded word on a purpose over a carrier ("" = every carrier):
    granted, withdrawn, or unset (no statement)."""

    kind: Literal["consent"]

    def trigger_types(self) -> set[str] | None:
        return {"consent.changed"}

    purpose: Literal["marketing", "service"]
    carrier: Annotated[str, Field(max_length=32)] = ""
    status: Literal["granted", "withdrawn", "unset"]

    def compile(self, ctx: Context) -> Q:
        rows = Consent.objects.filter(purpose=self.purpose, carrier=self.carrier)
        if self.status == "unset":
            return ~Q(MemberOf(rows.values("customer")))
        return Q(MemberOf(rows.filter(status=self.status).values("customer")))

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        status = facts.consents.get((self.purpose, self.carrier))
        if self.status == "unset":
            return status is None
        return status == self.status


class OwnerCondition(Condition):
    """Owned by one of these stores or staff; `none` for customers without an owner."""

    kind: Literal["owner"]
    owner: Literal["store", "staff"]
    op: Literal["in", "none"] = "in"
    ids: IdList = []

    @model_validator(mode="after")
    def _check(self) -> OwnerCondition:
        if self.op == "in" and not self.ids:
            raise ValueError("ids must list at least one store or staff id")
        if self.op == "none" and self.ids:
            raise ValueError("ids must be left out for none")
        return self

    def compile(self, ctx: Context) -> Q:
        column = f"owner_{self.owner}_id"
        if self.op == "none":
            return Q(**{f"{column}__isnull": True})
        return Q(**{f"{column}__isnull": False, f"{column}__in": self.ids})

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        actual = getattr(facts.customer, f"owner_{self.owner}_id")
        if self.op == "none":
            return actual is None
        return actual is not None and actual in self.ids


class ChannelCondition(Condition):
    """First-touch channel (the customer's source_channel code). The acquisition app may
    register a richer `acquisition_channel` kind (channel groups, costs) beside this one."""

    kind: Literal["channel"]
    channels: Annotated[list[Text], Field(min_length=1, max_length=500)]

    def compile(self, ctx: Context) -> Q:
        return Q(source_channel__in=self.channels)

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        return facts.customer.source_channel in self.channels


class LifecycleCondition(Condition):
    kind: Literal["lifecycle"]
    stages: Annotated[list[StageName], Field(min_length=1)]

    def compile(self, ctx: Context) -> Q:
        return Q(lifecycle_stage__in=self.stages)

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        return facts.customer.lifecycle_stage in self.stages


class RfmCondition(Condition):
    """RFM class (one of the eight), or one score (1–5) compared; no RFM row = no match."""

    kind: Literal["rfm"]
    classes: Annotated[list[RfmClass], Field(min_length=1)] | None = None
    score: Literal["recency", "frequency", "monetary"] | None = None
    op: NumOp | None = None
    value: Annotated[int, AfterValidator(_between(1, 5))] | None = None

    @model_validator(mode="after")
    def _check(self) -> RfmCondition:
        if (self.classes is None) == (self.score is None):
            raise ValueError("give either classes or score (with op and value)")
        if self.score is not None and (self.op is None or self.value is None):
            raise ValueError("a score needs op and value")
        if self.op == "between":
            raise ValueError("use gte and lte for a score range")
        return self

    def compile(self, ctx: Context) -> Q:
        from yutang.segments.models import CustomerRfm

        rows = CustomerRfm.objects.filter(brand_id=ctx.brand_id)
        if self.classes is not None:
            rows = rows.filter(rfm_class__in=self.classes)
        else:
            assert self.score is not None and self.op is not None
            rows = rows.filter(compare_q(F(self.score), self.op, self.value))
        return Q(MemberOf(rows.values("customer_id")))

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        if facts.rfm is None:
            return False
        if self.classes is not None:
            return facts.rfm.rfm_class in self.classes
        assert self.score is not None and self.op is not None
        return compare_py(getattr(facts.rfm, self.score), self.op, self.value)


COUNTER_FIELDS = (
    "order_count",
    "paid_fen",
    "refunded_fen",
    "net_fen",
    "touch_count",
    "event_count",
)
MOMENT_FIELDS = {
    "days_since_first_order": "first_order_at",
    "days_since_last_order": "last_order_at",
    "days_since_last_touch": "last_touch_at",
    "days_since_last_inbound": "last_inbound_at",
    "days_since_last_click": "last_click_at",
    "days_since_contact_added": "last_contact_added_at",
    "days_since_contact_deleted": "last_contact_deleted_at",
    "days_since_last_event": "last_event_at",
}
AggregateField = Literal[
    "order_count", "paid_fen", "refunded_fen", "net_fen", "touch_count", "event_count",
    "days_since_first_order", "days_since_last_order", "days_since_last_touch",
    "days_since_last_inbound", "days_since_last_click", "days_since_contact_added",
    "days_since_contact_deleted", "days_since_last_event",
]  # fmt: skip


class AggregateCondition(Condition):
    """A per-customer figure kept by the event log. Counters of a customer without any event
    are 0; a "days since" of something that never happened is missing."""

    kind: Literal["aggregate"]
    field: AggregateField
    op: NumOp
    value: NumValue

    @model_validator(mode="after")
    def _days_are_whole(self) -> AggregateCondition:
        check_comparison(self.op, self.value)
        if self.field in MOMENT_FIELDS:
            for v in _value_list(self.value):
                if v != int(v) or not 0 <= v <= 36500:
                    raise ValueError("value: days must be whole numbers from 0 to 36500")
        return self

    def _value(self) -> Any:
        if self.field in MOMENT_FIELDS:
            return [int(v) for v in self.value] if isinstance(self.value, list) else int(self.value)
        return self.value

    def trigger_types(self) -> set[str] | None:
        # The event types events.aggregates.fold reads for this figure.
        column = MOMENT_FIELDS.get(self.field, self.field)
        if column in ("event_count", "last_event_at"):
            return None
        if column in ("order_count", "paid_fen", "first_order_at", "last_order_at"):
            return {"order.paid"}
        if column == "refunded_fen":
            return {"order.refunded"}
        if column == "net_fen":
            return {"order.paid", "order.refunded"}
        if column in ("touch_count", "last_touch_at"):
            return set(TOUCH_TYPES)
        return {kind for kind, name in AGGREGATE_TIME_FIELDS.items() if name == column}

    def aggregate_row(self, ctx: Context) -> AggregateRow:
        if self.field in MOMENT_FIELDS:
            expr = F(MOMENT_FIELDS[self.field])
            return AggregateRow(days_ago_q(expr, self.op, self._value(), ctx), False)
        counter: Any = (
            F("paid_fen") - F("refunded_fen") if self.field == "net_fen" else F(self.field)
        )
        # Customers without an aggregate row have zero of everything.
        return AggregateRow(
            compare_q(counter, self.op, self._value()), compare_py(0, self.op, self._value())
        )

    def _since(self, ctx: Context) -> tuple[list[str], dt.datetime] | None:
        """For "the last X at most N days ago" (lt / lte, where the aggregate's column is the
        latest time of the event types LATEST_OF names): those types and the local midnight
        N days ago. The latest time is at or after it exactly when some event of those types
        is, so the log's (brand, type, occurred_at, customer) index answers with one range of
        the window's events instead of a read of every aggregate row. Only for windows up to
        LOG_WINDOW_MAX_DAYS: a longer one may hold more events than the brand has customers.
        None otherwise."""
        column = MOMENT_FIELDS.get(self.field)
        if column not in LATEST_OF or self.op in ("ne", "between"):
            return None
        low, high = _days_ago_bounds(self.op, self._value())
        if low is not None or high is None or high > LOG_WINDOW_MAX_DAYS:
            return None
        return sorted(LATEST_OF[column]), ctx.day_start(ctx.today - dt.timedelta(days=high))

    def compile(self, ctx: Context) -> Q:
        # Alone (compile_rule merges it with the group's other aggregate tests otherwise), a
        # recent "days since the last X" reads the window's events from the log.
        recent = self._since(ctx)
        if recent is not None:
            types, since = recent
            rows = Event.objects.filter(
                brand_id=ctx.brand_id, type__in=types, occurred_at__gte=since
            )
            return Q(MemberOf(rows.values("customer_id")))
        return self.aggregate_row(ctx).member_q(ctx)

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        agg = facts.aggregate
        if self.field in MOMENT_FIELDS:
            moment = getattr(agg, MOMENT_FIELDS[self.field]) if agg else None
            return days_ago_py(moment, self.op, self._value(), ctx)
        if agg is None:
            actual = 0
        elif self.field == "net_fen":
            actual = agg.paid_fen - agg.refunded_fen
        else:
            actual = getattr(agg, self.field)
        return compare_py(actual, self.op, self._value())


#: CustomerAggregate columns holding, per customer, the latest occurred_at of the customer's
#: events of one type (events.aggregates.fold; test_rules checks this map against it).
LAST_AT: dict[str, str] = {
    "order.paid": "last_order_at",
    **AGGREGATE_TIME_FIELDS,
}
if len(TOUCH_TYPES) == 1:  # last_touch_at is the latest of the touch types
    LAST_AT[next(iter(TOUCH_TYPES))] = "last_touch_at"
#: ... and the earliest.
FIRST_AT: dict[str, str] = {"order.paid": "first_order_at"}
#: The longest "days since the last X at most N" read from the log's window (see
#: AggregateCondition._since); longer ones read the aggregate.
LOG_WINDOW_MAX_DAYS = 30
#: CustomerAggregate column -> the event types whose latest occurred_at it holds.
LATEST_OF: dict[str, frozenset[str]] = {
    column: frozenset(t for t, c in LAST_AT.items() if c == column) for column in LAST_AT.values()
}


def _count_shape(op: str, value: Any) -> str | None:
    """ "some" when `count op value` means at least one, "none" when it means no event at all
    (over whole counts 0, 1, 2, …), None for any other comparison."""
    if op == "between":
        low, high = value
        return "none" if low <= 0 <= high < 1 else None
    if (
        (op == "gte" and 0 < value <= 1)
        or (op == "gt" and 0 <= value < 1)
        or (op == "ne" and value == 0)
    ):
        return "some"
    if (
        (op == "eq" and value == 0)
        or (op == "lt" and 0 < value <= 1)
        or (op == "lte" and 0 <= value < 1)
    ):
        return "none"
    return None


class EventCondition(Condition):
    """count / sum of a property / first / last of an event type, with property filters,
    within a relative window. first and last compare how many days ago they happened."""

    kind: Literal["event"]
    type: Annotated[str, Field(min_length=1, max_length=64)]
    measure: Literal["count", "sum", "first", "last"] = "count"
    property: Key | None = None
    filters: Annotated[list[PropertyFilter], Field(max_length=10)] = []
    window: Window | None = None
    op: NumOp = "gte"
    value: NumValue = 1

    @model_validator(mode="after")
    def _check(self) -> EventCondition:
        check_comparison(self.op, self.value)
        if self.measure == "sum" and self.property is None:
            raise ValueError("property: sum needs the property to add up")
        if self.measure != "sum" and self.property is not None:
            raise ValueError("property applies to sum only")
        if self.measure in ("first", "last"):
            for v in _value_list(self.value):
                if v != int(v) or not 0 <= v <= 36500:
                    raise ValueError("value: days ago must be whole numbers from 0 to 36500")
        return self

    def _types(self) -> list[str]:
        return [self.type]

    def event_types(self) -> set[str]:
        return set(self._types())

    def _value(self) -> Any:
        if self.measure in ("first", "last"):
            return [int(v) for v in self.value] if isinstance(self.value, list) else int(self.value)
        return self.value

    def _events_q(self, ctx: Context) -> Any:
        rows = Event.objects.filter(brand_id=ctx.brand_id, type__in=self._types())
        for f in self.filters:
            rows = rows.filter(f.compile())
        if self.window is not None:
            rows = rows.filter(occurred_at__gte=ctx.window_start(self.window))
        return rows.values("customer_id")

    def _rollup_q(self, ctx: Context) -> Q | None:
        """The same question asked of segments.rollup's typed tables when they hold exactly
        its facts (triggers keep them in step with the log): a count over all time of one
        event type with one text eq / in filter on a counted property, or a sum of a kept
        numeric property of one event type without filters. None otherwise."""
        from yutang.segments import rollup
        from yutang.segments.models import EventNumber, EventPropertyCount

        types = self._types()
        if len(types) != 1:
            return None
        rows: Any
        value = self._value()
        if self.measure == "sum":
            assert self.property is not None
            if self.filters or not rollup.keeps_number(types[0], self.property):
                return None
            rows = EventNumber.objects.filter(
                brand_id=ctx.brand_id, type=types[0], key=self.property
            )
            if self.window is not None:
                rows = rows.filter(occurred_at__gte=ctx.window_start(self.window))
            rows = rows.values("customer_id").annotate(measure=Coalesce(Sum("value"), Value(0.0)))
            return self._measured_q(rows, F("measure"), value)
        if self.measure != "count" or self.window is not None or len(self.filters) != 1:
            return None
        f = self.filters[0]
        if (
            f.op not in ("eq", "in")
            or f.value_type() != "string"
            or not rollup.counts_text(types[0], f.property)
        ):
            return None
        values = sorted(set(_value_list(f.value)))
        rows = EventPropertyCount.objects.filter(
            brand_id=ctx.brand_id, type=types[0], key=f.property, value__in=values
        )
        if self.op == "gte" and value == 1:
            return Q(MemberOf(rows.values("customer_id")))
        if len(values) == 1:
            return self._measured_q(rows, F("events"), value)
        rows = rows.values("customer_id").annotate(measure=Sum("events"))
        return self._measured_q(rows, F("measure"), value)

    def _reads_few_events(self) -> bool:
        """Whether the log answers this alone with one range of the (brand, type, occurred_at,
        customer) index, which for a short window reads fewer entries than the aggregate has
        rows: "some event in the window" and "the last one at most N days ago". The
        aggregate still answers them when they join other tests of it (compile_rule) or are
        negated ("none in 60 days" needs every customer's latest time, not the window)."""
        value = self._value()
        if self.measure == "count":
            return _count_shape(self.op, value) == "some" and self.window is not None
        if self.measure == "last" and self.op != "ne":
            low, high = _days_ago_bounds(self.op, value)
            return low is None and high is not None
        return False

    def _measured_q(self, rows: Any, measure: Any, value: Any) -> Q:
        """Customers whose measure (one row per customer in `rows`) satisfies op value; a
        customer without a row has 0."""
        matches = compare_q(measure, self.op, value)
        if compare_py(0, self.op, value):
            # No row at all also gives 0: exclude those whose measure fails instead.
            return ~Q(MemberOf(rows.filter(~matches).values("customer_id")))
        return Q(MemberOf(rows.filter(matches).values("customer_id")))

    def aggregate_row(self, ctx: Context) -> AggregateRow | None:
        """The same question asked of CustomerAggregate when one of its moments answers it
        exactly: events.aggregates.fold keeps, per customer, the latest time of each type in
        LAST_AT (and the first order.paid), and every write of the log (ingestion, merges,
        rebuilds) folds into it in the same transaction. "At least one event in the window",
        "none in the window" and "the last (first) one N days ago" of one such type without
        property filters are then one comparison on a row per customer instead of a scan of
        the window's events. None otherwise."""
        types = self._types()
        if len(types) != 1 or self.filters or self.measure == "sum":
            return None
        start = ctx.window_start(self.window) if self.window is not None else None
        value = self._value()
        if self.measure == "first":
            column = FIRST_AT.get(types[0])
            if column is None or start is not None:
                return None  # the first in a window is not the first ever
            return AggregateRow(days_ago_q(F(column), self.op, value, ctx), False)
        column = LAST_AT.get(types[0])
        if column is None:
            return None
        since = Q(IsNull(F(column), False))
        if start is not None:
            since &= Q(GreaterThanOrEqual(F(column), start))
        if self.measure == "last":
            # The last in the window is the last ever when that is inside the window.
            return AggregateRow(days_ago_q(F(column), self.op, value, ctx) & since, False)
        # count: only "at least one" and "none", which the latest time tells.
        shape = _count_shape(self.op, value)
        if shape is None:
            return None
        return AggregateRow(since, False) if shape == "some" else AggregateRow(~since, True)

    def compile(self, ctx: Context) -> Q:
        from_aggregate = self.aggregate_row(ctx)
        if from_aggregate is not None and not self._reads_few_events():
            return from_aggregate.member_q(ctx)
        rolled = self._rollup_q(ctx)
        if rolled is not None:
            return rolled
        rows = self._events_q(ctx)
        value = self._value()
        if self.measure in ("first", "last"):
            low, high = _days_ago_bounds(self.op, value) if self.op != "ne" else (None, None)
            if self.measure == "last" and self.op != "ne" and low is None and high is not None:
                # "last at most N days ago" is "some event since then": no grouping needed.
                since = ctx.day_start(ctx.today - dt.timedelta(days=high))
                return Q(MemberOf(rows.filter(occurred_at__gte=since)))
            if self.measure == "first" and self.op != "ne" and high is None and low is not None:
                # "first at least N days ago" is "some event before then".
                before = ctx.day_start(ctx.today - dt.timedelta(days=low - 1))
                return Q(MemberOf(rows.filter(occurred_at__lt=before)))
            moment = Min("occurred_at") if self.measure == "first" else Max("occurred_at")
            having = rows.annotate(moment=moment).filter(
                days_ago_q(F("moment"), self.op, value, ctx)
            )
            return Q(MemberOf(having.values("customer_id")))
        if self.measure == "count":
            if self.op == "gte" and value == 1:
                return Q(MemberOf(rows))  # plain existence: no grouping needed
            measure: Any = Count("*")
        else:
            assert self.property is not None
            measure = Coalesce(Sum(JsonNumber(F("properties"), self.property)), Value(0.0))
        grouped = rows.annotate(measure=measure)
        matches = compare_q(F("measure"), self.op, value)
        if compare_py(0, self.op, value):
            # No event at all also gives 0: exclude those whose measure fails instead.
            return ~Q(MemberOf(grouped.filter(~matches).values("customer_id")))
        return Q(MemberOf(grouped.filter(matches).values("customer_id")))

    def _matching(self, facts: Facts, ctx: Context) -> list[Event]:
        types = set(self._types())
        start = ctx.window_start(self.window) if self.window else None
        return [
            e
            for e in facts.events
            if e.type in types
            and (start is None or e.occurred_at >= start)
            and all(f.evaluate(e.properties) for f in self.filters)
        ]

    def evaluate(self, facts: Facts, ctx: Context) -> bool:
        events = self._matching(facts, ctx)
        value = self._value()
        if self.measure == "first":
            return days_ago_py(
                min((e.occurred_at for e in events), default=None), self.op, value, ctx
            )
        if self.measure == "last":
            return days_ago_py(
                max((e.occurred_at for e in events), default=None), self.op, value, ctx
            )
        if self.measure == "count":
            return compare_py(len(events), self.op, value)
        assert self.property is not None
        total = sum(
            e.properties[self.property]
            for e in events
            if _is_number(e.properties.get(self.property))
        )
        return compare_py(total, self.op, value)


class TouchesCondition(EventCondition):
    """Touches (the event types events.types.TOUCH_TYPES names) in the last N days. Counted
    from the event log rather than CustomerAggregate.touches_by_day: the log answers any
    window in SQL with the (brand, type, occurred_at) index, the JSON day map only 30 days.
    "At least one" and "none" read the aggregate's last_touch_at (EventCondition.aggregate_row)."""

    kind: Literal["touches"]  # type: ignore[assignment]
    type: str = "touches"

    @model_validator(mode="after")
    def _count_only(self) -> TouchesCondition:
        if self.measure != "count" or self.filters or self.type != "touches":
            raise ValueError("touches takes window, op and value only")
        return self

    def _types(self) -> list[str]:
        return sorted(TOUCH_TYPES)


# --- The registry and the tree ----------------------------------------------------------

_KINDS: dict[str, type[Condition]] = {}


def register_condition(kind: str, model: type[Condition]) -> None:
    """Add a condition kind (from a later floor's AppConfig.ready). The model validates the
    JSON and implements compile() and evaluate()."""
    _KINDS[kind] = model


def condition_kinds() -> list[str]:
    return sorted(_KINDS)


_BUILTIN_KINDS: dict[str, type[Condition]] = {
    "profile": ProfileCondition,
    "attribute": AttributeCondition,
    "tag": TagCondition,
    "identity": IdentityCondition,
    "carrier": CarrierCondition,
    "group": GroupCondition,
    "consent": ConsentCondition,
    "owner": OwnerCondition,
    "channel": ChannelCondition,
    "lifecycle": LifecycleCondition,
    "rfm": RfmCondition,
    "aggregate": AggregateCondition,
    "event": EventCondition,
    "touches": TouchesCondition,
}
for _kind, _model in _BUILTIN_KINDS.items():
    register_condition(_kind, _model)


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node = And | Or | Not | Condition


def _pydantic_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _data_loc(data: Any, loc: Iterable[Any]) -> list[Any]:
    """The part of a Pydantic error location that names places in the data (Pydantic also
    lists the union member it tried, like "float" or "list[float]")."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            out.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
    return out


def _fail(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        N_("{path}: {message}"), params={"path": path, "message": message}, field=path
    )


def parse_rule(data: Any, *, path: str = "$") -> Node:
    """Validate a rule tree; the error names the JSON path of the first bad node."""
    counter = [0]
    return _parse(data, path, 1, counter)


def _parse(data: Any, path: str, depth: int, counter: list[int]) -> Node:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _fail(path, f"a rule may have at most {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise _fail(path, f"groups may nest at most {MAX_DEPTH} deep")
    if not isinstance(data, dict):
        raise _fail(
            path, 'must be an object: {"and": [...]}, {"or": [...]}, {"not": {...}} or a condition'
        )
    for group in ("and", "or"):
        if group in data:
            if len(data) != 1:
                raise _fail(path, f'a group has only the key "{group}"')
            items = data[group]
            if not isinstance(items, list) or not items:
                raise _fail(f"{path}.{group}", "must be a non-empty list")
            if len(items) > 100:
                raise _fail(f"{path}.{group}", "at most 100 entries")
            children = tuple(
                _parse(item, f"{path}.{group}[{i}]", depth + 1, counter)
                for i, item in enumerate(items)
            )
            return And(children) if group == "and" else Or(children)
    if "not" in data:
        if len(data) != 1:
            raise _fail(path, 'a negation has only the key "not"')
        return Not(_parse(data["not"], f"{path}.not", depth + 1, counter))
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise _fail(
            f"{path}.kind",
            f"unknown condition kind {kind!r}; use one of {', '.join(condition_kinds())}",
        )
    try:
        return _KINDS[kind].model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = _data_loc(data, first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "missing":
            message = "is required"
        return_path = f"{path}{_pydantic_path(loc)}"
        first_word = message.split(" ")[0].rstrip(":")
        if not loc and first_word in _KINDS[kind].model_fields:
            # A model check that names its field ("value must be ...") points at it.
            return_path = f"{path}.{first_word}"
            message = message.split(" ", 1)[1] if " " in message else message
        raise _fail(return_path, message) from None


def to_json(node: Node) -> dict[str, Any]:
    if isinstance(node, And):
        return {"and": [to_json(c) for c in node.children]}
    if isinstance(node, Or):
        return {"or": [to_json(c) for c in node.children]}
    if isinstance(node, Not):
        return {"not": to_json(node.child)}
    return node.model_dump(mode="json", exclude_defaults=False, exclude_none=True)


def walk(node: Node) -> Iterable[Condition]:
    if isinstance(node, And | Or):
        for child in node.children:
            yield from walk(child)
    elif isinstance(node, Not):
        yield from walk(node.child)
    else:
        yield node


# --- Compile and evaluate -----------------------------------------------------------------


def aggregate_row(node: Node, ctx: Context) -> AggregateRow | None:
    """The node as one test of the customer's aggregate row, when every condition under it is
    one (see AggregateRow); None otherwise."""
    if isinstance(node, And | Or):
        parts = [aggregate_row(child, ctx) for child in node.children]
        if any(p is None for p in parts):
            return None
        done = [p for p in parts if p is not None]
        return AggregateRow.all(done) if isinstance(node, And) else AggregateRow.any(done)
    if isinstance(node, Not):
        part = aggregate_row(node.child, ctx)
        return None if part is None else part.negated()
    return node.aggregate_row(ctx)


def _membership(q: Q) -> Any:
    """The rows of `q` when it is exactly one positive MemberOf of the customer's key (a
    tag, an event in a window, an aggregate test…), else None."""
    while not q.negated and len(q.children) == 1 and isinstance(q.children[0], Q):
        q = q.children[0]
    if q.negated or len(q.children) != 1:
        return None
    child = q.children[0]
    return child.rows if isinstance(child, MemberOf) and child.of_customer else None


def _combine_memberships(parts: list[Q], op: str) -> list[Q]:
    """The group's positive memberships as one MemberOf over their ids combined with `op`
    (INTERSECT for AND, UNION for OR), in the place of the first; the other parts stay. One
    probe of each customer into one set of ids instead of one per membership: "received a
    message in 7 days OR (3 touches in 30 days AND a click in 14)" is one set, the customers
    read once against it."""
    rows = [_membership(part) for part in parts]
    found = [r for r in rows if r is not None]
    if len(found) < 2:
        return parts
    flat: list[Any] = []
    for row in found:  # (A ∩ B) ∩ C is A ∩ B ∩ C
        flat.extend(row.parts if isinstance(row, IdSet) and row.op == op else [row])
    out: list[Q] = []
    for part, row in zip(parts, rows, strict=True):
        if row is None:
            out.append(part)
        elif row is found[0]:
            out.append(Q(MemberOf(IdSet(op, flat))))
    return out


def compile_rule(node: Node, ctx: Context) -> Q:
    """The rule as a filter on customers. The children of a group that test the aggregate row
    (aggregate figures, and event conditions it answers) become one subquery on it."""
    if isinstance(node, And | Or):
        rows = [aggregate_row(child, ctx) for child in node.children]
        merged = [r for r in rows if r is not None]
        parts: list[Q] = []
        for child, row in zip(node.children, rows, strict=True):
            if row is None or len(merged) == 1:
                # (A lone test compiles as it would alone: an event condition may read the log.)
                parts.append(compile_rule(child, ctx))
            elif row is merged[0]:  # the merged test takes the place of the first one
                both = AggregateRow.all if isinstance(node, And) else AggregateRow.any
                parts.append(both(merged).member_q(ctx))
        parts = _combine_memberships(parts, "INTERSECT" if isinstance(node, And) else "UNION")
        q = parts[0]
        for part in parts[1:]:
            q = q & part if isinstance(node, And) else q | part
        return q
    if isinstance(node, Not):
        row = aggregate_row(node.child, ctx)
        if row is not None:
            return row.negated().member_q(ctx)
        return ~compile_rule(node.child, ctx)
    return node.compile(ctx)


def evaluate(node: Node, facts: Facts, ctx: Context) -> bool:
    if isinstance(node, And):
        return all(evaluate(c, facts, ctx) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, facts, ctx) for c in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, facts, ctx)
    return node.evaluate(facts, ctx)


def trigger_types(node: Node) -> set[str] | None:
    """The event types whose arrival can change the rule's answer for a customer; None when
    some condition may change with any event (or none: profile, tags, RFM…)."""
    types: set[str] = set()
    for condition in walk(node):
        found = condition.trigger_types()
        if found is None:
            return None
        types |= found
    return types


def needed_event_types(node: Node) -> set[str]:
    types: set[str] = set()
    for condition in walk(node):
        types |= condition.event_types() or set()
    return types


def load_facts(customer: Customer, node: Node) -> Facts:
    """Read what the evaluator needs about one customer (a handful of queries)."""
    return load_facts_many([customer], [node])[customer.pk]


def load_facts_many(people: list[Customer], nodes: list[Node]) -> dict[int, Facts]:
    """What the evaluator needs about each of `people` for any of `nodes`, read with one
    query per kind of fact for all of them (a customer's facts may hold events of types only
    another node reads, which no condition of theirs looks at)."""
    from yutang.carriers.models import CarrierContact
    from yutang.segments.models import CustomerRfm

    ids = [c.pk for c in people]
    facts = {c.pk: Facts(customer=c) for c in people}
    types: set[str] = set()
    for node in nodes:
        types |= needed_event_types(node)
    if any(isinstance(c, CarrierCondition) for node in nodes for c in walk(node)):
        for customer_id, kind, account_id, status in CarrierContact.objects.filter(
            customer_id__in=ids
        ).values_list("customer_id", "account__kind", "account_id", "status"):
            facts[customer_id].contacts.append((kind, account_id, status))
    if types:
        for event in Event.objects.filter(customer_id__in=ids, type__in=types).order_by(
            "occurred_at", "id"
        ):
            facts[event.customer_id].events.append(event)
    for customer_id, tag_id in CustomerTag.objects.filter(customer_id__in=ids).values_list(
        "customer_id", "tag_id"
    ):
        facts[customer_id].tag_ids.add(tag_id)
    for customer_id, kind, namespace in Identity.objects.filter(customer_id__in=ids).values_list(
        "customer_id", "kind", "namespace"
    ):
        facts[customer_id].identities.add((kind, namespace))
    for consent in Consent.objects.filter(customer_id__in=ids):
        facts[consent.customer_id].consents[(consent.purpose, consent.carrier)] = consent.status
    for aggregate in CustomerAggregate.objects.filter(customer_id__in=ids):
        facts[aggregate.customer_id].aggregate = aggregate
    for rfm in CustomerRfm.objects.filter(customer_id__in=ids):
        facts[rfm.customer_id].rfm = rfm
    return facts
