"""Shared set-up for journey tests: a brand, customers, a published journey, events."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from tests.factories import make_brand, make_staff
from yutang.core.models import Brand, Staff
from yutang.core.permissions import Role
from yutang.customers.models import Customer
from yutang.events.services import ingest_one
from yutang.journeys import services
from yutang.journeys.models import ActionOutbox, Journey

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
_seq = itertools.count(1)


def setup(**brand_settings: Any) -> tuple[Brand, Staff]:
    brand = make_brand(**brand_settings)
    return brand, make_staff(brand, Role.BRAND_ADMIN)


def customer(brand: Brand, **fields: Any) -> Customer:
    now = fields.pop("created_at", T0)
    return Customer.objects.create(
        brand=brand, display_name=fields.pop("display_name", f"客户{next(_seq)}"),
        created_at=now, updated_at=now, **fields,
    )  # fmt: skip


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
    return [
        (m.customer_id, m.content, m.created_at.isoformat())
        for m in ActionOutbox.objects.filter(brand=brand).order_by(
            "customer_id", "created_at", "id"
        )
    ]
