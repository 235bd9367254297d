"""The overview's "top channels by cost per kept contact" section, from acquisition's channel
economics report (docs/acquisition.md defines cost, kept contacts and ROI)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from yutang.acquisition.reports import channel_report
from yutang.analytics.sections import (
    Column,
    SectionContext,
    SectionTable,
    register_overview_section,
)


def channels_by_cost_per_kept(ctx: SectionContext) -> SectionTable:
    report = channel_report(
        actor=ctx.actor,
        brand=ctx.brand if ctx.actor is None else None,
        date_from=ctx.start,
        date_to=ctx.end,
    )
    rows = [
        {
            "channel": m.channel_name,
            "added": m.added,
            "kept_30d": m.kept_30d,
            "cost_fen": m.cost_fen,
            "cost_per_kept_fen": m.cost_per_kept_fen,
            "roi": m.roi,
        }
        for m in report.rows
    ]
    # Cheapest kept contact first; channels that kept nobody last (no rate to compare).
    rows.sort(key=lambda r: (r["cost_per_kept_fen"] is None, r["cost_per_kept_fen"] or 0))
    return SectionTable(
        columns=[
            Column("channel", _("Channel"), "text"),
            Column("added", _("Added"), "int"),
            Column("kept_30d", _("Kept after 30 days"), "int"),
            Column("cost_fen", _("Cost"), "fen"),
            Column("cost_per_kept_fen", _("Cost per kept contact"), "fen"),
            Column("roi", _("ROI"), "rate"),
        ],
        rows=rows,
        note=_("Contacts whose first touch was the channel, added in the period."),
    )


def register() -> None:
    register_overview_section("channels", channels_by_cost_per_kept)
