"""The journey definition: validated JSON (Pydantic). Errors name the JSON path of the bad
value, e.g. ``$.steps[3].days``, so the builder and the API can point at the step.

A definition is stored as plain JSON on JourneyVersion; this module is the only reader."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from yutang.core.errors import N_, ValidationFailed
from yutang.journeys import integrations

StepId = Annotated[str, Field(pattern=r"^[a-z0-9_\-]{1,40}$")]
TimeOfDay = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Weekday = Annotated[int, Field(ge=0, le=6)]  # Monday = 0
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Duration(Strict):
    days: Annotated[int, Field(ge=0, le=3650)] = 0
    hours: Annotated[int, Field(ge=0, le=1000)] = 0
    minutes: Annotated[int, Field(ge=0, le=100000)] = 0

    def delta(self) -> dt.timedelta:
        return dt.timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


def _check_event(value: str) -> str:
    if not EVENT_TYPE.match(value):
        raise ValueError(f"{value!r} is not an event type such as order.paid")
    return value


EventType = Annotated[str, Field(min_length=3, max_length=64)]


class Condition(Strict):
    """Wraps a rule tree so it is validated by the condition seam."""


class _RuleError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def _validate_rule(rule: Any, field: str = "condition") -> dict[str, Any]:
    """Check a rule through the condition seam; the error path is relative to the model."""
    try:
        integrations.validate_condition(rule, f"$.{field}")
    except ValidationFailed as exc:
        path = exc.field or f"$.{field}"
        raise _RuleError(path, exc.message.removeprefix(f"{path}: ")) from None
    return rule


# --- Steps ----------------------------------------------------------------------------------


class StepBase(Strict):
    id: StepId
    label: Annotated[str, Field(max_length=120)] = ""
    next: StepId | None = None  # default: the following step in the list


class WaitStep(StepBase, Duration):
    type: Literal["wait"]

    @model_validator(mode="after")
    def _positive(self) -> WaitStep:
        if self.delta() <= dt.timedelta(0):
            raise ValueError("a wait needs days, hours or minutes above zero")
        return self


class WaitUntilStep(StepBase):
    type: Literal["wait_until"]
    time: TimeOfDay
    weekdays: list[Weekday] = Field(default_factory=list)


class WaitEventStep(StepBase):
    type: Literal["wait_event"]
    event: EventType
    timeout: Duration
    on_timeout: StepId | None = None

    @model_validator(mode="after")
    def _check(self) -> WaitEventStep:
        _check_event(self.event)
        if self.timeout.delta() <= dt.timedelta(0):
            raise ValueError("timeout must be above zero")
        return self


class BranchStep(StepBase):
    type: Literal["branch"]
    condition: dict[str, Any]
    then: StepId | None = None
    otherwise: StepId | None = Field(default=None, alias="else")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _rule(self) -> BranchStep:
        _validate_rule(self.condition)
        return self


class SplitPath(Strict):
    weight: Annotated[int, Field(ge=1, le=1000)]
    next: StepId | None = None


class SplitStep(StepBase):
    type: Literal["split"]
    paths: Annotated[list[SplitPath], Field(min_length=2, max_length=10)]


class ConfirmationWait(Strict):
    """Wait until the message is sent: on carriers where staff confirm each message (WeCom
    mass-message tasks: the outbox's ``pending_confirmation``), until they do. Sent →
    the step's next; failed, blocked, expired, or not sent by the timeout → ``on_timeout``
    (default: the step's next)."""

    timeout: Duration
    on_timeout: StepId | None = None

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: Duration) -> Duration:
        if value.delta() <= dt.timedelta(0):
            raise ValueError("timeout must be above zero")
        return value


class SendMessageStep(StepBase):
    """`skip_if_welcomed`: a welcome step that does nothing (outcome ``welcomed``) when the
    customer already got the carrier's automatic welcome (the live code's, sent with WeCom's
    ``send_welcome_msg`` when they added the account) in the day before the step."""

    type: Literal["send_message"]
    kind: Literal["service", "marketing"] = "marketing"
    content: Annotated[str, Field(min_length=1, max_length=4000)]
    wait_for_confirmation: ConfirmationWait | None = None
    skip_if_welcomed: bool = False


class CreateTaskStep(StepBase):
    type: Literal["create_task"]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    script: Annotated[str, Field(max_length=4000)] = ""
    assign_to: Literal["owner", "store_queue"] = "owner"
    due: Duration = Field(default_factory=lambda: Duration(days=1))
    wait_for_completion: bool = False
    timeout: Duration | None = None
    on_timeout: StepId | None = None

    @model_validator(mode="after")
    def _check(self) -> CreateTaskStep:
        if self.wait_for_completion and (self.timeout is None or not self.timeout.delta()):
            raise ValueError("waiting for the task needs a timeout above zero")
        return self


class TagStep(StepBase):
    type: Literal["add_tag", "remove_tag"]
    group: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=64)]


class SetAttributeStep(StepBase):
    type: Literal["set_attribute"]
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    value: str | int | float | bool | None


class WebhookStep(StepBase):
    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://", max_length=500)]
    secret: Annotated[str, Field(min_length=16, max_length=200)]


class ExtensionStep(StepBase):
    type: Literal["extension"]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    params: dict[str, Any] = Field(default_factory=dict)


class ExitStep(StepBase):
    type: Literal["exit"]


Step = Annotated[
    WaitStep
    | WaitUntilStep
    | WaitEventStep
    | BranchStep
    | SplitStep
    | SendMessageStep
    | CreateTaskStep
    | TagStep
    | SetAttributeStep
    | WebhookStep
    | ExtensionStep
    | ExitStep,
    Field(discriminator="type"),
]

WAIT_TYPES = {"wait", "wait_until", "wait_event"}


# --- Triggers -------------------------------------------------------------------------------


class EventTrigger(Strict):
    type: Literal["event"]
    event: EventType
    where: dict[str, str | int | bool] = Field(default_factory=dict)
    first_order_only: bool = False

    @model_validator(mode="after")
    def _check(self) -> EventTrigger:
        _check_event(self.event)
        return self


class SegmentTrigger(Strict):
    """Entering a segment: the customer is enrolled when they enter the (dynamic) segment,
    i.e. on the ``segment.entered`` event its refresh records for each new member — once per
    entry (edge-triggered), not on every event while they stay in it."""

    type: Literal["segment"]
    segment_id: Annotated[int, Field(ge=1, le=2**63 - 1)]


class ConditionTrigger(Strict):
    """Not "entering a segment": when any event of the customer arrives and the condition
    holds for them then, enrol them (subject to the entry rules). Level-triggered — it fires
    again on their next event while the condition still holds, unless re-entry forbids it."""

    type: Literal["condition"]
    condition: dict[str, Any]

    @model_validator(mode="after")
    def _rule(self) -> ConditionTrigger:
        _validate_rule(self.condition)
        return self


class DateTrigger(Strict):
    type: Literal["date"]
    field: Literal["birthday", "membership_anniversary"] = "birthday"
    time: TimeOfDay = "09:00"
    days_before: Annotated[int, Field(ge=0, le=60)] = 0


class ScheduleTrigger(Strict):
    """At `time` on the `weekdays` (Monday = 0), or — with `monthdays` — on those days of
    the month (a day past the month's end means its last day: 31 is "month end"), over the
    customers matching `condition`."""

    type: Literal["schedule"]
    weekdays: list[Weekday] = Field(default_factory=lambda: list(range(7)))
    monthdays: list[Annotated[int, Field(ge=1, le=31)]] = Field(default_factory=list)
    time: TimeOfDay
    condition: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rule(self) -> ScheduleTrigger:
        if self.condition:
            _validate_rule(self.condition)
        if not self.weekdays:
            raise ValueError("weekdays must name at least one day")
        if self.monthdays and self.weekdays != list(range(7)):
            raise ValueError("give weekdays or monthdays, not both")
        return self


class ManualTrigger(Strict):
    type: Literal["manual"]


Trigger = Annotated[
    EventTrigger
    | SegmentTrigger
    | ConditionTrigger
    | DateTrigger
    | ScheduleTrigger
    | ManualTrigger,
    Field(discriminator="type"),
]


class Entry(Strict):
    reentry: Literal["never", "after_days", "always"] = "never"
    after_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    condition: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Entry:
        if self.reentry == "after_days" and self.after_days is None:
            raise ValueError("after_days is needed when reentry is after_days")
        if self.condition:
            _validate_rule(self.condition)
        return self


class Goal(Strict):
    event: EventType
    within_days: Annotated[int, Field(ge=1, le=3650)] = 30

    @model_validator(mode="after")
    def _check(self) -> Goal:
        _check_event(self.event)
        return self


class ExitRules(Strict):
    contact_deleted: bool = True
    consent_withdrawn: bool = True
    condition: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rule(self) -> ExitRules:
        if self.condition:
            _validate_rule(self.condition)
        return self


class Definition(Strict):
    trigger: Trigger
    entry: Entry = Field(default_factory=Entry)
    steps: Annotated[list[Step], Field(min_length=1, max_length=200)]
    goal: Goal | None = None
    exit_rules: ExitRules = Field(default_factory=ExitRules)
    holdout_percent: Annotated[int, Field(ge=0, le=90)] = 0

    @model_validator(mode="before")
    @classmethod
    def _legacy_trigger(cls, data: Any) -> Any:
        """Definitions saved before segment triggers took a segment id wrote the condition
        trigger as ``{"type": "segment", "condition": …}``: read them as what they did."""
        trigger = data.get("trigger") if isinstance(data, dict) else None
        if (
            isinstance(trigger, dict)
            and trigger.get("type") == "segment"
            and "condition" in trigger
            and "segment_id" not in trigger
        ):
            return {**data, "trigger": {**trigger, "type": "condition"}}
        return data

    @model_validator(mode="after")
    def _links(self) -> Definition:
        ids = [s.id for s in self.steps]
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.id in seen:
                raise _PathError(f"$.steps[{index}].id", f"duplicate step id {step.id!r}")
            seen.add(step.id)
        for index, step in enumerate(self.steps):
            for name, target in _targets(step):
                if target is not None and target not in seen:
                    raise _PathError(
                        f"$.steps[{index}].{name}", f"no step with id {target!r} (have {ids})"
                    )
        return self

    def step(self, step_id: str) -> Any:
        return self.index[step_id][1]

    @property
    def index(self) -> dict[str, tuple[int, Any]]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {s.id: (i, s) for i, s in enumerate(self.steps)}
            self.__dict__["_index"] = cached
        return cached

    def following(self, step: Any) -> str | None:
        """The step after `step`: its explicit next, else the next in the list, else None
        (the end: the enrolment completes)."""
        if step.next is not None:
            return str(step.next)
        position = self.index[step.id][0] + 1
        return self.steps[position].id if position < len(self.steps) else None


class _PathError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def _targets(step: Any) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = [("next", step.next)]
    if isinstance(step, BranchStep):
        found += [("then", step.then), ("else", step.otherwise)]
    if isinstance(step, SplitStep):
        found += [(f"paths[{i}].next", p.next) for i, p in enumerate(step.paths)]
    if isinstance(step, WaitEventStep | CreateTaskStep):
        found.append(("on_timeout", step.on_timeout))
    if isinstance(step, SendMessageStep) and step.wait_for_confirmation is not None:
        found.append(("wait_for_confirmation.on_timeout", step.wait_for_confirmation.on_timeout))
    return found


_TAGS = {
    "wait", "wait_until", "wait_event", "branch", "split", "send_message", "create_task",
    "add_tag", "remove_tag", "set_attribute", "webhook", "extension", "exit",
    "event", "segment", "condition", "date", "schedule", "manual",
}  # fmt: skip


def _json_path(loc: tuple[Any, ...]) -> str:
    path = "$"
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _TAGS and (isinstance(previous, int) or previous == "trigger"):
            pass  # the discriminator tag Pydantic inserts into the location
        else:
            path += f".{part}"
        previous = part
    return path


def parse(data: Any) -> Definition:
    """Validate a definition; raise ValidationFailed whose field is the JSON path."""
    if not isinstance(data, dict):
        raise ValidationFailed(N_("A journey definition must be a JSON object."), field="$")
    try:
        return Definition.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        ctx_error = (first.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _PathError):
            raise ValidationFailed(
                N_("{path}: {message}"),
                params={"path": ctx_error.path, "message": ctx_error.message},
                field=ctx_error.path,
            ) from None
        if isinstance(ctx_error, _RuleError):
            full = _json_path(tuple(first["loc"])) + ctx_error.path[1:]
            raise ValidationFailed(
                N_("{full}: {message}"),
                params={"full": full, "message": ctx_error.message},
                field=full,
            ) from None
        path = _json_path(tuple(first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(
            N_("{path}: {message}"), params={"path": path, "message": message}, field=path
        ) from None


def dump(definition: Definition) -> dict[str, Any]:
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)
