"""Shared set-up for journey tests: a brand, customers, a published journey, events."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from tests.factories import make_brand, make_staff
from yutang.carriers import services as carriers
from yutang.core import services as core_services
from yutang.core.models import Brand, CarrierAccount, Staff
from yutang.core.permissions import Role
from yutang.customers.models import Customer
from yutang.events.services import ingest_one
from yutang.journeys import services
from yutang.journeys.models import Journey
from yutang.messaging.models import Message

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
_seq = itertools.count(1)


def setup(**brand_settings: Any) -> tuple[Brand, Staff]:
    brand = make_brand(**brand_settings)
    return brand, make_staff(brand, Role.BRAND_ADMIN)


def sandbox_account(brand: Brand, *, kind: str = "sandbox") -> CarrierAccount:
    """The brand's first account of this kind (created on first use)."""
    existing = CarrierAccount.objects.filter(brand=brand, kind=kind).order_by("pk").first()
    if existing is not None:
        return existing
    return core_services.create_carrier_account(
        actor=None, brand=brand, kind=kind, external_id=f"{kind}-{brand.pk}-{next(_seq)}",
        display_name="小鱼",
    )  # fmt: skip


def hold(who: Customer, account: CarrierAccount, at: dt.datetime = T0) -> None:
    """The customer holds the account as an active contact (added as a friend)."""
    carriers.record_contact(
        account_id=account.pk, brand_id=account.brand_id, external_id=f"ext-{who.pk}-{account.pk}",
        customer=who, state="", at=at,
    )  # fmt: skip


def customer(brand: Brand, *, reachable: bool = True, **fields: Any) -> Customer:
    """A customer; `reachable` ones hold the brand's sandbox account as a contact."""
    now = fields.pop("created_at", T0)
    who = Customer.objects.create(
        brand=brand, display_name=fields.pop("display_name", f"客户{next(_seq)}"),
        created_at=now, updated_at=now, **fields,
    )  # fmt: skip
    if reachable:
        hold(who, sandbox_account(brand), now)
    return who


def live(admin: Staff, steps: list[dict[str, Any]], **extra: Any) -> Journey:
    definition = {"trigger": extra.pop("trigger", {"type": "manual"}), "steps": steps, **extra}
    journey = services.create_journey(actor=admin, name=f"J{next(_seq)}", definition=definition)
    services.publish(actor=admin, journey_id=journey.pk)
    journey.refresh_from_db()
    return journey


def event(brand: Brand, who: Customer, type_: str, at: dt.datetime, **props: Any) -> None:
    ingest_one(
        brand=brand,
        item={
            "type": type_, "occurred_at": at, "idempotency_key": f"t{next(_seq)}",
            "customer_id": who.pk, "properties": props,
        },
    )  # fmt: skip


def messages(brand: Brand) -> list[tuple[int, str, str]]:
    """The journey messages in messaging's outbox: (customer, text, due_at — when the step
    was due)."""
    return [
        (m.customer_id, m.content.get("text", ""), m.due_at.isoformat())
        for m in Message.objects.filter(brand=brand, cause="journey").order_by(
            "customer_id", "due_at", "id"
        )
    ]
