"""Formatting for acquisition pages: fen as yuan, rates as percentages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def yuan(fen: int | None) -> str:
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


@register.filter
def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.2f}%"


@register.filter
def bp_percent(bp: int | None) -> str:
    return "—" if bp is None else f"{bp / 100:.2f}%"
