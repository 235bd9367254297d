"""Services of the messaging app: the outbox (enqueue, send, broadcast, cancel, confirm),
the pre-send policy preview, the touch policy, touch history, and the inbound sink that
turns carrier facts into events, consent changes and lost contacts.

Interfaces other apps call (docs/messaging.md):

- `enqueue_message(*, brand, customer, account, kind, content, cause, idempotency_key, …)`
  inside the caller's transaction (a journey step and its outbox row commit together);
- `preview_policy(*, brand, account, kind, content, customer_ids, at=None)`;
- `yutang.messaging.gate.register_holdout(fn)` for holdout groups.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from pydantic import Field, ValidationError, model_validator

from yutang.carriers import inbound
from yutang.carriers import services as carriers
from yutang.carriers.base import Capability, CarrierError, Outbound, send_many
from yutang.carriers.models import CarrierContact
from yutang.core import clock
from yutang.core.bulk import insert_rows, model_columns
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import Brand, CarrierAccount, Staff
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action
from yutang.core.schemas import StrictInput
from yutang.customers.models import Customer
from yutang.events.services import ingest_events, ingest_in_batches
from yutang.messaging import delivery, gate
from yutang.messaging.models import Broadcast, Message, MessagingPolicy
from yutang.messaging.policy import PolicySettings

S = Message.Status
MAX_BROADCAST = 100_000


class MessageContent(StrictInput):
    """For now text, image, link and mini-program card (the content library comes later)."""

    type: Literal["text", "image", "link", "miniprogram"] = "text"
    text: str = Field(default="", max_length=4000)
    subject: str = Field(default="", max_length=200)
    title: str = Field(default="", max_length=200)
    url: str = Field(default="", max_length=1000, pattern=r"^(https?://\S+)?$")
    image_url: str = Field(default="", max_length=1000, pattern=r"^(https?://\S+)?$")
    appid: str = Field(default="", max_length=64)
    pagepath: str = Field(default="", max_length=500)
    template_id: str = Field(default="", max_length=64)
    params: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> MessageContent:
        need = {
            "text": ("text", "template_id"),
            "image": ("image_url",),
            "link": ("url",),
            "miniprogram": ("appid",),
        }[self.type]
        if not any(getattr(self, n) for n in need):
            raise ValueError(f"a {self.type} message needs {' or '.join(need)}")
        return self


def clean_content(content: Any, field_name: str = "content") -> dict[str, Any]:
    if isinstance(content, MessageContent):
        return content.model_dump(exclude_defaults=True)
    try:
        return MessageContent.model_validate(content).model_dump(exclude_defaults=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        path = f"{field_name}.{where}" if where else field_name
        raise ValidationFailed(
            N_("{path}: {msg}"), params={"path": path, "msg": first["msg"]}, field=path
        ) from None


def content_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def _kind(kind: str) -> str:
    if kind not in Message.Kind.values:
        raise ValidationFailed(N_("kind must be service or marketing."), field="kind")
    return kind


# --- Policy ----------------------------------------------------------------------------------


def get_policy(*, brand: Brand) -> PolicySettings:
    return delivery.policy_for(brand.pk)


def update_policy(*, actor: Staff, changes: Mapping[str, Any]) -> PolicySettings:
    from yutang.core import audit
    from yutang.core.permissions import require

    require(actor, Action.MESSAGING_POLICY_MANAGE)
    current = get_policy(brand=actor.brand).model_dump()
    try:
        policy = PolicySettings.model_validate({**current, **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(
            N_("{where}: {msg}"), params={"where": where, "msg": first["msg"]}, field=where
        ) from None
    with transaction.atomic():
        MessagingPolicy.objects.update_or_create(
            brand=actor.brand, defaults={"settings": policy.model_dump(), "updated_at": clock.now()}
        )
        audit.record(
            brand=actor.brand,
            actor=actor,
            action="messaging.policy",
            target=actor.brand,
            changes={
                k: [current.get(k), v]
                for k, v in policy.model_dump().items()
                if current.get(k) != v
            },
        )
    return policy


# --- The outbox ------------------------------------------------------------------------------


def enqueue_message(
    *,
    brand: Brand,
    customer: Customer,
    account: CarrierAccount,
    kind: str,
    content: Any,
    cause: str,
    idempotency_key: str,
    not_after: dt.datetime | None = None,
    due_at: dt.datetime | None = None,
    staff: Staff | None = None,
    broadcast: Broadcast | None = None,
    cause_ref: str = "",
) -> Message:
    """Write one outbox row in the caller's transaction; the worker sends it after commit.
    The same idempotency key in the same brand returns the message already written."""
    if customer.brand_id != brand.pk or account.brand_id != brand.pk:
        raise ValidationFailed(
            N_("The customer and the account must belong to the brand."), field="customer_id"
        )
    if cause not in Message.Cause.values:
        raise ValidationFailed(
            N_("Unknown cause {cause!r}."), params={"cause": cause}, field="cause"
        )
    key = (idempotency_key or "").strip()
    if not key or len(key) > 200:
        raise ValidationFailed(
            N_("idempotency_key is required (1–200 characters)."), field="idempotency_key"
        )
    body = clean_content(content)
    now = clock.now()
    if not_after is not None and not_after <= now:
        raise ValidationFailed(N_("not_after must be in the future."), field="not_after")
    existing = Message.objects.filter(brand=brand, idempotency_key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Message.objects.create(
                brand=brand,
                customer=customer,
                account=account,
                carrier=account.kind,
                kind=_kind(kind),
                content=body,
                content_hash=content_hash(body),
                cause=cause,
                cause_ref=cause_ref[:120],
                broadcast=broadcast,
                staff=staff,
                idempotency_key=key,
                due_at=due_at or now,
                not_after=not_after,
                created_at=now,
            )
    except IntegrityError:
        existing = Message.objects.filter(brand=brand, idempotency_key=key).first()
        if existing is None:
            raise
        return existing


def _account(actor: Staff, account_id: int) -> CarrierAccount:
    account = (
        CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW)
        .filter(pk=account_id, is_active=True)
        .first()
    )
    if account is None:
        raise NotFound(
            N_("No such carrier account: {account_id}."),
            params={"account_id": account_id},
            field="account_id",
        )
    return account


def _customers(actor: Staff, ids: Sequence[int]) -> dict[int, Customer]:
    found = {
        c.pk: c for c in Customer.objects.for_actor(actor, Action.CUSTOMER_VIEW).filter(pk__in=ids)
    }
    for n, cid in enumerate(ids):
        if cid not in found:
            raise NotFound(
                N_("No such customer: {cid}."), params={"cid": cid}, field=f"customer_ids.{n}"
            )
    return found


def send_message(
    *,
    actor: Staff,
    customer_id: int,
    account_id: int,
    kind: str,
    content: Any,
    idempotency_key: str | None = None,
    not_after: dt.datetime | None = None,
) -> Message:
    """A staff member's manual message: through the same outbox and gate as everything else."""
    from yutang.core.permissions import require

    require(actor, Action.MESSAGE_SEND)
    account = _account(actor, account_id)
    customer = _customers(actor, [customer_id])[customer_id]
    key = idempotency_key or f"manual:{actor.pk}:{clock.now().timestamp()}:{customer_id}"
    with transaction.atomic():
        return enqueue_message(
            brand=actor.brand,
            customer=customer,
            account=account,
            kind=kind,
            content=content,
            cause="manual",
            idempotency_key=key,
            not_after=not_after,
            staff=actor,
        )


def create_broadcast(
    *,
    actor: Staff,
    account_id: int,
    kind: str,
    content: Any,
    customer_ids: Sequence[int],
    name: str = "",
    not_after: dt.datetime | None = None,
    target: Mapping[str, Any] | None = None,
) -> Broadcast:
    """A 群发 to a list of customers, all or nothing. Each message passes the gate at send
    time; `preview_policy` shows beforehand how many the gate would stop and why. `target`
    describes where the list came from (e.g. `{"segment_id": 7, "segment_name": "…"}` when
    the API or console resolved a segment to its customers); it is kept on the broadcast."""
    from yutang.core.permissions import require

    require(actor, Action.MESSAGE_BROADCAST)
    ids = list(dict.fromkeys(customer_ids))
    if not ids or len(ids) > MAX_BROADCAST:
        raise ValidationFailed(
            N_("Give 1 to {MAX_BROADCAST} customers."),
            params={"MAX_BROADCAST": MAX_BROADCAST},
            field="customer_ids",
        )
    account = _account(actor, account_id)
    found = _customers(actor, ids)
    body = clean_content(content)
    now = clock.now()
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            brand=actor.brand,
            account=account,
            staff=actor,
            name=name[:120],
            kind=_kind(kind),
            content=body,
            target={**(target or {}), "customer_ids": ids},
            total=len(ids),
            created_at=now,
        )
        Message.objects.bulk_create(
            [
                Message(
                    brand=actor.brand,
                    customer=found[cid],
                    account=account,
                    carrier=account.kind,
                    kind=kind,
                    content=body,
                    content_hash=content_hash(body),
                    cause="broadcast",
                    broadcast=broadcast,
                    staff=actor,
                    idempotency_key=f"broadcast:{broadcast.pk}:{cid}",
                    due_at=now,
                    not_after=not_after,
                    created_at=now,
                )
                for cid in ids
            ],
            batch_size=1000,
        )
    return broadcast


@dataclass
class PolicyPreview:
    total: int
    would_send: int
    blocked: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)


def preview_policy(
    *,
    brand: Brand,
    account: CarrierAccount,
    kind: str,
    content: Any,
    customer_ids: Iterable[int],
    at: dt.datetime | None = None,
) -> PolicyPreview:
    """What the gate would do with a would-be broadcast now (or at `at`): counts per rule.
    Reads only; nothing is locked or written."""
    body = clean_content(content)
    h = content_hash(body)
    ids = list(dict.fromkeys(customer_ids))
    now = at or clock.now()
    candidates = [
        gate.Candidate(
            customer_id=cid,
            account_id=account.pk,
            carrier=account.kind,
            kind=_kind(kind),
            content_hash=h,
            cause="broadcast",
        )
        for cid in ids
    ]
    ctx = delivery.load_context(
        brand=brand, candidates=candidates, now=now, adapters=delivery.Adapters()
    )
    outcomes: dict[str, Counter[str]] = {
        "block": Counter(),
        "defer": Counter(),
        "expire": Counter(),
    }
    passed = 0
    for c in candidates:
        d = gate.evaluate(c, ctx)
        if d.outcome == "pass":
            ctx.record(c)
            passed += 1
        else:
            outcomes[d.outcome][d.rule] += 1
    return PolicyPreview(
        total=len(ids),
        would_send=passed,
        blocked=dict(outcomes["block"]),
        deferred=dict(outcomes["defer"]),
        expired=dict(outcomes["expire"]),
    )


def preview_for_actor(
    *, actor: Staff, account_id: int, kind: str, content: Any, customer_ids: Sequence[int]
) -> PolicyPreview:
    from yutang.core.permissions import require

    require(actor, Action.MESSAGE_BROADCAST)
    account = _account(actor, account_id)
    ids = list(dict.fromkeys(customer_ids))
    _customers(actor, ids)
    return preview_policy(
        brand=actor.brand, account=account, kind=kind, content=content, customer_ids=ids
    )


def cancel_message(*, actor: Staff, message_id: int) -> Message:
    """Cancel a message that has not gone out yet (queued or deferred)."""
    qs = Message.objects.for_actor(actor, Action.MESSAGE_SEND).filter(pk=message_id)
    if not qs.exists():
        raise NotFound(
            N_("No such message: {message_id}."),
            params={"message_id": message_id},
            field="message_id",
        )
    changed = Message.objects.filter(pk=message_id, status__in=[S.QUEUED, S.DEFERRED]).update(
        status=S.CANCELLED, finished_at=clock.now()
    )
    message = Message.objects.get(pk=message_id)
    if not changed:
        raise Conflict(
            N_("Only queued or deferred messages can be cancelled; this one is {status}."),
            params={"status": message.status},
            field="status",
        )
    return message


def confirm_broadcast(*, actor: Staff, broadcast_id: int) -> int:
    """Staff say they confirmed the mass message on the carrier (WeCom 群发). When the
    carrier reports per-customer results (WeCom), they are read now and each waiting message
    moves on by its own result (`messaging.confirmations`): sent, failed, blocked, or still
    waiting when the member has not confirmed yet. A carrier without results (the sandbox)
    takes the word for it: every waiting message is sent. Returns how many were sent."""
    broadcast = (
        Broadcast.objects.for_actor(actor, Action.MESSAGE_BROADCAST).filter(pk=broadcast_id).first()
    )
    if broadcast is None:
        raise NotFound(
            N_("No such broadcast: {broadcast_id}."),
            params={"broadcast_id": broadcast_id},
            field="broadcast_id",
        )
    from yutang.carriers.base import reports_confirmations
    from yutang.messaging import confirmations

    if reports_confirmations(broadcast.account.kind):
        waiting = Message.objects.filter(broadcast=broadcast, status=S.PENDING_CONFIRMATION)
        return confirmations.check_now(list(waiting.only(*confirmations.LOAD)))
    now = clock.now()
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update().filter(
                broadcast=broadcast, status=S.PENDING_CONFIRMATION
            )
        )
        Message.objects.filter(pk__in=[m.pk for m in rows]).update(
            status=S.SENT, sent_at=now, claimed_until=None
        )
        if rows:
            ingest_events(
                brand=actor.brand,
                items=[delivery.sent_event(m, now) for m in rows],
            )
    return len(rows)


MESSAGE_FILTERS = {
    "status",
    "rule",
    "carrier",
    "staff_id",
    "customer_id",
    "account_id",
    "broadcast_id",
}


def list_messages(
    *, actor: Staff, filters: Mapping[str, Any], cursor: str | None = None, limit: int = 50
) -> tuple[list[Message], str | None]:
    qs = Message.objects.for_actor(actor, Action.MESSAGE_VIEW).select_related("account", "customer")
    for name, value in filters.items():
        if value in (None, ""):
            continue
        if name not in MESSAGE_FILTERS:
            raise ValidationFailed(
                N_("Unknown filter {name!r}."), params={"name": name}, field=name
            )
        if name == "status" and value not in S.values:
            raise ValidationFailed(
                N_("Unknown status {value!r}."), params={"value": value}, field="status"
            )
        if name == "rule" and value not in (*gate.RULES, "deadline", "confirmation"):
            raise ValidationFailed(
                N_("Unknown rule {value!r}."), params={"value": value}, field="rule"
            )
        qs = qs.filter(**{name: value})
    return page_by_id_desc(qs, cursor=cursor, limit=limit)


def touch_history(*, actor: Staff, customer_id: int, limit: int = 50) -> list[Message]:
    """The customer's messages, newest first, for the portrait."""
    if not Customer.objects.for_actor(actor, Action.CUSTOMER_VIEW).filter(pk=customer_id).exists():
        raise NotFound(
            N_("No such customer: {customer_id}."),
            params={"customer_id": customer_id},
            field="customer_id",
        )
    return list(
        Message.objects.for_actor(actor, Action.MESSAGE_VIEW)
        .filter(customer_id=customer_id)
        .select_related("account")
        .order_by("-id")[:limit]
    )


def send_test(*, account: CarrierAccount, customer: Customer, text: str) -> Message:
    """`yutang send-test`: a service message through the whole pipeline, delivered now."""
    message = enqueue_message(
        brand=account.brand,
        customer=customer,
        account=account,
        kind="service",
        content={"type": "text", "text": text},
        cause="test",
        idempotency_key=f"test:{clock.now().timestamp()}",
    )
    delivery.deliver_due_messages()
    message.refresh_from_db()
    return message


# --- Inbound ---------------------------------------------------------------------------------

CONTACT_IDENTITY = {"wecom": "wecom_external_userid", "sandbox": "wecom_external_userid"}
_PUNCTUATION = re.compile(r"[\s\.,!?。，！？~～]+")


def is_unsubscribe(text: str, keywords: Iterable[str]) -> bool:
    """The whole reply is one of the keywords (case- and punctuation-insensitive); a sentence
    that merely contains 取消 is not an unsubscribe."""
    cleaned = _PUNCTUATION.sub("", text).casefold()
    return bool(cleaned) and cleaned in {_PUNCTUATION.sub("", k).casefold() for k in keywords}


def unsubscribe_keywords(account: CarrierAccount, policy: PolicySettings) -> list[str]:
    """The replies that unsubscribe on this account: the brand's keywords, and those the
    carrier itself tells customers to send (an SMS account's `opt_out_keywords`, by default
    R and T from "拒收请回复R或退订回T")."""
    keywords = list(policy.unsubscribe_keywords)
    if account.kind == "sms":
        keywords += getattr(carriers.adapter_for(account), "opt_out_keywords", ())
    return keywords


def _event(brand_id: int, item: dict[str, Any]) -> None:
    brand = Brand.objects.get(pk=brand_id)
    (result,) = ingest_events(brand=brand, items=[{"source": "carrier", **item}])
    if result.status == "rejected":
        assert result.error is not None
        raise ValidationFailed(str(result.error["message"]), field=result.error["field"])


def _welcome(
    fact: inbound.ContactAdded, account: CarrierAccount
) -> tuple[str, dict[str, Any]] | None:
    """Send the welcome FIRST (WeCom allows it within 20 s, once, before any other call)."""
    (welcome,) = _welcomes([fact], account)
    return welcome


def _welcomes(
    facts: Sequence[inbound.ContactAdded], account: CarrierAccount
) -> list[tuple[str, dict[str, Any]] | None]:
    """`_welcome` for a run of adds on one account, in order: the welcomes are looked up
    together (`inbound.welcomes_for`), the adapter is built once and the run is sent in one
    call (`carriers.base.send_many`: a batch when the adapter sends batches, else one by
    one). Each welcome keeps its own idempotency key; a failed one is recorded and skipped."""
    contents = inbound.welcomes_for(facts)
    default: list[str] = []
    answers: list[tuple[str, dict[str, Any]] | None] = [None] * len(facts)
    bodies: list[tuple[int, str, dict[str, Any]]] = []
    for i, (fact, content) in enumerate(zip(facts, contents, strict=True)):
        if content is None and not default:
            default.append(delivery.policy_for(account.brand_id).default_welcome)
        text = content.text if content else default[0]
        if not text:
            continue
        body: dict[str, Any] = {"type": "text", "text": text}
        if content and content.attachments:
            body["attachments"] = list(content.attachments)
        contact = carriers.contact_hash(account.pk, fact.external_id)[:32]
        bodies.append((i, f"welcome:{account.pk}:{contact}:{fact.occurred_at.timestamp()}", body))
    if not bodies:
        return answers
    adapter = carriers.adapter_for(account)
    if Capability.WELCOME_MESSAGE not in adapter.capabilities:
        return answers
    outbound = [
        Outbound(
            idempotency_key=f"{account.brand_id}:{key}",
            brand_id=account.brand_id,
            account_id=account.pk,
            customer_id=0,
            recipient=facts[i].external_id,
            kind="service",
            content={**body, "welcome_code": facts[i].welcome_code},
            cause="welcome",
        )
        for i, key, body in bodies
    ]
    results = send_many(adapter, outbound) if len(outbound) > 1 else _send_one(adapter, outbound)
    for (i, key, body), result in zip(bodies, results, strict=True):
        if isinstance(result, CarrierError):
            carriers.record_send_error(account_id=account.pk, reason=f"welcome: {result.reason}")
            continue
        answers[i] = key, {**body, "carrier_message_id": result.carrier_message_id}
    return answers


def _send_one(adapter: Any, outbound: list[Outbound]) -> list[Any]:
    """One welcome through `adapter.send` (the adapter's own single send)."""
    try:
        return [adapter.send(outbound[0])]
    except CarrierError as exc:
        return [exc]


def handle_inbound(fact: inbound.InboundFact) -> None:
    """The sink registered with carriers.inbound; runs in the callback's transaction."""
    if isinstance(fact, inbound.CARRIER_FACTS):
        return  # the carriers app's own records (tag library, handovers)
    account = CarrierAccount.objects.select_related("brand").get(pk=fact.account_id)
    at = fact.occurred_at
    if isinstance(fact, inbound.ContactEdited):
        _contact_edited(fact, account)
        return
    if isinstance(fact, inbound.ContactAdded):
        welcome = _welcome(fact, account)
        (result,) = ingest_events(brand=account.brand, items=[_added_item(fact, account)])
        customer = Customer.objects.get(pk=_added_customer(result))
        _record_contact(fact, account, customer)
        if welcome is not None:
            Message.objects.get_or_create(**_welcome_message(fact, account, customer, welcome))
        for handler in inbound.contact_added_handlers():
            handler(fact, customer.pk)
        return
    if isinstance(fact, inbound.ContactDeleted):
        contact = carriers.mark_contact_lost(
            account_id=account.pk, external_id=fact.external_id, by=fact.by, at=at
        )
        if contact is not None:
            _event(account.brand_id, _deleted_item(fact, account, contact))
        return
    if isinstance(fact, inbound.DeliveryReceipt):
        _receipt(fact, account)
        return
    sender = carriers.customer_for_sender(account=account, external_id=fact.external_id)
    if sender is None:
        return  # a sender Yutang does not know: nothing to attach it to
    _event(account.brand_id, _sender_item(fact, account, sender))
    if isinstance(fact, inbound.MessageReceived):
        policy = delivery.policy_for(account.brand_id)
        if is_unsubscribe(fact.text, unsubscribe_keywords(account, policy)):
            _unsubscribe(sender, account, fact, policy)


def _deleted_item(
    fact: inbound.ContactDeleted, account: CarrierAccount, contact: CarrierContact
) -> dict[str, Any]:
    """The `contact.deleted` event of a deletion (the contact is marked lost)."""
    at = fact.occurred_at
    return {
        "type": "contact.deleted",
        "occurred_at": at,
        "customer_id": contact.customer_id,
        "idempotency_key": f"contact.deleted:{contact.pk}:{at.timestamp()}",
        "properties": {"carrier": account.kind, "account_id": str(account.pk), "by": fact.by},
    }


def _contact_edited(fact: inbound.ContactEdited, account: CarrierAccount) -> None:
    """The member edited the contact on the carrier: keep the remark and description on the
    contact, fill the profile's empty name and unknown gender (a `profile.updated` event),
    add the remark's phone numbers as identities, and follow the corp tags (tag sync)."""
    from yutang.carriers import tagsync
    from yutang.customers import services as customers
    from yutang.customers.identities import normalize_identity

    contact = carriers.find_contact(account_id=account.pk, external_id=fact.external_id)
    if contact is None:
        return
    carriers.note_contact(contact=contact, remark=fact.remark, description=fact.description)
    customer = customers.survivor(contact.customer)
    changes: dict[str, Any] = {}
    if fact.name and not customer.display_name:
        changes["display_name"] = fact.name[:120]
    if fact.gender != "unknown" and customer.gender == "unknown":
        changes["gender"] = fact.gender
    identities = []
    for mobile in fact.remark_mobiles:
        try:
            phone = normalize_identity("phone", mobile)
        except ValidationFailed:
            continue  # a remark number that is not a phone number: not an identity
        identities.append({"kind": "phone", "value": phone.value, "namespace": ""})
    if changes or identities:
        _event(
            account.brand_id,
            {
                "type": "profile.updated",
                "occurred_at": fact.occurred_at,
                "customer_id": customer.pk,
                "identities": identities,
                "idempotency_key": (f"contact.edited:{contact.pk}:{fact.occurred_at.timestamp()}"),
                "properties": changes,
            },
        )
    tagsync.apply_contact_tags(contact=contact, corp_tag_ids=fact.corp_tag_ids)


def _added_item(fact: inbound.ContactAdded, account: CarrierAccount) -> dict[str, Any]:
    """The `contact.added` event of an add (resolving the customer by its identities)."""
    identities = [
        {"kind": i.kind, "value": i.value, "namespace": i.namespace} for i in fact.identities
    ]
    kind = CONTACT_IDENTITY.get(account.kind)
    if kind:
        identities.append({"kind": kind, "value": fact.external_id, "namespace": ""})
    h = carriers.contact_hash(account.pk, fact.external_id)[:24]
    at = fact.occurred_at
    return {
        "type": "contact.added",
        "occurred_at": at,
        "source": "carrier",
        "idempotency_key": f"contact.added:{account.pk}:{h}:{at.timestamp()}",
        "identities": identities,
        "properties": {
            "carrier": account.kind,
            "account_id": str(account.pk),
            **({"live_code": fact.state} if fact.state else {}),
        },
    }


def _added_customer(result: Any) -> int:
    if result.status == "rejected" or result.customer_id is None:
        raise ValidationFailed(
            N_("contact.added rejected: {error}"),
            params={"error": result.error},
            field="identities",
        )
    return int(result.customer_id)


def _record_contact(
    fact: inbound.ContactAdded, account: CarrierAccount, customer: Customer
) -> None:
    carriers.record_contact(
        account_id=account.pk,
        brand_id=account.brand_id,
        external_id=fact.external_id,
        customer=customer,
        state=fact.state,
        at=fact.occurred_at,
    )


def _welcome_message(
    fact: inbound.ContactAdded,
    account: CarrierAccount,
    customer: Customer,
    welcome: tuple[str, dict[str, Any]],
) -> dict[str, Any]:
    """The outbox row that records the welcome sent (lookup and defaults for
    get_or_create)."""
    key, body = welcome
    body = dict(body)
    mid = body.pop("carrier_message_id")
    now = clock.now()
    return {
        "brand": account.brand,
        "idempotency_key": key,
        "defaults": dict(
            customer=customer,
            account=account,
            carrier=account.kind,
            kind="service",
            content=body,
            content_hash=content_hash(body),
            cause="welcome",
            status=S.SENT,
            due_at=fact.occurred_at,
            passed_at=now,
            sent_at=now,
            created_at=now,
            carrier_message_id=mid,
            attempts=1,
        ),
    }


SenderFact = inbound.MessageReceived | inbound.GroupJoined | inbound.GroupLeft | inbound.LinkClicked


def _sender_item(fact: SenderFact, account: CarrierAccount, customer: Customer) -> dict[str, Any]:
    """The event a known sender's reply, click or group change becomes."""
    at = fact.occurred_at
    base = {"occurred_at": at, "customer_id": customer.pk}
    if isinstance(fact, inbound.MessageReceived):
        return {
            **base,
            "type": "message.received",
            "idempotency_key": (
                f"message.received:{account.pk}:"
                f"{fact.carrier_message_id or at.timestamp()}:{customer.pk}"
            ),
            "properties": {
                "carrier": account.kind,
                "account_id": str(account.pk),
                "text": fact.text[:4000],
                **({"message_id": fact.carrier_message_id} if fact.carrier_message_id else {}),
            },
        }
    if isinstance(fact, inbound.GroupJoined | inbound.GroupLeft):
        kind = "group.joined" if isinstance(fact, inbound.GroupJoined) else "group.left"
        return {
            **base,
            "type": kind,
            "idempotency_key": f"{kind}:{fact.group_id}:{customer.pk}:{at.timestamp()}",
            "properties": {"carrier": account.kind, "group_id": fact.group_id},
        }
    return {
        **base,
        "type": "link.clicked",
        "idempotency_key": f"link.clicked:{account.pk}:{customer.pk}:{at.timestamp()}",
        "properties": {"link": fact.link, "channel": account.kind},
    }


def _unsubscribe(
    customer: Customer,
    account: CarrierAccount,
    fact: inbound.MessageReceived,
    policy: PolicySettings,
) -> None:
    """Withdraw marketing consent on this carrier and confirm once."""
    from yutang.customers.models import Consent

    already = Consent.objects.filter(
        customer=customer, purpose="marketing", carrier=account.kind, status="withdrawn"
    ).exists()
    if already:
        return
    _event(
        account.brand_id,
        {
            "type": "consent.changed",
            "occurred_at": fact.occurred_at,
            "customer_id": customer.pk,
            "idempotency_key": (
                f"unsubscribe:{account.pk}:{customer.pk}:{fact.occurred_at.timestamp()}"
            ),
            "properties": {
                "purpose": "marketing",
                "status": "withdrawn",
                "carrier": account.kind,
                "proof": f"reply: {fact.text[:100]}",
            },
        },
    )
    if policy.unsubscribe_confirmation:
        enqueue_message(
            brand=account.brand,
            customer=customer,
            account=account,
            kind="service",
            content={"type": "text", "text": policy.unsubscribe_confirmation},
            cause="reply",
            idempotency_key=f"unsubscribe-confirm:{account.pk}:{customer.pk}:{fact.occurred_at.timestamp()}",
        )


def _receipt(fact: inbound.DeliveryReceipt, account: CarrierAccount) -> None:
    message = Message.objects.filter(
        account=account, carrier_message_id=fact.carrier_message_id
    ).first()
    if message is None:
        return
    at = fact.occurred_at
    if fact.status == "failed":
        Message.objects.filter(pk=message.pk, status=S.SENT).update(
            status=S.FAILED,
            reason=fact.reason[:500] or "the carrier reported a failure",
            finished_at=at,
        )
        return
    order = [S.SENT, S.DELIVERED, S.READ]
    target = S.DELIVERED if fact.status == "delivered" else S.READ
    before = order[: order.index(target)]
    stamp = {"delivered_at": at} if target == S.DELIVERED else {"read_at": at}
    if Message.objects.filter(pk=message.pk, status__in=before).update(status=target, **stamp):
        _event(
            account.brand_id,
            {
                "type": f"message.{fact.status}",
                "occurred_at": at,
                "customer_id": message.customer_id,
                "idempotency_key": f"message.{fact.status}:{message.pk}",
                "properties": {
                    "carrier": account.kind,
                    "account_id": str(account.pk),
                    "message_id": str(message.pk),
                    "kind": message.kind,
                },
            },
        )


def outcome_counts(
    *, brand: Brand, customers: QuerySet[Customer], start_at: dt.datetime, end_at: dt.datetime
) -> list[dict[str, Any]]:
    """Messages created in [start_at, end_at) for `customers`, by outcome (status) and the
    rule that blocked or deferred them, split by kind. One aggregate query; the dashboard's
    "messages sent and blocked by rule" section (docs/metrics.md)."""
    rows = (
        Message.objects.filter(
            brand=brand, customer__in=customers, created_at__gte=start_at, created_at__lt=end_at
        )
        .values("status", "rule", "kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        sent = row["status"] in (S.SENT, S.DELIVERED, S.READ)
        outcome = "sent" if sent else row["status"]
        entry = table.setdefault(
            (outcome, row["rule"]),
            {"outcome": outcome, "rule": row["rule"], "service": 0, "marketing": 0, "total": 0},
        )
        entry[row["kind"]] = entry.get(row["kind"], 0) + row["n"]
        entry["total"] += row["n"]
    return sorted(table.values(), key=lambda e: (-e["total"], e["outcome"], e["rule"]))


# --- Bulk enqueue and single-message confirmation (appended for journeys, issue 7) ----------


@dataclass
class OutboxItem:
    """The arguments of `enqueue_message` for one message of a bulk `enqueue_messages`."""

    brand: Brand
    customer: Customer
    account: CarrierAccount
    kind: str
    content: Any
    cause: str
    idempotency_key: str
    due_at: dt.datetime | None = None
    cause_ref: str = ""


def enqueue_messages(items: Sequence[OutboxItem]) -> list[int]:
    """`enqueue_message` for many messages in the caller's transaction: the same checks per
    item and one multi-row insert that skips the keys already written (`INSERT … ON
    CONFLICT DO NOTHING`, no model instances: `core.bulk.insert_rows`), then one query for
    the ids of those skipped keys, if any (a replay). The same idempotency key returns the
    message already written. Returns the message ids in item order. A key being written by a
    concurrent transaction makes the insert wait for it; once it commits, its message is the
    one returned."""
    now = clock.now()
    rows: list[tuple[Any, ...]] = []
    causes = _CAUSES
    for item in items:
        brand_id = item.brand.pk
        if item.customer.brand_id != brand_id or item.account.brand_id != brand_id:
            raise ValidationFailed(
                N_("The customer and the account must belong to the brand."), field="customer_id"
            )
        if item.cause not in causes:
            raise ValidationFailed(
                N_("Unknown cause {cause!r}."), params={"cause": item.cause}, field="cause"
            )
        key = (item.idempotency_key or "").strip()
        if not key or len(key) > 200:
            raise ValidationFailed(
                N_("idempotency_key is required (1–200 characters)."), field="idempotency_key"
            )
        body = _plain_text(item.content) or clean_content(item.content)
        values = list(_OUTBOX_DEFAULTS)
        for name, value in (
            ("brand_id", brand_id),
            ("customer_id", item.customer.pk),
            ("account_id", item.account.pk),
            ("carrier", item.account.kind),
            ("kind", _kind(item.kind)),
            ("content", body),
            ("content_hash", content_hash(body)),
            ("cause", item.cause),
            ("cause_ref", item.cause_ref[:120]),
            ("idempotency_key", key),
            ("due_at", item.due_at or now),
            ("created_at", now),
        ):
            values[_OUTBOX_AT[name]] = value
        rows.append(tuple(values))
    key_at, brand_at = _OUTBOX_AT["idempotency_key"], _OUTBOX_AT["brand_id"]
    fresh: dict[tuple[int, str], tuple[Any, ...]] = {}
    for row in rows:  # a key twice in the items is written once
        fresh.setdefault((row[brand_at], row[key_at]), row)
    ids: dict[tuple[int, str], int] = {}
    if fresh:
        with transaction.atomic():
            written = insert_rows(
                Message._meta.db_table,
                _OUTBOX_SQL_COLUMNS,
                list(fresh.values()),
                returning=("id", "brand_id", "idempotency_key"),
                conflict=("brand_id", "idempotency_key"),
            )
        for pk, brand_id, key in written:
            ids[(brand_id, key)] = pk
    by_brand: dict[int, list[str]] = {}
    for brand_id, key in fresh:  # written before (a replay) or by a concurrent transaction
        if (brand_id, key) not in ids:
            by_brand.setdefault(brand_id, []).append(key)
    for brand_id, keys in by_brand.items():
        for start in range(0, len(keys), 500):
            for pk, found in Message.objects.filter(
                brand_id=brand_id, idempotency_key__in=keys[start : start + 500]
            ).values_list("pk", "idempotency_key"):
                ids[(brand_id, found)] = pk
    return [ids[(row[brand_at], row[key_at])] for row in rows]


def _plain_text(content: Any) -> dict[str, Any] | None:
    """What `clean_content` makes of a plain text message ({"text": "…"} with an optional
    "type": "text"), without building the schema: journeys write one per step. None for
    anything else (the schema checks it)."""
    if type(content) is not dict or not content.keys() <= {"type", "text"}:
        return None
    text = content.get("text")
    if content.get("type", "text") != "text" or type(text) is not str:
        return None
    text = text.strip()
    return {"text": text} if 0 < len(text) <= 4000 else None


def _outbox_columns() -> list[tuple[str, Any]]:
    """(attname, default) of every Message column but the id."""
    return [
        (f.attname, str(d) if isinstance(d := f.get_default(), str) else d)
        for f in Message._meta.concrete_fields
        if not f.primary_key
    ]


_OUTBOX_COLUMNS = _outbox_columns()
_OUTBOX_AT = {name: n for n, (name, _) in enumerate(_OUTBOX_COLUMNS)}
_OUTBOX_DEFAULTS = tuple(default for _, default in _OUTBOX_COLUMNS)
_OUTBOX_SQL_COLUMNS = model_columns(Message, list(_OUTBOX_AT))
_CAUSES = frozenset(Message.Cause.values)


def confirm_message(*, message_id: int, at: dt.datetime | None = None) -> bool:
    """Staff confirmed one message on the carrier (a WeCom mass-message task with a single
    recipient, e.g. a journey step's): it counts as sent and `message.sent` is stored, as
    `confirm_broadcast` does for a broadcast. False when it was not waiting for confirmation."""
    now = at or clock.now()
    with transaction.atomic():
        m = (
            Message.objects.select_for_update()
            .filter(pk=message_id, status=S.PENDING_CONFIRMATION)
            .first()
        )
        if m is None:
            return False
        Message.objects.filter(pk=m.pk).update(status=S.SENT, sent_at=now, claimed_until=None)
        ingest_events(brand=Brand.objects.get(pk=m.brand_id), items=[delivery.sent_event(m, now)])
    return True


# --- Inbound, set-based ---------------------------------------------------------------------


def handle_inbound_batch(facts: Sequence[inbound.InboundFact]) -> None:
    """The batch form of `handle_inbound` (carriers.inbound calls it with a callback's new
    facts): the same effect as `handle_inbound` on each fact in order. Consecutive adds on
    one account are stored with one `ingest_events` call, their contacts and welcome rows
    looked up together; consecutive replies, clicks and group changes on one account
    likewise, and consecutive deletions (`carriers.mark_contacts_lost`, one ingest).
    Receipts, edits and unsubscribe replies go one by one."""
    accounts: dict[int, CarrierAccount] = {}
    i = 0
    while i < len(facts):
        fact = facts[i]
        kind = _batch_kind(fact, accounts)
        j = i + 1
        while (
            kind is not None
            and j < len(facts)
            and facts[j].account_id == fact.account_id
            and _batch_kind(facts[j], accounts) == kind
        ):
            j += 1
        if kind == "added":
            _adds(facts[i:j], accounts[fact.account_id])  # type: ignore[arg-type]
        elif kind == "sender":
            _sender_events(facts[i:j], accounts[fact.account_id])  # type: ignore[arg-type]
        elif kind == "deleted":
            _deletions(facts[i:j], accounts[fact.account_id])  # type: ignore[arg-type]
        else:
            handle_inbound(fact)
        i = j


def _batch_kind(fact: inbound.InboundFact, accounts: dict[int, CarrierAccount]) -> str | None:
    if fact.account_id not in accounts:
        accounts[fact.account_id] = CarrierAccount.objects.select_related("brand").get(
            pk=fact.account_id
        )
    if isinstance(fact, inbound.ContactAdded):
        return "added"
    if isinstance(fact, inbound.ContactDeleted):
        return "deleted"
    if isinstance(fact, inbound.MessageReceived):
        policy = delivery.policy_for(fact.brand_id)
        keywords = unsubscribe_keywords(accounts[fact.account_id], policy)
        return None if is_unsubscribe(fact.text, keywords) else "sender"
    if isinstance(fact, inbound.GroupJoined | inbound.GroupLeft | inbound.LinkClicked):
        return "sender"
    return None


def _adds(facts: Sequence[inbound.ContactAdded], account: CarrierAccount) -> None:
    welcomes = _welcomes(facts, account)
    results = ingest_in_batches(
        brand=account.brand, items=[_added_item(fact, account) for fact in facts]
    )
    ids = [_added_customer(result) for result in results]
    found = Customer.objects.in_bulk(ids)
    carriers.record_contacts(
        account_id=account.pk,
        brand_id=account.brand_id,
        adds=[
            (fact.external_id, found[customer_id], fact.state, fact.occurred_at)
            for fact, customer_id in zip(facts, ids, strict=True)
        ],
    )
    rows = []
    for fact, welcome, customer_id in zip(facts, welcomes, ids, strict=True):
        if welcome is not None:
            rows.append(_welcome_message(fact, account, found[customer_id], welcome))
    keys = {row["idempotency_key"] for row in rows}
    have = set(
        Message.objects.filter(brand=account.brand, idempotency_key__in=keys).values_list(
            "idempotency_key", flat=True
        )
    )
    fresh: dict[str, Message] = {}
    for row in rows:
        if row["idempotency_key"] not in have:
            fresh.setdefault(
                row["idempotency_key"],
                Message(brand=row["brand"], idempotency_key=row["idempotency_key"],
                        **row["defaults"]),
            )  # fmt: skip
    Message.objects.bulk_create(list(fresh.values()))
    inbound.contacts_added(list(zip(facts, ids, strict=True)))


def _deletions(facts: Sequence[inbound.ContactDeleted], account: CarrierAccount) -> None:
    contacts = carriers.mark_contacts_lost(
        account_id=account.pk, lost=[(f.external_id, f.by, f.occurred_at) for f in facts]
    )
    items = [
        {"source": "carrier", **_deleted_item(fact, account, contact)}
        for fact, contact in zip(facts, contacts, strict=True)
        if contact is not None
    ]
    for result in ingest_in_batches(brand=account.brand, items=items):
        if result.status == "rejected":
            assert result.error is not None
            raise ValidationFailed(str(result.error["message"]), field=result.error["field"])


def _sender_events(facts: Sequence[SenderFact], account: CarrierAccount) -> None:
    hashes = {carriers.contact_hash(account.pk, f.external_id): f.external_id for f in facts}
    contacts = {
        hashes[c.external_hash]: c.customer
        for c in CarrierContact.objects.filter(
            account=account, external_hash__in=list(hashes)
        ).select_related("customer")
    }
    items = []
    for fact in facts:
        sender = contacts.get(fact.external_id)
        if sender is None or sender.merged_into_id is not None:  # SMS, email, a merge
            sender = carriers.customer_for_sender(account=account, external_id=fact.external_id)
        if sender is not None:
            items.append({"source": "carrier", **_sender_item(fact, account, sender)})
    for result in ingest_in_batches(brand=account.brand, items=items):
        if result.status == "rejected":
            assert result.error is not None
            raise ValidationFailed(str(result.error["message"]), field=result.error["field"])
