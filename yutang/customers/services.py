"""Services of the customers app: profiles, identity resolution, merges, tags, notes, consent
and the attribute schema. The only code that changes these tables.

Higher floors (events, commerce) keep their own rows per customer; when two customers merge
they move those rows through the participants registered with `register_merge_participant`,
so this floor never imports them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.db import IntegrityError, models, transaction
from django.db.models import Q

from yutang.core import audit, bulk, clock, crypto
from yutang.core.db import CUSTOMER_MERGES, lock_brand
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import Brand, Staff, Store
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, Scope, require, require_brand_wide
from yutang.core.services import is_valid_id, reject_nulls
from yutang.customers.identities import NormalizedIdentity, normalize_identity
from yutang.customers.models import (
    AttributeDefinition,
    Consent,
    Customer,
    CustomerMerge,
    CustomerTag,
    Identity,
    MergeCandidate,
    Note,
    OwnerChange,
    SavedView,
    Tag,
    TagGroup,
)

PROFILE_FIELDS = [
    "display_name",
    "gender",
    "birthday",
    "province",
    "city",
    "source_channel",
    "owner_store_id",
    "owner_staff_id",
]


# --- Merge participants (higher floors register here) ---------------------------------------


@dataclass(frozen=True)
class MergeParticipant:
    """Moves a higher floor's rows from the absorbed customer to the kept one (returning the
    moved ids), and back on unmerge. `after` runs once both sides are settled."""

    move: Callable[[Customer, Customer], list[int]]
    restore: Callable[[Customer, Customer, list[int]], None]
    after: Callable[[Sequence[Customer]], None] | None = None


_PARTICIPANTS: dict[str, MergeParticipant] = {}


def register_merge_participant(name: str, participant: MergeParticipant) -> None:
    _PARTICIPANTS[name] = participant


def rows_follow_the_customer(
    model: type[models.Model], *, after: Callable[[Sequence[Customer]], None] | None = None
) -> MergeParticipant:
    """A participant for a model whose rows belong to one customer (a `customer` foreign
    key): a merge hands the absorbed customer's rows to the kept one, unmerge hands exactly
    those rows back (rows created for the kept customer meanwhile stay with it)."""
    manager = model._default_manager

    def move(keep: Customer, absorb: Customer) -> list[int]:
        ids = list(manager.filter(customer=absorb).values_list("pk", flat=True))
        manager.filter(pk__in=ids).update(customer=keep)
        return ids

    def restore(keep: Customer, absorb: Customer, ids: list[int]) -> None:
        manager.filter(pk__in=ids, customer=keep).update(customer=absorb)

    return MergeParticipant(move=move, restore=restore, after=after)


# --- Attribute schema -----------------------------------------------------------------------


def define_attribute(
    *,
    actor: Staff | None,
    brand: Brand,
    key: str,
    label: str,
    type: str,
    choices: Sequence[str] = (),
) -> AttributeDefinition:
    if actor is not None:
        require(actor, Action.BRAND_MANAGE)
    if type not in AttributeDefinition.Type.values:
        raise ValidationFailed(
            N_("Unknown attribute type {type!r}."), params={"type": type}, field="type"
        )
    if type == AttributeDefinition.Type.ENUM and not choices:
        raise ValidationFailed(N_("A choice attribute needs its choices."), field="choices")
    with transaction.atomic():
        definition, _ = AttributeDefinition.objects.update_or_create(
            brand=brand, key=key, defaults={"label": label, "type": type, "choices": list(choices)}
        )
        audit.record(
            brand=brand,
            actor=actor,
            action="attribute.define",
            target=definition,
            changes={"type": {"after": type}, "label": {"after": label}},
        )
    return definition


def validate_attributes(brand: Brand, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check custom attributes against the brand's schema; a wrong type names the attribute."""
    if not values:
        return {}
    schema = {d.key: d for d in AttributeDefinition.objects.filter(brand=brand)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        where = f"attributes.{key}"
        definition = schema.get(key)
        if definition is None:
            raise ValidationFailed(
                N_("Unknown attribute {key!r}; define it first."), params={"key": key}, field=where
            )
        if value is None:
            clean[key] = None
            continue
        kind = definition.type
        if kind == "string" and not isinstance(value, str):
            raise ValidationFailed(N_("{key} must be text."), params={"key": key}, field=where)
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValidationFailed(N_("{key} must be a number."), params={"key": key}, field=where)
        if kind == "boolean" and not isinstance(value, bool):
            raise ValidationFailed(
                N_("{key} must be true or false."), params={"key": key}, field=where
            )
        if kind == "date":
            try:
                value = dt.date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise ValidationFailed(
                    N_("{key} must be a date (YYYY-MM-DD)."), params={"key": key}, field=where
                ) from None
        if kind == "enum" and value not in definition.choices:
            raise ValidationFailed(
                N_("{key} must be one of {map}."),
                params={"key": key, "map": ", ".join(map(str, definition.choices))},
                field=where,
            )
        clean[key] = value
    return clean


# --- Reading --------------------------------------------------------------------------------


def get_customer(
    *, actor: Staff, customer_id: int, action: Action = Action.CUSTOMER_VIEW
) -> Customer:
    if not is_valid_id(customer_id):
        raise NotFound(N_("No such customer."), field="customer_id")
    try:
        return (
            Customer.objects.for_actor(actor, action)
            .prefetch_related("identities", "customer_tags__tag__group")
            .get(pk=customer_id)
        )
    except Customer.DoesNotExist:
        raise NotFound(N_("No such customer."), field="customer_id") from None


def find_by_identity(*, brand: Brand, identity: NormalizedIdentity) -> Customer | None:
    row = (
        Identity.objects.select_related("customer")
        .filter(brand=brand, value_hash=identity.hash)
        .first()
    )
    return row.customer if row else None


def survivor(customer: Customer) -> Customer:
    """Follow merges (as stored, not as this instance remembers) to the customer that now
    stands for this person."""
    current = Customer.objects.get(pk=customer.pk)
    seen = {current.pk}
    while current.merged_into_id is not None and current.merged_into_id not in seen:
        current = Customer.objects.get(pk=current.merged_into_id)
        seen.add(current.pk)
    return current


# --- Creating and resolving -----------------------------------------------------------------


@dataclass
class Resolution:
    customer: Customer
    created: bool = False
    merges: list[CustomerMerge] = field(default_factory=list)
    candidates: list[MergeCandidate] = field(default_factory=list)


def _check_owner(brand: Brand, profile: dict[str, Any]) -> None:
    store_id = profile.get("owner_store_id")
    if store_id is not None and not Store.objects.filter(brand=brand, pk=store_id).exists():
        raise ValidationFailed(
            N_("No such store: {store_id}."), params={"store_id": store_id}, field="owner_store_id"
        )
    staff_id = profile.get("owner_staff_id")
    if staff_id is not None and not Staff.objects.filter(brand=brand, pk=staff_id).exists():
        raise ValidationFailed(
            N_("No such staff member: {staff_id}."),
            params={"staff_id": staff_id},
            field="owner_staff_id",
        )


def _check_owner_in_scope(actor: Staff, changes: Mapping[str, Any]) -> None:
    """A store role may hand a customer only to its own stores and their staff."""
    if require(actor, Action.CUSTOMER_MANAGE) is Scope.BRAND:
        return
    store_id = changes.get("owner_store_id")
    if "owner_store_id" in changes and store_id not in actor.store_ids:
        raise ValidationFailed(
            N_("No such store: {store_id}."), params={"store_id": store_id}, field="owner_store_id"
        )
    staff_id = changes.get("owner_staff_id")
    if (
        staff_id is not None
        and not Staff.objects.filter(
            brand=actor.brand, pk=staff_id, stores__in=actor.store_ids
        ).exists()
    ):
        raise ValidationFailed(
            N_("No such staff member: {staff_id}."),
            params={"staff_id": staff_id},
            field="owner_staff_id",
        )


def _add_identities(
    customer: Customer, identities: Iterable[NormalizedIdentity], *, source: str, now: dt.datetime
) -> list[Identity]:
    rows = [
        Identity(
            brand_id=customer.brand_id,
            customer=customer,
            kind=i.kind,
            namespace=i.namespace,
            value_encrypted=crypto.encrypt_pii(i.value),
            value_hash=i.hash,
            source=source,
            created_at=now,
        )
        for i in identities
    ]
    Identity.objects.bulk_create(rows)
    return rows


def resolve_customer(
    *,
    brand: Brand,
    identities: Sequence[NormalizedIdentity],
    source: str,
    actor: Staff | None = None,
    profile: Mapping[str, Any] | None = None,
) -> Resolution:
    """The customer these identities belong to, creating, extending or merging as needed.

    - No identity known: a new customer with these identities.
    - Known to one customer: that customer, gaining the identities it lacked.
    - Known to several: customers matched through strong identities (phone, unionid, the
      brand's own id) merge into the oldest of them when the brand's merge policy is `auto`;
      customers matched only through weak identities — and every conflict under the
      `review` policy — are queued as merge candidates for a person to decide.
    - Under the `review` policy, a record known to one customer through weak identities
      only (taobao_buyer, douyin_user, …) and bringing strong identities it lacks becomes a
      new customer, queued for review with the one it matched.
    """
    if not identities:
        raise ValidationFailed(N_("At least one identity is needed."), field="identities")
    for attempt in range(3):
        try:
            with transaction.atomic():
                lock_brand(brand.pk)
                return _resolve(
                    brand=brand,
                    identities=identities,
                    source=source,
                    actor=actor,
                    profile=dict(profile or {}),
                )
        except IntegrityError:
            # A concurrent writer created one of these identities first: resolve again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _resolve(
    *,
    brand: Brand,
    identities: Sequence[NormalizedIdentity],
    source: str,
    actor: Staff | None,
    profile: dict[str, Any],
) -> Resolution:
    now = clock.now()
    wanted = {i.hash: i for i in identities}
    known = list(
        Identity.objects.filter(brand=brand, value_hash__in=list(wanted)).values_list(
            "value_hash", "customer_id"
        )
    )
    missing = [i for h, i in wanted.items() if h not in {k for k, _ in known}]
    if not known:
        customer = _create_with(brand, profile, missing, source=source, now=now)
        return Resolution(customer=customer, created=True)
    if (
        brand.policy.merge_policy == "review"
        and len({c for _, c in known}) == 1
        and any(i.is_strong for i in missing)
        and not any(wanted[h].is_strong for h, _ in known)
    ):
        # Weak identities (a marketplace buyer id, a Douyin user) are shared, reused and
        # mistyped: under the review policy a match through them alone does not hand the
        # record's strong identities to that customer. The record becomes its own customer
        # and a person decides whether the two are one.
        customer = _create_with(brand, profile, missing, source=source, now=now)
        existing = Customer.objects.get(pk=known[0][1])
        candidate = _queue_candidate(brand, existing, customer, source, now)
        return Resolution(customer=customer, created=True, candidates=[candidate])

    strong_ids = sorted({c for h, c in known if wanted[h].is_strong})
    all_ids = sorted({c for _, c in known})
    auto = brand.policy.merge_policy == "auto"
    primary_id = strong_ids[0] if strong_ids else all_ids[0]
    customers = {c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=all_ids)}
    primary = customers[primary_id]
    owner = _data_owner(customers.values())
    result = Resolution(customer=primary)
    for other_id in all_ids:
        if other_id == primary_id:
            continue
        # Franchise stores own their customers' data: never fold one store's customer into
        # another owner's automatically; a person decides in the review queue.
        if auto and other_id in strong_ids and owner[other_id] == owner[primary_id]:
            result.merges.append(
                merge_customers(
                    brand=brand,
                    keep=primary,
                    absorb=customers[other_id],
                    actor=actor,
                    reason=f"auto: shared strong identity ({source})",
                )
            )
        else:
            result.candidates.append(
                _queue_candidate(brand, primary, customers[other_id], source, now)
            )
    if missing:
        _add_identities(primary, missing, source=source, now=now)
    return result


def _create_with(
    brand: Brand,
    profile: dict[str, Any],
    identities: Iterable[NormalizedIdentity],
    *,
    source: str,
    now: dt.datetime,
) -> Customer:
    _check_owner(brand, profile)
    attributes = validate_attributes(brand, profile.pop("attributes", None) or {})
    customer = Customer.objects.create(
        brand=brand,
        created_at=now,
        updated_at=now,
        attributes=attributes,
        **{k: v for k, v in profile.items() if k in PROFILE_FIELDS and v not in (None, "")},
    )
    _add_identities(customer, identities, source=source, now=now)
    record_owner(customer, None, reason="created")
    return customer


# --- Owner history --------------------------------------------------------------------------

Owner = tuple[int | None, int | None]  # (owner_store_id, owner_staff_id)


def owner_of(customer: Customer) -> Owner:
    return (customer.owner_store_id, customer.owner_staff_id)


def record_owner(customer: Customer, before: Owner | None, *, reason: str) -> None:
    """Call after changing a customer's owner store or staff (`before` = the owner until
    now, None for a new customer): keeps the history `owner_at` reads. A customer without
    history gets a first row for the owner it had since it was created."""
    after = owner_of(customer)
    now = clock.now()
    if before is None:
        if after != (None, None):
            _owner_row(customer, after, valid_from=customer.created_at, reason=reason, now=now)
        return
    if after == before:
        return
    if not OwnerChange.objects.filter(customer=customer).exists():
        _owner_row(customer, before, valid_from=customer.created_at, reason="created", now=now)
    _owner_row(customer, after, valid_from=now, reason=reason, now=now)


def claim_owner_and_first_touch(
    *,
    customer: Customer,
    staff_id: int | None,
    store_id: int | None,
    channel: str = "",
    reason: str = "contact_added",
) -> Customer:
    """A new relationship (a carrier add through a live code) claims what is still free: the
    owner staff and owner store only where the customer has none, the source channel only
    where it is empty (first touch wins). Conditional UPDATEs, so a concurrent claim never
    overwrites another; the owner history (`owner_at`) is written as `record_owner` writes
    it, so orders paid afterwards are attributed to the new owner. Returns the fresh
    customer. A batch of one of `claim_owners_and_first_touches`, which holds the logic."""
    return claim_owners_and_first_touches(
        items=[(customer, staff_id, store_id, channel)], reason=reason
    )[customer.pk]


#: One claim of `claim_owners_and_first_touches`: (customer, staff_id, store_id, channel).
Claim = tuple[Customer, int | None, int | None, str]


def claim_owners_and_first_touches(
    *, items: Sequence[Claim], reason: str = "contact_added"
) -> dict[int, Customer]:
    """`claim_owner_and_first_touch` for many customers at once (a run of adds), with the
    same outcome as calling it for each in order: the customers locked together, one
    conditional UPDATE per field and value claimed, the owner history written with one
    INSERT. Returns the fresh customers by id. A customer named twice goes one by one."""
    ids = [customer.pk for customer, _staff, _store, _channel in items]
    if len(set(ids)) != len(ids):
        return {
            customer.pk: claim_owner_and_first_touch(
                customer=customer,
                staff_id=staff_id,
                store_id=store_id,
                channel=channel,
                reason=reason,
            )
            for customer, staff_id, store_id, channel in items
        }
    if not ids:
        return {}
    with transaction.atomic():
        locked = Customer.objects.select_for_update().in_bulk(ids)
        missing = [pk for pk in ids if pk not in locked]
        if missing:
            raise Customer.DoesNotExist(f"No customer {missing[0]}.")
        before = {pk: owner_of(customer) for pk, customer in locked.items()}
        now = clock.now()
        claims: dict[tuple[str, Any], list[int]] = {}
        for customer, staff_id, store_id, channel in items:
            if staff_id is not None:
                claims.setdefault(("owner_staff_id", staff_id), []).append(customer.pk)
            if store_id is not None:
                claims.setdefault(("owner_store_id", store_id), []).append(customer.pk)
            if channel:
                claims.setdefault(("source_channel", channel[:64]), []).append(customer.pk)
        for (field_name, value), pks in claims.items():
            free = (
                Q(source_channel="")
                if field_name == "source_channel"
                else Q(**{f"{field_name}__isnull": True})
            )
            Customer.objects.filter(free, pk__in=pks).update(
                **{field_name: value, "updated_at": now}
            )
        fresh = Customer.objects.in_bulk(ids)
        changed = [pk for pk in ids if owner_of(fresh[pk]) != before[pk]]
        with_history = set(
            OwnerChange.objects.filter(customer_id__in=changed).values_list(
                "customer_id", flat=True
            )
        )
        rows = []
        for pk in changed:
            customer = fresh[pk]
            if pk not in with_history:
                rows.append(
                    _owner_change(
                        customer,
                        before[pk],
                        valid_from=customer.created_at,
                        reason="created",
                        now=now,
                    )
                )
            rows.append(
                _owner_change(customer, owner_of(customer), valid_from=now, reason=reason, now=now)
            )
        OwnerChange.objects.bulk_create(rows)
    return fresh


def _owner_change(
    customer: Customer, owner: Owner, *, valid_from: dt.datetime, reason: str, now: dt.datetime
) -> OwnerChange:
    return OwnerChange(
        brand_id=customer.brand_id,
        customer=customer,
        owner_store_id=owner[0],
        owner_staff_id=owner[1],
        valid_from=valid_from,
        reason=reason[:32],
        created_at=now,
    )


def _owner_row(
    customer: Customer, owner: Owner, *, valid_from: dt.datetime, reason: str, now: dt.datetime
) -> None:
    _owner_change(customer, owner, valid_from=valid_from, reason=reason, now=now).save()


def owner_at(*, customer: Customer, at: dt.datetime) -> Owner:
    """The owner store and staff of the customer at a moment (an order's paid time). Before
    the first recorded owner — an order paid before the customer reached Yutang — the first
    owner counts; a customer without history has always had its current owner."""
    rows = OwnerChange.objects.filter(customer=customer)
    row = rows.filter(valid_from__lte=at).order_by("-valid_from", "-id").first()
    if row is None:
        row = rows.order_by("valid_from", "id").first()
    if row is None:
        return owner_of(customer)
    return (row.owner_store_id, row.owner_staff_id)


def owners_at(items: Sequence[tuple[Customer, dt.datetime]]) -> list[Owner]:
    """`owner_at` for many (customer, moment) pairs, reading the owner history of all their
    customers in one query (a batch of orders attributes itself with this)."""
    history: dict[int, list[tuple[dt.datetime, int, Owner]]] = {}
    ids = {customer.pk for customer, _ in items}
    if ids:
        for customer_id, valid_from, pk, store_id, staff_id in (
            OwnerChange.objects.filter(customer_id__in=ids)
            .order_by("customer_id", "valid_from", "id")
            .values_list("customer_id", "valid_from", "id", "owner_store_id", "owner_staff_id")
        ):
            history.setdefault(customer_id, []).append((valid_from, pk, (store_id, staff_id)))
    owners: list[Owner] = []
    for customer, at in items:
        rows = history.get(customer.pk)
        if not rows:
            owners.append(owner_of(customer))
            continue
        # The latest row valid at `at`, else the first one (see owner_at).
        before = [row for row in rows if row[0] <= at]
        owners.append((before[-1] if before else rows[0])[2])
    return owners


def _data_owner(customers: Iterable[Customer]) -> dict[int, int | None]:
    """Who owns each customer's data: its franchise store, or the brand (None)."""
    rows = list(customers)
    franchise = set(
        Store.objects.filter(
            pk__in={c.owner_store_id for c in rows if c.owner_store_id}, kind=Store.Kind.FRANCHISE
        ).values_list("pk", flat=True)
    )
    return {c.pk: c.owner_store_id if c.owner_store_id in franchise else None for c in rows}


def _queue_candidate(
    brand: Brand, first: Customer, second: Customer, source: str, now: dt.datetime
) -> MergeCandidate:
    low, high = sorted([first, second], key=lambda c: c.pk)
    candidate, _ = MergeCandidate.objects.get_or_create(
        first=low,
        second=high,
        defaults={"brand": brand, "reason": f"shared identity ({source})", "created_at": now},
    )
    return candidate


#: The columns of an identity row as BatchResolver.flush writes them (all but the id).
IDENTITY_COLUMNS = [
    ("brand_id", "int"),
    ("customer_id", "int"),
    ("kind", "text"),
    ("namespace", "text"),
    ("value_encrypted", "text"),
    ("value_hash", "text"),
    ("source", "text"),
    ("created_at", "time"),
]


class BatchResolver:
    """Identity resolution for a whole batch of records (events, import rows) with the same
    outcome as resolving them one by one with `resolve_customer`, in far fewer statements.

    Every identity of the batch is hashed once and looked up in one query. A record whose
    identities all point at one customer (or at none) is resolved in memory: new customers
    and the identities they or known customers gain are written by `flush` in two bulk
    statements (identities sorted by hash). A record that links two customers (a merge or a
    review), or that the weak-identity rule sends to review, first flushes what is pending —
    so the database looks exactly as it would after the earlier records — and then goes
    through `resolve_customer`. Call it inside a transaction holding `lock_brand`.

    `resolve` returns a reference: a customer id, or a negative placeholder for a customer
    created in this batch; `customer_id(ref)` gives the surviving customer's id after
    `flush`."""

    def __init__(
        self, *, brand: Brand, identities: Iterable[NormalizedIdentity], now: dt.datetime
    ) -> None:
        self.brand = brand
        self.now = now
        self.review_policy = brand.policy.merge_policy == "review"
        hashes = {i.hash for i in identities}
        self._owner: dict[str, int] = dict(
            bulk.lookup(
                Identity._meta.db_table,
                ["value_hash", "customer_id"],
                where={"brand_id": brand.pk},
                key="value_hash",
                values=sorted(hashes),
                binary=True,
            )
        )
        self._new_customers: list[int] = []  # placeholders, in order of creation
        self._profiles: dict[int, dict[str, Any]] = {}  # placeholder -> profile to create with
        #: References (placeholders, or ids from resolve_customer) of customers this batch
        #: created, so a caller can tell a created record from one that found its customer.
        self.created: set[int] = set()
        self._new_identities: list[tuple[int, NormalizedIdentity, str]] = []
        self._placeholder: dict[int, int] = {}  # placeholder -> id, once flushed
        self._redirect: dict[int, int] = {}  # absorbed -> kept, from merges in this batch
        self.used_slow_path = False

    def resolve(
        self,
        identities: Sequence[NormalizedIdentity],
        *,
        source: str,
        profile: Mapping[str, Any] | None = None,
    ) -> int:
        """`profile` (checked already: PROFILE_FIELDS, owner ids of this brand) is what a
        customer created for this record starts with, as with `resolve_customer`."""
        wanted = {i.hash: i for i in identities}
        if not wanted:
            raise ValidationFailed(N_("At least one identity is needed."), field="identities")
        owners = {self.customer_id(self._owner[h]) for h in wanted if h in self._owner}
        missing = [i for h, i in wanted.items() if h not in self._owner]
        if len(owners) > 1 or (
            len(owners) == 1 and missing and self._needs_review(wanted, missing)
        ):
            return self._resolve_in_database(list(wanted.values()), source, profile)
        if owners:
            (ref,) = owners
        else:
            ref = -(len(self._placeholder) + len(self._new_customers) + 1)
            self._new_customers.append(ref)
            self.created.add(ref)
            if profile:
                self._profiles[ref] = dict(profile)
        for i in missing:
            self._owner[i.hash] = ref
            self._new_identities.append((ref, i, source))
        return ref

    def _needs_review(
        self, wanted: Mapping[str, NormalizedIdentity], missing: Sequence[NormalizedIdentity]
    ) -> bool:
        """The weak-identity rule (see `_resolve`): only a review may give strong identities
        to a customer known by weak ones alone."""
        return (
            self.review_policy
            and any(i.is_strong for i in missing)
            and not any(i.is_strong for h, i in wanted.items() if h in self._owner)
        )

    def _resolve_in_database(
        self,
        identities: list[NormalizedIdentity],
        source: str,
        profile: Mapping[str, Any] | None = None,
    ) -> int:
        self.used_slow_path = True
        self.flush()
        result = resolve_customer(
            brand=self.brand, identities=identities, source=source, profile=profile
        )
        if result.created:
            self.created.add(result.customer.pk)
        self.note_merges(result.merges)
        self.note_identities(identities, result.customer.pk)
        return result.customer.pk

    def flush(self) -> None:
        """Write the pending new customers and identities (two or three statements)."""
        if self._new_customers:
            # One instance for every row without a profile (they are alike): model instances
            # are costly.
            blank = Customer(brand=self.brand, created_at=self.now, updated_at=self.now)
            rows = [
                blank if ref not in self._profiles else self._with_profile(ref)
                for ref in self._new_customers
            ]
            # Ids are drawn in row order within the one statement: the oldest placeholder
            # gets the smallest id, as if the customers had been created one by one.
            ids = sorted(pk for (pk,) in bulk.insert_models(Customer, rows))
            self._placeholder.update(zip(self._new_customers, ids, strict=True))
            for row, pk in zip(rows, ids, strict=True):
                if row is not blank and owner_of(row) != (None, None):
                    row.pk = pk
                    record_owner(row, None, reason="created")
            self._new_customers = []
        if self._new_identities:
            # Sorted by hash: concurrent writers lock unique-index entries in one order.
            pending = sorted(self._new_identities, key=lambda item: item[1].hash)
            bulk.insert_rows(
                Identity._meta.db_table,
                IDENTITY_COLUMNS,
                [
                    (
                        self.brand.pk,
                        self._placeholder.get(ref, ref),
                        i.kind,
                        i.namespace,
                        crypto.encrypt_pii(i.value),
                        i.hash,
                        source,
                        self.now,
                    )
                    for ref, i, source in pending
                ],
                staged_by="value_hash",
                binary=True,
            )
            self._new_identities = []

    def _with_profile(self, ref: int) -> Customer:
        profile = self._profiles.pop(ref)
        return Customer(
            brand=self.brand,
            created_at=self.now,
            updated_at=self.now,
            attributes={},
            **{k: v for k, v in profile.items() if k in PROFILE_FIELDS and v not in (None, "")},
        )

    def customer_id(self, ref: int) -> int:
        """The surviving customer of a reference returned by `resolve` (a placeholder until
        `flush` has written it)."""
        current = self._placeholder.get(ref, ref)
        seen = {current}
        while current in self._redirect and self._redirect[current] not in seen:
            current = self._redirect[current]
            seen.add(current)
        return current

    def note_merges(self, merges: Iterable[CustomerMerge]) -> None:
        """Merges made outside `resolve` (a record resolved by id) redirect earlier records."""
        for merge in merges:
            self._redirect[merge.absorbed_id] = merge.kept_id

    def note_identities(self, identities: Iterable[NormalizedIdentity], customer_id: int) -> None:
        """After `resolve_customer`: the identities that were new now belong to its customer
        (known ones stay where they were unless a merge moved them, see `note_merges`)."""
        for i in identities:
            self._owner.setdefault(i.hash, customer_id)


def create_customer(
    *,
    actor: Staff,
    identities: Sequence[Mapping[str, str]],
    profile: Mapping[str, Any],
    source: str = "api",
) -> Resolution:
    """Create (or find, by its identities) a customer from the API or console."""
    # Creating resolves identities across the whole brand (it may find or merge anyone).
    require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    normalized = [
        normalize_identity(
            i.get("kind", ""), i.get("value", ""), i.get("namespace", ""), field=f"identities.{n}"
        )
        for n, i in enumerate(identities)
    ]
    with transaction.atomic():
        result = resolve_customer(
            brand=actor.brand, identities=normalized, source=source, actor=actor, profile=profile
        )
        if result.created:
            audit.record(
                brand=actor.brand,
                actor=actor,
                action="customer.create",
                target=result.customer,
                store=result.customer.owner_store,
                changes=audit.diff(
                    None,
                    {f"identity.{i.kind}": i.value for i in normalized},
                    sensitive={f"identity.{i.kind}": i.kind for i in normalized},
                ),
            )
    return result


def update_customer(*, actor: Staff, customer_id: int, **changes: Any) -> Customer:
    with transaction.atomic():
        customer = get_customer(actor=actor, customer_id=customer_id, action=Action.CUSTOMER_MANAGE)
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        before = audit.snapshot(customer, [*PROFILE_FIELDS, "attributes"])
        owner_before = owner_of(customer)
        if "attributes" in changes:
            merged = {
                **customer.attributes,
                **validate_attributes(actor.brand, changes.pop("attributes") or {}),
            }
            customer.attributes = {k: v for k, v in merged.items() if v is not None}
        reject_nulls(Customer, changes)
        _check_owner(actor.brand, changes)
        _check_owner_in_scope(actor, changes)
        for name, value in changes.items():
            if name not in PROFILE_FIELDS:
                raise ValidationFailed(
                    N_("Unknown customer field {name!r}."), params={"name": name}, field=name
                )
            setattr(customer, name, value)
        customer.updated_at = clock.now()
        customer.save()
        record_owner(customer, owner_before, reason="update")
        audit.record(
            brand=actor.brand,
            actor=actor,
            action="customer.update",
            target=customer,
            store=customer.owner_store,
            changes=audit.diff(before, audit.snapshot(customer, [*PROFILE_FIELDS, "attributes"])),
        )
    return customer


# --- Merging --------------------------------------------------------------------------------


def _consent_state(customer: Customer) -> list[dict[str, Any]]:
    return [
        {
            "purpose": c.purpose,
            "carrier": c.carrier,
            "status": c.status,
            "source": c.source,
            "proof": c.proof,
            "changed_at": c.changed_at.isoformat(),
            "recorded_at": c.recorded_at.isoformat(),
        }
        for c in customer.consents.order_by("purpose", "carrier")
    ]


def _write_consents(customer: Customer, states: Iterable[Mapping[str, Any]]) -> None:
    Consent.objects.filter(customer=customer).delete()
    Consent.objects.bulk_create(
        Consent(
            customer=customer,
            purpose=s["purpose"],
            carrier=s["carrier"],
            status=s["status"],
            source=s["source"],
            proof=s["proof"],
            changed_at=dt.datetime.fromisoformat(s["changed_at"]),
            recorded_at=dt.datetime.fromisoformat(s["recorded_at"]),
        )
        for s in states
    )


_BLANK: dict[str, Any] = {
    "display_name": "",
    "gender": Customer.Gender.UNKNOWN,
    "province": "",
    "city": "",
    "source_channel": "",
}


def _is_blank(name: str, value: Any) -> bool:
    return value is None or value == _BLANK.get(name)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _stricter(a: Mapping[str, Any], b: Mapping[str, Any]) -> Mapping[str, Any]:
    """Withdrawn beats granted; between equals, the later statement."""
    if a["status"] != b["status"]:
        return a if a["status"] == Consent.Status.WITHDRAWN else b
    return a if a["changed_at"] >= b["changed_at"] else b


def merge_customers(
    *, brand: Brand, keep: Customer, absorb: Customer, actor: Staff | None, reason: str
) -> CustomerMerge:
    """Merge `absorb` into `keep`, recording every moved row. Consent never weakens: for each
    purpose and carrier the stricter word of the two stands until the person says otherwise."""
    if keep.pk == absorb.pk:
        raise Conflict(N_("A customer cannot be merged with itself."), field="absorb_id")
    now = clock.now()
    with transaction.atomic():
        # Event batches that resolved before this merge and write afterwards hold this lock
        # in shared mode (events.services._write_batch): the merge waits for them, and they
        # see it once it has committed.
        lock_brand(brand.pk, CUSTOMER_MERGES)
        locked = {
            c.pk: c
            for c in Customer.objects.select_for_update().filter(
                pk__in=[keep.pk, absorb.pk], brand=brand
            )
        }
        if len(locked) != 2 or any(c.merged_into_id for c in locked.values()):
            raise Conflict(
                N_("Both customers must exist and not be merged already."), field="absorb_id"
            )
        keep, absorb = locked[keep.pk], locked[absorb.pk]
        keep_owner = owner_of(keep)
        moved: dict[str, Any] = {}

        moved["identities"] = list(absorb.identities.values_list("pk", flat=True))
        Identity.objects.filter(pk__in=moved["identities"]).update(customer=keep)

        kept_tags = set(keep.customer_tags.values_list("tag_id", flat=True))
        duplicate_tags = list(absorb.customer_tags.filter(tag_id__in=kept_tags))
        moved["duplicate_tags"] = [
            {
                "tag_id": t.tag_id,
                "source": t.source,
                "created_by_id": t.created_by_id,
                "created_at": t.created_at.isoformat(),
            }
            for t in duplicate_tags
        ]
        CustomerTag.objects.filter(pk__in=[t.pk for t in duplicate_tags]).delete()
        moved["tags"] = list(absorb.customer_tags.values_list("pk", flat=True))
        CustomerTag.objects.filter(pk__in=moved["tags"]).update(customer=keep)

        moved["notes"] = list(absorb.notes.values_list("pk", flat=True))
        Note.objects.filter(pk__in=moved["notes"]).update(customer=keep)

        keep_consents, absorb_consents = _consent_state(keep), _consent_state(absorb)
        moved["consent"] = {"keep": keep_consents, "absorb": absorb_consents}
        combined: dict[tuple[str, str], Mapping[str, Any]] = {}
        for state in [*keep_consents, *absorb_consents]:
            key = (state["purpose"], state["carrier"])
            combined[key] = _stricter(combined[key], state) if key in combined else state
        _write_consents(keep, combined.values())
        Consent.objects.filter(customer=absorb).delete()

        # The survivor keeps its own profile and fills only what it lacks; what was filled is
        # recorded so that unmerge can take exactly that back.
        filled: dict[str, Any] = {}
        for name in PROFILE_FIELDS:
            if _is_blank(name, getattr(keep, name)) and not _is_blank(name, getattr(absorb, name)):
                setattr(keep, name, getattr(absorb, name))
                filled[name] = _jsonable(getattr(absorb, name))
        added = {k: v for k, v in absorb.attributes.items() if k not in keep.attributes}
        keep.attributes = {**keep.attributes, **added}
        moved["filled"] = filled
        moved["attributes_added"] = added
        keep.updated_at = now
        keep.save()
        record_owner(keep, keep_owner, reason="merge")
        absorb.merged_into = keep
        absorb.updated_at = now
        absorb.save(update_fields=["merged_into", "updated_at"])

        for name, participant in _PARTICIPANTS.items():
            moved[name] = participant.move(keep, absorb)
        merge = CustomerMerge.objects.create(
            brand=brand,
            kept=keep,
            absorbed=absorb,
            reason=reason[:200],
            actor=actor,
            moved=moved,
            created_at=now,
        )
        MergeCandidate.objects.filter(
            Q(first=keep, second=absorb) | Q(first=absorb, second=keep),
            status=MergeCandidate.Status.OPEN,
        ).update(status=MergeCandidate.Status.MERGED, decided_at=now, decided_by=actor)
        _repoint_candidates(keep, absorb)
        for participant in _PARTICIPANTS.values():
            if participant.after:
                participant.after([keep, absorb])
        audit.record(
            brand=brand,
            actor=actor,
            action="customer.merge",
            target=keep,
            store=keep.owner_store,
            changes={"absorbed_id": {"after": absorb.pk}, "reason": {"after": reason[:200]}},
        )
    return merge


def _repoint_candidates(keep: Customer, absorb: Customer) -> None:
    """Open reviews about the absorbed customer now concern the survivor."""
    open_ = MergeCandidate.objects.filter(status=MergeCandidate.Status.OPEN)
    for candidate in open_.filter(Q(first=absorb) | Q(second=absorb)):
        other_id = candidate.second_id if candidate.first_id == absorb.pk else candidate.first_id
        low, high = sorted([keep.pk, other_id])
        if (
            low == high
            or open_.filter(first_id=low, second_id=high).exclude(pk=candidate.pk).exists()
        ):
            candidate.delete()
            continue
        candidate.first_id, candidate.second_id = low, high
        candidate.save(update_fields=["first", "second"])


def manual_merge(*, actor: Staff, keep_id: int, absorb_id: int) -> CustomerMerge:
    keep = get_customer(actor=actor, customer_id=keep_id, action=Action.CUSTOMER_MANAGE)
    absorb = get_customer(actor=actor, customer_id=absorb_id, action=Action.CUSTOMER_MANAGE)
    return merge_customers(
        brand=actor.brand, keep=keep, absorb=absorb, actor=actor, reason="manual"
    )


def unmerge(*, actor: Staff | None, merge_id: int, brand: Brand | None = None) -> CustomerMerge:
    """Undo a merge: both customers get back exactly their identities, tags, notes, consent,
    profile and the higher floors' rows (events, orders). What happened to the survivor after
    the merge stays with the survivor; a consent statement made after the merge applies to
    both, since the person made it."""
    if actor is not None:
        require(actor, Action.CUSTOMER_MANAGE)
        brand = actor.brand
    assert brand is not None
    now = clock.now()
    with transaction.atomic():
        lock_brand(brand.pk, CUSTOMER_MERGES)  # as merge_customers
        try:
            merge = CustomerMerge.objects.select_for_update().get(pk=merge_id, brand=brand)
        except CustomerMerge.DoesNotExist:
            raise NotFound(N_("No such merge."), field="merge_id") from None
        if actor is not None:
            get_customer(actor=actor, customer_id=merge.kept_id, action=Action.CUSTOMER_MANAGE)
        if merge.undone_at is not None:
            raise Conflict(N_("This merge was already undone."), field="merge_id")
        keep = Customer.objects.select_for_update().get(pk=merge.kept_id)
        absorb = Customer.objects.select_for_update().get(pk=merge.absorbed_id)
        if keep.merged_into_id is not None:
            raise Conflict(
                N_("The surviving customer was merged again; undo that merge first."),
                field="merge_id",
            )
        if CustomerMerge.objects.filter(
            kept=keep, undone_at__isnull=True, pk__gt=merge.pk
        ).exists():
            raise Conflict(N_("Undo the later merges into this customer first."), field="merge_id")
        moved = merge.moved
        keep_owner = owner_of(keep)

        Identity.objects.filter(pk__in=moved["identities"], customer=keep).update(customer=absorb)
        CustomerTag.objects.filter(pk__in=moved["tags"], customer=keep).update(customer=absorb)
        for t in moved["duplicate_tags"]:
            CustomerTag.objects.get_or_create(
                customer=absorb,
                tag_id=t["tag_id"],
                defaults={
                    "source": t["source"],
                    "created_by_id": t["created_by_id"],
                    "created_at": dt.datetime.fromisoformat(t["created_at"]),
                },
            )
        Note.objects.filter(pk__in=moved["notes"], customer=keep).update(customer=absorb)

        # Statements that reached us after the merge were the person's word (or a late
        # arrival of it): they stand for both customers.
        later = [
            s
            for s in _consent_state(keep)
            if dt.datetime.fromisoformat(s["recorded_at"]) > merge.created_at
        ]
        for side, customer in (("keep", keep), ("absorb", absorb)):
            states = {(s["purpose"], s["carrier"]): s for s in moved["consent"][side]}
            for statement in later:
                states[(statement["purpose"], statement["carrier"])] = statement
            _write_consents(customer, states.values())

        for name, value in moved["filled"].items():
            if _jsonable(getattr(keep, name)) == value:  # untouched since the merge
                setattr(keep, name, _BLANK.get(name))
        for key, value in moved["attributes_added"].items():
            if keep.attributes.get(key) == value:
                keep.attributes.pop(key)
        keep.updated_at = now
        keep.save()
        record_owner(keep, keep_owner, reason="unmerge")
        absorb.merged_into = None
        absorb.updated_at = now
        absorb.save(update_fields=["merged_into", "updated_at"])
        for name, participant in _PARTICIPANTS.items():
            participant.restore(keep, absorb, moved.get(name, []))
        merge.undone_at = now
        merge.undone_by = actor
        merge.save(update_fields=["undone_at", "undone_by"])
        for participant in _PARTICIPANTS.values():
            if participant.after:
                participant.after([keep, absorb])
        audit.record(
            brand=brand,
            actor=actor,
            action="customer.unmerge",
            target=keep,
            store=keep.owner_store,
            changes={"absorbed_id": {"before": absorb.pk}},
        )
    return merge


def decide_candidate(*, actor: Staff, candidate_id: int, merge: bool) -> MergeCandidate:
    require(actor, Action.CUSTOMER_MANAGE)
    with transaction.atomic():
        try:
            candidate = MergeCandidate.objects.select_for_update().get(
                pk=candidate_id, brand=actor.brand, status=MergeCandidate.Status.OPEN
            )
        except MergeCandidate.DoesNotExist:
            raise NotFound(N_("No such open merge candidate."), field="candidate_id") from None
        first, second = survivor(candidate.first), survivor(candidate.second)
        get_customer(actor=actor, customer_id=first.pk, action=Action.CUSTOMER_MANAGE)
        get_customer(actor=actor, customer_id=second.pk, action=Action.CUSTOMER_MANAGE)
        if merge and first.pk != second.pk:
            keep, absorb = sorted([first, second], key=lambda c: c.pk)
            get_customer(actor=actor, customer_id=keep.pk, action=Action.CUSTOMER_MANAGE)
            get_customer(actor=actor, customer_id=absorb.pk, action=Action.CUSTOMER_MANAGE)
            merge_customers(
                brand=actor.brand, keep=keep, absorb=absorb, actor=actor, reason="review"
            )
        candidate.status = (
            MergeCandidate.Status.MERGED if merge else MergeCandidate.Status.DISMISSED
        )
        candidate.decided_at = clock.now()
        candidate.decided_by = actor
        candidate.save(update_fields=["status", "decided_at", "decided_by"])
    return candidate


# --- Tags, notes, consent -------------------------------------------------------------------


def create_tag(*, actor: Staff | None, brand: Brand, group: str, name: str) -> Tag:
    if actor is not None:
        require(actor, Action.CUSTOMER_MANAGE)
    if not group.strip() or not name.strip():
        raise ValidationFailed(N_("A tag needs a group and a name."), field="name")
    with transaction.atomic():
        tag_group, _ = TagGroup.objects.get_or_create(brand=brand, name=group.strip())
        tag, created = Tag.objects.get_or_create(brand=brand, group=tag_group, name=name.strip())
        if created:
            audit.record(brand=brand, actor=actor, action="tag.create", target=tag)
    return tag


def set_tags(
    *,
    actor: Staff | None,
    customer: Customer,
    add: Iterable[int] = (),
    remove: Iterable[int] = (),
    source: str = "manual",
) -> list[Tag]:
    if actor is not None:
        get_customer(actor=actor, customer_id=customer.pk, action=Action.CUSTOMER_MANAGE)
    add, remove = sorted(set(add)), sorted(set(remove))
    _check_tags(customer.brand_id, [*add, *remove])
    with transaction.atomic():
        _insert_customer_tags([(customer, add)], source=source, actor=actor)
        CustomerTag.objects.filter(customer=customer, tag_id__in=remove).delete()
        if add or remove:
            audit.record(
                brand=customer.brand,
                actor=actor,
                action="customer.tags",
                target=customer,
                store=customer.owner_store,
                changes={"tags": {"after": {"added": add, "removed": remove}}},
            )
    return list(Tag.objects.filter(customer_tags__customer=customer).select_related("group"))


def add_tags(
    *, items: Sequence[tuple[Customer, Iterable[int]]], source: str, actor: Staff | None = None
) -> None:
    """`set_tags(add=…)` for many customers at once (an import chunk): the same rows and one
    audit entry per customer, with one query for the tags they have and one insert."""
    wanted = [(customer, sorted(set(tag_ids))) for customer, tag_ids in items]
    wanted = [(customer, tag_ids) for customer, tag_ids in wanted if tag_ids]
    if not wanted:
        return
    brand = wanted[0][0].brand
    _check_tags(brand.pk, sorted({t for _, tag_ids in wanted for t in tag_ids}))
    stores = Store.objects.in_bulk({c.owner_store_id for c, _ in wanted if c.owner_store_id})
    with transaction.atomic():
        _insert_customer_tags(wanted, source=source, actor=actor)
        audit.record_many(
            brand=brand,
            actor=actor,
            action="customer.tags",
            entries=[
                (
                    customer,
                    {"tags": {"after": {"added": tag_ids, "removed": []}}},
                    stores.get(customer.owner_store_id or 0),
                )
                for customer, tag_ids in wanted
            ],
        )


def _check_tags(brand_id: int, tag_ids: list[int]) -> None:
    known = set(Tag.objects.filter(brand_id=brand_id, pk__in=tag_ids).values_list("pk", flat=True))
    unknown = [t for t in tag_ids if t not in known]
    if unknown:
        raise ValidationFailed(
            N_("No such tag: {value}."), params={"value": unknown[0]}, field="tag_ids"
        )


def _insert_customer_tags(
    items: Sequence[tuple[Customer, Sequence[int]]], *, source: str, actor: Staff | None
) -> None:
    """Give customers the tags they lack (one query for what they have, one insert)."""
    have = set(
        CustomerTag.objects.filter(customer__in=[c for c, _ in items]).values_list(
            "customer_id", "tag_id"
        )
    )
    now = clock.now()
    rows: dict[tuple[int, int], CustomerTag] = {}
    for customer, tag_ids in items:
        for tag_id in tag_ids:
            if (customer.pk, tag_id) not in have:
                rows[(customer.pk, tag_id)] = CustomerTag(
                    customer=customer,
                    tag_id=tag_id,
                    source=source,
                    created_by=actor,
                    created_at=now,
                )
    CustomerTag.objects.bulk_create(rows.values(), ignore_conflicts=True)


def add_note(*, actor: Staff, customer_id: int, body: str) -> Note:
    customer = get_customer(actor=actor, customer_id=customer_id, action=Action.CUSTOMER_MANAGE)
    if not body.strip():
        raise ValidationFailed(N_("A note needs text."), field="body")
    with transaction.atomic():
        note = Note.objects.create(
            brand=actor.brand,
            customer=customer,
            author=actor,
            body=body.strip()[:5000],
            created_at=clock.now(),
        )
        audit.record(
            brand=actor.brand,
            actor=actor,
            action="note.create",
            target=note,
            store=customer.owner_store,
            target_label=f"note on #{customer.pk}",
        )
    return note


@dataclass(frozen=True)
class ConsentChange:
    """One statement of the person's word, as `apply_consents` takes it."""

    customer_id: int
    purpose: str
    carrier: str
    status: str
    source: str
    proof: str
    at: dt.datetime


def apply_consent(
    *,
    customer: Customer,
    purpose: str,
    carrier: str,
    status: str,
    source: str,
    proof: str,
    at: dt.datetime,
) -> Consent:
    """Record the person's word. Called by the event log's `consent.changed` handling, so a
    change is always an event too; it takes effect immediately. A batch of one of
    `apply_consents`."""
    (consent,) = apply_consents(
        [ConsentChange(customer.pk, purpose, carrier, status, source, proof, at)]
    )
    return consent


def apply_consents(changes: Sequence[ConsentChange]) -> list[Consent]:
    """Record several statements of people's word, in order, with the outcome of applying
    them one by one: for each (customer, purpose, carrier) the stored row is replaced by a
    statement made at the same time or later, never by an older one arriving late. Returns
    each change's row (as the batch leaves it), in the order of the changes.

    One SELECT (the rows concerned, locked) and at most one INSERT and one UPDATE per batch,
    whatever the number of changes. A row another transaction creates meanwhile (a concurrent
    first statement for the same purpose and carrier) is read again, locked, and the rule
    applied to it."""
    for change in changes:
        if change.purpose not in Consent.Purpose.values:
            raise ValidationFailed(
                N_("Unknown consent purpose {purpose!r}."),
                params={"purpose": change.purpose},
                field="purpose",
            )
        if change.status not in Consent.Status.values:
            raise ValidationFailed(
                N_("Consent status must be granted or withdrawn, not {status!r}."),
                params={"status": change.status},
                field="status",
            )
    if not changes:
        return []
    recorded_at = clock.now()
    out: list[Consent | None] = [None] * len(changes)
    pending = list(range(len(changes)))
    with transaction.atomic():
        while pending:
            pending = _apply_consents_once(changes, pending, recorded_at, out)
    return [c for c in out if c is not None]


_CONSENT_VALUES = ["status", "source", "proof", "changed_at", "recorded_at"]


def _apply_consents_once(
    changes: Sequence[ConsentChange],
    indexes: list[int],
    recorded_at: dt.datetime,
    out: list[Consent | None],
) -> list[int]:
    """Apply these changes (indexes into `changes`); returns the indexes whose row a
    concurrent transaction inserted first (to be applied again, against that row)."""
    wanted = {(changes[n].customer_id, changes[n].purpose, changes[n].carrier) for n in indexes}
    # Locked in id order, so two batches with people in common wait instead of deadlocking.
    rows: dict[tuple[int, str, str], Consent] = {
        (c.customer_id, c.purpose, c.carrier): c
        for c in Consent.objects.select_for_update()
        .filter(customer_id__in={key[0] for key in wanted})
        .order_by("pk")
        if (c.customer_id, c.purpose, c.carrier) in wanted
    }
    changed: dict[tuple[int, str, str], Consent] = {}
    created: dict[tuple[int, str, str], Consent] = {}
    for n in indexes:
        change = changes[n]
        key = (change.customer_id, change.purpose, change.carrier)
        current = rows.get(key)
        if current is None or current.changed_at <= change.at:
            if current is None:
                current = rows[key] = created[key] = Consent(
                    customer_id=change.customer_id,
                    purpose=change.purpose,
                    carrier=change.carrier,
                )
            elif key not in created:
                changed[key] = current
            current.status = change.status
            current.source = change.source[:64]
            current.proof = change.proof[:2000]
            current.changed_at = change.at
            current.recorded_at = recorded_at
        # else: an older statement arriving late never overrides a newer one
        out[n] = current
    if changed:
        bulk.update_rows(Consent, list(changed.values()), _CONSENT_VALUES)
    if not created:
        return []
    inserted = {
        (customer_id, purpose, carrier): pk
        for customer_id, purpose, carrier, pk in bulk.insert_rows(
            Consent._meta.db_table,
            bulk.model_columns(Consent, ["customer_id", "purpose", "carrier", *_CONSENT_VALUES]),
            # Sorted by key, as the rows are locked above: two batches creating the same
            # people's first rows wait for each other in one order instead of deadlocking.
            [
                (c.customer_id, c.purpose, c.carrier, *(getattr(c, f) for f in _CONSENT_VALUES))
                for _, c in sorted(created.items())
            ],
            conflict=("customer_id", "purpose", "carrier"),
            returning=("customer_id", "purpose", "carrier", "id"),
        )
    }
    for key, consent in created.items():
        consent.pk = inserted.get(key)
    # A concurrent first statement won the insert: every change of that row again, in order.
    lost = {key for key, consent in created.items() if consent.pk is None}
    return [
        n
        for n in indexes
        if (changes[n].customer_id, changes[n].purpose, changes[n].carrier) in lost
    ]


def has_consent(customer: Customer, *, purpose: str, carrier: str) -> bool:
    """Granted for this carrier, or for every carrier with no carrier-specific withdrawal."""
    rows = {
        c.carrier: c.status
        for c in customer.consents.filter(purpose=purpose, carrier__in=[carrier, ""])
    }
    if rows.get(carrier) == Consent.Status.WITHDRAWN or rows.get("") == Consent.Status.WITHDRAWN:
        return False
    return Consent.Status.GRANTED in (rows.get(carrier), rows.get(""))


def apply_profile(
    *, customer: Customer, changes: Mapping[str, Any], attributes: Mapping[str, Any] | None = None
) -> Customer:
    """Apply a `profile.updated` event's facts to the profile (the event is the record)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationFailed(
            N_("Unknown profile field {name!r}."), params={"name": name}, field=f"properties.{name}"
        )
    before = owner_of(customer)
    for name, value in changes.items():
        setattr(customer, name, value)
    if attributes:
        merged = {**customer.attributes, **validate_attributes(customer.brand, attributes)}
        customer.attributes = {k: v for k, v in merged.items() if v is not None}
    customer.updated_at = clock.now()
    customer.save()
    record_owner(customer, before, reason="profile")
    return customer


def list_customers(
    *,
    actor: Staff,
    tag_id: int | None = None,
    store_id: int | None = None,
    staff_id: int | None = None,
    channel: str | None = None,
    search: str = "",
    phone: str = "",
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Customer], str | None]:
    """Customers in the actor's scope with filters; name search, exact phone lookup."""
    qs = Customer.objects.for_actor(actor)
    if tag_id is not None:
        qs = qs.filter(customer_tags__tag_id=tag_id)
    if store_id is not None:
        qs = qs.filter(owner_store_id=store_id)
    if staff_id is not None:
        qs = qs.filter(owner_staff_id=staff_id)
    if channel:
        qs = qs.filter(source_channel=channel)
    if search:
        qs = qs.filter(display_name__icontains=search)
    if phone:
        identity = normalize_identity("phone", phone, field="phone")
        qs = qs.filter(identities__value_hash=identity.hash)
    qs = qs.select_related("owner_store", "owner_staff").prefetch_related(
        "identities", "customer_tags__tag__group"
    )
    return page_by_id_desc(qs, cursor=cursor, limit=limit)


def lookup_identity(*, actor: Staff, kind: str, value: str, namespace: str = "") -> Customer:
    identity = normalize_identity(kind, value, namespace, field="value")
    customer = find_by_identity(brand=actor.brand, identity=identity)
    if customer is None:
        raise NotFound(N_("No customer has this identity."), field="value")
    return get_customer(actor=actor, customer_id=customer.pk)


def present_customer(viewer: Staff, customer: Customer) -> dict[str, Any]:
    """A customer as this viewer may see it: identities masked unless the role may see them.
    Expects identities and tags prefetched (see `list_customers`)."""
    clear = viewer.can(Action.IDENTIFIERS_VIEW)
    return {
        "id": customer.pk,
        "display_name": customer.display_name,
        "gender": customer.gender,
        "birthday": customer.birthday,
        "province": customer.province,
        "city": customer.city,
        "source_channel": customer.source_channel,
        "owner_store_id": customer.owner_store_id,
        "owner_staff_id": customer.owner_staff_id,
        "attributes": customer.attributes,
        "identities": [
            {"kind": i.kind, "namespace": i.namespace, "value": i.value if clear else i.masked}
            for i in customer.identities.all()
        ],
        "tags": [
            {"id": t.tag.pk, "group": t.tag.group.name, "name": t.tag.name}
            for t in customer.customer_tags.all()
        ],
        "created_at": customer.created_at,
        "updated_at": customer.updated_at,
    }


def list_attributes(*, actor: Staff) -> list[AttributeDefinition]:
    require(actor, Action.BRAND_VIEW)
    return list(AttributeDefinition.objects.filter(brand=actor.brand))


def list_tags(*, actor: Staff) -> list[Tag]:
    require(actor, Action.CUSTOMER_VIEW)
    return list(Tag.objects.filter(brand=actor.brand).select_related("group"))


def list_candidates(*, actor: Staff, status: str = "open") -> list[MergeCandidate]:
    require(actor, Action.CUSTOMER_MANAGE)
    visible = Customer.objects.for_actor(actor).values("pk")
    return list(
        MergeCandidate.objects.filter(
            brand=actor.brand, status=status, first__in=visible, second__in=visible
        ).select_related("first", "second")[:200]
    )


def customer_notes(*, actor: Staff, customer_id: int) -> list[Note]:
    customer = get_customer(actor=actor, customer_id=customer_id)
    return list(customer.notes.select_related("author"))


def change_customer_tags(
    *, actor: Staff, customer_id: int, add: Iterable[int] = (), remove: Iterable[int] = ()
) -> list[Tag]:
    customer = get_customer(actor=actor, customer_id=customer_id, action=Action.CUSTOMER_MANAGE)
    return set_tags(actor=actor, customer=customer, add=add, remove=remove)


# --- Saved views ----------------------------------------------------------------------------

SAVED_VIEW_KEYS = ("tag_id", "store_id", "staff_id", "channel", "search", "phone")


def save_view(*, actor: Staff, name: str, query: Mapping[str, str]) -> SavedView:
    require(actor, Action.CUSTOMER_VIEW)
    name = name.strip()
    if not name or len(name) > 60:
        raise ValidationFailed(N_("A view needs a name of at most 60 characters."), field="name")
    kept = {k: v for k, v in query.items() if k in SAVED_VIEW_KEYS and v}
    view, _ = SavedView.objects.update_or_create(
        staff=actor,
        name=name,
        defaults={"brand": actor.brand, "query": urlencode(kept)[:500], "created_at": clock.now()},
    )
    return view


def list_saved_views(*, actor: Staff) -> list[SavedView]:
    return list(SavedView.objects.filter(staff=actor))


def delete_saved_view(*, actor: Staff, view_id: int) -> None:
    deleted, _ = SavedView.objects.filter(staff=actor, pk=view_id).delete()
    if not deleted:
        raise NotFound(N_("No such saved view."), field="view_id")


# --- Written by the segments floor (lifecycle stages, auto-tags) ---------------------------


def set_lifecycle_stages(*, brand: Brand, stages: Mapping[int, str], at: Any) -> int:
    """Store computed lifecycle stages (customer id -> stage); returns rows changed."""
    changed = 0
    by_stage: dict[str, list[int]] = {}
    for customer_id, stage in stages.items():
        by_stage.setdefault(stage, []).append(customer_id)
    for stage, ids in by_stage.items():
        for start in range(0, len(ids), 5000):
            changed += (
                Customer.objects.filter(brand=brand, pk__in=ids[start : start + 5000])
                .exclude(lifecycle_stage=stage)
                .update(lifecycle_stage=stage, lifecycle_changed_at=at)
            )
    return changed


def remove_tag_by_source(*, customer_ids: Iterable[int], tag_id: int, source: str) -> int:
    """Remove a tag that one source added (an auto-tag rule), leaving manual ones alone."""
    deleted, _ = CustomerTag.objects.filter(
        customer_id__in=list(customer_ids), tag_id=tag_id, source=source
    ).delete()
    return deleted
