"""The Carrier protocol: what every adapter declares and does.

An adapter is built for one carrier account (`CarrierAccount`) with its decrypted credentials
and its non-secret settings. It declares its capabilities and platform limits, sends one
message with the message's idempotency key, checks its connection, and turns a raw inbound
callback into normalised facts (`yutang.carriers.inbound`). Adapters register themselves by
kind (`register_adapter`); the WeCom adapter plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from yutang.carriers.inbound import InboundFact


class Capability(StrEnum):
    DIRECT_MESSAGE = "direct_message"
    GROUP_MESSAGE = "group_message"
    CONFIRMED_BROADCAST = "confirmed_broadcast"  # staff confirm each mass message (WeCom)
    MOMENTS_POST = "moments_post"
    WELCOME_MESSAGE = "welcome_message"
    LIVE_CODE = "live_code"
    GROUP_JOIN_CODE = "group_join_code"
    TAG_SYNC = "tag_sync"
    CUSTOMER_HANDOVER = "customer_handover"
    CONTACT_BASED = "contact_based"  # a customer must have added the account to be reached


@dataclass(frozen=True)
class PlatformLimits:
    """Limits the platform itself enforces per customer. `per_month=None` with
    `days_in_month=True` means "as many as days in the month" (WeCom broadcasts)."""

    per_day: int | None = None
    per_week: int | None = None
    per_month: int | None = None
    days_in_month: bool = False
    max_text_chars: int | None = None


@dataclass(frozen=True)
class Outbound:
    """One message to send: what the delivery loop hands an adapter."""

    idempotency_key: str
    brand_id: int
    account_id: int
    customer_id: int
    recipient: str  # phone, email, external contact id or customer id, per carrier
    kind: str  # service | marketing
    content: Mapping[str, Any]
    cause: str = "manual"  # journey | broadcast | campaign | manual | welcome | test
    unsubscribe_url: str = ""
    #: 1 on the first try; more when an earlier try may have reached the carrier (a transient
    #: error, or a worker killed before it recorded the result).
    attempt: int = 1
    #: When the gate let it pass (the first try): where a carrier without idempotency keys
    #: starts looking for a copy it already accepted (WeCom `add_msg_template`).
    first_passed_at: datetime | None = None


@dataclass(frozen=True)
class SendResult:
    carrier_message_id: str
    duplicate: bool = False  # the carrier had already accepted this idempotency key
    pending_confirmation: bool = False  # staff must confirm it on the carrier (WeCom 群发)


class CarrierError(Exception):
    """A failed carrier call. `transient` errors are retried with backoff; others fail the
    message with `reason` (the carrier's own words)."""

    def __init__(self, reason: str, *, transient: bool, code: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.code = code


class CallbackRejected(Exception):
    """An inbound callback that failed verification (bad signature, stale timestamp, bad
    body). Nothing of it is stored."""


@dataclass(frozen=True)
class CallbackRequest:
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedCallback:
    """Verified inbound facts, each with the carrier's own dedupe key for replays."""

    facts: Sequence[tuple[str, InboundFact]]
    reply: bytes = b'{"ok":true}'


@runtime_checkable
class Carrier(Protocol):
    kind: str
    capabilities: frozenset[Capability]
    limits: PlatformLimits

    def send(self, message: Outbound) -> SendResult: ...

    def check_connection(self) -> None:
        """Raise CarrierError when the carrier cannot be reached or refuses the credentials."""

    def parse_callback(self, request: CallbackRequest) -> ParsedCallback:
        """Verify and normalise an inbound callback, or raise CallbackRejected."""
        ...


@runtime_checkable
class BatchCarrier(Protocol):
    """An adapter that can send many messages in one call (one round trip, one insert …).
    Each message keeps its own idempotency key; the answer is one result or error per
    message, in order. Adapters without it are sent one by one (`send_many`)."""

    def send_batch(self, messages: Sequence[Outbound]) -> list[SendResult | CarrierError]: ...


def send_many(adapter: Carrier, messages: Sequence[Outbound]) -> list[SendResult | CarrierError]:
    """Send these messages through `adapter`: in one batch when it can, else one by one.
    A failed message is its CarrierError in the answer; the others still go."""
    if isinstance(adapter, BatchCarrier):
        return list(adapter.send_batch(messages))
    results: list[SendResult | CarrierError] = []
    for message in messages:
        try:
            results.append(adapter.send(message))
        except CarrierError as exc:
            results.append(exc)
    return results


class RecipientStatus(StrEnum):
    """Where one recipient of a task staff must confirm stands (WeCom get_groupmsg_send_result
    status 0, 1, 2, 3; ``cancelled`` when the task was cancelled before it was sent)."""

    PENDING = "pending"  # 0: the member has not confirmed the task yet
    SENT = "sent"  # 1
    NOT_A_CONTACT = "not_a_contact"  # 2: the customer is no longer the member's contact
    LIMIT_REACHED = "limit_reached"  # 3: the customer already got a mass message today
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RecipientResult:
    status: RecipientStatus
    at: datetime | None = None  # when it was sent, if the carrier says


@runtime_checkable
class ConfirmationCarrier(Protocol):
    """An adapter whose `pending_confirmation` sends are tasks it can be asked about: what
    became of each recipient of a task (keyed by the recipient address the adapter was given),
    and cancelling a task nobody confirmed in time."""

    def confirmation_results(self, task_id: str) -> dict[str, RecipientResult]: ...

    def cancel_task(self, task_id: str) -> None: ...


@dataclass(frozen=True)
class AccountConfig:
    """What an adapter is built from: ids, decrypted credentials, non-secret settings."""

    brand_id: int
    account_id: int
    kind: str
    external_id: str
    credentials: Mapping[str, Any]
    settings: Mapping[str, Any]


AdapterFactory = Callable[[AccountConfig], Carrier]
_ADAPTERS: dict[str, AdapterFactory] = {}


def register_adapter(kind: str, factory: AdapterFactory) -> None:
    _ADAPTERS[kind] = factory


def adapter_kinds() -> list[str]:
    return sorted(_ADAPTERS)


def reports_confirmations(kind: str) -> bool:
    """Whether adapters of this kind answer `ConfirmationCarrier.confirmation_results`."""
    factory = _ADAPTERS.get(kind)
    return factory is not None and hasattr(factory, "confirmation_results")


def confirming_kinds() -> list[str]:
    return sorted(kind for kind in _ADAPTERS if reports_confirmations(kind))


def build_adapter(config: AccountConfig) -> Carrier:
    factory = _ADAPTERS.get(config.kind)
    if factory is None:
        raise CarrierError(f"No adapter for carrier kind {config.kind!r}.", transient=False)
    return factory(config)
