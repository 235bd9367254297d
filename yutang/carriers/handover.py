"""Customer handover (在职继承 / 离职继承): move a staff member's WeCom customers to another.

`start_handover` writes the request and one item per customer; the `carriers.handover` worker
loop does the WeCom work:

1. queued items go to WeCom 100 per call (`transfer_customer`, or
   `resigned/transfer_customer` for a member who left), with the optional message the
   customer sees; each customer's answer becomes the item's status: accepted → `waiting`,
   40128 (transferred twice in 90 days) → `skipped`, 40129 (one already waiting) → `failed`
   unless an earlier try of ours made it (a worker killed between WeCom's answer and our
   record), 84061 → `failed`;
2. waiting items are checked with `transfer_result` once the 24-hour takeover time has passed
   (hourly after that): taken over → the contact moves to the new member's account, the
   customer's owner staff follows when it was the old member, and the old contact is
   closed as `lost` by ``transfer`` (not a deletion); refused → `refused`; the member at their
   customer limit → `failed`.

WeCom's callbacks say the same sooner: ``transfer_fail`` (refused, limit) and
``del_external_contact`` with ``DELETE_BY_TRANSFER`` (done) settle the waiting item at once.
Before asking WeCom, a customer transferred in service twice in the last 90 days (counted
from our own records) is skipped, as is one whose handover is already under way.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q

from yutang.carriers import inbound
from yutang.carriers import services as carriers
from yutang.carriers.base import CarrierError
from yutang.carriers.models import CarrierContact, ContactCorpTag, Handover, HandoverItem
from yutang.core import audit, clock
from yutang.core.errors import N_, NotFound, ValidationFailed
from yutang.core.models import CarrierAccount, Staff
from yutang.core.permissions import Action, require
from yutang.customers import services as customers
from yutang.customers.models import Customer

if TYPE_CHECKING:
    from yutang.carriers.wecom.client import WeComClient

logger = logging.getLogger("yutang.carriers")

S = HandoverItem.Status
PER_CALL = 100  # WeCom: at most 100 customers per transfer call
WINDOW = dt.timedelta(days=90)
IN_SERVICE_PER_WINDOW = 2
TAKEOVER_AFTER = dt.timedelta(hours=24)
CHECK_EVERY = dt.timedelta(hours=1)
RETRY_AFTER = dt.timedelta(minutes=10)
LOOP_LEASE = "carriers.handover"
LOOP_LEASE_TTL = dt.timedelta(minutes=5)
#: transfer_result's status per customer.
RESULT = {1: S.TAKEN_OVER, 2: S.WAITING, 3: S.REFUSED, 4: S.FAILED, 5: S.FAILED}
#: transfer_customer's errcode per customer, when not accepted.
ERRCODE_OUTCOME = {
    40128: (S.SKIPPED, "WeCom: transferred too often (40128, 2 per 90 days)"),
    40129: (S.FAILED, "WeCom: another transfer is waiting for takeover (40129)"),
    84061: (S.FAILED, "WeCom: no longer a contact of this member (84061)"),
}
RESULT_REASON = {
    3: "the customer refused the new member (WeCom status 3)",
    4: "the member taking over has reached their customer limit (WeCom status 4)",
    5: "WeCom has no record of this transfer (status 5)",
}


def _account(actor: Staff, account_id: int, name: str) -> CarrierAccount:
    account = (
        CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_MANAGE)
        .filter(pk=account_id, kind="wecom")
        .first()
    )
    if account is None:
        raise NotFound(
            N_("No such WeCom account: {account_id}."),
            params={"account_id": account_id},
            field=name,
        )
    return account


def start_handover(
    *,
    actor: Staff,
    from_account_id: int,
    to_account_id: int,
    customer_ids: Sequence[int] | None = None,
    kind: str = Handover.Kind.IN_SERVICE,
    message: str = "",
) -> Handover:
    """Hand the customers of one WeCom account (all its active contacts, or those given) to
    another member. The WeCom calls happen in the worker (`run_handovers`)."""
    require(actor, Action.CARRIER_ACCOUNT_MANAGE)
    if kind not in Handover.Kind.values:
        raise ValidationFailed(N_("kind must be in_service or resigned."), field="kind")
    source = _account(actor, from_account_id, "from_account_id")
    target = _account(actor, to_account_id, "to_account_id")
    if source.pk == target.pk:
        raise ValidationFailed(
            N_("Hand the customers to another member's account."), field="to_account_id"
        )
    if not target.is_active:
        raise ValidationFailed(N_("The account taking over must be active."), field="to_account_id")
    if len(message) > 200:
        raise ValidationFailed(N_("message is at most 200 characters."), field="message")
    contacts = CarrierContact.objects.filter(
        account=source, status=CarrierContact.Status.ACTIVE
    ).order_by("id")
    if customer_ids is not None:
        wanted = list(dict.fromkeys(customer_ids))
        by_customer = {c.customer_id: c for c in contacts.filter(customer_id__in=wanted)}
        for n, cid in enumerate(wanted):
            if cid not in by_customer:
                raise ValidationFailed(
                    N_("Customer {cid} is not an active contact of this account."),
                    params={"cid": cid},
                    field=f"customer_ids.{n}",
                )
        chosen = [by_customer[cid] for cid in wanted]
    else:
        chosen = list(contacts)
    if not chosen:
        raise ValidationFailed(
            N_("This account has no active contacts to hand over."), field="customer_ids"
        )
    now = clock.now()
    ids = [c.customer_id for c in chosen]
    recent = Counter(
        HandoverItem.objects.filter(
            customer_id__in=ids,
            handover__kind=Handover.Kind.IN_SERVICE,
            status__in=[S.WAITING, S.TAKEN_OVER],
            requested_at__gte=now - WINDOW,
        ).values_list("customer_id", flat=True)
    )
    busy = set(
        HandoverItem.objects.filter(
            contact__in=chosen, status__in=[S.QUEUED, S.WAITING]
        ).values_list("contact_id", flat=True)
    )
    with transaction.atomic():
        handover = Handover.objects.create(
            brand_id=source.brand_id, kind=kind, from_account=source, to_account=target,
            created_by=actor, message=message, created_at=now,
        )  # fmt: skip
        items = []
        for c in chosen:
            item = HandoverItem(handover=handover, brand_id=source.brand_id,
                                customer_id=c.customer_id, contact=c)  # fmt: skip
            if c.pk in busy:
                item.status, item.reason = S.SKIPPED, "a handover of this customer is under way"
            elif kind == Handover.Kind.IN_SERVICE and recent[c.customer_id] >= (
                IN_SERVICE_PER_WINDOW
            ):
                item.status = S.SKIPPED
                item.reason = "transferred in service twice in 90 days (WeCom allows 2)"
            if item.status == S.SKIPPED:
                item.finished_at = now
            items.append(item)
        HandoverItem.objects.bulk_create(items)
        audit.record(
            brand=source.brand, actor=actor, action="carrier.handover", target=source,
            changes={"to_account": target.pk, "customers": len(items), "kind": kind},
        )  # fmt: skip
    return handover


def handover_summary(handover: Handover) -> dict[str, Any]:
    counts = Counter(handover.items.values_list("status", flat=True))
    return {
        "id": handover.pk,
        "kind": handover.kind,
        "from_account_id": handover.from_account_id,
        "to_account_id": handover.to_account_id,
        "created_at": handover.created_at,
        "counts": {status: counts.get(status, 0) for status in S.values},
    }


def get_handover(*, actor: Staff, handover_id: int) -> Handover:
    found = (
        Handover.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW)
        .filter(pk=handover_id)
        .select_related("from_account", "to_account")
        .first()
    )
    if found is None:
        raise NotFound(
            N_("No such handover: {handover_id}."),
            params={"handover_id": handover_id},
            field="handover_id",
        )
    return found


def list_handovers(*, actor: Staff, limit: int = 50) -> list[Handover]:
    return list(
        Handover.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW).select_related(
            "from_account", "to_account"
        )[:limit]
    )


# --- The worker ----------------------------------------------------------------------------------


def _client(brand_id: int) -> WeComClient:
    from yutang.carriers.adapters.wecom import brand_adapter

    adapter = brand_adapter(brand_id)
    if adapter is None:
        raise CarrierError("no WeCom account is connected", transient=False)
    return adapter.client()


def _wecom(call: Any, **kwargs: Any) -> Any:
    from yutang.carriers.adapters.wecom import _as_carrier_error
    from yutang.carriers.wecom.errors import WeComError

    try:
        return call(**kwargs)
    except WeComError as exc:
        raise _as_carrier_error(exc) from exc


def request_transfers(*, now: dt.datetime, limit: int = 1000) -> int:
    """Send queued items to WeCom, 100 per call. Returns items answered."""
    due = Q(checked_at__isnull=True) | Q(checked_at__lte=now - RETRY_AFTER)
    items = list(
        HandoverItem.objects.filter(due, status=S.QUEUED)
        .select_related("handover__from_account", "handover__to_account", "contact")
        .order_by("id")[:limit]
    )
    groups: dict[int, list[HandoverItem]] = defaultdict(list)
    for item in items:
        groups[item.handover_id].append(item)
    answered = 0
    for group in groups.values():
        handover = group[0].handover
        for start in range(0, len(group), PER_CALL):
            chunk = group[start : start + PER_CALL]
            answered += _request_chunk(handover, chunk, now)
    return answered


def _request_chunk(handover: Handover, chunk: list[HandoverItem], now: dt.datetime) -> int:
    tried_before = {i.pk for i in chunk if i.checked_at is not None}
    # Marked before the call: a retry after a crash knows WeCom may already have it.
    HandoverItem.objects.filter(pk__in=[i.pk for i in chunk]).update(checked_at=now)
    by_external = {i.contact.external_id: i for i in chunk}
    call = (
        "transfer_customer"
        if handover.kind == Handover.Kind.IN_SERVICE
        else ("resigned_transfer_customer")
    )
    args: dict[str, Any] = {
        "handover_userid": handover.from_account.external_id,
        "takeover_userid": handover.to_account.external_id,
        "external_userid": list(by_external),
    }
    if handover.kind == Handover.Kind.IN_SERVICE and handover.message:
        args["transfer_success_msg"] = handover.message
    try:
        client = _client(handover.brand_id)
        outcomes = _wecom(getattr(client, call), **args)
    except CarrierError as exc:
        if exc.transient:
            return 0  # tried again after RETRY_AFTER
        HandoverItem.objects.filter(pk__in=[i.pk for i in chunk]).update(
            status=S.FAILED, reason=exc.reason[:200], finished_at=now
        )
        return len(chunk)
    with transaction.atomic():
        for outcome in outcomes:
            item = by_external.get(outcome.external_userid)
            if item is None:
                continue
            if outcome.errcode == 0 or (outcome.errcode == 40129 and item.pk in tried_before):
                update: dict[str, Any] = {"status": S.WAITING, "requested_at": now}
            else:
                status, reason = ERRCODE_OUTCOME.get(
                    outcome.errcode, (S.FAILED, f"WeCom errcode {outcome.errcode}")
                )
                update = {"status": status, "reason": reason}
            if update["status"] != S.WAITING:
                update["finished_at"] = now
            HandoverItem.objects.filter(pk=item.pk, status=S.QUEUED).update(**update)
    return len(chunk)


def check_results(*, now: dt.datetime) -> int:
    """Ask WeCom about waiting items past their takeover time. Returns items settled."""
    due = Q(checked_at__isnull=True) | Q(checked_at__lte=now - CHECK_EVERY)
    items = list(
        HandoverItem.objects.filter(due, status=S.WAITING, requested_at__lte=now - TAKEOVER_AFTER)
        .select_related("handover__from_account", "handover__to_account", "contact")
        .order_by("id")[:5000]
    )
    groups: dict[tuple[str, int, int], list[HandoverItem]] = defaultdict(list)
    for item in items:
        h = item.handover
        groups[(h.kind, h.from_account_id, h.to_account_id)].append(item)
    settled = 0
    for (kind, _, _), group in groups.items():
        handover = group[0].handover
        client = _client(handover.brand_id)
        call = (
            client.transfer_result
            if kind == Handover.Kind.IN_SERVICE
            else (client.resigned_transfer_result)
        )
        statuses: dict[str, tuple[int, int | None]] = {}
        cursor = ""
        try:
            while True:
                page = _wecom(
                    call,
                    handover_userid=handover.from_account.external_id,
                    takeover_userid=handover.to_account.external_id,
                    cursor=cursor,
                )
                for row in page.items:
                    taken = row.get("takeover_time")
                    statuses[str(row.get("external_userid", ""))] = (
                        int(row.get("status", 0) or 0),
                        int(taken) if taken else None,
                    )
                cursor = page.next_cursor
                if not cursor:
                    break
        except CarrierError as exc:
            logger.warning("transfer results of handover %s: %s", handover.pk, exc.reason)
            continue
        for item in group:
            status, taken = statuses.get(item.contact.external_id, (2, None))
            if status == 1:
                at = dt.datetime.fromtimestamp(taken, tz=dt.UTC) if taken else now
                settled += finish(item, at=at)
            elif status in RESULT_REASON:
                settled += HandoverItem.objects.filter(pk=item.pk, status=S.WAITING).update(
                    status=RESULT[status], reason=RESULT_REASON[status], finished_at=now
                )
            else:
                HandoverItem.objects.filter(pk=item.pk).update(checked_at=now)
    return settled


def finish(item: HandoverItem, *, at: dt.datetime) -> int:
    """WeCom reports the takeover: the contact moves to the new member's account (keeping its
    corp tags), the old contact is closed as transferred, and the customer's owner staff
    follows when it was the old member. Returns 1, or 0 when already settled."""
    handover = item.handover
    with transaction.atomic():
        if not HandoverItem.objects.filter(pk=item.pk, status=S.WAITING).update(
            status=S.TAKEN_OVER, finished_at=at, reason=""
        ):
            return 0
        old = item.contact
        CarrierContact.objects.filter(pk=old.pk, status=CarrierContact.Status.ACTIVE).update(
            status=CarrierContact.Status.LOST, lost_at=at, lost_by="transfer"
        )
        customer = customers.survivor(Customer.objects.get(pk=item.customer_id))
        new = carriers.record_contact(
            account_id=handover.to_account_id, brand_id=handover.brand_id,
            external_id=old.external_id, customer=customer, state=old.state, at=at,
        )  # fmt: skip
        for link in ContactCorpTag.objects.filter(contact=old, synced_at__isnull=False):
            ContactCorpTag.objects.get_or_create(
                contact=new, corp_tag_id=link.corp_tag_id, defaults={"synced_at": at}
            )
        old_staff = handover.from_account.staff_id
        new_staff = handover.to_account.staff_id
        if new_staff is not None and customer.owner_staff_id in (old_staff, None):
            locked = Customer.objects.select_for_update().get(pk=customer.pk)
            before = customers.owner_of(locked)
            Customer.objects.filter(pk=locked.pk).update(owner_staff_id=new_staff, updated_at=at)
            locked.refresh_from_db()
            customers.record_owner(locked, before, reason="handover")
    return 1


def run_handovers() -> int:
    """The worker loop (`carriers.handover`): one worker at a time."""
    from yutang.core.worker import acquire_lease, release_lease

    holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]
    if not acquire_lease(LOOP_LEASE, holder, LOOP_LEASE_TTL):
        return 0
    try:
        now = clock.now()
        return request_transfers(now=now) + check_results(now=now)
    finally:
        release_lease(LOOP_LEASE, holder)


# --- Callbacks -----------------------------------------------------------------------------------


def _waiting(account_field: str, account_id: int, external_id: str) -> HandoverItem | None:
    """The waiting item of this customer (by the contact's keyed hash on the old account)."""
    waiting = HandoverItem.objects.filter(
        status=S.WAITING, **{f"handover__{account_field}": account_id}
    )
    sources = set(waiting.values_list("handover__from_account_id", flat=True))
    hashes = [carriers.contact_hash(source, external_id) for source in sources]
    return (
        waiting.filter(contact__external_hash__in=hashes)
        .select_related("handover__from_account", "handover__to_account", "contact")
        .order_by("-id")
        .first()
    )


def transfer_failed(fact: inbound.TransferFailed) -> None:
    item = _waiting("to_account_id", fact.account_id, fact.external_id)
    if item is None:
        return
    refused = fact.reason == "customer_refused"
    HandoverItem.objects.filter(pk=item.pk, status=S.WAITING).update(
        status=S.REFUSED if refused else S.FAILED,
        reason=(
            "the customer refused the new member"
            if refused
            else f"WeCom: the transfer failed ({fact.reason or 'no reason given'})"
        ),
        finished_at=fact.occurred_at,
    )


def transfer_completed(fact: inbound.ContactTransferred) -> None:
    item = _waiting("from_account_id", fact.account_id, fact.external_id)
    if item is not None:
        finish(item, at=fact.occurred_at)
    else:  # a transfer made outside Yutang: the old contact is closed all the same
        carriers.mark_contact_lost(
            account_id=fact.account_id, external_id=fact.external_id, by="transfer",
            at=fact.occurred_at,
        )  # fmt: skip
