"""Services of the carriers app: connecting accounts (encrypted credentials, status and last
error), receiving verified callbacks (replays handled once), and the contacts each account
holds. Messaging (floor 4) calls these; this floor never imports it (it reaches messaging
through the sinks registered in yutang.carriers.inbound)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from yutang.carriers import inbound
from yutang.carriers.base import (
    AccountConfig,
    CallbackRejected,
    CallbackRequest,
    Capability,
    Carrier,
    CarrierError,
    build_adapter,
)
from yutang.carriers.models import CarrierConnection, CarrierContact, InboundReceipt
from yutang.core import audit, bulk, clock, crypto
from yutang.core.errors import N_, NotFound, ValidationFailed
from yutang.core.models import CarrierAccount, Staff
from yutang.core.permissions import Action
from yutang.customers.models import Customer, Identity

logger = logging.getLogger("yutang.carriers")

#: Non-secret settings and secret credentials each adapter understands (docs/messaging.md).
SETTINGS_KEYS: dict[str, set[str]] = {
    "sandbox": {"confirm_broadcasts"},
    "webhook": {"url"},
    "sms": {"base_url", "sign_name", "templates", "opt_out_text", "opt_out_keywords"},
    "email": {"host", "port", "use_tls", "from_email", "unsubscribe_mailto"},
    "wecom": {"corp_id", "base_url", "agent_id"},
}
CREDENTIAL_KEYS: dict[str, set[str]] = {
    "sandbox": {"callback_secret"},
    "webhook": {"signing_secret", "callback_secret"},
    "sms": {"api_secret", "callback_secret"},
    "email": {"username", "password", "callback_secret"},
    "wecom": {"secret", "token", "encoding_aes_key"},
}


def account_config(
    account: CarrierAccount, connection: CarrierConnection | None = None
) -> AccountConfig:
    if connection is None:
        connection = CarrierConnection.objects.filter(account=account).first()
    return AccountConfig(
        brand_id=account.brand_id,
        account_id=account.pk,
        kind=account.kind,
        external_id=account.external_id,
        credentials=connection.credentials if connection else {},
        settings=connection.settings if connection else {},
    )


def adapter_for(account: CarrierAccount) -> Carrier:
    return build_adapter(account_config(account))


def _account(actor: Staff, account_id: int, action: Action) -> CarrierAccount:
    account = CarrierAccount.objects.for_actor(actor, action).filter(pk=account_id).first()
    if account is None:
        raise NotFound(
            N_("No such carrier account: {account_id}."),
            params={"account_id": account_id},
            field="account_id",
        )
    return account


def _check_keys(
    kind: str, values: Mapping[str, Any], allowed: dict[str, set[str]], field: str
) -> None:
    if kind not in allowed:
        raise ValidationFailed(
            N_("Yutang has no adapter for {kind!r} accounts yet."),
            params={"kind": kind},
            field="kind",
        )
    for key, value in values.items():
        if key not in allowed[kind]:
            known = ", ".join(sorted(allowed[kind])) or "none"
            raise ValidationFailed(
                N_("Unknown {field} {key!r} for {kind} (known: {known})."),
                params={"field": field, "key": key, "kind": kind, "known": known},
                field=f"{field}.{key}",
            )
        if key == "opt_out_keywords":
            if not isinstance(value, list) or not all(
                isinstance(k, str) and 0 < len(k.strip()) <= 20 for k in value
            ):
                raise ValidationFailed(
                    N_("{field}.{key} must be a list of replies of 1 to 20 characters."),
                    params={"field": field, "key": key},
                    field=f"{field}.{key}",
                )
            continue
        if key != "templates" and not isinstance(value, str | int | bool):
            raise ValidationFailed(
                N_("{field}.{key} must be text, a number or true/false."),
                params={"field": field, "key": key},
                field=f"{field}.{key}",
            )


def _check_opt_out(settings: Mapping[str, Any]) -> None:
    """An SMS account's opt-out text must name the replies Yutang obeys: each keyword in it,
    and keywords given when the text is not the default one."""
    from yutang.carriers.adapters.sms import opt_out_settings

    text, keywords = opt_out_settings(settings)
    if not keywords:
        raise ValidationFailed(
            N_("settings.opt_out_keywords: give the replies that opt out, as the text names them."),
            field="settings.opt_out_keywords",
        )
    for keyword in keywords:
        if keyword.strip().casefold() not in text.casefold():
            raise ValidationFailed(
                N_("settings.opt_out_keywords: {keyword!r} does not appear in opt_out_text."),
                params={"keyword": keyword},
                field="settings.opt_out_keywords",
            )


def connect_carrier(
    *,
    actor: Staff | None,
    account: CarrierAccount | None = None,
    account_id: int | None = None,
    credentials: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> CarrierConnection:
    """Store an account's credentials (encrypted) and settings; the status returns to "not
    checked" until `test_connection`. Credentials given replace the stored ones key by key."""
    if actor is not None:
        assert account_id is not None
        account = _account(actor, account_id, Action.CARRIER_ACCOUNT_MANAGE)
    assert account is not None
    _check_keys(account.kind, settings, SETTINGS_KEYS, "settings")
    _check_keys(account.kind, credentials, CREDENTIAL_KEYS, "credentials")
    if (
        account.kind == "webhook"
        and settings.get("url")
        and not str(settings["url"]).startswith(("http://", "https://"))
    ):
        raise ValidationFailed(N_("settings.url must be an http(s) URL."), field="settings.url")
    with transaction.atomic():
        connection = CarrierConnection.objects.select_for_update().filter(
            account=account
        ).first() or CarrierConnection(account=account, brand_id=account.brand_id)
        if account.kind == "sms":
            _check_opt_out({**connection.settings, **settings})
        merged = {**connection.credentials, **credentials}
        connection.set_credentials(merged)
        connection.settings = {**connection.settings, **settings}
        connection.status = CarrierConnection.Status.UNKNOWN
        connection.last_error = ""
        connection.updated_at = clock.now()
        connection.save()
        audit.record(
            brand=account.brand,
            actor=actor,
            action="carrier.connect",
            target=account,
            changes={"settings": sorted(settings), "credentials": sorted(credentials)},
        )
    return connection


def test_connection(
    *, actor: Staff | None, account_id: int, account: CarrierAccount | None = None
) -> CarrierConnection:
    """Ask the adapter to reach its carrier; record connected or the error."""
    if account is None:
        assert actor is not None
        account = _account(actor, account_id, Action.CARRIER_ACCOUNT_MANAGE)
    connection = CarrierConnection.objects.filter(account=account).first()
    if connection is None:
        connection = connect_carrier(actor=None, account=account, credentials={}, settings={})
    try:
        build_adapter(account_config(account, connection)).check_connection()
        status, error = CarrierConnection.Status.CONNECTED, ""
    except CarrierError as exc:
        status, error = CarrierConnection.Status.ERROR, exc.reason[:500]
    now = clock.now()
    CarrierConnection.objects.filter(pk=connection.pk).update(
        status=status, last_error=error, checked_at=now, updated_at=now
    )
    connection.refresh_from_db()
    return connection


def record_send_error(*, account_id: int, reason: str) -> None:
    """Delivery failures show on the carrier settings page as the last error."""
    CarrierConnection.objects.filter(account_id=account_id).update(
        status=CarrierConnection.Status.ERROR, last_error=reason[:500]
    )


@dataclass(frozen=True)
class AccountStatus:
    account: CarrierAccount
    status: str
    last_error: str
    checked_at: Any
    capabilities: list[str]
    configured: list[str]


def list_carriers(*, actor: Staff) -> list[AccountStatus]:
    accounts = CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW).order_by("id")
    connections = {
        c.account_id: c for c in CarrierConnection.objects.filter(account__in=list(accounts))
    }
    out = []
    for account in accounts:
        c = connections.get(account.pk)
        try:
            caps = sorted(build_adapter(account_config(account, c)).capabilities)
        except CarrierError:
            caps = []
        out.append(
            AccountStatus(
                account=account,
                status=c.status if c else CarrierConnection.Status.UNKNOWN,
                last_error=c.last_error if c else "",
                checked_at=c.checked_at if c else None,
                capabilities=[str(x) for x in caps],
                configured=sorted(c.settings) if c else [],
            )
        )
    return out


# --- Inbound ----------------------------------------------------------------------------------


def receive_callback(*, account_id: int, request: CallbackRequest) -> int:
    """Verify and handle one inbound callback for an account. Returns how many facts were new
    (see `answer_callback` for the carrier's expected reply)."""
    return answer_callback(account_id=account_id, request=request)[0]


def answer_callback(*, account_id: int, request: CallbackRequest) -> tuple[int, bytes]:
    """Verify and handle one inbound callback; returns (new facts, the reply the carrier
    expects — e.g. WeCom's decrypted echo when it checks the callback URL).

    Raises CallbackRejected (nothing stored) when verification fails. All facts of a callback
    are handled in one transaction with their receipts: a failing sink rolls the whole
    callback back, so the carrier's retry sees it fresh; a replay finds the receipts and
    stops."""
    account = CarrierAccount.objects.filter(pk=account_id, is_active=True).first()
    if account is None:
        raise CallbackRejected("unknown or inactive carrier account")
    adapter = build_adapter(account_config(account))
    parsed = adapter.parse_callback(request)
    return publish_facts(account=account, facts=parsed.facts), parsed.reply


def publish_facts(
    *, account: CarrierAccount, facts: Iterable[tuple[str, inbound.InboundFact]]
) -> int:
    """Publish a callback's facts that were not handled before, in order; returns how many.
    Each fact's receipt (by its dedupe key, cut to the column's 200 characters) is written
    with one `INSERT … ON CONFLICT (account_id, dedupe_key) DO NOTHING RETURNING` for the
    whole callback: a key already stored is a replay, and a key repeated inside the callback
    counts once (the first). One statement instead of a savepoint and an insert per fact."""
    first: dict[str, inbound.InboundFact] = {}
    for key, fact in facts:
        first.setdefault(key[:200], fact)
    with transaction.atomic():
        now = clock.now()
        written = {
            key
            for (key,) in bulk.insert_rows(
                InboundReceipt._meta.db_table,
                bulk.model_columns(
                    InboundReceipt,
                    ["brand_id", "account_id", "dedupe_key", "kind", "received_at"],
                ),
                [
                    (account.brand_id, account.pk, key, type(fact).__name__, now)
                    for key, fact in first.items()
                ],
                conflict=("account_id", "dedupe_key"),
                returning=("dedupe_key",),
            )
        }
        fresh = [fact for key, fact in first.items() if key in written]
        inbound.publish(fresh)
    return len(fresh)


# --- Contacts ---------------------------------------------------------------------------------


def contact_hash(account_id: int, external_id: str) -> str:
    return crypto.hash_pii(f"carrier-contact:{account_id}:{external_id}")


def record_contact(
    *, account_id: int, brand_id: int, external_id: str, customer: Customer, state: str, at: Any
) -> CarrierContact:
    """The customer holds this account (again): active, linked to the resolved customer."""
    h = contact_hash(account_id, external_id)
    contact, created = CarrierContact.objects.get_or_create(
        account_id=account_id,
        external_hash=h,
        defaults={
            "brand_id": brand_id,
            "customer": customer,
            "state": state,
            "added_at": at,
            "external_encrypted": crypto.encrypt_pii(external_id),
        },
    )
    if not created:
        _reactivate(contact.pk, customer=customer, state=state, at=at)
        contact.refresh_from_db()
    return contact


def _reactivate(pk: int, *, customer: Customer, state: str, at: Any) -> None:
    """A contact the account held before is held again (record_contact, record_contacts)."""
    CarrierContact.objects.filter(pk=pk).update(
        customer=customer,
        status=CarrierContact.Status.ACTIVE,
        state=state,
        added_at=at,
        lost_at=None,
        lost_by="",
    )


def find_contact(*, account_id: int, external_id: str) -> CarrierContact | None:
    return (
        CarrierContact.objects.filter(
            account_id=account_id, external_hash=contact_hash(account_id, external_id)
        )
        .select_related("customer")
        .first()
    )


def mark_contact_lost(
    *, account_id: int, external_id: str, by: str, at: Any
) -> CarrierContact | None:
    contact = find_contact(account_id=account_id, external_id=external_id)
    if contact is None:
        return None
    CarrierContact.objects.filter(pk=contact.pk).update(
        status=CarrierContact.Status.LOST, lost_at=at, lost_by=by
    )
    contact.refresh_from_db()
    return contact


def note_contact(*, contact: CarrierContact, remark: str, description: str) -> None:
    """What the member noted about the contact on the carrier (WeCom remark, description)."""
    CarrierContact.objects.filter(pk=contact.pk).update(
        remark=remark[:120], description=description[:300]
    )


IDENTITY_FOR_KIND = {"sms": "phone", "email": "email"}


def recipients(
    *, account: CarrierAccount, capabilities: frozenset[Capability], customer_ids: Iterable[int]
) -> dict[int, str]:
    """Where each customer is reached through this account; a customer missing from the answer
    does not hold this carrier (deleted the contact, never added it, or has no address)."""
    found = sealed_recipients(account=account, capabilities=capabilities, customer_ids=customer_ids)
    return {cid: open_address(sealed) for cid, sealed in found.items()}


#: An address as `sealed_recipients` gives it: (True, ciphertext) or (False, plain text).
Sealed = tuple[bool, str]


def open_address(sealed: Sealed) -> str:
    encrypted, value = sealed
    return crypto.decrypt_pii(value) if encrypted else value


def sealed_recipients(
    *, account: CarrierAccount, capabilities: frozenset[Capability], customer_ids: Iterable[int]
) -> dict[int, Sealed]:
    """`recipients` without decrypting: who holds this account, each address still sealed
    (`open_address` opens one). The delivery gate needs only who holds it; it opens the
    addresses of the messages that pass."""
    ids = list(set(customer_ids))
    if Capability.CONTACT_BASED in capabilities:
        rows = bulk.lookup(  # the ids as one array, bound on the server (a batch is 500)
            CarrierContact._meta.db_table,
            ["customer_id", "external_encrypted"],
            where={"account_id": account.pk, "status": CarrierContact.Status.ACTIVE.value},
            key="customer_id",
            values=ids,
        )
        return {cid: (True, enc) for cid, enc in rows}
    lost = set(
        CarrierContact.objects.filter(
            account=account, customer_id__in=ids, status=CarrierContact.Status.LOST
        ).values_list("customer_id", flat=True)
    )
    kind = IDENTITY_FOR_KIND.get(account.kind)
    if kind is None:  # webhook: the brand's system resolves the customer itself
        return {cid: (False, str(cid)) for cid in ids if cid not in lost}
    found: dict[int, Sealed] = {}
    for cid, enc in (
        Identity.objects.filter(customer_id__in=ids, kind=kind)
        .order_by("id")
        .values_list("customer_id", "value_encrypted")
    ):
        if cid not in lost and cid not in found:
            found[cid] = (True, enc)
    return found


def customer_for_sender(*, account: CarrierAccount, external_id: str) -> Customer | None:
    """The customer behind an inbound sender: a contact of the account, or for SMS and email
    the customer whose phone or email it is."""
    from yutang.customers import services as customers
    from yutang.customers.identities import normalize_identity

    contact = find_contact(account_id=account.pk, external_id=external_id)
    if contact is not None:
        return customers.survivor(contact.customer)
    kind = IDENTITY_FOR_KIND.get(account.kind)
    if kind is None:
        return None
    try:
        identity = normalize_identity(kind, external_id, "")
    except ValidationFailed:
        return None
    found = customers.find_by_identity(brand=account.brand, identity=identity)
    return customers.survivor(found) if found else None


def record_contacts(
    *,
    account_id: int,
    brand_id: int,
    adds: list[tuple[str, Customer, str, Any]],
) -> None:
    """The batch form of `record_contact` for a run of adds on one account — (external id,
    customer, state, added at) each, in order — with the same rows: the contacts the account
    already holds are read in one query, the new ones inserted in one statement, the held
    ones updated as `record_contact` updates them. A run naming one contact twice, or an
    insert that meets a concurrent one, goes one by one."""

    def one_by_one() -> None:
        for external_id, customer, state, at in adds:
            record_contact(
                account_id=account_id, brand_id=brand_id, external_id=external_id,
                customer=customer, state=state, at=at,
            )  # fmt: skip

    hashes = [contact_hash(account_id, external_id) for external_id, *_rest in adds]
    if len(set(hashes)) < len(hashes):
        one_by_one()
        return
    held = dict(
        CarrierContact.objects.filter(account_id=account_id, external_hash__in=hashes).values_list(
            "external_hash", "pk"
        )
    )
    fresh = [
        CarrierContact(
            account_id=account_id,
            external_hash=h,
            brand_id=brand_id,
            customer=customer,
            state=state,
            added_at=at,
            external_encrypted=crypto.encrypt_pii(external_id),
        )
        for h, (external_id, customer, state, at) in zip(hashes, adds, strict=True)
        if h not in held
    ]
    try:
        with transaction.atomic():
            CarrierContact.objects.bulk_create(fresh)
    except IntegrityError:
        one_by_one()
        return
    for h, (_external_id, customer, state, at) in zip(hashes, adds, strict=True):
        if h in held:
            _reactivate(held[h], customer=customer, state=state, at=at)


def mark_contacts_lost(
    *, account_id: int, lost: list[tuple[str, str, Any]]
) -> list[CarrierContact | None]:
    """The batch form of `mark_contact_lost` for a run of deletions on one account —
    (external id, by, at) each, in order — with the same rows and answers: the contacts are
    read in one query and marked lost in one statement (`core.bulk.update_rows`). A run
    naming one contact twice goes one by one."""
    hashes = [contact_hash(account_id, external_id) for external_id, _by, _at in lost]
    if len(set(hashes)) < len(hashes):
        return [
            mark_contact_lost(account_id=account_id, external_id=external_id, by=by, at=at)
            for external_id, by, at in lost
        ]
    found = {
        c.external_hash: c
        for c in CarrierContact.objects.filter(
            account_id=account_id, external_hash__in=hashes
        ).select_related("customer")
    }
    changed = []
    for h, (_external_id, by, at) in zip(hashes, lost, strict=True):
        contact = found.get(h)
        if contact is not None:
            contact.status, contact.lost_at, contact.lost_by = CarrierContact.Status.LOST, at, by
            changed.append(contact)
    bulk.update_rows(CarrierContact, changed, ["status", "lost_at", "lost_by"])
    return [found.get(h) for h in hashes]
