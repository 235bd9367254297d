"""The overview's "messages sent and blocked by rule" section, from the messaging outbox."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from yutang.analytics.sections import (
    Column,
    SectionContext,
    SectionTable,
    register_overview_section,
)
from yutang.messaging import services as messaging


def messages_by_rule(ctx: SectionContext) -> SectionTable:
    rows = messaging.outcome_counts(
        brand=ctx.brand, customers=ctx.customers, start_at=ctx.start_at, end_at=ctx.end_at
    )
    return SectionTable(
        columns=[
            Column("outcome", _("Outcome"), "text"),
            Column("rule", _("Rule"), "text"),
            Column("service", _("Service"), "int"),
            Column("marketing", _("Marketing"), "int"),
            Column("total", _("Total"), "int"),
        ],
        rows=rows,
        note=_("Messages created in the period, by what the policy gate and the carrier did."),
    )


def register() -> None:
    register_overview_section("messages", messages_by_rule)
