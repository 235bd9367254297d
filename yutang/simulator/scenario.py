"""Scenario files: YAML validated by Pydantic, with errors naming the path and the line.

Every field and its default is documented in docs/simulator.md; the defaults here and there
must agree (a test reads both)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from yutang.core.errors import N_, ValidationFailed

Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]
Fen = Annotated[int, Field(ge=0, le=10**12)]
Key = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Clock = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]

SCENARIO_DIR = Path(__file__).parent / "scenarios"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Beta(Strict):
    """A trait in [0, 1]: Beta(a, b), mean a / (a + b)."""

    dist: Literal["beta"] = "beta"
    a: Annotated[float, Field(gt=0)]
    b: Annotated[float, Field(gt=0)]


class LogNormal(Strict):
    """A positive trait given by its median and the spread of its logarithm."""

    dist: Literal["lognormal"] = "lognormal"
    median: Annotated[float, Field(gt=0)]
    sigma: Annotated[float, Field(ge=0, le=3)]


class ActiveHours(Strict):
    """Each person has a preferred hour, normal around `peak` (local time) with `spread`."""

    peak: Annotated[float, Field(ge=0, lt=24)] = 20.5
    spread: Annotated[float, Field(ge=0, le=12)] = 2.5


class Audience(Strict):
    purchase_propensity: Beta = Beta(a=2, b=6)
    price_sensitivity: Beta = Beta(a=3, b=3)
    usage_cycle_days: LogNormal = LogNormal(median=60, sigma=0.4)
    marketing_tolerance_per_week: LogNormal = LogNormal(median=3, sigma=0.5)
    referral_propensity: Beta = Beta(a=1, b=9)
    order_value_fen: LogNormal = LogNormal(median=19_900, sigma=0.5)
    active_hours: ActiveHours = ActiveHours()


class Channel(Strict):
    key: Key
    name: Annotated[str, Field(min_length=1, max_length=60)]
    identity_kind: Literal[
        "wecom_external_userid", "taobao_buyer", "xiaohongshu_user", "douyin_user", "phone"
    ] = "wecom_external_userid"
    reach_per_day: NonNegative
    hook_strength: Fraction = 0.5
    add_rate_floor: Fraction = 0.002
    add_rate_ceiling: Fraction = 0.05
    intent: Annotated[float, Field(ge=0, le=5)] = 1.0
    initial_trust: Fraction = 0.2
    early_deletion: Fraction = 0.05
    cost_per_reach_fen: NonNegative = 0
    cost_per_add_fen: NonNegative = 0
    cps_share: Fraction = 0
    fixed_cost_per_day_fen: NonNegative = 0
    stores: list[Key] = []

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> Channel:
        if self.add_rate_floor > self.add_rate_ceiling:
            raise ValueError("add_rate_floor must not exceed add_rate_ceiling")
        return self

    def add_rate(self) -> float:
        """The share of reached people who add: linear in the hook's strength."""
        return self.add_rate_floor + (self.add_rate_ceiling - self.add_rate_floor) * (
            self.hook_strength
        )


class FirstOrderOffer(Strict):
    discount_share: Fraction = 0.2
    within_days: Annotated[int, Field(ge=0, le=60)] = 3


class Coupons(Strict):
    per_week: Annotated[float, Field(ge=0, le=7)] = 0
    discount_share: Fraction = 0.1


class Groups(Strict):
    invite_accept: Fraction = 0.0
    posts_per_day: Annotated[float, Field(ge=0, le=50)] = 0
    marketing_share: Fraction = 0.2


class Policy(Strict):
    """Mirrors the touch policy gate's defaults (messaging issue)."""

    enforce: bool = True
    marketing_per_day: Annotated[int, Field(ge=0, le=50)] = 1
    marketing_per_week: Annotated[int, Field(ge=0, le=350)] = 3
    quiet_start: Clock = "21:30"
    quiet_end: Clock = "08:30"


class Plan(Strict):
    touches_per_day: Annotated[float, Field(ge=0, le=50)] = 1.0
    marketing_share: Fraction = 0.3
    send_from: Clock = "09:00"
    send_to: Clock = "21:00"
    service_quality: Fraction = 0.6
    product_quality: Fraction = 0.6
    first_order_offer: FirstOrderOffer | None = FirstOrderOffer()
    repurchase_reminders: bool = True
    referral_reward_fen: Fen = 0
    coupons: Coupons = Coupons()
    groups: Groups = Groups()
    policy: Policy = Policy()
    order_source: Literal["mini_program", "youzan", "store_pos", "tmall", "taobao", "other"] = (
        "mini_program"
    )
    refund_rate: Fraction = 0.05
    cost_per_contact_month_fen: NonNegative = 0


class Targets(Strict):
    pool: Annotated[int, Field(ge=0)] = 0
    gmv_fen: Fen = 0


class Behaviour(Strict):
    """Model coefficients (see docs/simulator.md for the reasoning behind each)."""

    base_deletion_per_day: Fraction = 0.0008
    excess_touch_hazard: NonNegative = 0.35
    marketing_share_hazard: NonNegative = 1.5
    useful_content_relief: NonNegative = 0.6
    service_relief: NonNegative = 0.8
    trust_relief: NonNegative = 1.0
    quiet_hour_weight: NonNegative = 2.0
    group_touch_weight: NonNegative = 0.25
    read_rate: Fraction = 0.6
    click_rate: Fraction = 0.05
    reply_rate: Fraction = 0.02
    first_order_per_day: Fraction = 0.001
    offer_uplift: NonNegative = 10.0
    click_uplift: NonNegative = 1.0
    repurchase_per_day: Fraction = 0.01
    reminder_uplift: NonNegative = 1.5
    buy_elsewhere_per_day: Fraction = 0.03
    coupon_uplift: NonNegative = 1.0
    delight_threshold: Fraction = 0.7
    referral_reward_uplift: NonNegative = 1.0
    trust_gain_useful: NonNegative = 0.01
    trust_gain_order: NonNegative = 0.1
    trust_loss_excess: NonNegative = 0.03
    group_leave_per_day: Fraction = 0.002
    referral_intent: Annotated[float, Field(ge=0, le=5)] = 1.5
    referral_initial_trust: Fraction = 0.5


class Scenario(Strict):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    description: str = ""
    start_date: dt.date = dt.date(2026, 1, 1)
    days: Annotated[int, Field(ge=1, le=3650)] = 365
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 1
    scale: Annotated[float, Field(gt=0, le=10)] = 1.0
    time_zone: str = "Asia/Shanghai"
    record_touches: bool = False
    #: Driven runs: also send the plan's own touches (touches_per_day, marketing_share) as
    #: one outbox message each, through the policy gate (off: only journeys send).
    touches_through_outbox: bool = False
    stores: list[Key] = []
    audience: Audience = Audience()
    channels: Annotated[list[Channel], Field(min_length=1)]
    plan: Plan = Plan()
    behaviour: Behaviour = Behaviour()
    targets: Targets = Targets()

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        keys = [c.key for c in self.channels]
        if len(set(keys)) != len(keys):
            raise ValueError("channel keys must be unique")
        if "referral" in keys:
            raise ValueError("the channel key 'referral' is reserved for referred friends")
        for channel in self.channels:
            unknown = [s for s in channel.stores if s not in self.stores]
            if unknown:
                raise ValueError(f"channel {channel.key!r} names unknown stores {unknown}")
        return self

    def with_overrides(
        self, *, days: int | None = None, seed: int | None = None, scale: float | None = None
    ) -> Scenario:
        changes: dict[str, Any] = {}
        if days is not None:
            changes["days"] = days
        if seed is not None:
            changes["seed"] = seed
        if scale is not None:
            changes["scale"] = scale
        return Scenario.model_validate({**self.model_dump(), **changes}) if changes else self


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line (1-based) of the YAML node at a Pydantic error's location, or of its closest
    existing parent (an unknown or missing key points at its mapping)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                found = next((k for k, _ in node.value if k.value == part), None)
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_FRIENDLY = [
    (re.compile(r"^Input should be greater than or equal to (.+)$"), r"must be ≥ \1"),
    (re.compile(r"^Input should be less than or equal to (.+)$"), r"must be ≤ \1"),
    (re.compile(r"^Input should be greater than (.+)$"), r"must be > \1"),
    (re.compile(r"^Extra inputs are not permitted$"), "unknown key"),
    (re.compile(r"^Field required$"), "is required"),
    (re.compile(r"^Value error, (.+)$"), r"\1"),
]


def _friendly(message: str) -> str:
    for pattern, replacement in _FRIENDLY:
        if pattern.match(message):
            return pattern.sub(replacement, message)
    return message


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario; raise ValidationFailed naming the path and line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationFailed(
            N_("{source}:{value}: YAML syntax error: {problem}"),
            params={"source": source, "value": where.strip() or " ", "problem": problem},
            field="yaml" + (f":{mark.line + 1}" if mark is not None else ""),
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            N_("{source}: a scenario is a YAML mapping."), params={"source": source}, field="yaml"
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        first_path = ""
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not isinstance(p, str) or p[0].islower())
            path = _path(loc) or "scenario"
            first_path = first_path or path
            line = _line_of(root, loc)
            at = f" (line {line})" if line else ""
            problems.append(f"{path}: {_friendly(error['msg'])}{at}")
        raise ValidationFailed(f"{source}: " + "; ".join(problems), field=first_path) from None


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file; a bare name (`steady` or `steady.yaml`) finds a shipped one."""
    candidate = Path(path)
    if not candidate.exists():
        shipped = SCENARIO_DIR / (candidate.name if candidate.suffix else f"{candidate}.yaml")
        if candidate.parent == Path(".") and shipped.exists():
            candidate = shipped
        else:
            raise ValidationFailed(
                N_("No scenario file {path_str!r}."),
                params={"path_str": str(path)},
                field="scenario",
            )
    return parse_scenario(candidate.read_text(encoding="utf-8"), source=candidate.name)


def shipped_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.yaml"))
