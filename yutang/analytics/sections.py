"""Extension sections of the operations overview.

Some of the dashboard's figures belong to apps on lower floors that analytics does not own:
channel costs (acquisition), the outbox and its policy gate (messaging), journeys. Each is a
*section*: a titled table that a provider function fills for the period and filters asked
for. Analytics declares the sections it knows about; a provider is registered with
``register_overview_section(key, provider)`` (from ``yutang/analytics/providers/<app>.py``).
A section without a provider is reported as ``unavailable`` — never as zeros — and a provider
that fails is reported as ``error`` without taking the rest of the overview down."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from yutang.core.models import Brand, Staff, Store
    from yutang.customers.models import Customer

logger = logging.getLogger(__name__)

ColumnKind = Literal["text", "int", "fen", "rate"]
Status = Literal["ok", "unavailable", "error"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str | Promise
    kind: ColumnKind = "int"


@dataclass(frozen=True)
class SectionTable:
    """What a provider returns: columns and one dict per row (keys = column keys). Money is
    integer fen (kind ``fen``); rates are floats in 0..1 or None (kind ``rate``)."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    note: str | Promise = ""


@dataclass(frozen=True)
class SectionContext:
    """What a provider gets: the caller, the period (dates inclusive, brand time zone, and the
    same period as UTC instants ``[start_at, end_at)``), the filters, and ``customers`` — the
    customers in the caller's scope after the store and channel filters. Filter your rows with
    ``customer__in=ctx.customers`` (or by store/channel yourself) so a store role never sees
    another store's figures."""

    actor: Staff | None
    brand: Brand
    start: dt.date
    end: dt.date
    start_at: dt.datetime
    end_at: dt.datetime
    store: Store | None
    channel: str | None
    customers: QuerySet[Customer]


Provider = Callable[[SectionContext], SectionTable]


@dataclass
class SectionSpec:
    key: str
    title: str | Promise
    provider: Provider | None = None


@dataclass
class Section:
    key: str
    title: str | Promise
    status: Status
    table: SectionTable | None = None
    message: str = ""
    columns: list[Column] = field(default_factory=list)


_SECTIONS: dict[str, SectionSpec] = {
    spec.key: spec
    for spec in (
        SectionSpec("channels", _("Top channels by cost per kept contact")),
        SectionSpec("journeys", _("Journeys' conversions")),
        SectionSpec("messages", _("Messages sent and blocked by rule")),
    )
}


def register_overview_section(
    key: str, provider: Provider, *, title: str | Promise | None = None
) -> None:
    """Give a section its provider (or add a new section). Registering a second, different
    provider for the same key is a configuration error, not a silent replacement."""
    spec = _SECTIONS.get(key)
    if spec is None:
        if title is None:
            raise ImproperlyConfigured(f"Overview section {key!r} is new: give it a title.")
        _SECTIONS[key] = SectionSpec(key, title, provider)
        return
    if spec.provider is not None and spec.provider is not provider:
        raise ImproperlyConfigured(f"Overview section {key!r} already has a provider.")
    spec.provider = provider
    if title is not None:
        spec.title = title


def unregister_overview_section(key: str) -> None:
    """Remove a provider (the section becomes unavailable again); for tests and plugins."""
    spec = _SECTIONS.get(key)
    if spec is not None:
        spec.provider = None


def registered_sections() -> list[SectionSpec]:
    return list(_SECTIONS.values())


def build_sections(context: SectionContext) -> list[Section]:
    sections = []
    for spec in _SECTIONS.values():
        if spec.provider is None:
            sections.append(Section(spec.key, spec.title, "unavailable"))
            continue
        try:
            table = spec.provider(context)
        except Exception:
            # One broken provider must not hide the rest of the dashboard; the failure is
            # logged (with no customer data) and the section says it failed.
            logger.exception("overview section %s failed", spec.key)
            sections.append(
                Section(spec.key, spec.title, "error", message="This section failed to load.")
            )
            continue
        sections.append(Section(spec.key, spec.title, "ok", table=table, columns=table.columns))
    return sections
