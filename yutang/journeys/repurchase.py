"""The ``repurchase_due`` condition: a segments rule kind that journeys registers (segments'
`register_condition`, so the rule language module stays untouched), used by the repurchase
template's daily schedule and usable in any rule.

``{"kind": "repurchase_due", "lead_days": 3, "window_days": 7}`` holds for a customer whose
days since their last order (calendar days in the brand's time zone, like every "days ago" of
the rule language) are at least the **cycle minus `lead_days`** and less than that plus
`window_days`. The cycle is the longest `usage_cycle_days` among the products of the last
order (by SKU, as the lifecycle stages and the predicted next purchase of
`segments.scoring` read it), else the brand's `default_cycle_days` (segment settings); a
customer with neither is never due. The window lets a daily schedule that missed a day still
find the customer; the template's re-entry rule (`after_days` = `window_days`) keeps it to one
reminder per order.

In SQL it is one query: the customers' aggregates with a last order in the union of the
windows (one per distinct cycle of the brand: the `(brand, last_order_at)` index), joined to
that order, whose cycle is computed from its items and the products table."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL
from pydantic import Field

from yutang.segments import rules


def _default_cycle(brand_id: int) -> int | None:
    from yutang.segments.models import SegmentSettings

    return (
        SegmentSettings.objects.filter(brand_id=brand_id)
        .values_list("default_cycle_days", flat=True)
        .first()
    )


class RepurchaseDueCondition(rules.Condition):
    kind: Literal["repurchase_due"]
    lead_days: Annotated[int, Field(ge=0, le=365)] = 3
    window_days: Annotated[int, Field(ge=1, le=365)] = 7

    def trigger_types(self) -> set[str] | None:
        return None  # time makes it true: evaluate it on a schedule

    def _bounds(self, cycle: int, ctx: rules.Context) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) of last-order moments that are due today for this cycle."""
        first = cycle - self.lead_days  # fewest days since the last order
        last = first + self.window_days - 1
        if last < 0:
            last = first = 0
        first = max(first, 0)
        start = ctx.day_start(ctx.today - dt.timedelta(days=last))
        end = ctx.day_start(ctx.today - dt.timedelta(days=first - 1))
        return start, end

    def compile(self, ctx: rules.Context) -> Q:
        from yutang.commerce.models import Order, Product
        from yutang.events.models import CustomerAggregate

        default = _default_cycle(ctx.brand_id)
        cycles: set[int] = {
            days
            for days in Product.objects.filter(
                brand_id=ctx.brand_id, usage_cycle_days__isnull=False
            )
            .values_list("usage_cycle_days", flat=True)
            .distinct()
            if days
        }
        if default:
            cycles.add(default)
        if not cycles:
            return Q(pk__in=[])
        q = connection.ops.quote_name
        agg, order, product = (
            q(CustomerAggregate._meta.db_table),
            q(Order._meta.db_table),
            q(Product._meta.db_table),
        )
        if connection.vendor == "postgresql":
            elements = (
                "jsonb_array_elements(CASE WHEN jsonb_typeof(o.items) = 'array' "
                "THEN o.items ELSE '[]'::jsonb END) AS e(value)"
            )
            sku = "e.value ->> 'sku'"
        else:
            elements = "json_each(o.items) AS e"
            sku = "CASE WHEN e.type = 'object' THEN json_extract(e.value, '$.sku') END"
        windows = {c: self._bounds(c, ctx) for c in sorted(cycles)}
        low = min(start for start, _ in windows.values())
        high = max(end for _, end in windows.values())
        clauses = " OR ".join(
            "(d.cycle = %s AND d.last_order_at >= %s AND d.last_order_at < %s)" for _ in windows
        )
        params: list[Any] = [default, ctx.brand_id, low, high]
        for cycle, (start, end) in windows.items():
            params += [cycle, start, end]
        # Table names come from the models; every value is a bound parameter.
        sql = f"""
            SELECT d.customer_id FROM (
                SELECT a.customer_id AS customer_id, a.last_order_at AS last_order_at,
                       COALESCE((
                           SELECT MAX(p.usage_cycle_days) FROM {elements}
                           JOIN {product} p ON p.brand_id = o.brand_id AND p.sku = {sku}
                       ), %s) AS cycle
                FROM {agg} a
                LEFT JOIN {order} o
                  ON o.customer_id = a.customer_id AND o.paid_at = a.last_order_at
                WHERE a.brand_id = %s AND a.last_order_at >= %s AND a.last_order_at < %s
            ) d WHERE {clauses}
        """  # noqa: S608
        return Q(pk__in=RawSQL(sql, params))  # noqa: S611 - names from models, values bound

    def evaluate(self, facts: rules.Facts, ctx: rules.Context) -> bool:
        from yutang.commerce.models import Order, Product

        agg = facts.aggregate
        if agg is None or agg.last_order_at is None:
            return False
        items = (
            Order.objects.filter(customer=facts.customer, paid_at=agg.last_order_at)
            .values_list("items", flat=True)
            .order_by("-id")
        )
        skus = {
            str(i.get("sku"))
            for order_items in items
            for i in (order_items or [])
            if isinstance(i, dict) and i.get("sku")
        }
        cycles = [
            days
            for days in Product.objects.filter(
                brand_id=ctx.brand_id, sku__in=sorted(skus), usage_cycle_days__isnull=False
            ).values_list("usage_cycle_days", flat=True)
            if days
        ]
        cycle = max(cycles) if cycles else _default_cycle(ctx.brand_id)
        if not cycle:
            return False
        start, end = self._bounds(cycle, ctx)
        return start <= agg.last_order_at < end


def register() -> None:
    rules.register_condition("repurchase_due", RepurchaseDueCondition)
