"""REST shapes for journeys, enrollments and staff tasks."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field


class In(Schema):
    model_config = ConfigDict(extra="forbid")


class JourneyIn(In):
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    definition: dict[str, Any]


class JourneyPatch(In):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = None
    definition: dict[str, Any] | None = None


class JourneyOut(Schema):
    id: int
    name: str
    description: str
    status: str
    draft: dict[str, Any]
    live_version: int | None = None
    updated_at: dt.datetime

    @staticmethod
    def resolve_live_version(obj: Any) -> int | None:
        return obj.live_version.number if obj.live_version_id else None


class PublishIn(In):
    migration: dict[str, str] = Field(default_factory=dict)


class StatusIn(In):
    status: Literal["live", "paused", "archived"]


class EnrolIn(In):
    customer_ids: list[int] = Field(min_length=1, max_length=50_000)


class EnrolOut(Schema):
    customer_id: int
    status: str
    enrollment_id: int | None


class EnrollmentOut(Schema):
    id: int
    customer_id: int
    version: int
    state: str
    current_step: str
    next_due_at: dt.datetime | None
    entered_at: dt.datetime
    exited_at: dt.datetime | None
    exit_reason: str
    is_holdout: bool

    @staticmethod
    def resolve_version(obj: Any) -> int:
        return int(obj.version.number)


class EnrollmentPage(Schema):
    items: list[EnrollmentOut]
    next_cursor: str | None


class TaskIn(In):
    customer_id: int
    title: str = Field(min_length=1, max_length=200)
    script: str = ""
    due_at: dt.datetime
    assignee_id: int | None = None


class TaskPatch(In):
    due_at: dt.datetime | None = None
    assignee_id: int | None = None


class TaskComplete(In):
    outcome_code: str
    outcome_note: str = Field(default="", max_length=4000)
    skipped: bool = False
    # Outcome "sent": the text sent through the outbox (default: the task's script) and its kind.
    text: str | None = Field(default=None, max_length=4000)
    kind: Literal["service", "marketing"] = "marketing"


class TaskSend(In):
    text: str | None = Field(default=None, max_length=4000)
    kind: Literal["service", "marketing"] = "marketing"
    outcome_note: str = Field(default="", max_length=4000)


class TaskOut(Schema):
    id: int
    customer_id: int
    assignee_id: int | None
    store_id: int | None
    queue_role: str
    title: str
    script: str
    due_at: dt.datetime
    status: str
    outcome_code: str
    outcome_note: str
    enrollment_id: int | None
    message_id: int | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    reminded_at: dt.datetime | None


class TaskPage(Schema):
    items: list[TaskOut]
    next_cursor: str | None
