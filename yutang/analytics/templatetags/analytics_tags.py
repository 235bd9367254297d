"""Formatting of overview numbers in templates (the same as the KPI cards and the CLI)."""

from __future__ import annotations

from typing import Any

from django import template

from yutang.analytics.exports import format_value

register = template.Library()


@register.filter
def metric(value: Any, kind: str) -> str:
    """``{{ value|metric:"fen" }}`` → ¥1,234.50; ``rate`` → 12.5%; ``int`` → 1,234."""
    if isinstance(value, dict) and "rate" in value:
        value = value["rate"]
    return format_value(value, kind)


@register.filter
def cell(row: dict[str, Any], key: str) -> Any:
    return row.get(key)
