"""The console's overview page: the period picker's presets and the filters read from the query
string, turned into one call of ``services.overview`` and the data the template renders."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from yutang.analytics import exports, services
from yutang.analytics.schemas import overview_dict
from yutang.core import clock
from yutang.core.errors import N_, ValidationFailed, YutangError
from yutang.core.models import Staff, Store
from yutang.core.permissions import Action

PRESETS: list[tuple[str, str | Promise]] = [
    ("7d", _("Last 7 days")),
    ("30d", _("Last 30 days")),
    ("this_month", _("This month")),
    ("last_month", _("Last month")),
    ("90d", _("Last 90 days")),
    ("this_year", _("This year")),
    ("custom", _("Custom")),
]
DEFAULT_PRESET = "30d"
CHART_LABELS: dict[str, str | Promise] = {
    "pool": _("Contacts held"),
    "adds": _("Gross adds"),
    "deletions": _("Deletions"),
    "deletion_rate": _("Deletion rate"),
    "first_order_rate": _("First order within 3 days"),
    "repurchase_rate": _("Repurchase rate"),
    "gmv": _("GMV"),
    "refunds": _("Refunds"),
}


def preset_period(preset: str, today: dt.date) -> tuple[dt.date, dt.date]:
    if preset == "7d":
        return today - dt.timedelta(days=6), today
    if preset == "30d":
        return today - dt.timedelta(days=29), today
    if preset == "90d":
        return today - dt.timedelta(days=89), today
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        last = today.replace(day=1) - dt.timedelta(days=1)
        return last.replace(day=1), last
    if preset == "this_year":
        return today.replace(month=1, day=1), today
    raise ValidationFailed(N_("Unknown period."), field="preset")


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            N_("{name} must be a date (YYYY-MM-DD)."), params={"name": name}, field=name
        ) from None


@dataclass
class Dashboard:
    preset: str
    start: dt.date
    end: dt.date
    store: str
    channel: str
    granularity: str
    data: dict[str, Any] | None = None
    cards: list[dict[str, Any]] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    error: dict[str, str | None] | None = None
    can_export: bool = False
    presets: list[tuple[str, str | Promise]] = field(default_factory=lambda: PRESETS)
    chart_labels: dict[str, str | Promise] = field(default_factory=lambda: CHART_LABELS)

    @property
    def export_query(self) -> str:
        query = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        for key in ("store", "channel", "granularity"):
            if getattr(self, key):
                query[key] = getattr(self, key)
        return urlencode(query)


def for_console(*, actor: Staff, query: Mapping[str, str]) -> Dashboard:
    """Read the page's filters; a bad one is reported (naming it) and the default period is
    shown instead, so the page always renders."""
    today = clock.now().astimezone(actor.brand.tz).date()
    preset = query.get("preset") or (
        "custom" if query.get("from") or query.get("to") else DEFAULT_PRESET
    )
    board = Dashboard(
        preset=preset,
        start=today,
        end=today,
        store=(query.get("store") or "").strip(),
        channel=(query.get("channel") or "").strip(),
        granularity=(query.get("granularity") or "").strip(),
        can_export=actor.can(Action.ANALYTICS_EXPORT),
        stores=list(Store.objects.for_actor(actor, Action.STORE_VIEW).order_by("code"))
        if actor.can(Action.STORE_VIEW)
        else [],
        channels=services.channel_choices(actor=actor),
    )
    try:
        if preset == "custom":
            board.start = _date(query.get("from", ""), "from")
            board.end = _date(query.get("to", ""), "to")
        else:
            board.start, board.end = preset_period(preset, today)
        result = services.overview(
            actor=actor,
            start=board.start,
            end=board.end,
            store=board.store or None,
            channel=board.channel or None,
            granularity=board.granularity or None,  # type: ignore[arg-type]
        )
    except YutangError as exc:
        board.error = {**exc.as_dict(), "message": exc.localized()}  # shown in the console
        board.preset, board.store, board.channel, board.granularity = DEFAULT_PRESET, "", "", ""
        board.start, board.end = preset_period(DEFAULT_PRESET, today)
        result = services.overview(actor=actor, start=board.start, end=board.end)
    board.data = overview_dict(result)
    board.cards = exports.kpi_cards(board.data)
    return board
