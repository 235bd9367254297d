"""Orders and refunds: the only code that writes them. Posting an order resolves the buyer,
attributes the order to the owner staff, store and first-touch channel at paid time, and
appends `order.paid` to the event log in the same transaction (refunds: `order.refunded`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from yutang.commerce.models import Order, OrderSource, Product, Refund
from yutang.core import audit, bulk, clock
from yutang.core.db import lock_brand
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed, YutangError
from yutang.core.models import Brand, Staff, Store
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, require, require_brand_wide
from yutang.customers import services as customers
from yutang.customers.identities import NormalizedIdentity, normalize_identity
from yutang.events.services import ingest_in_batches, ingest_one


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


@dataclass
class NewOrder:
    """One paid order to record with `post_orders` (checked there). `identities` are the
    buyer's, as {kind, value, namespace} mappings or already normalised; `import_row` is the
    file row an import read it from."""

    source: str
    external_id: str
    paid_at: dt.datetime
    amount_fen: int
    identities: Sequence[Mapping[str, str] | NormalizedIdentity] = ()
    customer_id: int | None = None
    discount_fen: int = 0
    shipping_fen: int = 0
    items: Sequence[Mapping[str, Any]] = ()
    store_code: str | None = None
    coupon_code: str = ""
    import_row: int | None = None


#: What `post_orders` says of each order: recorded (or found), or why it was refused.
OrderOutcome = OrderResult | YutangError


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
    """Record a paid order once: `post_orders` with a batch of one, raising its error.
    Posting the same (source, external_id) again returns the stored order unchanged;
    posting it with a different amount is a conflict."""
    (outcome,) = post_orders(
        brand=brand,
        actor=actor,
        orders=[
            NewOrder(
                source=source,
                external_id=external_id,
                paid_at=paid_at,
                amount_fen=amount_fen,
                identities=identities,
                customer_id=customer_id,
                discount_fen=discount_fen,
                shipping_fen=shipping_fen,
                items=items,
                store_code=store_code,
                coupon_code=coupon_code,
            )
        ],
    )
    if isinstance(outcome, YutangError):
        raise outcome
    return outcome


class _OneByOne(Exception):
    """A batch that must be recorded order by order (see post_orders)."""


def post_orders(
    *,
    brand: Brand,
    actor: Staff | None,
    orders: Sequence[NewOrder],
    import_job: int | None = None,
) -> list[OrderOutcome]:
    """Record a batch of paid orders: the one place order logic lives (the API's single
    order and every import chunk come here). Each order is recorded once per (source,
    external_id): an order already stored comes back with created=False (a different amount
    is a Conflict); a refused order comes back as its error, naming the field, and leaves
    nothing behind. The good orders of a batch are recorded together in one transaction:
    the buyers resolved at once (BatchResolver: one identity lookup, new customers and
    identities in bulk), attribution read for all of them, the orders inserted in one
    statement, `order.paid` written through the event log in one call (which folds the
    per-customer aggregates set-based).

    A batch in which a buyer links two customers (a merge or a review), or which fails after
    its writes began, is rolled back and recorded order by order, each in a savepoint, so
    the outcome — customers, merges, attribution, orders, events — is what posting the orders
    one by one gives.

    `import_job` (an import's id, with each order's `import_row`): an order named twice by
    the job's file is refused on its second row, naming the first; the file's rows are
    remembered on the orders (import_job, import_row), not in memory."""
    if actor is not None:
        require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    if not orders:
        return []
    with transaction.atomic():
        if len(orders) > 1:
            try:
                with transaction.atomic():
                    return _post(brand, orders, import_job, whole=True)
            except _OneByOne:
                pass  # rolled back: order by order below
        outcomes: list[OrderOutcome] = []
        for order in orders:
            try:
                with transaction.atomic():
                    outcomes.extend(_post(brand, [order], import_job, whole=False))
            except YutangError as exc:
                outcomes.append(exc.with_traceback(None))
        return outcomes


def _key(order: NewOrder) -> tuple[str, str]:
    return (order.source, order.external_id.strip())


def _check_order(order: NewOrder) -> list[NormalizedIdentity]:
    """Everything about one order that needs no database; its buyer's identities."""
    if order.source not in OrderSource.values:
        raise ValidationFailed(
            N_("Unknown order source {source!r}."), params={"source": order.source}, field="source"
        )
    if not order.external_id.strip() or len(order.external_id) > 100:
        raise ValidationFailed(
            N_("external_id is required (at most 100 characters)."), field="external_id"
        )
    _check_time(order.paid_at, "paid_at")
    for name, value in (
        ("amount_fen", order.amount_fen),
        ("discount_fen", order.discount_fen),
        ("shipping_fen", order.shipping_fen),
    ):
        _check_amount(value, name)
    return [
        i
        if isinstance(i, NormalizedIdentity)
        else normalize_identity(
            i.get("kind", ""), i.get("value", ""), i.get("namespace", ""), field=f"identities.{n}"
        )
        for n, i in enumerate(order.identities)
    ]


def _duplicate(order: NewOrder, row: int | None) -> Conflict:
    return Conflict(
        N_("Duplicate order number {external_id} (also on row {row})."),
        params={"external_id": order.external_id.strip(), "row": row},
        field="external_id",
    )


def _different_amount(order: NewOrder) -> Conflict:
    return Conflict(
        N_("Order {source}:{external_id} exists with a different amount."),
        params={"source": order.source, "external_id": order.external_id.strip()},
        field="external_id",
    )


def _post(
    brand: Brand, orders: Sequence[NewOrder], import_job: int | None, *, whole: bool
) -> list[OrderOutcome]:
    """Record `orders` in the caller's transaction. `whole`: raise _OneByOne where the
    batch cannot be recorded as one; otherwise (a batch of one) raise the order's error
    once writes began. Errors are returned without their traceback: it would hold this
    frame (the whole batch) in a reference cycle until the garbage collector's next full
    pass, and an import's memory would grow with the file."""
    outcomes: list[OrderOutcome | None] = [None] * len(orders)
    # The brand's identity lock, first: concurrent posts of one order see each other.
    lock_brand(brand.pk)
    checked: dict[int, list[NormalizedIdentity]] = {}
    for n, order in enumerate(orders):
        try:
            checked[n] = _check_order(order)
        except YutangError as exc:
            outcomes[n] = exc.with_traceback(None)
    # Orders stored already (an earlier post, a re-import, an earlier chunk of this file).
    by_source: dict[str, set[str]] = {}
    for n in checked:
        source, external_id = _key(orders[n])
        by_source.setdefault(source, set()).add(external_id)
    stored: dict[tuple[str, str], Order] = {}
    if by_source:
        wanted = Q()
        for source, external_ids in by_source.items():
            wanted |= Q(source=source, external_id__in=external_ids)
        stored = {(o.source, o.external_id): o for o in Order.objects.filter(wanted, brand=brand)}
    marked: list[Order] = []
    for n in list(checked):
        order, found = orders[n], stored.get(_key(orders[n]))
        if found is None:
            continue
        del checked[n]
        if import_job is not None and found.import_job == import_job:
            outcomes[n] = _duplicate(order, found.import_row)
        elif found.amount_fen != order.amount_fen:
            outcomes[n] = _different_amount(order)
        else:
            outcomes[n] = OrderResult(order=found, created=False)
            if import_job is not None:
                found.import_job, found.import_row = import_job, order.import_row
                marked.append(found)
    codes = {orders[n].store_code for n in checked if orders[n].store_code}
    stores = {s.code: s for s in Store.objects.filter(brand=brand, code__in=codes)} if codes else {}
    by_id: dict[int, customers.Customer] = {}
    wanted_ids = {orders[n].customer_id for n in checked if not checked[n]} - {None}
    if wanted_ids:
        by_id = customers.Customer.objects.in_bulk(wanted_ids)
    first_of: dict[tuple[str, str], int] = {}  # key -> index of the batch's order recording it
    for n in list(checked):
        order = orders[n]
        try:
            if order.store_code and order.store_code not in stores:
                raise ValidationFailed(
                    N_("Unknown store code {store_code!r}."),
                    params={"store_code": order.store_code},
                    field="store_code",
                )
            if not checked[n] and order.customer_id is None:
                raise ValidationFailed(
                    N_("Give the buyer's identities or a customer_id."), field="identities"
                )
            if not checked[n] and order.customer_id not in by_id:
                raise NotFound(
                    N_("No such customer: {customer_id}."),
                    params={"customer_id": order.customer_id},
                    field="customer_id",
                )
            earlier = first_of.get(_key(order))
            if earlier is not None:
                if import_job is not None:
                    raise _duplicate(order, orders[earlier].import_row)
                if orders[earlier].amount_fen != order.amount_fen:
                    raise _different_amount(order)
                continue  # the same order twice: found, once the first is recorded
        except YutangError as exc:
            outcomes[n] = exc.with_traceback(None)
            del checked[n]
            continue
        first_of[_key(order)] = n
    # The buyers, resolved together in batch order.
    now = clock.now()
    resolver = customers.BatchResolver(
        brand=brand, identities=[i for n in first_of.values() for i in checked[n]], now=now
    )
    refs: dict[int, int] = {}
    for n in first_of.values():
        order = orders[n]
        if checked[n]:
            try:
                refs[n] = resolver.resolve(checked[n], source=f"order:{order.source}")
            except YutangError:
                if whole:
                    raise _OneByOne from None
                raise
            if resolver.used_slow_path and whole:
                raise _OneByOne  # a merge or a review: attribution must see it in order
        else:
            refs[n] = customers.survivor(by_id[order.customer_id]).pk  # type: ignore[index]
    resolver.flush()
    customer_ids = {n: resolver.customer_id(ref) for n, ref in refs.items()}
    buyers = customers.Customer.objects.in_bulk(set(customer_ids.values()))
    # Attribution as of the paid time: a late-posted order counts for whoever owned the
    # customer when it was paid, not for today's owner.
    owners = customers.owners_at(
        [(buyers[customer_ids[n]], orders[n].paid_at) for n in first_of.values()]
    )
    rows = []
    for n, (owner_store_id, owner_staff_id) in zip(first_of.values(), owners, strict=True):
        order = orders[n]
        buyer = buyers[customer_ids[n]]
        rows.append(
            Order(
                brand=brand,
                source=order.source,
                external_id=order.external_id.strip(),
                customer=buyer,
                paid_at=order.paid_at,
                amount_fen=order.amount_fen,
                discount_fen=order.discount_fen,
                shipping_fen=order.shipping_fen,
                items=[dict(item) for item in order.items],
                store=stores.get(order.store_code) if order.store_code else None,
                staff_id=owner_staff_id,
                attributed_store_id=owner_store_id,
                channel=buyer.source_channel,
                coupon_code=order.coupon_code,
                created_at=now,
                import_job=import_job,
                import_row=order.import_row if import_job is not None else None,
            )
        )
    if rows:
        try:
            with transaction.atomic():
                Order.objects.bulk_create(rows)
        except IntegrityError:
            if whole:
                raise _OneByOne from None
            order = orders[next(iter(first_of.values()))]
            raise Conflict(
                N_("Order {source}:{external_id} is being recorded concurrently."),
                params={"source": order.source, "external_id": order.external_id.strip()},
                field="external_id",
            ) from None
    created = dict(zip(first_of.values(), rows, strict=True))
    for n, row in created.items():
        outcomes[n] = OrderResult(order=row, created=True)
    for n in checked:
        if n not in created:  # the same order twice in a batch (not an import)
            outcomes[n] = OrderResult(order=created[first_of[_key(orders[n])]], created=False)
    if marked:
        bulk.update_rows(Order, marked, ["import_job", "import_row"])
    _log_paid(brand, [(orders[n], row) for n, row in created.items()], whole=whole)
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def _log_paid(brand: Brand, recorded: list[tuple[NewOrder, Order]], *, whole: bool) -> None:
    """`order.paid` for every recorded order, in one call to the event log (which folds the
    aggregates); a refused event refuses the batch (or the order)."""
    results = ingest_in_batches(
        brand=brand,
        items=[
            {
                "type": "order.paid",
                "occurred_at": row.paid_at,
                "customer_id": row.customer_id,
                "idempotency_key": f"order.paid:{row.source}:{row.external_id}",
                "source": row.source,
                "properties": {
                    "order_id": row.external_id,
                    "source": row.source,
                    "amount_fen": row.amount_fen,
                    **({"store_code": order.store_code} if order.store_code else {}),
                },
            }
            for order, row in recorded
        ],
    )
    for result in results:
        if result.status == "rejected":
            if whole:
                raise _OneByOne
            assert result.error is not None
            raise ValidationFailed(str(result.error["message"]), field=result.error["field"])


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


def refund_to_total(
    *,
    brand: Brand,
    actor: Staff | None,
    source: str,
    order_external_id: str,
    refunded_fen: int,
    refunded_at: dt.datetime,
    reason: str = "",
) -> Refund | None:
    """Bring an order's refunded total up to `refunded_fen` — what an order export states
    (Tmall's 退款金额 is the order's refunded total so far, not one refund). The difference
    from what is already recorded becomes one refund (id ``total-<refunded_fen>``, so the
    same total posted again is found, not refunded twice) through `post_refund`, with its
    `order.refunded` event. Returns None when the total is already recorded; a total below
    what is recorded is refused: refunds are never taken back."""
    _check_amount(refunded_fen, "refunded_fen")
    with transaction.atomic():
        order = (
            Order.objects.filter(brand=brand, source=source, external_id=order_external_id)
            .only("pk", "refunded_fen", "amount_fen")
            .first()
        )
        if order is None:
            raise NotFound(
                N_("No such order: {source}:{order_external_id}."),
                params={"source": source, "order_external_id": order_external_id},
                field="order_external_id",
            )
        if refunded_fen == order.refunded_fen:
            return None
        if refunded_fen > order.amount_fen:
            raise ValidationFailed(
                N_("The refunded total {refunded_fen} fen is more than the {amount_fen} fen paid."),
                params={"refunded_fen": refunded_fen, "amount_fen": order.amount_fen},
                field="refunded_fen",
            )
        if refunded_fen < order.refunded_fen:
            raise ValidationFailed(
                N_(
                    "The refunded total {refunded_fen} fen is less than the "
                    "{recorded_fen} fen already recorded for this order."
                ),
                params={"refunded_fen": refunded_fen, "recorded_fen": order.refunded_fen},
                field="refunded_fen",
            )
        refund, _created = post_refund(
            brand=brand,
            actor=actor,
            source=source,
            order_external_id=order_external_id,
            external_id=f"total-{refunded_fen}",
            amount_fen=refunded_fen - order.refunded_fen,
            refunded_at=refunded_at,
            reason=reason,
        )
    return refund


def list_orders(
    *, actor: Staff, customer_id: int | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[Order], str | None]:
    visible = customers.Customer.objects.for_actor(actor).values("pk")
    qs = Order.objects.filter(brand=actor.brand, customer__in=visible)
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    return page_by_id_desc(qs.prefetch_related("refunds"), cursor=cursor, limit=limit)
