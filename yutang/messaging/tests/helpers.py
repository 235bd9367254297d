"""Given-helpers for messaging tests: a sandbox account whose customers arrive through the
sandbox's callback path, with consent recorded through the event log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.factories import make_brand
from yutang.carriers import services as carriers
from yutang.carriers.adapters import sandbox
from yutang.core import services as core_services
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Customer
from yutang.events.services import ingest_one

SECRET = "sandbox-callback-secret"
# A Wednesday, 10:00 in Shanghai: outside quiet hours.
NOON = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)


def sandbox_account(brand: Brand, **settings: Any) -> CarrierAccount:
    account = core_services.create_carrier_account(
        actor=None,
        brand=brand,
        kind="sandbox",
        external_id=f"sbx-{brand.pk}-{CarrierAccount.objects.count()}",
        display_name="小鱼 Sandbox",
    )
    carriers.connect_carrier(
        actor=None, account=account, credentials={"callback_secret": SECRET}, settings=settings
    )
    return account


def add_contact(
    account: CarrierAccount, external_id: str, *, consent: bool = True, state: str = ""
) -> Customer:
    config = carriers.account_config(account)
    sandbox.emit(
        config,
        [
            {
                "type": "contact.added",
                "id": f"add-{external_id}",
                "contact": external_id,
                "display_name": external_id,
                "state": state,
            }
        ],
    )
    contact = carriers.find_contact(account_id=account.pk, external_id=external_id)
    assert contact is not None
    customer = contact.customer
    if consent:
        grant(customer, "marketing")
    return customer


def grant(customer: Customer, purpose: str, carrier: str = "", status: str = "granted") -> None:
    from yutang.core import clock

    ingest_one(
        brand=customer.brand,
        item={
            "type": "consent.changed",
            "occurred_at": clock.now(),
            "customer_id": customer.pk,
            "idempotency_key": f"consent:{customer.pk}:{purpose}:{carrier}:{status}:{clock.now().timestamp()}",
            "properties": {"purpose": purpose, "status": status, "carrier": carrier},
        },
    )


def setup(n: int = 3, **settings: Any) -> tuple[Brand, CarrierAccount, list[Customer]]:
    brand = make_brand()
    account = sandbox_account(brand, **settings)
    customers = [add_contact(account, f"wm-{brand.pk}-{i}") for i in range(n)]
    return brand, account, customers
