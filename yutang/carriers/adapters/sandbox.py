"""The sandbox carrier: complete and in-process, for the demo, the simulator and tests.

It records deliveries (`SandboxDelivery`, deduped by idempotency key like a real carrier) and
produces inbound facts through the same path as real callbacks: `emit()` builds a signed JSON
callback and hands it to `carriers.services.receive_callback`, which verifies and parses it
with `parse_callback` exactly as for a carrier's HTTP request. Customer behaviour is
pluggable: `set_behaviour(fn)` makes every delivery ask fn what the customer does (reply,
click, delete …), e.g. the simulator's model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from django.db import IntegrityError, connection, transaction

from yutang.carriers import signing
from yutang.carriers.adapters import jsonwire
from yutang.carriers.base import (
    AccountConfig,
    CallbackRequest,
    Capability,
    CarrierError,
    Outbound,
    ParsedCallback,
    PlatformLimits,
    SendResult,
)
from yutang.core import bulk, clock

#: The columns `send_batch` writes, in its rows' order.
DELIVERY_FIELDS = [
    "brand_id",
    "account_id",
    "idempotency_key",
    "recipient",
    "kind",
    "content",
    "delivered_at",
]

#: fn(outbound) -> inbound events (JSON-contract dicts without id/occurred_at are completed).
Behaviour = Callable[[Outbound], list[dict[str, Any]]]
_behaviour: Behaviour | None = None


def set_behaviour(fn: Behaviour | None) -> None:
    global _behaviour
    _behaviour = fn


def callback_secret(config: AccountConfig) -> str:
    return str(config.credentials.get("callback_secret", ""))


class SandboxCarrier:
    kind = "sandbox"
    capabilities = frozenset(
        {
            Capability.DIRECT_MESSAGE,
            Capability.WELCOME_MESSAGE,
            Capability.CONTACT_BASED,
        }
    )
    limits = PlatformLimits(max_text_chars=4000)

    def __init__(self, config: AccountConfig):
        self.config = config
        # Like WeCom mass messages: broadcasts wait until staff confirm them on the carrier.
        self.confirm_broadcasts = bool(config.settings.get("confirm_broadcasts"))
        if self.confirm_broadcasts:
            self.capabilities = self.capabilities | {Capability.CONFIRMED_BROADCAST}

    def send(self, message: Outbound) -> SendResult:
        from yutang.carriers.models import SandboxDelivery

        fields = {
            "brand_id": message.brand_id,
            "account_id": message.account_id,
            "idempotency_key": message.idempotency_key,
        }
        try:
            with transaction.atomic():
                delivery = SandboxDelivery.objects.create(
                    **fields,
                    recipient=message.recipient[:200],
                    kind=message.kind,
                    content=dict(message.content),
                    delivered_at=clock.now(),
                )
            created = True
        except IntegrityError:
            delivery = SandboxDelivery.objects.get(**fields)
            created = False
        if created and _behaviour is not None:
            events = _behaviour(message)
            if events:
                emit(self.config, events, key_prefix=f"sbx-{delivery.pk}")
        return SendResult(
            carrier_message_id=f"sbx-{delivery.pk}",
            duplicate=not created,
            pending_confirmation=self.confirm_broadcasts and message.cause == "broadcast",
        )

    def send_batch(self, messages: Sequence[Outbound]) -> list[SendResult | CarrierError]:
        """Many messages in one `INSERT … ON CONFLICT DO NOTHING RETURNING` (deduped by key
        exactly as `send`; `core.bulk.insert_new_rows`, bound one array per column), then one
        look-up of the keys it had already accepted."""
        from yutang.carriers.models import SandboxDelivery

        if not messages:
            return []
        now = clock.now()
        first: dict[str, Outbound] = {}
        for m in messages:
            first.setdefault(m.idempotency_key, m)
        columns = bulk.model_columns(SandboxDelivery, DELIVERY_FIELDS)
        rows = [
            (
                m.brand_id,
                self.config.account_id,
                m.idempotency_key,
                m.recipient[:200],
                m.kind,
                dict(m.content),
                now,
            )
            for m in first.values()
        ]
        # One statement: atomic by itself (a savepoint only inside a caller's transaction).
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            created = {
                key: pk
                for pk, key in bulk.insert_new_rows(
                    SandboxDelivery._meta.db_table,
                    columns,
                    rows,
                    returning=("id", "idempotency_key"),
                )
            }
        ids = dict(created)
        missing = [k for k in first if k not in ids]
        if missing:
            ids.update(
                SandboxDelivery.objects.filter(
                    account_id=self.config.account_id, idempotency_key__in=missing
                ).values_list("idempotency_key", "pk")
            )
        results: list[SendResult | CarrierError] = []
        seen: set[str] = set()
        for m in messages:
            key = m.idempotency_key
            fresh = key in created and key not in seen
            seen.add(key)
            if fresh and _behaviour is not None:
                events = _behaviour(m)
                if events:
                    emit(self.config, events, key_prefix=f"sbx-{ids[key]}")
            results.append(
                SendResult(
                    carrier_message_id=f"sbx-{ids[key]}",
                    duplicate=not fresh,
                    pending_confirmation=self.confirm_broadcasts and m.cause == "broadcast",
                )
            )
        return results

    def check_connection(self) -> None:
        return None

    def parse_callback(self, request: CallbackRequest) -> ParsedCallback:
        return jsonwire.parse(self.config, request, callback_secret(self.config))


def emit(config: AccountConfig, events: list[dict[str, Any]], *, key_prefix: str = "") -> int:
    """Produce inbound events as the carrier would: sign a callback, receive it."""
    from yutang.carriers.services import receive_callback

    now = clock.now().isoformat()
    completed = [
        {"occurred_at": now, **e, "id": e.get("id") or f"{key_prefix}:{n}:{e.get('type')}"}
        for n, e in enumerate(events)
    ]
    body = jsonwire.encode(completed)
    secret = callback_secret(config) or "sandbox"
    headers = signing.sign(secret, body)
    return receive_callback(
        account_id=config.account_id, request=CallbackRequest(headers=headers, body=body)
    )
