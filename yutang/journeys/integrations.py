"""Where journeys meet the segments rule tree and the messaging outbox.

- Conditions (entry, branch, exit, schedule and segment triggers) are segments rules
  (``yutang.segments.rules``): ``validate_condition`` parses one and names the JSON path inside
  the journey definition; ``condition_holds`` evaluates it for one customer in memory;
  ``matching_customers`` is the one SQL query for a whole brand (schedule triggers).
- Messages go through ``yutang.messaging.services.enqueue_message`` (the outbox and its
  no-disturb policy gate) in the engine's transaction, with the step's idempotency key.
  The carrier account is chosen by ``account_for`` (rule documented in docs/journeys.md).

An empty rule ``{}`` means "always" (no condition).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.db.models import Case, IntegerField, QuerySet, Value, When

from yutang.core.errors import ValidationFailed
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Customer
from yutang.segments import rules
from yutang.segments import services as segments

# --- Conditions -----------------------------------------------------------------------------


def validate_condition(rule: Any, path: str = "$") -> None:
    """Raise ValidationFailed whose field is the JSON path of the first problem, under `path`
    (e.g. ``$.steps[2].condition.and[0].value``)."""
    if rule == {}:
        return
    try:
        rules.parse_rule(rule, path=path)
    except ValidationFailed as exc:
        field = exc.field or path
        message = exc.message if exc.message.startswith(field) else f"{field}: {exc.message}"
        raise ValidationFailed(message, field=field) from None


@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> rules.Node:
    return rules.parse_rule(json.loads(text))


def _node(rule: dict[str, Any]) -> rules.Node:
    return _parsed(json.dumps(rule, sort_keys=True, ensure_ascii=False))


def condition_holds(*, customer: Customer, rule: dict[str, Any] | None) -> bool:
    """Whether the rule holds for the customer now (an empty rule always holds)."""
    if not rule:
        return True
    return segments.customer_matches(customer=customer, node=_node(rule))


def matching_customers(*, brand: Brand, rule: dict[str, Any] | None) -> QuerySet[Customer]:
    """The brand's customers (not merged away) matching the rule: one query."""
    if not rule:
        return Customer.objects.filter(brand=brand, merged_into__isnull=True)
    return segments.customers_matching(brand=brand, node=_node(rule))


# --- Messages -------------------------------------------------------------------------------


def account_for(customer: Customer) -> CarrierAccount | None:
    """The account a journey message goes out from: among the carrier accounts the customer
    holds as an *active* contact (of an account that is not disabled), the account of the
    customer's owner staff if there is one, else the most recently added contact's account.
    None when the customer holds no carrier account."""
    from yutang.carriers.models import CarrierContact

    contacts = CarrierContact.objects.filter(
        customer=customer, status=CarrierContact.Status.ACTIVE, account__brand_id=customer.brand_id
    )
    owner = customer.owner_staff_id
    order = ["-added_at", "-pk"]
    if owner is not None:
        contacts = contacts.annotate(
            _own=Case(
                When(account__staff_id=owner, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        order = ["_own", *order]
    contact = contacts.select_related("account").order_by(*order).first()
    return contact.account if contact is not None else None


def send_message(
    *,
    brand: Brand,
    customer: Customer,
    account: CarrierAccount,
    kind: str,
    content: str,
    journey_id: int,
    step_id: str,
    idempotency_key: str,
    due_at: Any = None,
) -> Any:
    """Queue one message through messaging's outbox in the caller's transaction. The same
    idempotency key returns the message already written: a replayed step never queues a
    second one. `due_at` is the moment the step was due (the message may go from then on).
    Returns the messaging Message."""
    from yutang.messaging.services import enqueue_message

    return enqueue_message(
        brand=brand,
        customer=customer,
        account=account,
        kind=kind,
        content={"type": "text", "text": content},
        cause="journey",
        cause_ref=f"journey:{journey_id}:{step_id}",
        idempotency_key=idempotency_key,
        due_at=due_at,
    )
