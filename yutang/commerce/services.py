"""Orders and refunds: the only code that writes them. Posting an order resolves the buyer,
attributes the order to the owner staff, store and first-touch channel at paid time, and
appends `order.paid` to the event log in the same transaction (refunds: `order.refunded`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from yutang.commerce.models import Order, OrderSource, Product, Refund
from yutang.core import audit, clock
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import Brand, Staff, Store
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, require, require_brand_wide
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.events.services import ingest_one


@dataclass
class OrderResult:
    order: Order
    created: bool


def _check_amount(value: int, field: str, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(
            N_("{field} must be a whole number of fen."), params={"field": field}, field=field
        )
    if value < 0 or (positive and value == 0):
        raise ValidationFailed(
            N_("{field} must be {value}."),
            params={"field": field, "value": "positive" if positive else "zero or more"},
            field=field,
        )
    if value > MAX_FEN:
        raise ValidationFailed(
            N_("{field} is too large (at most {MAX_FEN} fen)."),
            params={"field": field, "MAX_FEN": MAX_FEN},
            field=field,
        )


MAX_FEN = 10**12


def _check_time(value: dt.datetime, field: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValidationFailed(
            N_("{field} needs a UTC offset."), params={"field": field}, field=field
        )
    if value > clock.now() + dt.timedelta(minutes=10):
        raise ValidationFailed(
            N_("{field} is in the future."), params={"field": field}, field=field
        )
    if value.year < 2000:
        raise ValidationFailed(N_("{field} is before 2000."), params={"field": field}, field=field)


def upsert_product(
    *,
    actor: Staff | None,
    brand: Brand,
    sku: str,
    name: str,
    price_fen: int,
    category: str = "",
    usage_cycle_days: int | None = None,
    is_active: bool = True,
) -> Product:
    if actor is not None:
        require(actor, Action.STORE_CREATE)
    if not sku.strip():
        raise ValidationFailed(N_("A product needs a SKU."), field="sku")
    _check_amount(price_fen, "price_fen")
    if usage_cycle_days is not None and not 1 <= usage_cycle_days <= 3650:
        raise ValidationFailed(
            N_("usage_cycle_days must be between 1 and 3650."), field="usage_cycle_days"
        )
    with transaction.atomic():
        product, created = Product.objects.update_or_create(
            brand=brand,
            sku=sku.strip(),
            defaults={
                "name": name,
                "price_fen": price_fen,
                "category": category,
                "usage_cycle_days": usage_cycle_days,
                "is_active": is_active,
            },
        )
        audit.record(
            brand=brand,
            actor=actor,
            action="product.create" if created else "product.update",
            target=product,
            changes={"price_fen": {"after": price_fen}},
        )
    return product


def list_products(*, actor: Staff) -> list[Product]:
    require(actor, Action.BRAND_VIEW)
    return list(Product.objects.filter(brand=actor.brand).order_by("sku"))


def post_order(
    *,
    brand: Brand,
    actor: Staff | None,
    source: str,
    external_id: str,
    paid_at: dt.datetime,
    amount_fen: int,
    identities: Sequence[Mapping[str, str]] = (),
    customer_id: int | None = None,
    discount_fen: int = 0,
    shipping_fen: int = 0,
    items: Sequence[Mapping[str, Any]] = (),
    store_code: str | None = None,
    coupon_code: str = "",
) -> OrderResult:
    """Record a paid order once. Posting the same (source, external_id) again returns the
    stored order unchanged; posting it with a different amount is a conflict."""
    if actor is not None:
        require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    if source not in OrderSource.values:
        raise ValidationFailed(
            N_("Unknown order source {source!r}."), params={"source": source}, field="source"
        )
    if not external_id.strip() or len(external_id) > 100:
        raise ValidationFailed(
            N_("external_id is required (at most 100 characters)."), field="external_id"
        )
    _check_time(paid_at, "paid_at")
    for name, value in (
        ("amount_fen", amount_fen),
        ("discount_fen", discount_fen),
        ("shipping_fen", shipping_fen),
    ):
        _check_amount(value, name)
    existing = Order.objects.filter(brand=brand, source=source, external_id=external_id).first()
    if existing is not None:
        if existing.amount_fen != amount_fen:
            raise Conflict(
                N_("Order {source}:{external_id} exists with a different amount."),
                params={"source": source, "external_id": external_id},
                field="external_id",
            )
        return OrderResult(order=existing, created=False)
    store = None
    if store_code:
        store = Store.objects.filter(brand=brand, code=store_code).first()
        if store is None:
            raise ValidationFailed(
                N_("Unknown store code {store_code!r}."),
                params={"store_code": store_code},
                field="store_code",
            )
    normalized = [
        normalize_identity(
            i.get("kind", ""), i.get("value", ""), i.get("namespace", ""), field=f"identities.{n}"
        )
        for n, i in enumerate(identities)
    ]
    if not normalized and customer_id is None:
        raise ValidationFailed(
            N_("Give the buyer's identities or a customer_id."), field="identities"
        )
    with transaction.atomic():
        if customer_id is not None and not normalized:
            customer = customers.Customer.objects.filter(brand=brand, pk=customer_id).first()
            if customer is None:
                raise NotFound(
                    N_("No such customer: {customer_id}."),
                    params={"customer_id": customer_id},
                    field="customer_id",
                )
            customer = customers.survivor(customer)
        else:
            customer = customers.resolve_customer(
                brand=brand, identities=normalized, source=f"order:{source}"
            ).customer
        # Attribution as of the paid time: a late-posted order counts for whoever owned the
        # customer when it was paid, not for today's owner.
        owner_store_id, owner_staff_id = customers.owner_at(customer=customer, at=paid_at)
        try:
            with transaction.atomic():
                order = Order.objects.create(
                    brand=brand,
                    source=source,
                    external_id=external_id.strip(),
                    customer=customer,
                    paid_at=paid_at,
                    amount_fen=amount_fen,
                    discount_fen=discount_fen,
                    shipping_fen=shipping_fen,
                    items=list(items),
                    store=store,
                    staff_id=owner_staff_id,
                    attributed_store_id=owner_store_id,
                    channel=customer.source_channel,
                    coupon_code=coupon_code,
                    created_at=clock.now(),
                )
        except IntegrityError:
            raise Conflict(
                N_("Order {source}:{external_id} is being recorded concurrently."),
                params={"source": source, "external_id": external_id},
                field="external_id",
            ) from None
        ingest_one(
            brand=brand,
            item={
                "type": "order.paid",
                "occurred_at": paid_at,
                "customer_id": customer.pk,
                "idempotency_key": f"order.paid:{source}:{order.external_id}",
                "source": source,
                "properties": {
                    "order_id": order.external_id,
                    "source": source,
                    "amount_fen": amount_fen,
                    **({"store_code": store_code} if store_code else {}),
                },
            },
        )
    return OrderResult(order=order, created=True)


def post_refund(
    *,
    brand: Brand,
    actor: Staff | None,
    source: str,
    order_external_id: str,
    external_id: str,
    amount_fen: int,
    refunded_at: dt.datetime,
    reason: str = "",
) -> tuple[Refund, bool]:
    """Refund part or all of an order, once per refund id; never more than was paid."""
    if actor is not None:
        require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    _check_amount(amount_fen, "amount_fen", positive=True)
    _check_time(refunded_at, "refunded_at")
    with transaction.atomic():
        order = Order.objects.filter(
            brand=brand, source=source, external_id=order_external_id
        ).first()
        if order is None:
            raise NotFound(
                N_("No such order: {source}:{order_external_id}."),
                params={"source": source, "order_external_id": order_external_id},
                field="order_external_id",
            )
        existing = Refund.objects.filter(order=order, external_id=external_id).first()
        if existing is not None:
            return existing, False
        updated = Order.objects.filter(
            pk=order.pk, refunded_fen__lte=F("amount_fen") - amount_fen
        ).update(refunded_fen=F("refunded_fen") + amount_fen)
        if not updated:
            raise ValidationFailed(
                N_("The refund is more than what is left of the order."), field="amount_fen"
            )
        refund = Refund.objects.create(
            brand=brand,
            order=order,
            external_id=external_id,
            amount_fen=amount_fen,
            refunded_at=refunded_at,
            reason=reason[:200],
        )
        ingest_one(
            brand=brand,
            item={
                "type": "order.refunded",
                "occurred_at": refunded_at,
                "customer_id": order.customer_id,
                "idempotency_key": f"order.refunded:{source}:{order.external_id}:{external_id}",
                "source": source,
                "properties": {
                    "order_id": order.external_id,
                    "refund_id": external_id,
                    "amount_fen": amount_fen,
                },
            },
        )
    return refund, True


def list_orders(
    *, actor: Staff, customer_id: int | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[Order], str | None]:
    visible = customers.Customer.objects.for_actor(actor).values("pk")
    qs = Order.objects.filter(brand=actor.brand, customer__in=visible)
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    return page_by_id_desc(qs.prefetch_related("refunds"), cursor=cursor, limit=limit)
