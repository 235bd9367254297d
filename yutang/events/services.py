"""Ingesting events: validate, resolve each to a customer by identities, store once per
idempotency key, apply side effects (consent, profile) and fold into aggregates. On
PostgreSQL, outside a caller's transaction, a batch resolves in one short transaction that is
serialised per brand and writes in a second one that runs beside other batches' (see
ingest_events and docs/events.md); otherwise in one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction

from yutang.core import bulk, clock
from yutang.core.db import CUSTOMER_MERGES, is_transient, lock_brand, pipeline
from yutang.core.errors import N_, NotFound, ValidationFailed, YutangError
from yutang.core.models import Brand, Staff
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, require_brand_wide
from yutang.core.services import is_valid_id
from yutang.customers import services as customers
from yutang.customers.identities import NormalizedIdentity, normalize_identity, normalizer
from yutang.customers.models import Consent, Customer, Identity
from yutang.events import aggregates, txids
from yutang.events.models import CustomerAggregate, Event
from yutang.events.types import validate_properties

MAX_BATCH = 1000


@dataclass(slots=True)
class EventResult:
    index: int
    status: str  # stored | duplicate | rejected
    event_id: int | None = None
    customer_id: int | None = None
    error: dict[str, str | None] | None = None


@dataclass(slots=True)
class _Valid:
    index: int
    type: str
    occurred_at: dt.datetime
    key: str
    source: str
    properties: dict[str, Any]
    customer_id: int | None
    identities: list[NormalizedIdentity]


EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
#: How far ahead of the server's clock an event may be (clock skew).
LEEWAY = dt.timedelta(minutes=10)


def _validate(
    brand: Brand,
    index: int,
    item: Any,
    now: dt.datetime,
    normalize: Callable[[str, str, str, int], NormalizedIdentity] | None = None,
) -> _Valid:
    """Check one event of a batch completely before anything is written. `normalize`: the
    batch's `identities.normalizer()` (one is made if not given)."""
    # `type(…) is dict` first: an ABC isinstance check costs a microsecond per event.
    if type(item) is not dict and not isinstance(item, Mapping):
        raise ValidationFailed(N_("Each event must be an object."), field="events")
    key = item.get("idempotency_key")
    if not isinstance(key, str) or not key.strip() or len(key) > 200:
        raise ValidationFailed(
            N_("idempotency_key is required (1–200 characters)."), field="idempotency_key"
        )
    event_type = item.get("type")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 64:
        raise ValidationFailed(N_("type is required (at most 64 characters)."), field="type")
    occurred = item.get("occurred_at")
    if isinstance(occurred, str):
        try:
            occurred = dt.datetime.fromisoformat(occurred)
        except ValueError:
            raise ValidationFailed(
                N_("occurred_at must be an ISO 8601 time."), field="occurred_at"
            ) from None
    if not isinstance(occurred, dt.datetime) or occurred.tzinfo is None:
        raise ValidationFailed(
            N_("occurred_at must be an ISO 8601 time with a UTC offset."), field="occurred_at"
        )
    try:
        occurred = occurred.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise ValidationFailed(N_("occurred_at is out of range."), field="occurred_at") from None
    if occurred < EARLIEST:
        raise ValidationFailed(N_("occurred_at is before 2000."), field="occurred_at")
    if occurred > now + LEEWAY:
        raise ValidationFailed(N_("occurred_at is in the future."), field="occurred_at")
    source = item.get("source") or "api"
    if not isinstance(source, str):
        raise ValidationFailed(N_("source must be text."), field="source")
    properties = validate_properties(event_type, item.get("properties") or {})
    if event_type == "profile.updated":
        _check_profile_properties(brand, properties)
    raw_identities = item.get("identities") or []
    if not isinstance(raw_identities, list) or len(raw_identities) > 20:
        raise ValidationFailed(N_("identities must be a list of at most 20."), field="identities")
    if normalize is None:
        normalize = normalizer()
    identities = []
    for n, raw in enumerate(raw_identities):
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise ValidationFailed(
                N_("An identity is {kind, value, namespace} of text."), field=f"identities.{n}"
            )
        kind, value, namespace = raw.get("kind", ""), raw.get("value", ""), raw.get("namespace", "")
        if not (type(kind) is str and type(value) is str and type(namespace) is str) and not (
            isinstance(kind, str) and isinstance(value, str) and isinstance(namespace, str)
        ):
            raise ValidationFailed(
                N_("An identity is {kind, value, namespace} of text."), field=f"identities.{n}"
            )
        identities.append(normalize(kind, value, namespace, n))
    customer_id = item.get("customer_id")
    if customer_id is not None and not is_valid_id(customer_id):
        raise ValidationFailed(N_("customer_id must be a customer's id."), field="customer_id")
    if customer_id is None and not identities:
        raise ValidationFailed(N_("Give identities or a customer_id."), field="identities")
    # index, type, occurred_at, key, source, properties, customer_id, identities
    return _Valid(
        index, event_type, occurred, key.strip(), source[:32], properties, customer_id, identities
    )


def _check_profile_properties(brand: Brand, properties: dict[str, Any]) -> None:
    if "birthday" in properties:
        try:
            dt.date.fromisoformat(properties["birthday"])
        except (TypeError, ValueError):
            raise ValidationFailed(
                N_("birthday must be YYYY-MM-DD."), field="properties.birthday"
            ) from None
    if properties.get("attributes"):
        try:
            customers.validate_attributes(brand, properties["attributes"])
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, field=f"properties.{exc.field}") from None


def ingest_events(
    *, brand: Brand, items: Sequence[Mapping[str, Any]], actor: Staff | None = None
) -> list[EventResult]:
    """Store a batch of events. Each is stored, reported as a duplicate (same idempotency
    key, stored once, never twice) or rejected with the reason; good events of a batch are
    stored even when others are bad."""
    if actor is not None:
        require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    if len(items) > MAX_BATCH:
        raise ValidationFailed(
            N_("At most {MAX_BATCH} events per batch."),
            params={"MAX_BATCH": MAX_BATCH},
            field="events",
        )
    # Validation reads nothing that a concurrent batch writes: it runs once, before the
    # transaction and its brand lock, so two API workers validate while the other writes.
    now = clock.now()
    checked: list[EventResult] = []
    valid: list[_Valid] = []
    normalize = normalizer()
    for index, item in enumerate(items):
        try:
            valid.append(_validate(brand, index, item, now, normalize))
            checked.append(EventResult(index=index, status="pending"))
        except YutangError as exc:
            checked.append(EventResult(index=index, status="rejected", error=exc.as_dict()))
    # Outside a caller's transaction on PostgreSQL a batch is written in two transactions
    # (see _resolve_batch and _write_batch): only the first, short one is serialised per
    # brand, so concurrent batches of one brand store their events and aggregates at once.
    # Inside a caller's transaction both parts commit with the caller's.
    split = connection.vendor == "postgresql" and not connection.in_atomic_block
    # Events that name their customer and no identities (what Yutang's own services write:
    # `message.sent`, orders, consent changes) need no identity resolution: one transaction,
    # without the brand's identity lock (see _store_known).
    known = all(v.customer_id is not None and not v.identities for v in valid)
    for attempt in range(ATTEMPTS):
        # Fresh results per attempt (dataclasses.replace costs ~2 µs an event more).
        results = [EventResult(r.index, r.status, error=r.error) for r in checked]
        try:
            if known:
                with transaction.atomic():
                    _store_known(brand, valid, results, now)
            elif split:
                with transaction.atomic():
                    to_store = _resolve_batch(brand, valid, results, now)
                with transaction.atomic():
                    _write_batch(brand, to_store, results, now)
            else:
                with transaction.atomic():
                    to_store = _resolve_batch(brand, valid, results, now)
                    _write_batch(brand, to_store, results, now)
            return results
        except (IntegrityError, OperationalError) as exc:
            # A concurrent writer won a race this batch cannot settle inside its transaction
            # (the retry sees its committed rows), or the database chose this transaction as
            # a deadlock victim.
            if attempt == ATTEMPTS - 1 or (
                isinstance(exc, OperationalError) and not is_transient(exc)
            ):
                raise
            if isinstance(exc, OperationalError) and connection.in_atomic_block:
                raise  # a deadlock inside a caller's transaction: the caller must retry it all
    raise AssertionError("unreachable")


ATTEMPTS = 5


#: The columns of an event row as `_write_batch` writes them (every Event field but the id).
EVENT_COLUMNS = [
    ("txid", "int"),
    ("brand_id", "int"),
    ("customer_id", "int"),
    ("type", "text"),
    ("occurred_at", "time"),
    ("received_at", "time"),
    ("source", "text"),
    ("idempotency_key", "text"),
    ("properties", "json"),
]


def _stored_keys(brand_id: int, keys: list[str]) -> set[str]:
    """Which of these idempotency keys the brand's event log holds already."""
    return {
        key
        for (key,) in bulk.lookup(
            Event._meta.db_table,
            ["idempotency_key"],
            where={"brand_id": brand_id},
            key="idempotency_key",
            values=keys,
            binary=True,
        )
    }


def _resolve_batch(
    brand: Brand, valid: list[_Valid], results: list[EventResult], now: dt.datetime
) -> list[tuple[_Valid, int]]:
    """The first part of storing a batch, under the brand's identity lock: every event not
    already stored (by idempotency key) resolved to its customer, creating customers and
    identities (and merging, or queueing reviews) as needed. Returns (event, customer id) in
    batch order; marks duplicates and events rejected by resolution in `results`.

    On its own transaction (see ingest_events) it commits before the events are written: the
    next batch of the brand then resolves against these customers while this one writes. If
    the second part fails, what this part wrote is still right — customers and identities
    that the batch's records named — and a retry of the batch finds them."""
    with pipeline():  # the transaction's BEGIN, the lock and the read: one round trip
        lock_brand(brand.pk)
        known_keys = _stored_keys(brand.pk, [v.key for v in valid])
    # Set-based resolution: one query finds every identity of the batch; events resolve in
    # memory in batch order, and only those that link two customers touch the database on
    # their own (see BatchResolver). The outcome equals resolving the events one by one.
    resolver = customers.BatchResolver(
        brand=brand, identities=[i for v in valid for i in v.identities], now=now
    )
    by_id = dict(
        Customer.objects.filter(
            brand=brand, pk__in={v.customer_id for v in valid if v.customer_id is not None}
        ).values_list("pk", "merged_into_id")
    )
    seen: set[str] = set()
    resolved: list[tuple[_Valid, int]] = []
    for v in valid:
        result = results[v.index]
        if v.key in known_keys or v.key in seen:
            result.status = "duplicate"
            continue
        try:
            ref = _resolve(brand, v, resolver, by_id)
        except YutangError as exc:
            result.status, result.error = "rejected", exc.as_dict()
            continue
        seen.add(v.key)
        resolved.append((v, ref))
    resolver.flush()
    # Every event is stored on the person's surviving customer, also when a later event of
    # this batch merged the customer an earlier one resolved to.
    return [(v, resolver.customer_id(ref)) for v, ref in resolved]


def _store_known(
    brand: Brand, valid: list[_Valid], results: list[EventResult], now: dt.datetime
) -> None:
    """A batch whose every event names its customer and no identities, in one transaction:
    what `_resolve_batch` and `_write_batch` do for it, without what only resolving
    identities needs (the brand's identity lock, the resolver). Under the brand's merge lock
    (shared, as `_write_batch` takes it) the customers are read once, with their survivors;
    an event whose key is stored already is found by the insert (`ON CONFLICT DO NOTHING`)
    and reported as a duplicate, as one repeated within the batch is. The outcome equals the
    two-part path's."""
    if not valid:
        return
    named = sorted({v.customer_id for v in valid if v.customer_id is not None})
    with pipeline():  # BEGIN, the lock and the read: one round trip
        lock_brand(brand.pk, CUSTOMER_MERGES, shared=True)
        # By primary key alone (a brand condition can lead the planner to read the brand's
        # whole index range); another brand's customer is unknown here.
        found = bulk.lookup(
            Customer._meta.db_table,
            ["id", "merged_into_id", "brand_id"],
            where={},
            key="id",
            values=named,
            binary=True,
        )
    by_id: dict[int, int | None] = {
        pk: merged_into for pk, merged_into, brand_id in found if brand_id == brand.pk
    }
    missing = [v for v in valid if v.customer_id not in by_id]
    # An unknown customer rejects its event, unless the event is stored already (a
    # duplicate, as `_resolve_batch` reports it: keys are checked first there).
    stored_keys = _stored_keys(brand.pk, [v.key for v in missing]) if missing else set()
    survivors: dict[int, int] = {}
    seen: set[str] = set()
    to_store: list[tuple[_Valid, int]] = []
    for v in valid:
        result, customer_id = results[v.index], v.customer_id
        assert customer_id is not None
        if v.key in seen or v.key in stored_keys:
            result.status = "duplicate"
            continue
        if customer_id not in by_id:
            exc = NotFound(
                N_("No such customer: {customer_id}."),
                params={"customer_id": customer_id},
                field="customer_id",
            )
            result.status, result.error = "rejected", exc.as_dict()
            continue
        if by_id[customer_id] is not None:  # merged: stored on the survivor (rare)
            if customer_id not in survivors:
                survivors[customer_id] = customers.survivor(Customer(pk=customer_id)).pk
            customer_id = survivors[customer_id]
        seen.add(v.key)
        to_store.append((v, customer_id))
    _write_batch(brand, to_store, results, now, survivors_checked=True)


def _write_batch(
    brand: Brand,
    to_store: list[tuple[_Valid, int]],
    results: list[EventResult],
    now: dt.datetime,
    *,
    survivors_checked: bool = False,
) -> None:
    """The second part: the events, their side effects and the aggregates. Batches of one
    brand run this part at the same time. It holds the brand's merge lock in shared mode, so
    no merge or unmerge commits meanwhile, and first moves events to the survivor of any
    customer merged since the first part committed. An event whose key a concurrent batch
    stored first (committed, or committing while this one waits for the key) is reported as
    a duplicate; only stored events reach the aggregates."""
    if not to_store:
        return
    # `survivors_checked`: the caller read the customers under this lock, in this transaction.
    merged: dict[int, int] = {}
    with pipeline():  # BEGIN, the lock and the read: one round trip
        lock_brand(brand.pk, CUSTOMER_MERGES, shared=True)
        if not survivors_checked:
            merged = dict(
                bulk.lookup(
                    Customer._meta.db_table,
                    ["id", "merged_into_id"],
                    where={},
                    key="id",
                    values=sorted({c for _, c in to_store}),
                    not_null=["merged_into_id"],
                    binary=True,
                )
            )
    if merged:  # rare: a merge committed between the two parts
        survivors = {c: customers.survivor(Customer(pk=c)).pk for c in merged}
        to_store = [(v, survivors.get(c, c)) for v, c in to_store]
    txid = txids.current_txid()
    ids = bulk.insert_numbered(
        Event._meta.db_table,
        EVENT_COLUMNS,
        [
            (txid, brand.pk, c, v.type, v.occurred_at, now, v.source, v.key, v.properties)
            for v, c in to_store
        ],
        unique="idempotency_key",
        skip_conflicts=("brand_id", "idempotency_key"),
        binary=True,
    )
    stored: list[tuple[_Valid, int]] = []
    consents: list[customers.ConsentChange] = []
    for (v, customer_id), pk in zip(to_store, ids, strict=True):
        result = results[v.index]
        if pk is None:
            result.status = "duplicate"
            continue
        stored.append((v, customer_id))
        result.status, result.event_id, result.customer_id = "stored", pk, customer_id
        if v.type == "consent.changed":
            # All of the batch's consent changes at once, in batch order (one read, one
            # write): the same rows as applying them event by event.
            consents.append(_consent_change(v, customer_id))
        elif v.type == "profile.updated":
            event = Event(
                pk=pk,
                txid=txid,
                brand_id=brand.pk,
                customer_id=customer_id,
                type=v.type,
                occurred_at=v.occurred_at,
                received_at=now,
                source=v.source,
                idempotency_key=v.key,
                properties=v.properties,
            )
            _apply_side_effects(event, Customer.objects.get(pk=customer_id))
    customers.apply_consents(consents)
    # The batch's figures are folded in memory first, side by side with other batches. Then
    # one batch of the brand at a time writes them, from write_figures' aggregate lock to its
    # commit: their rows are locked (the touch days read, then the upsert) in two statements,
    # which two batches with customers in common could otherwise interleave into a deadlock.
    # Rows two batches share are held until commit anyway, so this costs no parallelism that
    # the row locks would allow; everything before it runs side by side.
    figures = aggregates.fold_facts(
        brand.pk, [(c, v.type, v.occurred_at, v.properties) for v, c in stored], brand.tz
    )
    aggregates.write_figures(brand.pk, figures)


#: Event types that change the customer's rows as well as being logged.
SIDE_EFFECT_TYPES = frozenset({"consent.changed", "profile.updated"})


def _resolve(
    brand: Brand, v: _Valid, resolver: customers.BatchResolver, by_id: dict[int, int | None]
) -> int:
    """The customer (or a placeholder for a new one) an event belongs to."""
    if v.customer_id is None:
        return resolver.resolve(v.identities, source=v.source)
    if v.customer_id not in by_id:
        raise NotFound(
            N_("No such customer: {customer_id}."),
            params={"customer_id": v.customer_id},
            field="customer_id",
        )
    if not v.identities:
        if by_id[v.customer_id] is None:
            return resolver.customer_id(v.customer_id)
        return customers.survivor(Customer(pk=v.customer_id)).pk
    # Identities besides a customer id: resolve them together with one of the customer's
    # own identities, so a conflict merges or queues exactly as any other record would.
    resolver.flush()
    anchor = Identity.objects.filter(brand=brand, customer_id=v.customer_id).order_by("id").first()
    if anchor is None:
        raise NotFound(
            N_("No such customer: {customer_id}."),
            params={"customer_id": v.customer_id},
            field="customer_id",
        )
    identities = [*v.identities, normalize_identity(anchor.kind, anchor.value, anchor.namespace)]
    resolution = customers.resolve_customer(brand=brand, identities=identities, source=v.source)
    resolver.note_merges(resolution.merges)
    resolver.note_identities(identities, resolution.customer.pk)
    return resolution.customer.pk


def _consent_change(v: _Valid, customer_id: int) -> customers.ConsentChange:
    p = v.properties
    return customers.ConsentChange(
        customer_id=customer_id,
        purpose=p["purpose"],
        carrier=p.get("carrier", ""),
        status=p["status"],
        source=v.source,
        proof=p.get("proof", ""),
        at=v.occurred_at,
    )


def _apply_side_effects(event: Event, customer: Customer) -> None:
    """A `profile.updated` event's change to the profile (consent changes are applied per
    batch, see `_write_batch`)."""
    p = event.properties
    if event.type == "profile.updated":
        changes = {k: v for k, v in p.items() if k != "attributes"}
        if "birthday" in changes:
            try:
                changes["birthday"] = dt.date.fromisoformat(changes["birthday"])
            except ValueError:
                raise ValidationFailed(
                    N_("birthday must be YYYY-MM-DD."), field="properties.birthday"
                ) from None
        customers.apply_profile(customer=customer, changes=changes, attributes=p.get("attributes"))


def ingest_in_batches(*, brand: Brand, items: Sequence[Mapping[str, Any]]) -> list[EventResult]:
    """`ingest_events` for any number of events, MAX_BATCH at a time (each batch its own
    transaction); the results in item order, `index` counting within each batch."""
    results: list[EventResult] = []
    for start in range(0, len(items), MAX_BATCH):
        results.extend(ingest_events(brand=brand, items=items[start : start + MAX_BATCH]))
    return results


# --- Convenience writers used by the API and higher floors ------------------------------------


def ingest_one(*, brand: Brand, item: Mapping[str, Any]) -> EventResult:
    """Store one event written on behalf of a service that already checked permission;
    a rejected event raises, so the caller's transaction (an order, a consent change) rolls
    back and the caller's rows and the log never disagree."""
    (result,) = ingest_events(brand=brand, items=[item])
    if result.status == "rejected":
        assert result.error is not None
        raise ValidationFailed(str(result.error["message"]), field=result.error["field"])
    return result


def record_consent(
    *,
    actor: Staff,
    customer_id: int,
    purpose: str,
    status: str,
    carrier: str = "",
    proof: str = "",
    source: str = "console",
) -> Event:
    """A consent change made on the person's behalf by staff: an event, effective at once."""
    customer = customers.get_customer(
        actor=actor, customer_id=customer_id, action=Action.CUSTOMER_MANAGE
    )
    now = clock.now()
    key = f"consent:{customer.pk}:{purpose}:{carrier}:{status}:{now.isoformat()}"
    result = ingest_one(
        brand=actor.brand,
        item={
            "type": "consent.changed",
            "occurred_at": now,
            "idempotency_key": key,
            "source": source,
            "customer_id": customer.pk,
            "properties": {
                "purpose": purpose,
                "status": status,
                "carrier": carrier,
                "proof": proof,
            },
        },
    )
    assert result.event_id is not None
    return Event.objects.get(pk=result.event_id)


def list_events(
    *,
    actor: Staff,
    customer_id: int,
    cursor: str | None = None,
    limit: int = 50,
    type: str | None = None,
) -> tuple[list[Event], str | None]:
    customer = customers.get_customer(actor=actor, customer_id=customer_id)
    qs = Event.objects.filter(customer=customer)
    if type:
        qs = qs.filter(type=type)
    return page_by_id_desc(qs, cursor=cursor, limit=limit)


def rebuild_aggregates(*, brand: Brand, chunk: int = 2000) -> int:
    """Recompute every aggregate of the brand from the log; returns customers processed."""
    ids = list(
        Customer.objects.filter(brand=brand, merged_into__isnull=True).values_list("pk", flat=True)
    )
    for start in range(0, len(ids), chunk):
        aggregates.recompute(ids[start : start + chunk], brand.tz, brand.pk)
    return len(ids)


@dataclass
class CustomerDetail:
    customer: Customer
    aggregate: CustomerAggregate | None
    consents: list[Consent]


def customer_detail(*, actor: Staff, customer_id: int) -> CustomerDetail:
    """The portrait's data: profile, identities and tags (prefetched), consent, aggregates."""
    customer = customers.get_customer(actor=actor, customer_id=customer_id)
    aggregate = CustomerAggregate.objects.filter(customer=customer).first()
    return CustomerDetail(
        customer=customer,
        aggregate=aggregate,
        consents=list(customer.consents.order_by("purpose", "carrier")),
    )


@dataclass
class TimelineEntry:
    at: dt.datetime
    kind: str  # event | note
    title: str
    detail: dict[str, Any]


def timeline(*, actor: Staff, customer_id: int, limit: int = 100) -> list[TimelineEntry]:
    """Events (orders and messages are events too) and staff notes, newest first."""
    customer = customers.get_customer(actor=actor, customer_id=customer_id)
    entries = [
        TimelineEntry(at=e.occurred_at, kind="event", title=e.type, detail=e.properties)
        for e in Event.objects.filter(customer=customer).order_by("-occurred_at", "-id")[:limit]
    ]
    entries += [
        TimelineEntry(
            at=n.created_at,
            kind="note",
            title=n.author.display_name if n.author else "",
            detail={"body": n.body},
        )
        for n in customer.notes.select_related("author")[:limit]
    ]
    return sorted(entries, key=lambda e: e.at, reverse=True)[:limit]


@dataclass
class Portrait:
    """Everything the customer portrait page shows, in one call."""

    detail: CustomerDetail
    presented: dict[str, Any]
    timeline: list[TimelineEntry]
    brand_tags: list[Any]
    merges: list[Any]
    can_manage: bool
    today_touches: dict[int, int]


def portrait(*, actor: Staff, customer_id: int) -> Portrait:
    from yutang.customers.models import CustomerMerge, Tag

    detail = customer_detail(actor=actor, customer_id=customer_id)
    customer = detail.customer
    today = clock.now().astimezone(actor.brand.tz).date()
    touches = {}
    if detail.aggregate is not None:
        touches = {
            days: aggregates.touches_in_last(detail.aggregate, days, today) for days in (1, 7, 30)
        }
    return Portrait(
        detail=detail,
        presented=customers.present_customer(actor, customer),
        timeline=timeline(actor=actor, customer_id=customer.pk, limit=100),
        brand_tags=list(Tag.objects.filter(brand=actor.brand).select_related("group")),
        merges=list(CustomerMerge.objects.filter(kept=customer).order_by("-id")[:10]),
        can_manage=actor.can(Action.CUSTOMER_MANAGE),
        today_touches=touches,
    )
