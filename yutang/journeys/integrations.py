"""The two seams between journeys and the apps being written beside it.

After the merge the lead points these at the real apps (a few lines each):

- ``evaluate_condition`` / ``validate_condition`` → ``yutang.segments.rules`` (the one rule tree
  that compiles to SQL and evaluates one customer in memory).
- ``send_message`` → ``yutang.messaging.services.enqueue_message`` (the outbox and its
  no-disturb policy gate).

TEMPORARY STAND-INS until then, clearly marked below. Rules are stored as plain JSON in the
journey definition, so nothing needs migrating when the real rule tree takes over.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction

from yutang.core.errors import ValidationFailed
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Customer, CustomerTag
from yutang.events.models import CustomerAggregate

# --- Conditions (STAND-IN for segments.rules) -----------------------------------------------
#
# The subset journeys need for its own tests and templates:
#   {"tag": {"group": "兴趣", "name": "咖啡"}}           customer has the tag (group optional)
#   {"aggregate": {"field": "order_count", "op": ">=", "value": 1}}
#   {"attribute": {"name": "vip", "op": "==", "value": true}}
#   {"lifecycle": {"stage": "at_risk"}}
#   {"and": [rule, …]}, {"or": [rule, …]}, {"not": rule}
#   {}                                                    always true

AGGREGATE_FIELDS = {"order_count", "paid_fen", "refunded_fen", "touch_count", "event_count"}
OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b,
    "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b,
}


def _fail(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", field=path)


def validate_condition(rule: dict[str, Any], path: str = "$") -> None:
    """Raise ValidationFailed naming the JSON path of the first problem."""
    if not isinstance(rule, dict):
        raise _fail(path, "a rule must be an object")
    if not rule:
        return
    if len(rule) != 1:
        raise _fail(path, f"a rule has exactly one key, got {sorted(rule)}")
    ((key, body),) = rule.items()
    here = f"{path}.{key}"
    if key in {"and", "or"}:
        if not isinstance(body, list) or not body:
            raise _fail(here, "must be a non-empty list of rules")
        for i, child in enumerate(body):
            validate_condition(child, f"{here}[{i}]")
    elif key == "not":
        validate_condition(body, here)
    elif key == "tag":
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise _fail(f"{here}.name", "a tag rule needs a name")
        if set(body) - {"name", "group"}:
            raise _fail(here, f"unknown keys {sorted(set(body) - {'name', 'group'})}")
    elif key == "aggregate":
        if not isinstance(body, dict) or body.get("field") not in AGGREGATE_FIELDS:
            raise _fail(f"{here}.field", f"must be one of {sorted(AGGREGATE_FIELDS)}")
        if body.get("op") not in OPS:
            raise _fail(f"{here}.op", f"must be one of {sorted(OPS)}")
        if not isinstance(body.get("value"), int) or isinstance(body.get("value"), bool):
            raise _fail(f"{here}.value", "must be an integer")
    elif key == "attribute":
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise _fail(f"{here}.name", "an attribute rule needs a name")
        if body.get("op", "==") not in OPS:
            raise _fail(f"{here}.op", f"must be one of {sorted(OPS)}")
    elif key == "lifecycle":
        if not isinstance(body, dict) or not isinstance(body.get("stage"), str):
            raise _fail(f"{here}.stage", "a lifecycle rule needs a stage")
    else:
        raise _fail(here, "unknown rule (use tag, aggregate, attribute, lifecycle, and, or, not)")


def evaluate_condition(*, brand: Brand, customer: Customer, rule: dict[str, Any], at: Any) -> bool:
    """Whether the rule holds for the customer now (`at` is the evaluation time)."""
    if not rule:
        return True
    ((key, body),) = rule.items()
    if key == "and":
        return all(evaluate_condition(brand=brand, customer=customer, rule=r, at=at) for r in body)
    if key == "or":
        return any(evaluate_condition(brand=brand, customer=customer, rule=r, at=at) for r in body)
    if key == "not":
        return not evaluate_condition(brand=brand, customer=customer, rule=body, at=at)
    if key == "tag":
        tags = CustomerTag.objects.filter(customer=customer, tag__name=body["name"])
        if body.get("group"):
            tags = tags.filter(tag__group__name=body["group"])
        return tags.exists()
    if key == "aggregate":
        agg = CustomerAggregate.objects.filter(customer=customer).first()
        value = getattr(agg, body["field"]) if agg else 0
        return bool(OPS[body["op"]](value, body["value"]))
    if key == "attribute":
        value = (customer.attributes or {}).get(body["name"])
        try:
            return bool(OPS[body.get("op", "==")](value, body.get("value")))
        except TypeError:
            return False
    if key == "lifecycle":
        return customer.lifecycle_stage == body["stage"]
    raise ValidationFailed(f"$.{key}: unknown rule", field=f"$.{key}")


# --- Messages (STAND-IN for messaging.services.enqueue_message) ------------------------------


def send_message(
    *,
    brand: Brand,
    customer: Customer,
    account: CarrierAccount | None,
    kind: str,
    content: str,
    cause: str,
    idempotency_key: str,
    at: dt.datetime,
) -> int:
    """Queue one message in the caller's transaction and return its outbox id. The same
    idempotency key returns the existing row: a replayed step never queues a second message.

    STAND-IN: writes journeys' own ActionOutbox row; after the merge this calls
    messaging.services.enqueue_message(brand=…, customer=…, account=…, kind=…, content=…,
    cause=…, idempotency_key=…), which applies the no-disturb policy gate."""
    from yutang.journeys.models import ActionOutbox

    existing = ActionOutbox.objects.filter(brand=brand, idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing.pk
    try:
        with transaction.atomic():
            row = ActionOutbox.objects.create(
                brand=brand,
                customer=customer,
                account=account,
                kind=kind,
                content=content,
                cause=cause,
                idempotency_key=idempotency_key,
                created_at=at,
            )
    except IntegrityError:
        return ActionOutbox.objects.get(brand=brand, idempotency_key=idempotency_key).pk
    return row.pk
