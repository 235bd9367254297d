"""The overview's "journeys' conversions" section, from the journeys' enrolments."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from yutang.analytics.sections import (
    Column,
    SectionContext,
    SectionTable,
    register_overview_section,
)
from yutang.journeys import services as journeys


def journey_conversions(ctx: SectionContext) -> SectionTable:
    rows = journeys.conversions(
        brand=ctx.brand, customers=ctx.customers, start_at=ctx.start_at, end_at=ctx.end_at
    )
    return SectionTable(
        columns=[
            Column("journey", _("Journey"), "text"),
            Column("entered", _("Entered"), "int"),
            Column("converted", _("Reached the goal"), "int"),
            Column("rate", _("Goal rate"), "rate"),
            Column("holdout", _("Held out"), "int"),
            Column("holdout_rate", _("Holdout goal rate"), "rate"),
        ],
        rows=rows,
        note=_(
            "Customers who entered each journey in the period, and of them how many reached "
            "the journey's goal within its window; held-out customers are counted apart."
        ),
    )


def register() -> None:
    register_overview_section("journeys", journey_conversions)
