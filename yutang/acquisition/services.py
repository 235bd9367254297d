"""Acquisition services: the only code that changes channels, costs, reach, live codes, adds,
short links, package-card batches, partners and settlements.

Routing (`assign_account`) and add counting (`record_contact_added`) are the seams the carrier
pipeline calls; see docs/acquisition.md, "Carrier integration"."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, OperationalError, models, transaction
from django.db.models import F, QuerySet

from yutang.acquisition.models import (
    AccountDay,
    AcquisitionSettings,
    Alert,
    Channel,
    ChannelCost,
    ChannelType,
    ContactAdd,
    CpaEvent,
    LinkClick,
    LiveCode,
    LiveCodeMember,
    PackageCardBatch,
    Partner,
    Platform,
    ReachRecord,
    RoutingRule,
    Settlement,
    ShortLink,
)
from yutang.core import audit, clock, crypto, tabular
from yutang.core.db import is_transient
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.identifiers import normalize_phone
from yutang.core.models import Brand, CarrierAccount, Staff, Store
from yutang.core.permissions import Action, Scope, require
from yutang.core.services import is_valid_id, reject_unknown_fields
from yutang.customers import services as customers
from yutang.customers.models import Customer
from yutang.events.services import ingest_one

M = TypeVar("M", bound=models.Model)
MAX_FEN = 10**12
MAX_BP = 10_000
#: WeCom's `state` parameter holds at most 30 characters; ours is "lc" + the id.
STATE_MAX = 30
STATE_PATTERN = re.compile(r"^lc([1-9][0-9]{0,17})$")
ATTACHMENT_TYPES = ("image", "link", "miniprogram")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_PATTERN = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
#: Short-link codes: 12 random bytes = 96 bits, 16 URL-safe characters.
SHORT_CODE_BYTES = 12
SHORT_CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")


class NoCapacity(Conflict):
    code = "no_capacity"


# --- Shared checks ----------------------------------------------------------------------------


def _fen(value: Any, field: str, *, allow_negative: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(
            N_("{field} must be a whole number of fen."), params={"field": field}, field=field
        )
    if (value < 0 and not allow_negative) or abs(value) > MAX_FEN:
        raise ValidationFailed(
            N_("{field} must be between 0 and {MAX_FEN} fen."),
            params={"field": field, "MAX_FEN": MAX_FEN},
            field=field,
        )
    return value


def _bp(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BP:
        raise ValidationFailed(
            N_("{field} must be basis points between 0 and {MAX_BP} (1% = 100)."),
            params={"field": field, "MAX_BP": MAX_BP},
            field=field,
        )
    return value


def _window(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 365:
        raise ValidationFailed(
            N_("{field} must be between 1 and 365 days."), params={"field": field}, field=field
        )
    return value


def _text(value: Any, field: str, *, max_length: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(N_("{field} must be text."), params={"field": field}, field=field)
    value = value.strip()
    if required and not value:
        raise ValidationFailed(N_("{field} is required."), params={"field": field}, field=field)
    if len(value) > max_length:
        raise ValidationFailed(
            N_("{field} is longer than {max_length} characters."),
            params={"field": field, "max_length": max_length},
            field=field,
        )
    return value


def _scoped(queryset: QuerySet[M], pk: object, *, what: str, field: str) -> M:
    if not is_valid_id(pk):
        raise NotFound(N_("No such {what}: {pk}."), params={"what": what, "pk": pk}, field=field)
    row = queryset.filter(pk=pk).first()
    if row is None:
        raise NotFound(N_("No such {what}: {pk}."), params={"what": what, "pk": pk}, field=field)
    return row


def local_day(brand: Brand, at: dt.datetime) -> dt.date:
    return at.astimezone(brand.tz).date()


# --- Channels ---------------------------------------------------------------------------------

CHANNEL_FIELDS = [
    "code", "name", "type", "platform", "owner_id", "partner_id", "starts_on", "ends_on",
    "hook_description", "hook_coupon_code", "hook_gift", "tags", "cost_per_reach_fen",
    "cost_per_add_fen", "cpa_fen", "cpa_event", "cps_bp", "attribution_window_days", "is_active",
]  # fmt: skip
CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check_channel(brand: Brand, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "code" in out:
        code = _text(out["code"], "code", max_length=64, required=True).lower()
        if not CODE_PATTERN.match(code):
            raise ValidationFailed(
                N_("code may hold lower-case letters, digits, - and _ only."), field="code"
            )
        out["code"] = code
    if "name" in out:
        out["name"] = _text(out["name"], "name", max_length=120, required=True)
    if "type" in out and out["type"] not in ChannelType.values:
        raise ValidationFailed(
            N_("Unknown channel type {type!r}."), params={"type": out["type"]}, field="type"
        )
    if out.get("platform") and out["platform"] not in Platform.values:
        raise ValidationFailed(
            N_("Unknown platform {platform!r}."),
            params={"platform": out["platform"]},
            field="platform",
        )
    if "platform" in out and out["platform"] is None:
        out["platform"] = ""
    for name, limit in (("hook_description", 200), ("hook_coupon_code", 64), ("hook_gift", 120)):
        if name in out:
            out[name] = _text(out[name] or "", name, max_length=limit)
    for name in ("cost_per_reach_fen", "cost_per_add_fen", "cpa_fen"):
        if name in out:
            _fen(out[name], name)
    if "cps_bp" in out:
        _bp(out["cps_bp"], "cps_bp")
    if "cpa_event" in out and out["cpa_event"] not in CpaEvent.values:
        raise ValidationFailed(N_("cpa_event must be added or activated."), field="cpa_event")
    if "attribution_window_days" in out:
        _window(out["attribution_window_days"], "attribution_window_days")
    if "tags" in out:
        tags = out["tags"] or []
        if not isinstance(tags, list) or len(tags) > 20:
            raise ValidationFailed(N_("tags must be a list of at most 20."), field="tags")
        for n, tag in enumerate(tags):
            group, sep, name = str(tag).partition("/")
            if not isinstance(tag, str) or not sep or not group.strip() or not name.strip():
                raise ValidationFailed(
                    N_('Each tag is "group/name", e.g. "渠道/包裹卡".'), field=f"tags.{n}"
                )
        out["tags"] = [t.strip() for t in tags]
    if (
        out.get("owner_id") is not None
        and not Staff.objects.filter(
            brand=brand, pk=out["owner_id"] if is_valid_id(out["owner_id"]) else 0
        ).exists()
    ):
        raise ValidationFailed(
            N_("No such staff member: {owner_id}."),
            params={"owner_id": out["owner_id"]},
            field="owner_id",
        )
    if (
        out.get("partner_id") is not None
        and not Partner.objects.filter(
            brand=brand, pk=out["partner_id"] if is_valid_id(out["partner_id"]) else 0
        ).exists()
    ):
        raise ValidationFailed(
            N_("No such partner: {partner_id}."),
            params={"partner_id": out["partner_id"]},
            field="partner_id",
        )
    return out


def create_channel(*, actor: Staff | None, brand: Brand, **fields: Any) -> Channel:
    if actor is not None:
        require(actor, Action.CHANNEL_MANAGE)
    reject_unknown_fields(fields, CHANNEL_FIELDS)
    for name in ("code", "name", "type"):
        if name not in fields:
            raise ValidationFailed(N_("{name} is required."), params={"name": name}, field=name)
    values = _check_channel(brand, fields)
    _check_period(values.get("starts_on"), values.get("ends_on"))
    with transaction.atomic():
        if Channel.objects.filter(brand=brand, code=values["code"]).exists():
            raise Conflict(
                N_("A channel with code {code!r} exists."),
                params={"code": values["code"]},
                field="code",
            )
        channel = Channel.objects.create(brand=brand, created_at=clock.now(), **values)
        audit.record(brand=brand, actor=actor, action="channel.create", target=channel)
    return channel


def _check_period(starts_on: dt.date | None, ends_on: dt.date | None) -> None:
    if starts_on and ends_on and ends_on < starts_on:
        raise ValidationFailed(N_("ends_on is before starts_on."), field="ends_on")


def update_channel(*, actor: Staff, channel_id: int, **changes: Any) -> Channel:
    channel = get_channel(actor=actor, channel_id=channel_id, action=Action.CHANNEL_MANAGE)
    reject_unknown_fields(changes, CHANNEL_FIELDS)
    values = _check_channel(channel.brand, changes)
    _check_period(
        values.get("starts_on", channel.starts_on), values.get("ends_on", channel.ends_on)
    )
    with transaction.atomic():
        if (
            "code" in values
            and Channel.objects.filter(brand=channel.brand, code=values["code"])
            .exclude(pk=channel.pk)
            .exists()
        ):
            raise Conflict(
                N_("A channel with code {code!r} exists."),
                params={"code": values["code"]},
                field="code",
            )
        before = audit.snapshot(channel, list(values))
        for name, value in values.items():
            setattr(channel, name, value)
        channel.save()
        audit.record(
            brand=channel.brand, actor=actor, action="channel.update", target=channel,
            changes=audit.diff(before, audit.snapshot(channel, list(values))),
        )  # fmt: skip
    return channel


def get_channel(*, actor: Staff, channel_id: int, action: Action = Action.CHANNEL_VIEW) -> Channel:
    return _scoped(
        Channel.objects.for_actor(actor, action), channel_id, what="channel", field="channel_id"
    )


def list_channels(*, actor: Staff, partner_id: int | None = None) -> list[Channel]:
    """The channels the actor may see, by code; with `partner_id`, only that partner's."""
    rows = Channel.objects.for_actor(actor, Action.CHANNEL_VIEW)
    if partner_id is not None:
        rows = rows.filter(partner_id=partner_id)
    return list(rows.order_by("code"))


# --- Costs and reach -------------------------------------------------------------------------


def add_cost(
    *, actor: Staff, channel_id: int, date: dt.date, amount_fen: int, note: str = ""
) -> ChannelCost:
    channel = get_channel(actor=actor, channel_id=channel_id, action=Action.CHANNEL_MANAGE)
    _fen(amount_fen, "amount_fen")
    if not isinstance(date, dt.date):
        raise ValidationFailed(N_("date must be YYYY-MM-DD."), field="date")
    with transaction.atomic():
        cost = ChannelCost.objects.create(
            brand=channel.brand, channel=channel, date=date, amount_fen=amount_fen,
            note=_text(note, "note", max_length=200), created_at=clock.now(),
        )  # fmt: skip
        audit.record(
            brand=channel.brand, actor=actor, action="channel.cost", target=channel,
            changes={"cost": {"after": {"date": date.isoformat(), "amount_fen": amount_fen}}},
        )  # fmt: skip
    return cost


def add_costs(
    *, actor: Staff, date: dt.date, items: Sequence[tuple[int, int, str]]
) -> list[ChannelCost]:
    """`add_cost` for several (channel id, amount_fen, note) on one date: the channels read
    at once, the costs and their audit entries inserted together."""
    if not isinstance(date, dt.date):
        raise ValidationFailed(N_("date must be YYYY-MM-DD."), field="date")
    ids = [pk for pk, _amount, _note in items]
    channels = (
        Channel.objects.for_actor(actor, Action.CHANNEL_MANAGE)
        .select_related("brand")
        .in_bulk([pk for pk in ids if is_valid_id(pk)])
    )
    now = clock.now()
    rows = []
    for pk, amount_fen, note in items:
        if pk not in channels:
            get_channel(actor=actor, channel_id=pk, action=Action.CHANNEL_MANAGE)  # raises
        _fen(amount_fen, "amount_fen")
        channel = channels[pk]
        rows.append(
            ChannelCost(
                brand=channel.brand,
                channel=channel,
                date=date,
                amount_fen=amount_fen,
                note=_text(note, "note", max_length=200),
                created_at=now,
            )
        )
    with transaction.atomic():
        ChannelCost.objects.bulk_create(rows)
        audit.record_many(
            brand=actor.brand, actor=actor, action="channel.cost",
            entries=[
                (
                    row.channel,
                    {"cost": {"after": {"date": date.isoformat(), "amount_fen": row.amount_fen}}},
                    None,
                )
                for row in rows
            ],
        )  # fmt: skip
    return rows


def list_costs(*, actor: Staff, channel_id: int) -> list[ChannelCost]:
    channel = get_channel(actor=actor, channel_id=channel_id)
    return list(channel.costs.all())


def _set_reach(
    channel: Channel, date: dt.date, count: int, batch: PackageCardBatch | None
) -> ReachRecord:
    row, _ = ReachRecord.objects.update_or_create(
        channel=channel, batch=batch, date=date,
        defaults={"brand": channel.brand, "count": count},
    )  # fmt: skip
    return row


def _check_count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise ValidationFailed(
            N_("{field} must be a whole number from 0 to 10^9."),
            params={"field": field},
            field=field,
        )
    return value


def record_reach(
    *, actor: Staff, channel_id: int, date: dt.date, count: int, batch_id: int | None = None
) -> ReachRecord:
    """Set how many people the channel (or one of its card batches) reached on a date.
    Posting the same date again replaces the number (a correction, not an addition)."""
    channel = get_channel(actor=actor, channel_id=channel_id, action=Action.CHANNEL_MANAGE)
    _check_count(count, "count")
    batch = None
    if batch_id is not None:
        batch = _scoped(
            PackageCardBatch.objects.filter(channel=channel), batch_id, what="batch",
            field="batch_id",
        )  # fmt: skip
    with transaction.atomic():
        row = _set_reach(channel, date, count, batch)
        audit.record(
            brand=channel.brand, actor=actor, action="channel.reach", target=channel,
            changes={"reach": {"after": {"date": date.isoformat(), "count": count}}},
        )  # fmt: skip
    return row


def record_reaches(*, actor: Staff, date: dt.date, counts: Mapping[int, int]) -> list[ReachRecord]:
    """`record_reach` (no card batch) for several channels on one date (channel id → count):
    the channels read at once, existing rows for the date updated, new ones inserted
    together, one audit entry per channel as `record_reach` writes."""
    for pk, count in counts.items():
        if not is_valid_id(pk):
            get_channel(actor=actor, channel_id=pk, action=Action.CHANNEL_MANAGE)  # raises
        _check_count(count, "count")
    channels = Channel.objects.for_actor(actor, Action.CHANNEL_MANAGE).in_bulk(list(counts))
    for pk in counts:
        if pk not in channels:
            get_channel(actor=actor, channel_id=pk, action=Action.CHANNEL_MANAGE)  # raises
    with transaction.atomic():
        existing = {
            row.channel_id: row
            for row in ReachRecord.objects.select_for_update().filter(
                channel_id__in=list(counts), batch__isnull=True, date=date
            )
        }
        fresh = []
        for pk, count in counts.items():
            row = existing.get(pk)
            if row is None:
                fresh.append(
                    ReachRecord(brand=actor.brand, channel=channels[pk], date=date, count=count)
                )
            elif row.count != count:
                row.count = count
                row.save(update_fields=["count"])
        ReachRecord.objects.bulk_create(fresh)
        iso = date.isoformat()
        audit.record_many(
            brand=actor.brand, actor=actor, action="channel.reach",
            entries=[
                (channels[pk], {"reach": {"after": {"date": iso, "count": count}}}, None)
                for pk, count in counts.items()
            ],
        )  # fmt: skip
    made = {row.channel_id: row for row in fresh}
    return [existing.get(pk) or made[pk] for pk in counts]


@dataclass
class ReachImport:
    applied: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def import_reach(
    *, actor: Staff, source: str | IO[bytes], filename: str | None = None
) -> ReachImport:
    """Import reach from CSV/XLSX with columns channel, date, count and optional batch.
    All or nothing: every bad row is reported (row number, column, reason) and then nothing
    is applied, so a corrected file can simply be imported again."""
    require(actor, Action.CHANNEL_MANAGE)
    result = ReachImport()
    channels = {c.code: c for c in Channel.objects.for_actor(actor, Action.CHANNEL_MANAGE)}
    batches = {
        (b.channel_id, b.code): b for b in PackageCardBatch.objects.filter(brand=actor.brand)
    }
    rows: list[tuple[Channel, dt.date, int, PackageCardBatch | None]] = []
    seen: set[tuple[int, int | None, dt.date]] = set()
    with tabular.open_table(source, filename=filename) as table:
        missing = [c for c in ("channel", "date", "count") if c not in table.headers]
        if missing:
            raise ValidationFailed(
                N_("The file has no {value!r} column."),
                params={"value": missing[0]},
                field=missing[0],
            )
        for row in table.rows():
            values = row.values

            def bad(column: str, reason: str, row_number: int = row.number) -> None:
                result.errors.append({"row": row_number, "column": column, "reason": reason})

            channel = channels.get(values.get("channel", "").strip().lower())
            if channel is None:
                bad("channel", f"unknown channel {values.get('channel', '')!r}")
                continue
            try:
                date = tabular.parse_date(values.get("date", ""), field="date")
                count = tabular.parse_int(values.get("count", ""), field="count", minimum=0)
            except ValidationFailed as exc:
                bad(exc.field or "", exc.message)
                continue
            if count > 10**9:
                bad("count", "is more than 10^9")
                continue
            batch = None
            if values.get("batch", "").strip():
                batch = batches.get((channel.pk, values["batch"].strip()))
                if batch is None:
                    bad("batch", f"unknown batch {values['batch']!r} of this channel")
                    continue
            key = (channel.pk, batch.pk if batch else None, date)
            if key in seen:
                bad("date", "the same channel, batch and date appear twice")
                continue
            seen.add(key)
            rows.append((channel, date, count, batch))
    if result.errors:
        return result
    with transaction.atomic():
        for channel, date, count, batch in rows:
            _set_reach(channel, date, count, batch)
        audit.record(
            brand=actor.brand, actor=actor, action="channel.reach_import", target=actor.brand,
            changes={"rows": {"after": len(rows)}},
        )  # fmt: skip
    result.applied = len(rows)
    return result


# --- Live codes -------------------------------------------------------------------------------


def _check_schedule(schedule: Any, pool: set[int]) -> dict[str, Any]:
    if schedule in (None, {}):
        return {}
    if not isinstance(schedule, dict) or set(schedule) - {"weekly", "special"}:
        raise ValidationFailed(
            N_("schedule is {weekly: {mon: [slots]…}, special: {YYYY-MM-DD: [slots]}}."),
            field="schedule",
        )

    def slots(value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or len(value) > 48:
            raise ValidationFailed(N_("A day is a list of at most 48 slots."), field=where)
        out = []
        for n, slot in enumerate(value):
            at = f"{where}.{n}"
            if not isinstance(slot, dict) or set(slot) != {"start", "end", "accounts"}:
                raise ValidationFailed(N_("A slot is {start, end, accounts}."), field=at)
            for key in ("start", "end"):
                if not isinstance(slot[key], str) or not TIME_PATTERN.match(slot[key]):
                    raise ValidationFailed(
                        N_("Times are HH:MM (00:00–24:00)."), field=f"{at}.{key}"
                    )
            if slot["end"] <= slot["start"]:
                raise ValidationFailed(N_("A slot ends after it starts."), field=f"{at}.end")
            accounts = slot["accounts"]
            if not isinstance(accounts, list) or not all(is_valid_id(a) for a in accounts):
                raise ValidationFailed(
                    N_("accounts is a list of account ids."), field=f"{at}.accounts"
                )
            outside = [a for a in accounts if a not in pool]
            if outside:
                raise ValidationFailed(
                    N_("Account {value} is not in this live code's pool."),
                    params={"value": outside[0]},
                    field=f"{at}.accounts",
                )
            out.append({"start": slot["start"], "end": slot["end"], "accounts": list(accounts)})
        return out

    weekly = schedule.get("weekly", {}) or {}
    special = schedule.get("special", {}) or {}
    if not isinstance(weekly, dict) or set(weekly) - set(WEEKDAYS):
        raise ValidationFailed(N_("weekly days are mon … sun."), field="schedule.weekly")
    if not isinstance(special, dict) or len(special) > 366:
        raise ValidationFailed(N_("special is {YYYY-MM-DD: [slots]}."), field="schedule.special")
    out_special = {}
    for day, value in special.items():
        try:
            dt.date.fromisoformat(day)
        except (TypeError, ValueError):
            raise ValidationFailed(
                N_("{day!r} is not a date (YYYY-MM-DD)."),
                params={"day": day},
                field=f"schedule.special.{day}",
            ) from None
        out_special[day] = slots(value, f"schedule.special.{day}")
    return {
        "weekly": {d: slots(v, f"schedule.weekly.{d}") for d, v in weekly.items()},
        "special": out_special,
    }


def _check_attachments(value: Any) -> list[dict[str, Any]]:
    if value in (None, []):
        return []
    if not isinstance(value, list) or len(value) > 9:
        raise ValidationFailed(
            N_("welcome_attachments is a list of at most 9."), field="welcome_attachments"
        )
    out = []
    for n, item in enumerate(value):
        at = f"welcome_attachments.{n}"
        if not isinstance(item, dict) or item.get("type") not in ATTACHMENT_TYPES:
            raise ValidationFailed(
                N_("An attachment has a type: image, link or miniprogram."), field=f"{at}.type"
            )
        required = {"image": ["url"], "link": ["url", "title"], "miniprogram": ["appid", "page"]}
        for key in required[item["type"]]:
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ValidationFailed(
                    N_("A {type} needs {key}."),
                    params={"type": item["type"], "key": key},
                    field=f"{at}.{key}",
                )
        if "url" in item and urlsplit(item["url"]).scheme not in ("http", "https"):
            raise ValidationFailed(N_("url must be http(s)."), field=f"{at}.url")
        allowed = {"type", "url", "title", "description", "appid", "page", "media_id"}
        extra = set(item) - allowed
        if extra:
            raise ValidationFailed(
                N_("Unknown key {value!r}."), params={"value": sorted(extra)[0]}, field=at
            )
        out.append({k: str(v)[:500] if k != "type" else v for k, v in item.items()})
    return out


def _check_members(brand: Brand, members: Any, actor: Staff | None = None) -> list[dict[str, Any]]:
    if not isinstance(members, list) or not members or len(members) > 200:
        raise ValidationFailed(N_("A live code needs 1 to 200 accounts."), field="members")
    out, seen = [], set()
    for n, m in enumerate(members):
        at = f"members.{n}"
        if not isinstance(m, Mapping) or not is_valid_id(m.get("account_id")):
            raise ValidationFailed(N_("Each member has an account_id."), field=f"{at}.account_id")
        weight = m.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
            raise ValidationFailed(N_("weight is 1 to 1000."), field=f"{at}.weight")
        if m["account_id"] in seen:
            raise ValidationFailed(N_("An account appears twice."), field=f"{at}.account_id")
        seen.add(m["account_id"])
        out.append(
            {"account_id": m["account_id"], "weight": weight, "is_backup": bool(m.get("is_backup"))}
        )
    reachable = (
        CarrierAccount.objects.filter(brand=brand)
        if actor is None
        else CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW)
    )
    found = set(reachable.filter(pk__in=seen).values_list("pk", flat=True))
    for n, m in enumerate(out):
        if m["account_id"] not in found:
            raise ValidationFailed(
                N_("No such carrier account: {account_id}."),
                params={"account_id": m["account_id"]},
                field=f"members.{n}.account_id",
            )
    if all(m["is_backup"] for m in out):
        raise ValidationFailed(N_("At least one account must not be a backup."), field="members")
    return out


LIVE_CODE_FIELDS = [
    "channel_id", "name", "store_id", "partner_id", "rule", "members", "schedule",
    "welcome_text", "welcome_attachments", "is_active",
]  # fmt: skip


def _live_code_values(actor: Staff | None, brand: Brand, values: dict[str, Any]) -> dict[str, Any]:
    reject_unknown_fields(values, LIVE_CODE_FIELDS)
    out = dict(values)
    if "name" in out:
        out["name"] = _text(out["name"], "name", max_length=120, required=True)
    if "rule" in out and out["rule"] not in RoutingRule.values:
        raise ValidationFailed(
            N_("Unknown routing rule {rule!r}."), params={"rule": out["rule"]}, field="rule"
        )
    if "channel_id" in out:
        # Store roles may hang their store's live codes on any of the brand's active
        # channels (they could not see a channel before its first code in their store).
        channels: QuerySet[Channel] = (
            Channel.objects.filter(brand=brand)
            if actor is None
            else Channel.objects.filter(brand=brand, is_active=True)
            if require(actor, Action.LIVE_CODE_MANAGE) is not Scope.BRAND
            else Channel.objects.for_actor(actor, Action.CHANNEL_VIEW)
        )
        _scoped(channels, out["channel_id"], what="channel", field="channel_id")
    if out.get("store_id") is not None:
        stores = Store.objects.filter(brand=brand)
        if actor is not None and require(actor, Action.LIVE_CODE_MANAGE) is not Scope.BRAND:
            stores = stores.filter(pk__in=actor.store_ids)
        if not is_valid_id(out["store_id"]) or not stores.filter(pk=out["store_id"]).exists():
            raise ValidationFailed(
                N_("No such store: {store_id}."),
                params={"store_id": out["store_id"]},
                field="store_id",
            )
    elif (
        actor is not None
        and require(actor, Action.LIVE_CODE_MANAGE) is not Scope.BRAND
        and ("store_id" in out or "channel_id" in out)
    ):
        raise ValidationFailed(N_("Store roles make live codes for their store."), field="store_id")
    if (
        out.get("partner_id") is not None
        and not Partner.objects.filter(
            brand=brand, pk=out["partner_id"] if is_valid_id(out["partner_id"]) else 0
        ).exists()
    ):
        raise ValidationFailed(
            N_("No such partner: {partner_id}."),
            params={"partner_id": out["partner_id"]},
            field="partner_id",
        )
    if "members" in out:
        out["members"] = _check_members(brand, out["members"], actor)
    if "welcome_text" in out:
        out["welcome_text"] = _text(out["welcome_text"] or "", "welcome_text", max_length=2000)
    if "welcome_attachments" in out:
        out["welcome_attachments"] = _check_attachments(out["welcome_attachments"])
    return out


def _write_members(code: LiveCode, members: list[dict[str, Any]]) -> None:
    code.members.all().delete()
    LiveCodeMember.objects.bulk_create(
        LiveCodeMember(
            live_code=code, account_id=m["account_id"], weight=m["weight"],
            is_backup=m["is_backup"], position=n,
        )
        for n, m in enumerate(members)
    )  # fmt: skip


def create_live_code(*, actor: Staff | None, brand: Brand, **fields: Any) -> LiveCode:
    if actor is not None:
        require(actor, Action.LIVE_CODE_MANAGE)
    for name in ("channel_id", "name", "rule", "members"):
        if name not in fields:
            raise ValidationFailed(N_("{name} is required."), params={"name": name}, field=name)
    values = _live_code_values(actor, brand, fields)
    members = values.pop("members")
    pool = {m["account_id"] for m in members}
    values["schedule"] = _check_schedule(values.get("schedule"), pool)
    if values["rule"] == RoutingRule.TIME_SLOT and not values["schedule"]:
        raise ValidationFailed(N_("The time-slot rule needs a schedule."), field="schedule")
    now = clock.now()
    with transaction.atomic():
        code = LiveCode.objects.create(
            brand=brand, created_at=now, updated_at=now,
            public_token=secrets.token_urlsafe(SHORT_CODE_BYTES), **values,
        )  # fmt: skip
        _write_members(code, members)
        audit.record(brand=brand, actor=actor, action="live_code.create", target=code,
                     store=code.store)  # fmt: skip
    sync_live_code_carrier(live_code=code)
    return code


def get_live_code(
    *, actor: Staff, live_code_id: int, action: Action = Action.CHANNEL_VIEW
) -> LiveCode:
    return _scoped(
        LiveCode.objects.for_actor(actor, action).select_related("channel", "store"),
        live_code_id, what="live code", field="live_code_id",
    )  # fmt: skip


def update_live_code(*, actor: Staff, live_code_id: int, **changes: Any) -> LiveCode:
    code = get_live_code(actor=actor, live_code_id=live_code_id, action=Action.LIVE_CODE_MANAGE)
    values = _live_code_values(actor, code.brand, changes)
    members = values.pop("members", None)
    pool = (
        {m["account_id"] for m in members}
        if members is not None
        else set(code.members.values_list("account_id", flat=True))
    )
    schedule = values.pop("schedule", code.schedule)
    values["schedule"] = _check_schedule(schedule, pool)
    if values.get("rule", code.rule) == RoutingRule.TIME_SLOT and not values["schedule"]:
        raise ValidationFailed(N_("The time-slot rule needs a schedule."), field="schedule")
    with transaction.atomic():
        keys = [k for k in values if k != "schedule"]
        before = audit.snapshot(code, keys)
        for name, value in values.items():
            setattr(code, name, value)
        code.updated_at = clock.now()
        code.save()
        if members is not None:
            _write_members(code, members)
        audit.record(
            brand=code.brand, actor=actor, action="live_code.update", target=code,
            store=code.store,
            changes=audit.diff(before, audit.snapshot(code, keys)),
        )  # fmt: skip
    sync_live_code_carrier(live_code=code)  # the pool, schedule or caps may have changed
    return code


def list_live_codes(*, actor: Staff, channel_id: int | None = None) -> list[LiveCode]:
    qs = LiveCode.objects.for_actor(actor, Action.CHANNEL_VIEW).select_related("channel", "store")
    if channel_id is not None:
        qs = qs.filter(channel_id=channel_id)
    return list(qs.order_by("-id"))


# --- Routing ---------------------------------------------------------------------------------


def _members(code: LiveCode) -> tuple[list[LiveCodeMember], list[LiveCodeMember]]:
    rows = list(code.members.select_related("account__store").filter(account__is_active=True))
    return [m for m in rows if not m.is_backup], [m for m in rows if m.is_backup]


def _scheduled(code: LiveCode, at: dt.datetime) -> set[int]:
    """Accounts on duty at `at` in the brand's time zone: a special date replaces the week."""
    local = at.astimezone(code.brand.tz)
    special = code.schedule.get("special", {})
    day_slots = special.get(local.date().isoformat())
    if day_slots is None:
        day_slots = code.schedule.get("weekly", {}).get(WEEKDAYS[local.weekday()], [])
    now = local.strftime("%H:%M")
    on_duty: set[int] = set()
    for slot in day_slots:
        if slot["start"] <= now < slot["end"]:
            on_duty.update(slot["accounts"])
    return on_duty


def _has_room(day: AccountDay | None, cap: int | None) -> bool:
    if cap is None:
        return True
    if day is None:
        return cap > 0
    return day.assigned < cap and day.added < cap


def _reserve(account: CarrierAccount, day: dt.date, *, force: bool = False) -> bool:
    """Count one routed add on the account's day if it has room, atomically (the UPDATE's
    condition is re-checked under the row lock, so concurrent adds never pass the cap)."""
    cap = account.daily_add_cap
    for _attempt in range(2):
        qs = AccountDay.objects.filter(account=account, day=day)
        if cap is not None and not force:
            qs = qs.filter(assigned__lt=cap, added__lt=cap)
        if qs.update(assigned=F("assigned") + 1) == 1:
            return True
        if AccountDay.objects.filter(account=account, day=day).exists():
            return False
        AccountDay.objects.bulk_create(
            [AccountDay(account=account, day=day)], ignore_conflicts=True
        )
    return False


def _ticket(code: LiveCode) -> int:
    """The next position of the live code's rotation (serialised by the row's lock)."""
    LiveCode.objects.filter(pk=code.pk).update(rotation=F("rotation") + 1)
    return int(LiveCode.objects.filter(pk=code.pk).values_list("rotation", flat=True)[0]) - 1


def smooth_weighted_order(weights: Sequence[int]) -> list[int]:
    """One cycle of smooth weighted round-robin (as nginx does): indexes in an interleaved
    order where index i appears weights[i] times."""
    total = sum(weights)
    current = [0] * len(weights)
    order = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(best)
    return order


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(min(1.0, h)))


def _check_location(location: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if location is None:
        return None
    if "latitude" in location or "longitude" in location:
        try:
            lat, lon = float(location["latitude"]), float(location["longitude"])
        except (KeyError, TypeError, ValueError):
            raise ValidationFailed(
                N_("location needs numeric latitude and longitude."), field="location"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValidationFailed(N_("location is out of range."), field="location")
        return {"latitude": lat, "longitude": lon}
    if isinstance(location.get("city"), str) and location["city"].strip():
        return {"city": location["city"].strip()}
    raise ValidationFailed(N_("location is {latitude, longitude} or {city}."), field="location")


def _by_distance(
    members: list[LiveCodeMember], location: Mapping[str, Any] | None, ticket: int
) -> list[LiveCodeMember]:
    """Nearest store first; accounts of the same store take turns; unknown places last."""

    def rank(m: LiveCodeMember) -> float:
        store = m.account.store
        if location is None or store is None:
            return math.inf
        if "city" in location:
            return 0.0 if store.city == location["city"] else math.inf
        if store.latitude is None or store.longitude is None:
            return math.inf
        return _distance_km(
            location["latitude"], location["longitude"], float(store.latitude),
            float(store.longitude),
        )  # fmt: skip

    ranked: dict[float, list[LiveCodeMember]] = {}
    for m in members:
        ranked.setdefault(rank(m), []).append(m)
    out = []
    for distance in sorted(ranked):
        group = ranked[distance]
        shift = ticket % len(group)
        out.extend(group[shift:] + group[:shift])
    return out


def _candidates(
    code: LiveCode,
    members: list[LiveCodeMember],
    at: dt.datetime,
    location: Mapping[str, Any] | None,
    ticket: int,
) -> list[LiveCodeMember]:
    if not members:
        return []
    if code.rule == RoutingRule.TIME_SLOT:
        on_duty = _scheduled(code, at)
        members = [m for m in members if m.account_id in on_duty]
        if not members:
            return []
    if code.rule == RoutingRule.NEAREST_STORE:
        return _by_distance(members, location, ticket)
    if code.rule == RoutingRule.WEIGHTED:
        order = smooth_weighted_order([m.weight for m in members])
        start = ticket % len(order)
        out: list[LiveCodeMember] = []
        for i in order[start:] + order[:start]:
            if members[i] not in out:
                out.append(members[i])
        return out
    shift = ticket % len(members)
    return members[shift:] + members[:shift]


def assign_account(
    *,
    live_code: LiveCode,
    at: dt.datetime,
    customer: Customer | None = None,
    location: Mapping[str, Any] | None = None,
) -> CarrierAccount:
    """Choose the carrier account for the next add through `live_code` and count it against
    that account's daily cap. Raises NoCapacity (after recording an alert for the code's
    owner) when neither the pool nor the backups have room. Call it outside any transaction
    of your own so that the alert survives the refusal."""
    location = _check_location(location)
    day = local_day(live_code.brand, at)
    for attempt in range(3):
        try:
            chosen = _route(live_code, day, at, customer, location)
        except OperationalError as exc:
            # A deadlock victim or a busy SQLite file: the transaction rolled back whole.
            if attempt == 2 or not is_transient(exc):
                raise
            continue
        if chosen is not None:
            return chosen
        break
    _alert_no_capacity(live_code, day)
    raise NoCapacity(
        N_("Live code {name!r} has no account with room left today."),
        params={"name": live_code.name},
        field="live_code",
    )


class _NoRoom(Exception):
    """An add of `assign_accounts` found no room: undo the batch, go one by one."""


def assign_accounts(*, items: Sequence[tuple[LiveCode, dt.datetime]]) -> list[CarrierAccount]:
    """`assign_account` for a run of adds (live code, moment; no customer, no location), in
    order, with the same accounts and counts as calling it for each in turn: each code's
    rotation moved once, its members read once, the capped accounts' days read (and locked)
    once and each account's day counted with one UPDATE. When an add would find no room the
    batch is undone and the adds go one by one, so that NoCapacity (and its alert) comes at
    the same add. Call it outside any transaction of your own, as `assign_account`."""
    if not items:
        return []
    for attempt in range(3):
        try:
            return _route_many(items)
        except _NoRoom:
            break
        except OperationalError as exc:
            if attempt == 2 or not is_transient(exc):
                raise
    return [assign_account(live_code=code, at=at) for code, at in items]


def _route_many(items: Sequence[tuple[LiveCode, dt.datetime]]) -> list[CarrierAccount]:
    codes = {code.pk: code for code, _at in items}
    days = [local_day(code.brand, at) for code, at in items]
    with transaction.atomic():
        tickets: dict[int, int] = {}
        members: dict[int, tuple[list[LiveCodeMember], list[LiveCodeMember]]] = {}
        for pk in sorted(codes):  # one lock order for concurrent batches
            n = sum(1 for code, _at in items if code.pk == pk)
            LiveCode.objects.filter(pk=pk).update(rotation=F("rotation") + n)
            end = LiveCode.objects.filter(pk=pk).values_list("rotation", flat=True)[0]
            tickets[pk] = int(end) - n
            members[pk] = _members(codes[pk])
        capped = {
            m.account_id
            for pool, backups in members.values()
            for m in [*pool, *backups]
            if m.account.daily_add_cap is not None
        }
        used: dict[tuple[int, dt.date], list[int]] = {}
        if capped:
            # Every capped account's row for the days exists and is locked before it is read.
            AccountDay.objects.bulk_create(
                [
                    AccountDay(account_id=a, day=d)
                    for a in sorted(capped)
                    for d in sorted(set(days))
                ],
                ignore_conflicts=True,
            )
            for row in AccountDay.objects.select_for_update().filter(
                account_id__in=capped, day__in=set(days)
            ):
                used[(row.account_id, row.day)] = [row.assigned, row.added]
        taken: Counter[tuple[int, dt.date]] = Counter()
        chosen: list[CarrierAccount] = []
        for (code, at), day in zip(items, days, strict=True):
            ticket = tickets[code.pk]
            tickets[code.pk] += 1
            pool, backups = members[code.pk]
            for member in [*_candidates(code, pool, at, None, ticket), *backups]:
                account, key = member.account, (member.account_id, day)
                cap = account.daily_add_cap
                if cap is not None:
                    assigned, added = used[key]
                    if not (assigned + taken[key] < cap and added < cap):
                        continue
                taken[key] += 1
                chosen.append(account)
                break
            else:
                raise _NoRoom
        AccountDay.objects.bulk_create(
            [AccountDay(account_id=a, day=d) for a, d in sorted(taken) if a not in capped],
            ignore_conflicts=True,
        )
        for (account_id, day), n in sorted(taken.items()):
            AccountDay.objects.filter(account_id=account_id, day=day).update(
                assigned=F("assigned") + n
            )
    return chosen


def _route(
    live_code: LiveCode,
    day: dt.date,
    at: dt.datetime,
    customer: Customer | None,
    location: Mapping[str, Any] | None,
) -> CarrierAccount | None:
    with transaction.atomic():
        if customer is not None and live_code.rule == RoutingRule.EXCLUSIVE:
            owner_account = _owner_account(live_code, customer)
            if owner_account is not None:
                # The relationship wins over the cap: the customer goes back to their staff.
                _reserve(owner_account, day, force=True)
                return owner_account
        ticket = _ticket(live_code)
        pool, backups = _members(live_code)
        for member in [*_candidates(live_code, pool, at, location, ticket), *backups]:
            if _reserve(member.account, day):
                return member.account
    return None


def _owner_account(code: LiveCode, customer: Customer) -> CarrierAccount | None:
    customer = customers.survivor(customer)
    if customer.owner_staff_id is None:
        return None
    pool_ids = list(code.members.values_list("account_id", flat=True))
    accounts = CarrierAccount.objects.filter(
        brand_id=code.brand_id, staff_id=customer.owner_staff_id, is_active=True
    )
    return accounts.filter(pk__in=pool_ids).first() or accounts.order_by("id").first()


def _alert_no_capacity(code: LiveCode, day: dt.date) -> None:
    owner = code.channel.owner
    message = f"Live code {code.name!r} has no capacity left on {day.isoformat()}."
    with transaction.atomic():
        _, created = Alert.objects.get_or_create(
            live_code=code, kind="no_capacity", day=day,
            defaults={"brand_id": code.brand_id, "owner": owner, "message": message,
                      "created_at": clock.now()},
        )  # fmt: skip
        if created:
            audit.record(
                brand=code.brand, actor=None, action="live_code.no_capacity", target=code,
                store=code.store, changes={"day": {"after": day.isoformat()}},
            )  # fmt: skip


def contact_way_members(*, live_code: LiveCode, at: dt.datetime) -> list[CarrierAccount]:
    """The accounts a WeCom multi-person contact way should list now: pool accounts on duty
    (time-slot rule) with room left today, else the backups with room."""
    day = local_day(live_code.brand, at)
    pool, backups = _members(live_code)
    if live_code.rule == RoutingRule.TIME_SLOT:
        on_duty = _scheduled(live_code, at)
        pool = [m for m in pool if m.account_id in on_duty]
    days = {
        d.account_id: d
        for d in AccountDay.objects.filter(
            account_id__in=[m.account_id for m in [*pool, *backups]], day=day
        )
    }
    for group in (pool, backups):
        room = [
            m.account for m in group if _has_room(days.get(m.account_id), m.account.daily_add_cap)
        ]
        if room:
            return room
    return []


# --- WeCom contact way sync -------------------------------------------------------------------

CARRIER_SYNC_LEASE = "acquisition.carrier_sync"
CARRIER_SYNC_TTL = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class CarrierSync:
    """What `sync_live_code_carrier` did: `synced` (WeCom rewritten), `unchanged`, `skipped`
    (no WeCom account in the pool, or none connected) or `error` (kept in
    LiveCode.carrier_sync_error and retried by the worker loop)."""

    status: str
    user_ids: list[str]
    message: str = ""


def _wecom_accounts(code: LiveCode) -> list[CarrierAccount]:
    return [
        m.account
        for m in code.members.select_related("account").order_by("is_backup", "position", "id")
        if m.account.kind == "wecom"
    ]


def _corp_adapter(code: LiveCode, accounts: list[CarrierAccount]) -> Any | None:
    """The WeCom adapter holding the corp credentials: a connected pool account, else any
    connected WeCom account of the brand (docs/wecom.md: one account holds them)."""
    from yutang.carriers import services as carriers
    from yutang.carriers.models import CarrierConnection

    connected = set(
        CarrierConnection.objects.filter(
            brand_id=code.brand_id, account__kind="wecom", account__is_active=True
        ).values_list("account_id", flat=True)
    )
    ordered = [a for a in accounts if a.pk in connected] + list(
        CarrierAccount.objects.filter(pk__in=connected).order_by("id")
    )
    for account in ordered:
        adapter = carriers.adapter_for(account)
        if getattr(adapter, "corp", None) is not None and hasattr(adapter, "upsert_contact_way"):
            return adapter
    return None


def sync_live_code_carrier(*, live_code: LiveCode, at: dt.datetime | None = None) -> CarrierSync:
    """Create or rewrite the live code's WeCom multi-person contact way so that its members
    are `contact_way_members` now (userid = account.external_id, state = state_for(code)),
    and keep its config_id and QR link (`carrier_qr_url`). Calls WeCom only when the member
    list differs from the one last written. Carrier failures do not raise: they are kept in
    `carrier_sync_error` and the worker loop retries."""
    at = at or clock.now()
    from yutang.carriers.base import CarrierError

    with transaction.atomic():
        code = LiveCode.objects.select_for_update().select_related("brand").get(pk=live_code.pk)
        wecom = _wecom_accounts(code)
        if not wecom or not code.is_active:
            return CarrierSync("skipped", [], "no active WeCom account in the pool")
        wecom_ids = {a.pk for a in wecom}
        user_ids = [
            a.external_id for a in contact_way_members(live_code=code, at=at) if a.pk in wecom_ids
        ]
        if not user_ids:
            # WeCom needs at least one member: keep the last list; the no-capacity alert tells
            # the channel owner, and the next sync after midnight or a slot change fixes it.
            message = "No WeCom account has room: the contact way keeps its last members."
            LiveCode.objects.filter(pk=code.pk).update(carrier_sync_error=message)
            return CarrierSync("unchanged", list(code.carrier_members), message)
        if code.carrier_config_id and code.carrier_members == user_ids:
            if code.carrier_sync_error:
                LiveCode.objects.filter(pk=code.pk).update(carrier_sync_error="")
            return CarrierSync("unchanged", user_ids)
        adapter = _corp_adapter(code, wecom)
        if adapter is None:
            message = "No connected WeCom account holds the corp credentials."
            LiveCode.objects.filter(pk=code.pk).update(carrier_sync_error=message)
            return CarrierSync("skipped", user_ids, message)
        try:
            config_id, qr_code = adapter.upsert_contact_way(
                config_id=code.carrier_config_id, user_ids=user_ids, state=state_for(code),
                remark=code.name[:30],
            )  # fmt: skip
        except CarrierError as exc:
            message = f"WeCom contact way: {exc.reason}"[:300]
            LiveCode.objects.filter(pk=code.pk).update(carrier_sync_error=message)
            return CarrierSync("error", user_ids, message)
        LiveCode.objects.filter(pk=code.pk).update(
            carrier_config_id=config_id, carrier_members=user_ids, carrier_qr_url=qr_code[:500],
            carrier_synced_at=clock.now(), carrier_sync_error="",
        )  # fmt: skip
    live_code.refresh_from_db()
    return CarrierSync("synced", user_ids)


def sync_live_code(*, actor: Staff, live_code_id: int) -> CarrierSync:
    """`sync_live_code_carrier` on behalf of a person (console button, REST, CLI)."""
    code = get_live_code(actor=actor, live_code_id=live_code_id, action=Action.LIVE_CODE_MANAGE)
    return sync_live_code_carrier(live_code=code)


def sync_carrier_live_codes(*, at: dt.datetime | None = None) -> int:
    """Sync every active live code with a WeCom account in its pool; the contact ways
    rewritten. The worker loop `acquisition.carrier_sync` runs it under a lease so that two
    workers never create the same contact way twice."""
    codes = LiveCode.objects.filter(is_active=True, members__account__kind="wecom").distinct()
    done = 0
    for code in codes.order_by("id"):
        if sync_live_code_carrier(live_code=code, at=at).status == "synced":
            done += 1
    return done


def carrier_sync_loop() -> int:
    """The worker loop: one holder at a time (a lease), a round every worker tick."""
    import os
    import socket

    from yutang.core.worker import acquire_lease, release_lease

    holder = f"{socket.gethostname()}:{os.getpid()}"
    if not acquire_lease(CARRIER_SYNC_LEASE, holder, CARRIER_SYNC_TTL):
        return 0
    try:
        return sync_carrier_live_codes()
    finally:
        release_lease(CARRIER_SYNC_LEASE, holder)


@dataclass(frozen=True)
class AccountCapacity:
    account_id: int
    display_name: str
    is_backup: bool
    weight: int
    cap: int | None
    assigned: int
    added: int
    has_room: bool
    on_duty: bool


def capacity_status(*, actor: Staff, live_code_id: int, at: dt.datetime) -> list[AccountCapacity]:
    code = get_live_code(actor=actor, live_code_id=live_code_id)
    day = local_day(code.brand, at)
    members = list(code.members.select_related("account"))
    days = {
        d.account_id: d
        for d in AccountDay.objects.filter(account_id__in=[m.account_id for m in members], day=day)
    }
    on_duty = _scheduled(code, at) if code.rule == RoutingRule.TIME_SLOT else None
    out = []
    for m in members:
        d = days.get(m.account_id)
        out.append(
            AccountCapacity(
                account_id=m.account_id, display_name=m.account.display_name,
                is_backup=m.is_backup, weight=m.weight, cap=m.account.daily_add_cap,
                assigned=d.assigned if d else 0, added=d.added if d else 0,
                has_room=m.account.is_active and _has_room(d, m.account.daily_add_cap),
                on_duty=on_duty is None or m.account_id in on_duty,
            )
        )  # fmt: skip
    return out


def list_alerts(*, actor: Staff, open_only: bool = True) -> list[Alert]:
    codes = LiveCode.objects.for_actor(actor, Action.CHANNEL_VIEW).values("pk")
    qs = Alert.objects.filter(brand=actor.brand, live_code__in=codes).select_related("live_code")
    if open_only:
        qs = qs.filter(resolved_at__isnull=True)
    return list(qs[:200])


def resolve_alert(*, actor: Staff, alert_id: int) -> Alert:
    codes = LiveCode.objects.for_actor(actor, Action.LIVE_CODE_MANAGE).values("pk")
    alert = _scoped(
        Alert.objects.filter(brand=actor.brand, live_code__in=codes), alert_id, what="alert",
        field="alert_id",
    )  # fmt: skip
    Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=clock.now())
    alert.refresh_from_db()
    return alert


# --- The carrier seams ------------------------------------------------------------------------


def state_for(live_code: LiveCode) -> str:
    """The carrier `state` naming a live code: "lc" + its id (at most 21 of WeCom's 30)."""
    state = f"lc{live_code.pk}"
    assert len(state) <= STATE_MAX
    return state


def live_code_for_state(*, brand: Brand, state: str | None) -> LiveCode | None:
    """The brand's live code named by a carrier `state`, or None for anything else."""
    if not isinstance(state, str) or len(state) > STATE_MAX:
        return None
    match = STATE_PATTERN.match(state)
    if match is None:
        return None
    return (
        LiveCode.objects.select_related("channel", "store", "brand")
        .filter(brand=brand, pk=int(match.group(1)))
        .first()
    )


def live_codes_for_states(
    *, brand: Brand, states: Iterable[str | None]
) -> dict[str | None, LiveCode | None]:
    """`live_code_for_state` of each distinct state, read in one query."""
    wanted: dict[str | None, int | None] = {}
    for state in states:
        if state in wanted:
            continue
        match = (
            STATE_PATTERN.match(state)
            if isinstance(state, str) and len(state) <= STATE_MAX
            else None
        )
        wanted[state] = int(match.group(1)) if match is not None else None
    ids = {pk for pk in wanted.values() if pk is not None}
    found = (
        LiveCode.objects.select_related("channel", "store", "brand")
        .filter(brand=brand, pk__in=sorted(ids))
        .in_bulk()
        if ids
        else {}
    )
    return {state: found.get(pk) if pk is not None else None for state, pk in wanted.items()}


@dataclass(frozen=True)
class Welcome:
    text: str
    attachments: list[dict[str, Any]]
    coupon_code: str = ""
    live_code_id: int | None = None


WELCOME_VARIABLES = re.compile(r"\{(name|staff|store)\}")
FALLBACK_WELCOME = "你好 {name}，我是 {staff}，很高兴认识你！"


def render_welcome(template: str, *, name: str, staff: str, store: str) -> str:
    values = {"name": name, "staff": staff, "store": store}
    return WELCOME_VARIABLES.sub(lambda m: values[m.group(1)], template)


def welcome_for_add(
    *,
    brand: Brand,
    account: CarrierAccount,
    state: str | None,
    customer_name: str,
    attachment_limit: int = 9,
) -> Welcome | None:
    """What to send first when a contact is added: the live code's welcome (variables
    rendered, attachments cut to the carrier's limit, the channel's hook coupon), else the
    brand's default welcome. None when the brand has neither (then send nothing)."""
    return welcome_for(
        brand_id=brand.pk,
        state=state,
        customer_name=customer_name,
        staff_name=account.display_name,
        account_store_name=account.store.name if account.store else "",
        attachment_limit=attachment_limit,
    )


def welcome_for(
    *,
    brand_id: int,
    state: str | None,
    customer_name: str,
    staff_name: str,
    account_store_name: str,
    attachment_limit: int = 9,
) -> Welcome | None:
    """`welcome_for_add` from the account's display name and store name: reads only the
    columns a welcome needs (it runs once per add, inside the carrier's welcome window).
    A batch of one of `welcomes_for`."""
    (welcome,) = welcomes_for(
        brand_id=brand_id,
        asks=[
            WelcomeAsk(
                state=state,
                customer_name=customer_name,
                staff_name=staff_name,
                account_store_name=account_store_name,
                attachment_limit=attachment_limit,
            )
        ],
    )
    return welcome


@dataclass(frozen=True)
class WelcomeAsk:
    """One add's welcome question (`welcomes_for`)."""

    state: str | None
    customer_name: str
    staff_name: str
    account_store_name: str
    attachment_limit: int = 9


def _code_id(state: str | None) -> int | None:
    match = (
        STATE_PATTERN.match(state) if isinstance(state, str) and len(state) <= STATE_MAX else None
    )
    return int(match.group(1)) if match is not None else None


def welcomes_for(*, brand_id: int, asks: Sequence[WelcomeAsk]) -> list[Welcome | None]:
    """`welcome_for` of each ask, in order: the asks' live codes are read in one query and
    the brand's default welcome at most once."""
    ids = {i for i in (_code_id(ask.state) for ask in asks) if i is not None}
    codes: dict[int, tuple[Any, ...]] = {}
    if ids:
        codes = {
            row[0]: row
            for row in LiveCode.objects.filter(brand_id=brand_id, pk__in=ids).values_list(
                "pk",
                "welcome_text",
                "welcome_attachments",
                "store__name",
                "channel__hook_coupon_code",
            )
        }
    default: list[str] = []

    def template() -> str:
        if not default:
            default.append(
                AcquisitionSettings.objects.filter(brand_id=brand_id)
                .values_list("default_welcome_text", flat=True)
                .first()
                or ""
            )
        return default[0]

    answers: list[Welcome | None] = []
    for ask in asks:
        code_id = _code_id(ask.state)
        code = codes.get(code_id) if code_id is not None else None
        store_name = code[3] if code is not None and code[3] is not None else ask.account_store_name
        if code is not None and code[1].strip():
            answers.append(
                Welcome(
                    text=render_welcome(
                        code[1], name=ask.customer_name, staff=ask.staff_name, store=store_name
                    ),
                    attachments=[dict(a) for a in code[2][: max(0, ask.attachment_limit)]],
                    coupon_code=code[4],
                    live_code_id=code[0],
                )
            )
            continue
        text = template()
        if not text.strip():
            answers.append(None)
            continue
        answers.append(
            Welcome(
                text=render_welcome(
                    text, name=ask.customer_name, staff=ask.staff_name, store=store_name
                ),
                attachments=[],
                coupon_code=code[4] if code is not None else "",
                live_code_id=code[0] if code is not None else None,
            )
        )
    return answers


@dataclass(frozen=True)
class AcquisitionDefaults:
    """The brand's fallback welcome (sent when a live code has no welcome of its own) and
    whether a logo is set for its QR codes."""

    default_welcome_text: str
    has_logo: bool


def acquisition_defaults(*, actor: Staff) -> AcquisitionDefaults:
    require(actor, Action.CHANNEL_VIEW)
    row = AcquisitionSettings.objects.filter(brand=actor.brand).first()
    return AcquisitionDefaults(
        default_welcome_text=row.default_welcome_text if row else "",
        has_logo=bool(row and row.logo_png),
    )


def set_default_welcome(*, actor: Staff, text: str) -> AcquisitionSettings:
    require(actor, Action.CHANNEL_MANAGE)
    text = _text(text, "default_welcome_text", max_length=2000)
    with transaction.atomic():
        row, _ = AcquisitionSettings.objects.update_or_create(
            brand=actor.brand, defaults={"default_welcome_text": text}
        )
        audit.record(brand=actor.brand, actor=actor, action="welcome.default", target=row)
    return row


def record_contact_added(
    *,
    brand: Brand,
    account: CarrierAccount,
    customer: Customer,
    state: str | None,
    occurred_at: dt.datetime,
) -> ContactAdd:
    """Count an add reported by the carrier and attribute it: the channel's tags, the owner
    (the account's staff and store) when the customer has none, first-touch channel, and the
    add counted against the account's day. Replaying the same add changes nothing."""
    _check_add(brand, account, customer, occurred_at)
    customer = customers.survivor(customer)
    code = live_code_for_state(brand=brand, state=state)
    channel = code.channel if code else None
    batch = PackageCardBatch.objects.filter(live_code=code).first() if code else None
    partner = _partner_of(code, channel)
    with transaction.atomic():
        existing = ContactAdd.objects.filter(
            account=account, customer=customer, added_at=occurred_at
        ).first()
        if existing is not None:
            return existing
        first_touch = (
            channel is not None
            and not ContactAdd.objects.filter(
                brand=brand, customer=customer, channel__isnull=False
            ).exists()
        )
        try:
            with transaction.atomic():
                add = ContactAdd.objects.create(
                    brand=brand, customer=customer, account=account, live_code=code,
                    channel=channel, partner=partner, batch=batch, state=(state or "")[:30],
                    added_at=occurred_at, is_first_touch=first_touch,
                )  # fmt: skip
        except IntegrityError:
            return ContactAdd.objects.get(account=account, customer=customer, added_at=occurred_at)
        day = local_day(brand, occurred_at)
        AccountDay.objects.bulk_create(
            [AccountDay(account=account, day=day)], ignore_conflicts=True
        )
        AccountDay.objects.filter(account=account, day=day).update(added=F("added") + 1)
        _attribute(brand, account, add)
    return add


def _check_add(
    brand: Brand, account: CarrierAccount, customer: Customer, occurred_at: dt.datetime
) -> None:
    if account.brand_id != brand.pk or customer.brand_id != brand.pk:
        raise ValidationFailed(
            N_("The account and customer must belong to the brand."), field="brand"
        )
    if occurred_at.tzinfo is None:
        raise ValidationFailed(N_("occurred_at needs a UTC offset."), field="occurred_at")


def _partner_of(code: LiveCode | None, channel: Channel | None) -> Partner | None:
    """The partner an add is credited to: the live code's, else its channel's."""
    return (code.partner if code and code.partner_id else None) or (
        channel.partner if channel else None
    )


def _claim(account: CarrierAccount, add: ContactAdd) -> customers.Claim:
    """What a new add claims for its customer: the owner (the live code's store, else the
    account's; the account's staff) and, on a first touch, the source channel."""
    code, channel = add.live_code, add.channel
    owner_store = (code.store if code and code.store_id else None) or account.store
    return (
        add.customer,
        account.staff_id,
        owner_store.pk if owner_store is not None else None,
        channel.code if add.is_first_touch and channel is not None else "",
    )


def _channel_tags(
    brand: Brand, channel: Channel | None, tag_ids: dict[int, list[int]]
) -> list[int]:
    """The channel's tags as tag ids (created on first use); `tag_ids` caches them per
    channel across a batch."""
    if channel is None or not channel.tags:
        return []
    if channel.pk not in tag_ids:
        tag_ids[channel.pk] = [
            customers.create_tag(
                actor=None, brand=brand, group=t.split("/", 1)[0], name=t.split("/", 1)[1]
            ).pk
            for t in channel.tags
        ]
    return tag_ids[channel.pk]


def _attribute(brand: Brand, account: CarrierAccount, add: ContactAdd) -> None:
    """The customer side of a new add: owner (the live code's store, else the account's) and
    first-touch channel, and the channel's tags."""
    # The owner and first-touch channel go through customers' service, which also writes
    # the owner history that order attribution reads at paid time.
    customer, staff_id, store_id, channel_code = _claim(account, add)
    customer = customers.claim_owner_and_first_touch(
        customer=customer, staff_id=staff_id, store_id=store_id, channel=channel_code,
        reason="contact_added",
    )  # fmt: skip
    tags = _channel_tags(brand, add.channel, {})
    if tags:
        customers.set_tags(actor=None, customer=customer, add=tags, source="channel")


def _attribute_many(brand: Brand, account: CarrierAccount, adds: Sequence[ContactAdd]) -> None:
    """`_attribute` for a run of new adds of distinct customers, set-based: the claims in
    one call of customers' batch claim, the channels' tags in one `add_tags`."""
    fresh = customers.claim_owners_and_first_touches(
        items=[_claim(account, add) for add in adds], reason="contact_added"
    )
    tag_ids: dict[int, list[int]] = {}
    items = []
    for add in adds:
        tags = _channel_tags(brand, add.channel, tag_ids)
        if tags:
            items.append((fresh[add.customer_id], tags))
    customers.add_tags(items=items, source="channel")


def record_contacts_added(
    *,
    brand: Brand,
    account: CarrierAccount,
    adds: Sequence[tuple[Customer, str | None, dt.datetime]],
) -> None:
    """The batch form of `record_contact_added` for one account's adds (customer, state,
    occurred_at), with the same outcome as calling it for each in order: live codes, batches,
    prior adds and first touches are read once, the adds inserted together and each day's
    count moved once. A batch that names a customer twice, a merged customer or an add
    already recorded (a replay) goes one by one."""
    for customer, _state, occurred_at in adds:
        _check_add(brand, account, customer, occurred_at)
    ids = [customer.pk for customer, _s, _a in adds]
    fresh = Customer.objects.in_bulk(ids)
    simple = len(set(ids)) == len(ids) and all(
        c.pk in fresh and fresh[c.pk].merged_into_id is None for c, _s, _a in adds
    )
    if (
        simple
        and ContactAdd.objects.filter(
            account=account, customer_id__in=ids, added_at__in=[a for _c, _s, a in adds]
        ).exists()
    ):
        simple = False
    if simple:
        try:
            with transaction.atomic():
                _record_adds(brand, account, [(fresh[c.pk], s, a) for c, s, a in adds])
            return
        except IntegrityError:
            pass  # a concurrent add of one of them: the one-by-one path sorts it out
    for customer, state, occurred_at in adds:
        record_contact_added(
            brand=brand, account=account, customer=customer, state=state, occurred_at=occurred_at
        )


def _record_adds(
    brand: Brand, account: CarrierAccount, adds: list[tuple[Customer, str | None, dt.datetime]]
) -> None:
    # The run's live codes and their package-card batches (one per code at most), one query
    # each.
    codes = live_codes_for_states(brand=brand, states=[state for _c, state, _a in adds])
    live = {code.pk for code in codes.values() if code is not None}
    batches: dict[int | None, PackageCardBatch] = (
        {b.live_code_id: b for b in PackageCardBatch.objects.filter(live_code_id__in=sorted(live))}
        if live
        else {}
    )
    touched = set(
        ContactAdd.objects.filter(
            brand=brand, customer_id__in=[c.pk for c, _s, _a in adds], channel__isnull=False
        ).values_list("customer_id", flat=True)
    )
    rows = []
    days: Counter[dt.date] = Counter()
    for customer, state, occurred_at in adds:
        code = codes[state]
        channel = code.channel if code else None
        partner = _partner_of(code, channel)
        rows.append(
            ContactAdd(
                brand=brand, customer=customer, account=account, live_code=code,
                channel=channel, partner=partner, batch=batches.get(code.pk) if code else None,
                state=(state or "")[:30], added_at=occurred_at,
                is_first_touch=channel is not None and customer.pk not in touched,
            )
        )  # fmt: skip
        days[local_day(brand, occurred_at)] += 1
    ContactAdd.objects.bulk_create(rows)
    AccountDay.objects.bulk_create(
        [AccountDay(account=account, day=day) for day in sorted(days)], ignore_conflicts=True
    )
    for day, n in sorted(days.items()):
        AccountDay.objects.filter(account=account, day=day).update(added=F("added") + n)
    _attribute_many(brand, account, rows)


# --- Short links and package cards ------------------------------------------------------------


def new_short_code() -> str:
    return secrets.token_urlsafe(SHORT_CODE_BYTES)


def create_short_link(
    *,
    actor: Staff,
    channel_id: int | None = None,
    live_code_id: int | None = None,
    batch_id: int | None = None,
    target_url: str = "",
    expires_at: dt.datetime | None = None,
    customer_id: int | None = None,
) -> ShortLink:
    """A short link to a URL or to a live code's landing page (which shows its QR)."""
    require(actor, Action.CHANNEL_MANAGE)
    channel = code = batch = customer = None
    if live_code_id is not None:
        code = get_live_code(actor=actor, live_code_id=live_code_id)
        channel = code.channel
    if batch_id is not None:
        batch = _scoped(
            PackageCardBatch.objects.filter(brand=actor.brand), batch_id, what="batch",
            field="batch_id",
        )  # fmt: skip
        channel = batch.channel
        code = code or batch.live_code
    if channel_id is not None:
        chosen = get_channel(actor=actor, channel_id=channel_id)
        if channel is not None and chosen.pk != channel.pk:
            raise ValidationFailed(
                N_("The live code belongs to another channel."), field="channel_id"
            )
        channel = chosen
    target_url = _text(target_url or "", "target_url", max_length=1000)
    if target_url and urlsplit(target_url).scheme not in ("http", "https"):
        raise ValidationFailed(N_("target_url must be an http(s) URL."), field="target_url")
    if not target_url and code is None:
        raise ValidationFailed(N_("Give a target_url or a live code."), field="target_url")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= clock.now()):
        raise ValidationFailed(
            N_("expires_at must be a future time with an offset."), field="expires_at"
        )
    if customer_id is not None:
        customer = customers.get_customer(actor=actor, customer_id=customer_id)
    with transaction.atomic():
        link = ShortLink.objects.create(
            brand=actor.brand, code=new_short_code(), channel=channel, live_code=code,
            batch=batch, customer=customer, target_url=target_url, expires_at=expires_at,
            created_at=clock.now(),
        )  # fmt: skip
        audit.record(brand=actor.brand, actor=actor, action="short_link.create", target=link)
    return link


def list_short_links(*, actor: Staff) -> list[ShortLink]:
    links = ShortLink.objects.filter(brand=actor.brand)
    if require(actor, Action.CHANNEL_VIEW) is not Scope.BRAND:
        links = links.filter(channel__in=Channel.objects.for_actor(actor, Action.CHANNEL_VIEW))
    return list(
        links.select_related("channel", "live_code").annotate(click_count=models.Count("clicks"))[
            :500
        ]
    )


def live_code_url(code: LiveCode, *, base: str) -> str:
    """What the live code's QR encodes: the carrier's own QR link once the carrier sync has
    set it, else the public landing page (which shows that QR on a phone)."""
    if code.carrier_qr_url:
        return code.carrier_qr_url
    return base.rstrip("/") + f"/c/{code.public_token}/"


def brand_logo(*, brand: Brand) -> bytes | None:
    row = AcquisitionSettings.objects.filter(brand=brand).first()
    return bytes(row.logo_png) if row and row.logo_png else None


def get_brand_logo(*, actor: Staff) -> bytes:
    """The brand's QR logo (PNG) for someone who may see channels; NotFound when unset."""
    require(actor, Action.CHANNEL_VIEW)
    logo = brand_logo(brand=actor.brand)
    if logo is None:
        raise NotFound(N_("No logo is set."), field="logo")
    return logo


def set_brand_logo(*, actor: Staff, data: bytes | None) -> None:
    """Set (or with None, remove) the logo centred in the brand's QR codes."""
    from yutang.acquisition import qr

    require(actor, Action.CHANNEL_MANAGE)
    logo = qr.check_logo(data) if data is not None else b""
    with transaction.atomic():
        row, _ = AcquisitionSettings.objects.update_or_create(
            brand=actor.brand, defaults={"logo_png": logo}
        )
        audit.record(brand=actor.brand, actor=actor, action="acquisition.logo", target=row)


def live_code_by_token(*, token: str) -> LiveCode | None:
    """The active live code behind a public landing URL, or None."""
    if not isinstance(token, str) or not SHORT_CODE_PATTERN.match(token):
        return None
    return (
        LiveCode.objects.select_related("channel", "brand")
        .filter(public_token=token, is_active=True)
        .first()
    )


def agent_class(user_agent: str) -> str:
    ua = user_agent.lower()
    if "micromessenger" in ua:
        return "wechat"
    if any(bot in ua for bot in ("bot", "spider", "crawl", "curl", "python", "wget")):
        return "bot"
    if any(m in ua for m in ("iphone", "android", "mobile", "ipad")):
        return "mobile"
    if ua:
        return "desktop"
    return "unknown"


def ip_hash(ip: str) -> str:
    """A truncated keyed hash: clicks from one address can be told apart, the address not."""
    key = hashlib.sha256(("yutang-link-ip:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Redirect:
    url: str | None
    live_code: LiveCode | None


def follow_short_link(*, code: str, user_agent: str, ip: str) -> Redirect:
    """Record a click and say where to go. Unknown, malformed and expired codes all raise
    the same NotFound so a guesser learns nothing."""
    if not isinstance(code, str) or not SHORT_CODE_PATTERN.match(code):
        raise NotFound(N_("Not found."))
    link = (
        ShortLink.objects.select_related("brand", "channel", "live_code").filter(code=code).first()
    )
    now = clock.now()
    if link is None or (link.expires_at is not None and link.expires_at <= now):
        raise NotFound(N_("Not found."))
    kind = agent_class(user_agent)
    with transaction.atomic():
        click = LinkClick.objects.create(
            link=link, clicked_at=now, agent_class=kind, ip_hash=ip_hash(ip)
        )
        if link.customer_id is not None:
            ingest_one(
                brand=link.brand,
                item={
                    "type": "link.clicked",
                    "occurred_at": now,
                    "customer_id": link.customer_id,
                    "idempotency_key": f"link.clicked:{click.pk}",
                    "source": "short_link",
                    "properties": {
                        "link": link.code,
                        **({"channel": link.channel.code} if link.channel else {}),
                        "agent_class": kind,
                    },
                },
            )
    return Redirect(url=link.target_url or None, live_code=link.live_code)


def create_batch(
    *,
    actor: Staff,
    channel_id: int,
    code: str,
    name: str,
    cards_printed: int = 0,
    live_code_id: int | None = None,
) -> PackageCardBatch:
    """A package-card batch: its own live code (so adds are attributed to it) and reach."""
    channel = get_channel(actor=actor, channel_id=channel_id, action=Action.CHANNEL_MANAGE)
    code = _text(code, "code", max_length=32, required=True)
    if not CODE_PATTERN.match(code.lower()):
        raise ValidationFailed(N_("code may hold letters, digits, - and _ only."), field="code")
    _check_count(cards_printed, "cards_printed")
    live_code = None
    if live_code_id is not None:
        live_code = get_live_code(actor=actor, live_code_id=live_code_id)
        if live_code.channel_id != channel.pk:
            raise ValidationFailed(
                N_("The live code belongs to another channel."), field="live_code_id"
            )
        if PackageCardBatch.objects.filter(live_code=live_code).exists():
            raise Conflict(N_("That live code already serves a batch."), field="live_code_id")
    with transaction.atomic():
        if PackageCardBatch.objects.filter(brand=channel.brand, code=code).exists():
            raise Conflict(
                N_("A batch with code {code!r} exists."), params={"code": code}, field="code"
            )
        batch = PackageCardBatch.objects.create(
            brand=channel.brand, channel=channel, code=code,
            name=_text(name, "name", max_length=120, required=True),
            cards_printed=cards_printed, live_code=live_code, created_at=clock.now(),
        )  # fmt: skip
        audit.record(brand=channel.brand, actor=actor, action="card_batch.create", target=batch)
    return batch


def list_batches(*, actor: Staff, channel_id: int) -> list[PackageCardBatch]:
    channel = get_channel(actor=actor, channel_id=channel_id)
    return list(channel.batches.select_related("live_code"))


# --- Partners and settlements ----------------------------------------------------------------

PARTNER_FIELDS = [
    "name", "kind", "phone", "contact_note", "cps_bp", "cpa_fen", "cpa_event",
    "fixed_fee_fen", "attribution_window_days", "is_active",
]  # fmt: skip


def _partner_values(values: dict[str, Any]) -> dict[str, Any]:
    reject_unknown_fields(values, PARTNER_FIELDS)
    out = dict(values)
    if "name" in out:
        out["name"] = _text(out["name"], "name", max_length=120, required=True)
    if "kind" in out and out["kind"] not in Partner.Kind.values:
        raise ValidationFailed(N_("kind is kol or koc."), field="kind")
    if "contact_note" in out:
        out["contact_note"] = _text(out["contact_note"] or "", "contact_note", max_length=200)
    for name in ("cpa_fen", "fixed_fee_fen"):
        if name in out:
            _fen(out[name], name)
    if "cps_bp" in out:
        _bp(out["cps_bp"], "cps_bp")
    if "cpa_event" in out and out["cpa_event"] not in CpaEvent.values:
        raise ValidationFailed(N_("cpa_event must be added or activated."), field="cpa_event")
    if "attribution_window_days" in out:
        _window(out["attribution_window_days"], "attribution_window_days")
    if "phone" in out:
        phone = (out.pop("phone") or "").strip()
        if phone:
            normalized = normalize_phone(phone, field="phone")
            out["phone_encrypted"] = crypto.encrypt_pii(normalized)
            out["phone_hash"] = crypto.hash_pii(normalized)
        else:
            out["phone_encrypted"] = out["phone_hash"] = ""
    return out


def create_partner(*, actor: Staff | None, brand: Brand, **fields: Any) -> Partner:
    if actor is not None:
        require(actor, Action.PARTNER_MANAGE)
    if "name" not in fields:
        raise ValidationFailed(N_("name is required."), field="name")
    values = _partner_values(fields)
    phone = fields.get("phone", "")
    with transaction.atomic():
        partner = Partner.objects.create(brand=brand, created_at=clock.now(), **values)
        audit.record(
            brand=brand, actor=actor, action="partner.create", target=partner,
            changes=audit.diff(None, {"phone": phone}, sensitive={"phone": "phone"}),
        )  # fmt: skip
    return partner


def get_partner(*, actor: Staff, partner_id: int, action: Action = Action.PARTNER_VIEW) -> Partner:
    return _scoped(
        Partner.objects.for_actor(actor, action), partner_id, what="partner", field="partner_id"
    )


def update_partner(*, actor: Staff, partner_id: int, **changes: Any) -> Partner:
    partner = get_partner(actor=actor, partner_id=partner_id, action=Action.PARTNER_MANAGE)
    values = _partner_values(changes)
    with transaction.atomic():
        before = audit.snapshot(partner, [k for k in values if not k.startswith("phone")])
        for name, value in values.items():
            setattr(partner, name, value)
        partner.save()
        after = audit.snapshot(partner, [k for k in values if not k.startswith("phone")])
        audit.record(brand=partner.brand, actor=actor, action="partner.update", target=partner,
                     changes=audit.diff(before, after))  # fmt: skip
    return partner


def list_partners(*, actor: Staff) -> list[Partner]:
    return list(Partner.objects.for_actor(actor, Action.PARTNER_VIEW))


def present_partner(viewer: Staff, partner: Partner) -> dict[str, Any]:
    phone = partner.phone if viewer.can(Action.IDENTIFIERS_VIEW) else partner.masked_phone
    return {
        "id": partner.pk, "name": partner.name, "kind": partner.kind, "phone": phone,
        "contact_note": partner.contact_note, "cps_bp": partner.cps_bp,
        "cpa_fen": partner.cpa_fen, "cpa_event": partner.cpa_event,
        "fixed_fee_fen": partner.fixed_fee_fen,
        "attribution_window_days": partner.attribution_window_days,
        "is_active": partner.is_active,
    }  # fmt: skip


def _day_bounds(brand: Brand, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = brand.tz
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=tz),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz),
    )


def _check_period_dates(start: Any, end: Any) -> None:
    if not isinstance(start, dt.date) or not isinstance(end, dt.date):
        raise ValidationFailed(N_("Give the period as dates."), field="period_start")
    if end < start:
        raise ValidationFailed(N_("period_end is before period_start."), field="period_end")
    if (end - start).days > 366:
        raise ValidationFailed(N_("A period is at most 366 days."), field="period_end")


def settlement_figures(
    *, partner: Partner, period_start: dt.date, period_end: dt.date
) -> dict[str, Any]:
    """The partner's figures for a period (dates inclusive, brand time zone):

    - added: adds attributed to the partner in the period (first touch or not);
    - activated: customers attributed to the partner whose first paid order after their add
      falls in the period and within the attribution window;
    - gmv_fen: paid orders in the period, within the window after the customer's add;
    - refunds_fen: refunds in the period of orders that qualify (whenever they were paid),
      so a refund of an order settled earlier is reversed in the period it happens;
    - amount_owed_fen = fixed fee + CPA × (added or activated) + CPS × (gmv − refunds),
      the CPS part rounded down to the fen; negative when refunds exceed sales (a claw-back).
    """
    from yutang.commerce.models import Order, Refund

    start, end = _day_bounds(partner.brand, period_start, period_end)
    window = dt.timedelta(days=partner.attribution_window_days)
    adds = ContactAdd.objects.filter(brand_id=partner.brand_id, partner=partner)
    first_add: dict[int, dt.datetime] = {}
    for customer_id, added_at in adds.order_by("added_at").values_list("customer_id", "added_at"):
        first_add.setdefault(customer_id, added_at)
    added = adds.filter(added_at__gte=start, added_at__lt=end).count()

    def qualifies(customer_id: int, paid_at: dt.datetime) -> bool:
        added_at = first_add.get(customer_id)
        return added_at is not None and added_at <= paid_at < added_at + window

    orders = list(
        Order.objects.filter(brand_id=partner.brand_id, customer_id__in=list(first_add))
        .order_by("paid_at", "id")
        .values("id", "customer_id", "paid_at", "amount_fen")
    )
    gmv = 0
    first_paid: dict[int, dt.datetime] = {}
    qualifying: set[int] = set()
    for o in orders:
        if not qualifies(o["customer_id"], o["paid_at"]):
            continue
        qualifying.add(o["id"])
        first_paid.setdefault(o["customer_id"], o["paid_at"])
        if start <= o["paid_at"] < end:
            gmv += o["amount_fen"]
    activated = sum(1 for paid in first_paid.values() if start <= paid < end)
    refunds = sum(
        Refund.objects.filter(
            order_id__in=qualifying, refunded_at__gte=start, refunded_at__lt=end
        ).values_list("amount_fen", flat=True)
    )
    actions = added if partner.cpa_event == CpaEvent.ADDED else activated
    cps = (gmv - refunds) * partner.cps_bp // MAX_BP
    amount = partner.fixed_fee_fen + partner.cpa_fen * actions + cps
    return {
        "added": added, "activated": activated, "gmv_fen": gmv, "refunds_fen": refunds,
        "net_gmv_fen": gmv - refunds, "fixed_fee_fen": partner.fixed_fee_fen,
        "cpa_actions": actions, "cpa_fen": partner.cpa_fen * actions, "cps_fen": cps,
        "cps_bp": partner.cps_bp, "amount_owed_fen": amount,
    }  # fmt: skip


def compute_settlement(
    *, actor: Staff, partner_id: int, period_start: dt.date, period_end: dt.date
) -> Settlement:
    """Compute (or recompute) a draft settlement. A locked period, or one overlapping a
    locked settlement of the partner, is refused."""
    partner = get_partner(actor=actor, partner_id=partner_id, action=Action.PARTNER_MANAGE)
    _check_period_dates(period_start, period_end)
    with transaction.atomic():
        locked = (
            Settlement.objects.select_for_update()
            .filter(partner=partner, status=Settlement.Status.LOCKED)
            .filter(period_start__lte=period_end, period_end__gte=period_start)
            .first()
        )
        if locked is not None:
            raise Conflict(
                N_(
                    "The period overlaps a settled period ({period_start}–{period_end}), "
                    "which is locked."
                ),
                params={"period_start": locked.period_start, "period_end": locked.period_end},
                field="period_start",
            )
        overlapping = (
            Settlement.objects.filter(partner=partner)
            .filter(period_start__lte=period_end, period_end__gte=period_start)
            .exclude(period_start=period_start, period_end=period_end)
        )
        if overlapping.exists():
            raise Conflict(
                N_("The period overlaps another draft settlement."), field="period_start"
            )
        figures = settlement_figures(
            partner=partner, period_start=period_start, period_end=period_end
        )
        settlement, _ = Settlement.objects.update_or_create(
            partner=partner, period_start=period_start, period_end=period_end,
            defaults={"brand": partner.brand, "figures": figures,
                      "amount_owed_fen": figures["amount_owed_fen"], "computed_at": clock.now()},
        )  # fmt: skip
        audit.record(
            brand=partner.brand, actor=actor, action="settlement.compute", target=settlement,
            changes={"amount_owed_fen": {"after": figures["amount_owed_fen"]}},
        )  # fmt: skip
    return settlement


def lock_settlement(*, actor: Staff, settlement_id: int) -> Settlement:
    require(actor, Action.PARTNER_MANAGE)
    settlement = _scoped(
        Settlement.objects.filter(brand=actor.brand), settlement_id, what="settlement",
        field="settlement_id",
    )  # fmt: skip
    with transaction.atomic():
        updated = Settlement.objects.filter(
            pk=settlement.pk, status=Settlement.Status.DRAFT
        ).update(status=Settlement.Status.LOCKED, locked_at=clock.now(), locked_by=actor)
        if not updated:
            raise Conflict(N_("This settlement is already locked."), field="settlement_id")
        settlement.refresh_from_db()
        audit.record(brand=actor.brand, actor=actor, action="settlement.lock", target=settlement)
    return settlement


def list_settlements(*, actor: Staff, partner_id: int | None = None) -> list[Settlement]:
    require(actor, Action.PARTNER_VIEW)
    qs = Settlement.objects.filter(brand=actor.brand).select_related("partner")
    if partner_id is not None:
        qs = qs.filter(partner_id=partner_id)
    return list(qs)


def get_settlement(*, actor: Staff, settlement_id: int) -> Settlement:
    require(actor, Action.PARTNER_VIEW)
    return _scoped(
        Settlement.objects.filter(brand=actor.brand).select_related("partner"), settlement_id,
        what="settlement", field="settlement_id",
    )  # fmt: skip


SETTLEMENT_COLUMNS = [
    ("added", "Added contacts 加粉"), ("activated", "Activated 激活"),
    ("gmv_fen", "GMV (fen)"), ("refunds_fen", "Refunds reversed (fen)"),
    ("net_gmv_fen", "Net GMV (fen)"), ("fixed_fee_fen", "Fixed fee (fen)"),
    ("cpa_actions", "CPA actions"), ("cpa_fen", "CPA (fen)"), ("cps_fen", "CPS (fen)"),
    ("amount_owed_fen", "Amount owed (fen)"),
]  # fmt: skip


def settlement_xlsx(*, actor: Staff, settlement_id: int) -> bytes:
    import io

    from openpyxl import Workbook

    settlement = get_settlement(actor=actor, settlement_id=settlement_id)
    book = Workbook()
    sheet = book.active
    sheet.title = "settlement"
    sheet.append(["Partner", settlement.partner.name])
    sheet.append(["Period", f"{settlement.period_start} – {settlement.period_end}"])
    sheet.append(["Status", settlement.status])
    sheet.append([])
    sheet.append(["Figure", "Value"])
    for key, label in SETTLEMENT_COLUMNS:
        sheet.append([label, settlement.figures.get(key, 0)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def parse_decimal_yuan(value: str, field: str) -> int:
    """ "12.34" yuan → 1234 fen (used by console forms)."""
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise ValidationFailed(
            N_("{field} must be an amount in yuan."), params={"field": field}, field=field
        ) from None
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValidationFailed(
            N_("{field} has more than two decimals."), params={"field": field}, field=field
        )
    return _fen(int(fen), field)
