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
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet

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


def customers_holding(
    *, brand: Brand, rule: dict[str, Any] | None, customer_ids: Sequence[int]
) -> set[int]:
    """Which of these customers (of the brand, not merged away) the rule holds for now: one
    query for a whole batch of the engine instead of one evaluation per customer."""
    if not rule:
        return set(customer_ids)
    found: set[int] = set()
    for start in range(0, len(customer_ids), 500):
        chunk = list(customer_ids[start : start + 500])
        found.update(
            matching_customers(brand=brand, rule=rule)
            .filter(pk__in=chunk)
            .values_list("pk", flat=True)
        )
    return found


def matching_customers(*, brand: Brand, rule: dict[str, Any] | None) -> QuerySet[Customer]:
    """The brand's customers (not merged away) matching the rule: one query."""
    if not rule:
        return Customer.objects.filter(brand=brand, merged_into__isnull=True)
    return segments.customers_matching(brand=brand, node=_node(rule))


def segment_problem(*, brand_id: int, segment_id: int) -> str | None:
    """Why a segment trigger cannot use this segment (None: it can). Only dynamic segments
    record segment.entered events (when they are refreshed)."""
    from yutang.segments.models import Segment

    kind = (
        Segment.objects.filter(pk=segment_id, brand_id=brand_id)
        .values_list("kind", flat=True)
        .first()
    )
    if kind is None:
        return f"no segment {segment_id} in this brand"
    if kind != Segment.Kind.DYNAMIC:
        return f"segment {segment_id} is static: only dynamic segments record entries"
    return None


# --- Messages -------------------------------------------------------------------------------


def account_for(customer: Customer) -> CarrierAccount | None:
    """The account a journey message goes out from: among the carrier accounts the customer
    holds as an *active* contact (of an account that is not disabled), the account of the
    customer's owner staff if there is one, else the most recently added contact's account.
    None when the customer holds no carrier account."""
    return accounts_for([customer])[customer.pk]


def accounts_for(customers: Sequence[Customer]) -> dict[int, CarrierAccount | None]:
    """`account_for` of many customers with one query: {customer id: account or None}."""
    from yutang.carriers.models import CarrierContact

    found: dict[int, CarrierAccount | None] = {c.pk: None for c in customers}
    if not customers:
        return found
    brand_of = {c.pk: c.brand_id for c in customers}
    owner_of = {c.pk: c.owner_staff_id for c in customers}
    # Plain values and each account once (a model instance per contact and account was a
    # tenth of a journey batch).
    contacts = CarrierContact.objects.filter(
        customer_id__in=list(found), status=CarrierContact.Status.ACTIVE
    ).values_list("customer_id", "account_id", "added_at", "pk")
    rows = list(contacts)
    accounts = CarrierAccount.objects.in_bulk({account_id for _, account_id, _, _ in rows})
    best: dict[int, tuple[int, float, int]] = {}
    for cid, account_id, added_at, pk in rows:
        account = accounts[account_id]
        if cid is None or account.brand_id != brand_of[cid]:
            continue
        owner = owner_of[cid]
        rank = (
            0 if owner is not None and account.staff_id == owner else 1,
            -added_at.timestamp(),
            -pk,
        )
        if cid not in best or rank < best[cid]:
            best[cid] = rank
            found[cid] = account
    return found


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


def send_messages(items: Sequence[dict[str, Any]]) -> list[Any]:
    """`send_message` for a batch of steps: one bulk write to messaging's outbox in the
    caller's transaction (same idempotency keys, so a replay writes nothing new). Each item
    holds send_message's arguments. Returns the outbox message ids in item order."""
    from yutang.messaging.services import OutboxItem, enqueue_messages

    return enqueue_messages(
        [
            OutboxItem(
                brand=i["brand"],
                customer=i["customer"],
                account=i["account"],
                kind=i["kind"],
                content={"type": "text", "text": i["content"]},
                cause="journey",
                cause_ref=f"journey:{i['journey_id']}:{i['step_id']}",
                idempotency_key=i["idempotency_key"],
                due_at=i.get("due_at"),
            )
            for i in items
        ]
    )


def welcomes(customer_ids: Sequence[int], *, since: Any) -> dict[int, Any]:
    """{customer id: latest time} of the automatic welcome messages (cause ``welcome``: the
    live code's or the brand's default welcome, sent by the carrier when the customer added
    the account — WeCom's ``send_welcome_msg``) these customers got since `since`."""
    from django.db.models import Max

    from yutang.messaging.models import Message

    if not customer_ids:
        return {}
    rows = (
        Message.objects.filter(
            customer_id__in=list(customer_ids),
            cause=Message.Cause.WELCOME,
            status__in=sorted(SENT_STATES),
            due_at__gte=since,
        )
        .values("customer_id")
        .annotate(last=Max("due_at"))
        .values_list("customer_id", "last")
    )
    return dict(rows)


SENT_STATES = frozenset({"sent", "delivered", "read"})
UNSENT_STATES = frozenset({"failed", "blocked", "expired", "cancelled"})


def message_status(*, brand_id: int, idempotency_key: str) -> str | None:
    """The outbox status of the journey message written with this key (None: no such
    message). Sent, delivered and read count as confirmed (SENT_STATES); failed, blocked,
    expired and cancelled will never be sent (UNSENT_STATES); anything else is still on
    its way (queued, deferred, sending, pending_confirmation)."""
    from yutang.messaging.models import Message

    return (
        Message.objects.filter(brand_id=brand_id, idempotency_key=idempotency_key)
        .values_list("status", flat=True)
        .first()
    )


def message_key(message_id: Any) -> str | None:
    """The idempotency key of an outbox message (events name messages by id)."""
    from yutang.messaging.models import Message

    try:
        pk = int(message_id)
    except (TypeError, ValueError):
        return None
    return Message.objects.filter(pk=pk).values_list("idempotency_key", flat=True).first()
