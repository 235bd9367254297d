"""Data builders for the rule tests: rows written directly, so each test states exactly the
facts it evaluates (aggregates included)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from yutang.carriers.models import CarrierContact
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Consent, Customer, CustomerTag, Identity, Tag, TagGroup
from yutang.events import aggregates
from yutang.events.models import CustomerAggregate, Event

_seq = itertools.count(1)
T0 = dt.datetime(2026, 3, 10, 4, 0, tzinfo=dt.UTC)  # 12:00 in Asia/Shanghai


def customer(brand: Brand, **fields: Any) -> Customer:
    now = fields.pop("created_at", T0)
    return Customer.objects.create(brand=brand, created_at=now, updated_at=now, **fields)


def event(c: Customer, type: str, at: dt.datetime, **properties: Any) -> Event:
    """An event, folded into the customer's aggregate as ingestion does (segments read the
    aggregate's latest times for some event conditions). A non-integer amount_fen, which the
    event schemas would refuse, is left out of the aggregate's sums."""
    e = Event.objects.create(
        brand_id=c.brand_id, customer=c, type=type, occurred_at=at, received_at=at,
        idempotency_key=f"k{next(_seq)}", properties=properties,
    )  # fmt: skip
    agg = CustomerAggregate.objects.filter(customer=c).first() or CustomerAggregate(
        customer=c, brand_id=c.brand_id
    )
    amount = properties.get("amount_fen")
    folded = {k: v for k, v in properties.items() if k != "amount_fen"}
    if isinstance(amount, int) and not isinstance(amount, bool):
        folded["amount_fen"] = amount
    aggregates.fold(agg, Event(type=type, occurred_at=at, properties=folded), c.brand.tz)
    agg.save()
    return e


def tag(brand: Brand, name: str) -> Tag:
    group, _ = TagGroup.objects.get_or_create(brand=brand, name="G")
    return Tag.objects.create(brand=brand, group=group, name=name)


def tag_customer(c: Customer, t: Tag) -> None:
    CustomerTag.objects.create(customer=c, tag=t, created_at=T0)


def identity(c: Customer, kind: str, namespace: str = "") -> Identity:
    n = next(_seq)
    return Identity.objects.create(
        brand_id=c.brand_id, customer=c, kind=kind, namespace=namespace,
        value_encrypted="x", value_hash=f"h{n}", created_at=T0,
    )  # fmt: skip


def consent(c: Customer, purpose: str, status: str, carrier: str = "") -> Consent:
    return Consent.objects.create(
        customer=c, purpose=purpose, carrier=carrier, status=status, changed_at=T0, recorded_at=T0
    )


def aggregate(c: Customer, **fields: Any) -> CustomerAggregate:
    """Set these aggregate fields by hand (the row is created, or updated when events made
    it)."""
    agg, _ = CustomerAggregate.objects.update_or_create(
        customer=c, defaults={"brand_id": c.brand_id, **fields}
    )
    return agg


def carrier_account(brand: Brand, kind: str = "wecom") -> CarrierAccount:
    n = next(_seq)
    return CarrierAccount.objects.create(
        brand=brand, kind=kind, external_id=f"acct{n}", display_name=f"{kind} {n}"
    )


def contact(c: Customer, account: CarrierAccount, status: str = "active") -> CarrierContact:
    """A carrier contact of the customer on the account: active, or lost (deleted)."""
    n = next(_seq)
    return CarrierContact.objects.create(
        brand_id=c.brand_id, account=account, customer=c, external_hash=f"e{n}",
        external_encrypted="x", status=status, added_at=T0,
        lost_at=T0 if status == "lost" else None, lost_by="customer" if status == "lost" else "",
    )  # fmt: skip
