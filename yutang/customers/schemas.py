"""REST shapes of the customers app."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field

from yutang.core.schemas import DbId, StrictInput

Id = DbId  # one bound for every id the API accepts


class IdentityIn(StrictInput):
    kind: str
    value: Annotated[str, Field(min_length=1, max_length=256)]
    namespace: Annotated[str, Field(max_length=64)] = ""


class IdentityOut(Schema):
    kind: str
    namespace: str
    value: str = Field(description="Masked unless your role may see identifiers")


class ProfileFields(StrictInput):
    display_name: Annotated[str, Field(max_length=120)] | None = None
    gender: Literal["unknown", "female", "male"] | None = None
    birthday: dt.date | None = None
    province: Annotated[str, Field(max_length=32)] | None = None
    city: Annotated[str, Field(max_length=64)] | None = None
    source_channel: Annotated[str, Field(max_length=64)] | None = None
    owner_store_id: Id | None = None
    owner_staff_id: Id | None = None
    attributes: dict[str, Any] | None = None


class CustomerIn(ProfileFields):
    identities: Annotated[list[IdentityIn], Field(min_length=1, max_length=20)]


class CustomerPatch(ProfileFields):
    pass


class TagOut(Schema):
    id: int
    group: str
    name: str


class CustomerOut(Schema):
    id: int
    display_name: str
    gender: str
    birthday: dt.date | None
    province: str
    city: str
    source_channel: str
    owner_store_id: int | None
    owner_staff_id: int | None
    attributes: dict[str, Any]
    identities: list[IdentityOut]
    tags: list[TagOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class ConsentOut(Schema):
    purpose: str
    carrier: str
    status: str
    source: str
    changed_at: dt.datetime


class CustomerDetail(CustomerOut):
    aggregate: dict[str, Any]
    consent: list[ConsentOut]


class CustomerCreated(CustomerOut):
    created: bool
    merged_ids: list[int]


class CustomerAccepted(Schema):
    """A customer the caller may not read individually (e.g. a franchise store's)."""

    id: int
    created: bool
    merged_ids: list[int]


class CustomerPage(Schema):
    items: list[CustomerOut]
    next_cursor: str | None = None


class MergeIn(StrictInput):
    keep_id: Id
    absorb_id: Id


class MergeOut(Schema):
    id: int
    kept_id: int
    absorbed_id: int
    reason: str
    created_at: dt.datetime
    undone_at: dt.datetime | None


class CandidateOut(Schema):
    id: int
    first_id: int
    second_id: int
    reason: str
    status: str
    created_at: dt.datetime


class DecisionIn(StrictInput):
    merge: bool


class TagIn(StrictInput):
    group: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=64)]


class TagChange(StrictInput):
    add: list[Id] = Field(default_factory=list)
    remove: list[Id] = Field(default_factory=list)


class NoteIn(StrictInput):
    body: Annotated[str, Field(min_length=1, max_length=5000)]


class NoteOut(Schema):
    id: int
    author_id: int | None
    body: str
    created_at: dt.datetime


class ConsentIn(StrictInput):
    purpose: Literal["marketing", "service"]
    status: Literal["granted", "withdrawn"]
    carrier: Annotated[str, Field(max_length=32)] = ""
    proof: Annotated[str, Field(max_length=2000)] = ""


class AttributeIn(StrictInput):
    key: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    label: Annotated[str, Field(min_length=1, max_length=80)]
    type: Literal["string", "number", "boolean", "date", "enum"]
    choices: list[str] = Field(default_factory=list)


class AttributeOut(Schema):
    key: str
    label: str
    type: str
    choices: list[str]


class ImportOut(Schema):
    id: int
    kind: str
    filename: str
    status: str
    message: str
    mapping: str
    rows_done: int
    created: int
    updated: int
    unchanged: int
    skipped: int
    rejected: int
    progress: float
    all_or_nothing: bool
    has_error_file: bool
    created_at: dt.datetime
    finished_at: dt.datetime | None
