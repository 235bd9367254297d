"""The audit log: who changed what, when. Every state-changing service call records one row
in the same transaction as the change. Sensitive fields are stored masked, never in clear."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models

from yutang.core import clock, crypto
from yutang.core.models import AuditLog, Brand, Staff, Store

#: How to mask a sensitive field: by identifier kind ("phone", "email", anything else = text).
Sensitive = Mapping[str, str]


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, list | tuple | set | frozenset):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _mask(kind: str, value: Any) -> Any:
    if value in (None, ""):
        return value
    return crypto.mask_identifier(kind, str(value))


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    return {name: _plain(getattr(obj, name)) for name in fields}


def diff(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    sensitive: Sensitive | None = None,
) -> dict[str, dict[str, Any]]:
    """Fields that differ, as {field: {"before": …, "after": …}} with sensitive ones masked.

    A created row has no before; a deleted row has no after."""
    sensitive = sensitive or {}
    before = before or {}
    after = after or {}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        entry: dict[str, Any] = {}
        if name in before:
            entry["before"] = _mask(sensitive[name], old) if name in sensitive else old
        if name in after:
            entry["after"] = _mask(sensitive[name], new) if name in sensitive else new
        out[name] = entry
    return out


def record(
    *,
    brand: Brand,
    actor: Staff | None,
    action: str,
    target: models.Model,
    changes: dict[str, Any] | None = None,
    store: Store | None = None,
    target_label: str | None = None,
) -> AuditLog:
    entry = _entry(brand, actor, action, target, changes, store, target_label)
    entry.save(force_insert=True)
    return entry


def record_many(
    *,
    brand: Brand,
    actor: Staff | None,
    action: str,
    entries: Iterable[tuple[models.Model, dict[str, Any] | None, Store | None]],
) -> None:
    """`record` for many targets of one action at once (an import chunk): one INSERT.
    Each entry is (target, changes, store)."""
    AuditLog.objects.bulk_create(
        [
            _entry(brand, actor, action, target, changes, store, None)
            for target, changes, store in entries
        ]
    )


def _entry(
    brand: Brand,
    actor: Staff | None,
    action: str,
    target: models.Model,
    changes: dict[str, Any] | None,
    store: Store | None,
    target_label: str | None,
) -> AuditLog:
    return AuditLog(
        brand=brand,
        actor=actor,
        actor_label=actor_label(actor),
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_label=(target_label if target_label is not None else str(target))[:200],
        store=store,
        changes=changes or {},
        created_at=clock.now(),
    )


def actor_label(actor: Staff | None) -> str:
    if actor is None:
        return "system"
    return f"{actor.display_name} ({actor.user.get_username()})"
