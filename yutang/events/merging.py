"""The event log's part in customer merges (events follow the person, aggregates are rebuilt)
and in customer imports (a WeCom export's added-at time becomes `contact.added`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from yutang.core.crypto import hash_pii
from yutang.core.models import Brand
from yutang.customers.imports import register_contact_recorder
from yutang.customers.models import Customer
from yutang.customers.services import register_merge_participant, rows_follow_the_customer
from yutang.events import aggregates
from yutang.events.models import Event
from yutang.events.services import ingest_one


def _after(customers: Sequence[Customer]) -> None:
    brand = customers[0].brand
    aggregates.recompute([c.pk for c in customers], brand.tz, brand.pk)


def _contact_added_from_import(
    brand: Brand, customer: Customer, values: dict[str, str], at: dt.datetime
) -> None:
    """A WeCom export row says when the contact was added and by whom: record it once."""
    who = values.get("staff_username") or values.get("staff_wecom_userid") or ""
    contact = values.get("wecom_external_userid") or str(customer.pk)
    properties = {"carrier": "wecom"}
    if who:
        properties["account_id"] = who
    if values.get("channel"):
        properties["channel"] = values["channel"]
    # ingest_one raises when the log refuses the event (an added-at time in the future, …):
    # the import reports the row as bad instead of dropping the fact silently.
    ingest_one(
        brand=brand,
        item={
            "type": "contact.added",
            "occurred_at": at,
            "customer_id": customer.pk,
            "source": "import",
            # Keyed hash: idempotency keys are shown to analysts; identifiers never are.
            "idempotency_key": f"import:contact.added:{hash_pii(f'{contact}:{who}')[:40]}",
            "properties": properties,
        },
    )


def register() -> None:
    register_merge_participant("events", rows_follow_the_customer(Event, after=_after))
    register_contact_recorder(_contact_added_from_import)
