"""The orders importer: one row, one paid order (unpaid or closed orders are skipped),
recorded a chunk at a time through `commerce.services.post_orders`; a row's refunded total
(退款金额) is brought up to date through `commerce.services.refund_to_total`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from yutang.commerce.models import OrderSource
from yutang.commerce.services import (
    NewOrder,
    OrderOutcome,
    OrderResult,
    post_orders,
    refund_to_total,
)
from yutang.core import clock
from yutang.core.errors import YutangError
from yutang.core.tabular import FieldError, Row, parse_datetime, parse_int, parse_yuan_to_fen
from yutang.customers.imports import (
    ChunkFallback,
    ImportContext,
    register_chunk_importer,
    register_importer,
    row_identities,
)

BUYER_COLUMNS = {
    "phone": "phone",
    "external_customer_id": "external",
    "taobao_buyer": "taobao_buyer",
    "jd_buyer": "jd_buyer",
    "pdd_buyer": "pdd_buyer",
    "douyin_user": "douyin_user",
}
SOURCE_ALIASES = {
    "天猫": "tmall",
    "淘宝": "taobao",
    "京东": "jd",
    "拼多多": "pdd",
    "抖音": "douyin",
    "有赞": "youzan",
    "小程序": "mini_program",
    "门店": "store_pos",
}
#: Order states of platform exports that mean the buyer never paid (or the order was closed
#: before payment): such rows are skipped, not errors.
UNPAID_STATES = ("等待买家付款", "交易关闭", "未付款", "已取消", "closed", "unpaid", "cancelled")


def _fen(values: dict[str, str], name: str) -> int:
    if values.get(f"{name}_fen"):
        return parse_int(values[f"{name}_fen"], field=f"{name}_fen", minimum=0)
    if values.get(f"{name}_yuan"):
        return parse_yuan_to_fen(values[f"{name}_yuan"], field=f"{name}_yuan")
    return 0


@dataclass
class _Refunded:
    """A row's refunded total (its 退款金额) and when it was refunded."""

    fen: int
    at: dt.datetime
    field: str  # the column it came from: refunded_fen or refunded_yuan


def _refunded(
    context: ImportContext, values: dict[str, str], amount: int, paid_at: dt.datetime
) -> _Refunded | None:
    """The row's refunded total, None when it has none (empty or zero). Without a
    `refunded_at` column the refund is dated when the import learns of it."""
    if not values.get("refunded_fen") and not values.get("refunded_yuan"):
        return None
    field = "refunded_fen" if values.get("refunded_fen") else "refunded_yuan"
    fen = _fen(values, "refunded")
    if fen == 0:
        return None
    if fen > amount:
        raise FieldError(field, "the refunded total is more than the amount paid")
    at = clock.now()
    if values.get("refunded_at"):
        at = parse_datetime(values["refunded_at"], context.brand.tz, field="refunded_at")
        if at < paid_at:
            raise FieldError("refunded_at", "the refund time is before the payment time")
    return _Refunded(fen, at, field)


def _parse_order_row(
    context: ImportContext, values: dict[str, str], row: Row
) -> tuple[NewOrder, _Refunded | None] | None:
    """A row, parsed and checked as far as the file alone can tell, with its refunded total;
    None: skipped (never paid). The rest (amount limits, times, duplicates, the buyer) is
    post_orders' to check."""
    status = values.get("status", "")
    if status and any(state in status for state in UNPAID_STATES) and not values.get("paid_at"):
        return None
    source = SOURCE_ALIASES.get(values.get("source", ""), values.get("source", "")).lower()
    if source not in OrderSource.values:
        raise FieldError(
            "source",
            f"unknown order source {values.get('source', '')!r}; "
            f"use one of {', '.join(OrderSource.values)}",
        )
    external_id = values.get("external_id", "")
    if not external_id:
        raise FieldError("external_id", "the order number is empty")
    if not values.get("paid_at"):
        raise FieldError("paid_at", "the payment time is empty")
    paid_at = parse_datetime(values["paid_at"], context.brand.tz, field="paid_at")
    if not values.get("amount_fen") and not values.get("amount_yuan"):
        raise FieldError("amount_yuan", "the amount is empty")
    amount = _fen(values, "amount")
    shipping, discount = _fen(values, "shipping"), _fen(values, "discount")
    identities = row_identities(values, BUYER_COLUMNS)
    store_code = values.get("store_code") or None
    if store_code:
        context.store(store_code)
    items: list[dict[str, Any]] = []
    if values.get("sku"):
        quantity = (
            parse_int(values["quantity"], field="quantity", minimum=1)
            if values.get("quantity")
            else 1
        )
        items.append({"sku": values["sku"], "quantity": quantity})
    refunded = _refunded(context, values, amount, paid_at)
    order = NewOrder(
        source=source,
        external_id=external_id,
        paid_at=paid_at,
        amount_fen=amount,
        shipping_fen=shipping,
        discount_fen=discount,
        identities=identities,
        items=items,
        store_code=store_code,
        coupon_code=values.get("coupon_code", "")[:64],
        import_row=row.number,
    )
    return order, refunded


def _outcome(
    context: ImportContext, order: NewOrder, refunded: _Refunded | None, result: OrderOutcome
) -> str | YutangError:
    """The row's outcome once its order is recorded: its refunded total brought up to date
    (raising the refund's error: the caller rolls the row back)."""
    if isinstance(result, YutangError):
        return result
    assert isinstance(result, OrderResult)
    refund = None
    if refunded is not None:
        try:
            refund = refund_to_total(
                brand=context.brand,
                actor=None,
                source=result.order.source,
                order_external_id=result.order.external_id,
                refunded_fen=refunded.fen,
                refunded_at=refunded.at,
                reason=f"import #{context.job_id}",
            )
        except YutangError as exc:
            if exc.field == "refunded_fen":  # name the file's column, fen or yuan
                raise FieldError(refunded.field, exc.message) from None
            raise
    if result.created:
        return "created"
    return "unchanged" if refund is None else "updated"


def import_order_row(context: ImportContext, values: dict[str, str], row: Row) -> str:
    """One row: `post_orders` with a batch of one (the all-or-nothing check's fallback and
    the before/after benchmark use it), then its refunded total; the runner's savepoint
    rolls both back when either is refused."""
    parsed = _parse_order_row(context, values, row)
    if parsed is None:
        return "skipped"
    order, refunded = parsed
    (result,) = post_orders(
        brand=context.brand, actor=None, orders=[order], import_job=context.job_id
    )
    outcome = _outcome(context, order, refunded, result)
    if isinstance(outcome, YutangError):
        raise outcome
    return outcome


def import_order_chunk(
    context: ImportContext, pairs: list[tuple[Row, dict[str, str]]]
) -> list[str | YutangError]:
    """A chunk of rows: each parsed (a bad row is refused naming its column), then the good
    ones recorded by one `post_orders` call. Duplicates within the chunk and with earlier
    chunks of the file are found by post_orders (in memory, and by the orders' import_job
    and import_row in the database), so memory does not grow with the file. Refunded
    totals follow, one `refund_to_total` each (rows with a refund are few); a refused
    refund sends the chunk row by row (ChunkFallback), so that its order is not kept."""
    outcomes: list[str | YutangError] = []
    parsed: list[tuple[int, NewOrder, _Refunded | None]] = []
    for n, (row, values) in enumerate(pairs):
        try:
            one = _parse_order_row(context, values, row)
        except YutangError as exc:
            outcomes.append(exc.with_traceback(None))
            continue
        if one is None:
            outcomes.append("skipped")
            continue
        parsed.append((n, *one))
        outcomes.append("pending")
    results = post_orders(
        brand=context.brand,
        actor=None,
        orders=[order for _, order, _refunded in parsed],
        import_job=context.job_id,
    )
    for (n, order, refunded), result in zip(parsed, results, strict=True):
        try:
            outcomes[n] = _outcome(context, order, refunded, result)
        except YutangError:
            raise ChunkFallback from None
    return outcomes


def register() -> None:
    register_importer("orders", import_order_row)
    register_chunk_importer("orders", import_order_chunk)
