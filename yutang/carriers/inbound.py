"""Normalised inbound facts and the registries that higher floors fill.

Every adapter turns a carrier's callback into these frozen dataclasses; the sandbox produces
them through the same path (`yutang.carriers.services.receive_callback` →
`publish_facts`). This floor never imports the apps that react to them: they register here
in their AppConfig.ready():

- `register_inbound_sink(fn, batch=None)`: the messaging app; fn(fact) stores events,
  withdraws consent, marks contacts lost, sends the welcome message. Called inside the
  transaction that records the callback's receipt, so a replayed callback is handled once.
  `batch(facts)`, when given, takes all of a callback's new facts at once with the same
  effect as fn on each in order (set-based: one ingest, one lookup per kind).
- `register_welcome_provider(fn, batch=None)`: fn(ContactAdded) → WelcomeContent | None. The
  acquisition app answers with the live code's welcome (from `state`). Called FIRST on an
  add; the first non-None answer wins, else the brand's default welcome. `batch(facts)`,
  when given, answers a run of adds at once (one answer per fact, in order, as fn's).
- `register_contact_added_handler(fn, batch=None)`: fn(ContactAdded, customer_id) after the
  customer is resolved and `contact.added` is stored (channel tags, remark, owner,
  attribution); `batch([(fact, customer_id), …])` is its form for a run of adds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

#: WeCom's limit on a contact way's `state`.
MAX_STATE_CHARS = 30


@dataclass(frozen=True)
class IdentityRef:
    kind: str  # an IdentityKind value: phone, email, wecom_external_userid, …
    value: str
    namespace: str = ""


@dataclass(frozen=True)
class ContactAdded:
    brand_id: int
    account_id: int  # core CarrierAccount pk
    external_id: str  # the contact's id on the carrier (WeCom external_userid)
    occurred_at: dt.datetime
    display_name: str = ""
    state: str = ""  # the live-code tag, ≤ 30 chars
    welcome_code: str = ""  # WeCom: valid for 20 s, usable once
    identities: Sequence[IdentityRef] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if len(self.state) > MAX_STATE_CHARS:
            raise ValueError(f"state is at most {MAX_STATE_CHARS} characters")


@dataclass(frozen=True)
class ContactDeleted:
    brand_id: int
    account_id: int
    external_id: str
    occurred_at: dt.datetime
    by: Literal["customer", "staff"] = "customer"


@dataclass(frozen=True)
class MessageReceived:
    brand_id: int
    account_id: int
    external_id: str  # the sender: external contact id, phone or email per carrier
    occurred_at: dt.datetime
    text: str
    carrier_message_id: str = ""


@dataclass(frozen=True)
class DeliveryReceipt:
    brand_id: int
    account_id: int
    carrier_message_id: str
    status: Literal["delivered", "read", "failed"]
    occurred_at: dt.datetime
    reason: str = ""


@dataclass(frozen=True)
class GroupJoined:
    brand_id: int
    account_id: int
    external_id: str
    group_id: str
    occurred_at: dt.datetime


@dataclass(frozen=True)
class GroupLeft:
    brand_id: int
    account_id: int
    external_id: str
    group_id: str
    occurred_at: dt.datetime


@dataclass(frozen=True)
class LinkClicked:
    brand_id: int
    account_id: int
    external_id: str
    link: str
    occurred_at: dt.datetime
    carrier_message_id: str = ""


@dataclass(frozen=True)
class ContactEdited:
    """The member changed what the carrier keeps about a contact (WeCom
    edit_external_contact): the contact's details as the carrier now has them."""

    brand_id: int
    account_id: int
    external_id: str
    occurred_at: dt.datetime
    name: str = ""
    gender: Literal["unknown", "female", "male"] = "unknown"
    remark: str = ""
    description: str = ""
    remark_mobiles: Sequence[str] = field(default_factory=tuple)
    corp_tag_ids: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class CorpTagsChanged:
    """The corp's tag library changed on the carrier (WeCom change_external_tag)."""

    brand_id: int
    account_id: int
    occurred_at: dt.datetime
    change_type: str
    tag_id: str = ""
    tag_type: str = ""


@dataclass(frozen=True)
class TransferFailed:
    """A customer handover did not happen (WeCom transfer_fail): `account_id` is the member
    who was to take the customer over; `reason` customer_refused or customer_limit_exceed."""

    brand_id: int
    account_id: int
    external_id: str
    occurred_at: dt.datetime
    reason: str = ""


@dataclass(frozen=True)
class ContactTransferred:
    """A handover completed: the customer left `account_id` for the member taking over
    (WeCom del_external_contact with Source DELETE_BY_TRANSFER). Not a deletion."""

    brand_id: int
    account_id: int
    external_id: str
    occurred_at: dt.datetime


InboundFact = (
    ContactAdded
    | ContactDeleted
    | MessageReceived
    | DeliveryReceipt
    | GroupJoined
    | GroupLeft
    | LinkClicked
    | ContactEdited
    | CorpTagsChanged
    | TransferFailed
    | ContactTransferred
)
#: Facts about the carrier's own records that the carriers app handles itself (tag library,
#: handovers); other sinks pass them by.
CARRIER_FACTS = (CorpTagsChanged, TransferFailed, ContactTransferred)


@dataclass(frozen=True)
class WelcomeContent:
    text: str
    attachments: Sequence[dict[str, str]] = field(default_factory=tuple)


Sink = Callable[[InboundFact], None]
BatchSink = Callable[[Sequence[InboundFact]], None]
WelcomeProvider = Callable[[ContactAdded], WelcomeContent | None]
WelcomeBatch = Callable[[Sequence[ContactAdded]], list[WelcomeContent | None]]
ContactAddedHandler = Callable[[ContactAdded, int], None]
ContactAddedBatch = Callable[[Sequence[tuple[ContactAdded, int]]], None]

_SINKS: list[Sink] = []
_BATCH_SINKS: dict[Sink, BatchSink] = {}
_WELCOME_PROVIDERS: list[WelcomeProvider] = []
_WELCOME_BATCHES: dict[WelcomeProvider, WelcomeBatch] = {}
_CONTACT_ADDED_HANDLERS: list[ContactAddedHandler] = []
_CONTACT_ADDED_BATCHES: dict[ContactAddedHandler, ContactAddedBatch] = {}


def _add(registry: list, fn: object) -> None:
    if fn not in registry:  # AppConfig.ready may run twice in tests; register once
        registry.append(fn)


def register_inbound_sink(fn: Sink, *, batch: BatchSink | None = None) -> None:
    _add(_SINKS, fn)
    if batch is not None:
        _BATCH_SINKS[fn] = batch


def register_welcome_provider(fn: WelcomeProvider, *, batch: WelcomeBatch | None = None) -> None:
    _add(_WELCOME_PROVIDERS, fn)
    if batch is not None:
        _WELCOME_BATCHES[fn] = batch


def register_contact_added_handler(
    fn: ContactAddedHandler, *, batch: ContactAddedBatch | None = None
) -> None:
    _add(_CONTACT_ADDED_HANDLERS, fn)
    if batch is not None:
        _CONTACT_ADDED_BATCHES[fn] = batch


def sinks() -> list[Sink]:
    return list(_SINKS)


def publish(facts: Sequence[InboundFact]) -> None:
    """Hand a callback's new facts, in order, to every sink (its batch form when it has
    one)."""
    for sink in sinks():
        batch = _BATCH_SINKS.get(sink)
        if batch is not None:
            batch(facts)
        else:
            for fact in facts:
                sink(fact)


def welcome_for(fact: ContactAdded) -> WelcomeContent | None:
    for provider in _WELCOME_PROVIDERS:
        content = provider(fact)
        if content is not None:
            return content
    return None


def welcomes_for(facts: Sequence[ContactAdded]) -> list[WelcomeContent | None]:
    """`welcome_for` of each of a run of adds, in order: each provider answers the adds
    still unanswered (its batch form when it has one), the first non-None answer wins."""
    answers: list[WelcomeContent | None] = [None] * len(facts)
    for provider in _WELCOME_PROVIDERS:
        todo = [i for i, answer in enumerate(answers) if answer is None]
        if not todo:
            break
        batch = _WELCOME_BATCHES.get(provider)
        found = batch([facts[i] for i in todo]) if batch is not None else None
        for n, i in enumerate(todo):
            answers[i] = found[n] if found is not None else provider(facts[i])
    return answers


def contact_added_handlers() -> list[ContactAddedHandler]:
    return list(_CONTACT_ADDED_HANDLERS)


def contacts_added(adds: Sequence[tuple[ContactAdded, int]]) -> None:
    """Hand a run of adds (fact, customer id), in order, to every contact-added handler (its
    batch form when it has one)."""
    for handler in contact_added_handlers():
        batch = _CONTACT_ADDED_BATCHES.get(handler)
        if batch is not None:
            batch(adds)
        else:
            for fact, customer_id in adds:
                handler(fact, customer_id)
