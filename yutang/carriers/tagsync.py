"""Tag sync between Yutang tags and WeCom corp tags (企业标签).

A Yutang tag is linked to one corp tag (`CorpTag`): by `link_tag` (the corp tag is found in,
or added to, the corp group named like the tag's group), or by `pull_corp_tags`, which reads
the corp's tag library and links each corp tag to a Yutang tag of the same group and name
(creating it). WeCom's tag callbacks (change_external_tag: create, update, delete, shuffle)
run `pull_corp_tags`, so tags made, renamed or deleted in the WeCom admin console follow.

Per contact, both ways:

- Yutang → WeCom: the `carriers.tag_sync` worker loop compares, for every active WeCom contact,
  the linked tags its customer has with the corp tags recorded on the contact
  (`ContactCorpTag`), and calls `mark_tag` once per contact with what to add and remove. It
  reads only the differences (two anti-joins), so it catches every way a tag changes (by
  hand, import, auto-tag rule, journey) without hooks. A failed call is held back an hour.
- WeCom → Yutang: an edit callback (a member tagged the customer in the WeCom app) brings the
  contact's corp tags (`apply_contact_tags`): corp tags added since the last known state add
  the Yutang tag, removed ones remove it, and the contact's record is updated so the loop
  does not undo the member's change.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction

from yutang.carriers.base import CarrierError
from yutang.carriers.models import CarrierContact, ContactCorpTag, CorpTag
from yutang.core import audit, clock, crypto
from yutang.core.errors import N_, NotFound, ValidationFailed
from yutang.core.models import Brand, CarrierAccount, Staff
from yutang.core.permissions import Action, require
from yutang.customers import services as customers
from yutang.customers.models import CustomerTag, Tag

if TYPE_CHECKING:
    from yutang.carriers.adapters.wecom import WeComCarrier

logger = logging.getLogger("yutang.carriers")

BATCH = 200
RETRY_AFTER = dt.timedelta(hours=1)
LOOP_LEASE = "carriers.tag_sync"
LOOP_LEASE_TTL = dt.timedelta(minutes=5)


def _adapter(brand_id: int) -> WeComCarrier:
    from yutang.carriers.adapters.wecom import brand_adapter

    adapter = brand_adapter(brand_id)
    if adapter is None:
        raise ValidationFailed(N_("Connect a WeCom account first."), field="account_id")
    return adapter


def _wecom(call: Any, *args: Any, **kwargs: Any) -> Any:
    from yutang.carriers.adapters.wecom import _as_carrier_error
    from yutang.carriers.wecom.errors import WeComError

    try:
        return call(*args, **kwargs)
    except WeComError as exc:
        raise _as_carrier_error(exc) from exc


# --- The tag library ---------------------------------------------------------------------------


def link_tag(*, actor: Staff | None, brand: Brand, tag_id: int) -> CorpTag:
    """Link a Yutang tag to a corp tag of the same group and name, adding it on WeCom when the
    corp has none."""
    if actor is not None:
        require(actor, Action.CUSTOMER_MANAGE)
    tag = Tag.objects.filter(brand=brand, pk=tag_id).select_related("group").first()
    if tag is None:
        raise NotFound(N_("No such tag: {value}."), params={"value": tag_id}, field="tag_id")
    existing = CorpTag.objects.filter(tag=tag).first()
    if existing is not None:
        return existing
    client = _adapter(brand.pk).client()
    library = _wecom(client.get_corp_tag_list)
    group = next((g for g in library if g.get("group_name") == tag.group.name), None)
    found = next((t for t in (group or {}).get("tag") or [] if t.get("name") == tag.name), None)
    if found is None:
        if group is not None:
            added = _wecom(client.add_corp_tag, tags=[tag.name], group_id=group["group_id"])
        else:
            added = _wecom(client.add_corp_tag, tags=[tag.name], group_name=tag.group.name)
        group = added
        found = (added.get("tag") or [{}])[0]
    assert group is not None
    with transaction.atomic():
        link = CorpTag.objects.create(
            brand=brand,
            corp_tag_id=str(found["id"]),
            corp_group_id=str(group.get("group_id", "")),
            group_name=tag.group.name,
            name=tag.name,
            tag=tag,
            linked_at=clock.now(),
        )
        audit.record(brand=brand, actor=actor, action="tag.link_wecom", target=tag)
    return link


def pull_corp_tags(*, brand_id: int) -> int:
    """Read the corp's tag library: link each corp tag to a Yutang tag of its group and name
    (creating the tag), follow renames, and unlink tags deleted on WeCom (the Yutang tag and
    the customers who have it stay). Returns how many links changed."""
    adapter = _adapter(brand_id)
    library = _wecom(adapter.client().get_corp_tag_list)
    brand = Brand.objects.get(pk=brand_id)
    links = {c.corp_tag_id: c for c in CorpTag.objects.filter(brand_id=brand_id)}
    seen: set[str] = set()
    changed = 0
    with transaction.atomic():
        for group in library:
            for corp in group.get("tag") or []:
                corp_id, name = str(corp.get("id", "")), str(corp.get("name", ""))
                group_name = str(group.get("group_name", ""))
                if not corp_id or not name or not group_name:
                    continue
                seen.add(corp_id)
                link = links.get(corp_id)
                if link is None:
                    tag = customers.create_tag(actor=None, brand=brand, group=group_name, name=name)
                    if CorpTag.objects.filter(tag=tag).exists():
                        continue  # already linked to another corp tag of that name
                    CorpTag.objects.create(
                        brand_id=brand_id, corp_tag_id=corp_id,
                        corp_group_id=str(group.get("group_id", "")), group_name=group_name,
                        name=name, tag=tag, linked_at=clock.now(),
                    )  # fmt: skip
                    changed += 1
                elif (link.name, link.group_name) != (name, group_name):
                    _rename(link, group_name, name)
                    changed += 1
        gone = [pk for corp_id, pk in ((k, v.pk) for k, v in links.items()) if corp_id not in seen]
        changed += CorpTag.objects.filter(pk__in=gone).delete()[1].get("carriers.CorpTag", 0)
    return changed


def _rename(link: CorpTag, group_name: str, name: str) -> None:
    """A corp tag renamed on WeCom: the linked Yutang tag follows when the name is free."""
    tag = link.tag
    if tag.name != name and not Tag.objects.filter(group_id=tag.group_id, name=name).exists():
        Tag.objects.filter(pk=tag.pk).update(name=name)
    CorpTag.objects.filter(pk=link.pk).update(name=name, group_name=group_name)


# --- Contacts, Yutang → WeCom ------------------------------------------------------------------


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _pending(limit: int, now: dt.datetime) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(contact, corp tag) pairs WeCom lacks, and pairs WeCom has that the customer lost."""
    contact, account = _table(CarrierContact), _table(CarrierAccount)
    customer_tag, link, marked = _table(CustomerTag), _table(CorpTag), _table(ContactCorpTag)
    add_sql = f"""
        SELECT c.id, l.id FROM {contact} c
        JOIN {account} a ON a.id = c.account_id AND a.kind = 'wecom' AND a.is_active
        JOIN {customer_tag} ct ON ct.customer_id = c.customer_id
        JOIN {link} l ON l.tag_id = ct.tag_id AND l.brand_id = c.brand_id
        WHERE c.status = 'active' AND NOT EXISTS (
            SELECT 1 FROM {marked} x WHERE x.contact_id = c.id AND x.corp_tag_id = l.id)
        ORDER BY c.id, l.id LIMIT %s"""  # noqa: S608 - table names from models, values bound
    retry_sql = f"""
        SELECT x.contact_id, x.corp_tag_id FROM {marked} x
        JOIN {contact} c ON c.id = x.contact_id AND c.status = 'active'
        JOIN {link} l ON l.id = x.corp_tag_id
        WHERE x.synced_at IS NULL AND x.retry_at <= %s AND EXISTS (
            SELECT 1 FROM {customer_tag} ct
            WHERE ct.customer_id = c.customer_id AND ct.tag_id = l.tag_id)
        ORDER BY x.contact_id LIMIT %s"""  # noqa: S608
    remove_sql = f"""
        SELECT x.contact_id, x.corp_tag_id FROM {marked} x
        JOIN {contact} c ON c.id = x.contact_id
        JOIN {link} l ON l.id = x.corp_tag_id
        WHERE (x.retry_at IS NULL OR x.retry_at <= %s) AND NOT EXISTS (
            SELECT 1 FROM {customer_tag} ct
            WHERE ct.customer_id = c.customer_id AND ct.tag_id = l.tag_id)
        ORDER BY x.contact_id LIMIT %s"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(add_sql, [limit])
        adds = [(int(a), int(b)) for a, b in cursor.fetchall()]
        cursor.execute(retry_sql, [now, limit])
        adds += [(int(a), int(b)) for a, b in cursor.fetchall()]
        cursor.execute(remove_sql, [now, limit])
        removes = [(int(a), int(b)) for a, b in cursor.fetchall()]
    return adds, removes


def sync_contacts(*, limit: int = BATCH) -> int:
    """One pass of Yutang → WeCom: one mark_tag per contact with differences. Returns how many
    contacts it changed on WeCom."""
    now = clock.now()
    adds, removes = _pending(limit, now)
    if not adds and not removes:
        return 0
    plan: dict[int, tuple[set[int], set[int]]] = defaultdict(lambda: (set(), set()))
    for contact_id, link_id in adds:
        plan[contact_id][0].add(link_id)
    for contact_id, link_id in removes:
        plan[contact_id][1].add(link_id)
    contacts = CarrierContact.objects.select_related("account").in_bulk(list(plan))
    links = CorpTag.objects.in_bulk({i for a, r in plan.values() for i in a | r})
    marked = {
        (m.contact_id, m.corp_tag_id): m
        for m in ContactCorpTag.objects.filter(contact_id__in=list(plan))
    }
    done = 0
    adapters: dict[int, Any] = {}
    for contact_id, (add, remove) in plan.items():
        c = contacts[contact_id]
        # Never synced (a failed add whose tag went away): nothing on WeCom to remove.
        unsynced = {i for i in remove if marked[(contact_id, i)].synced_at is None}
        ContactCorpTag.objects.filter(contact_id=contact_id, corp_tag_id__in=unsynced).delete()
        remove -= unsynced
        if c.status != CarrierContact.Status.ACTIVE:
            ContactCorpTag.objects.filter(contact_id=contact_id, corp_tag_id__in=remove).delete()
            continue
        if not add and not remove:
            continue
        if c.brand_id not in adapters:
            adapters[c.brand_id] = _adapter(c.brand_id).client()
        try:
            _wecom(
                adapters[c.brand_id].mark_tag,
                userid=c.account.external_id,
                external_userid=crypto.decrypt_pii(c.external_encrypted),
                add_tag=[links[i].corp_tag_id for i in sorted(add)],
                remove_tag=[links[i].corp_tag_id for i in sorted(remove)],
            )
        except CarrierError as exc:
            logger.warning("tag sync of contact %s: %s", contact_id, exc.reason)
            _held_back(contact_id, add, remove, marked, exc.reason, now)
            continue
        with transaction.atomic():
            ContactCorpTag.objects.filter(contact_id=contact_id, corp_tag_id__in=remove).delete()
            for i in add:
                ContactCorpTag.objects.update_or_create(
                    contact_id=contact_id,
                    corp_tag_id=i,
                    defaults={"synced_at": now, "error": "", "retry_at": None},
                )
        done += 1
    return done


def _held_back(
    contact_id: int,
    add: Iterable[int],
    remove: Iterable[int],
    marked: dict[tuple[int, int], ContactCorpTag],
    reason: str,
    now: dt.datetime,
) -> None:
    retry = now + RETRY_AFTER
    for i in add:
        ContactCorpTag.objects.update_or_create(
            contact_id=contact_id,
            corp_tag_id=i,
            defaults={"synced_at": None, "error": reason[:300], "retry_at": retry},
        )
    ContactCorpTag.objects.filter(contact_id=contact_id, corp_tag_id__in=list(remove)).update(
        error=reason[:300], retry_at=retry
    )


#: After a pass that found nothing to do, the loop looks again only this much later (the
#: differences are two anti-joins over every tagged contact: cheap, but not every second).
IDLE_PAUSE = 30.0
_idle_until = 0.0


def run_loop() -> int:
    """The worker loop (`carriers.tag_sync`): one worker at a time, and only for brands with
    linked tags."""
    global _idle_until
    from yutang.core.worker import acquire_lease, release_lease

    if time.monotonic() < _idle_until or not CorpTag.objects.exists():
        return 0
    holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]
    if not acquire_lease(LOOP_LEASE, holder, LOOP_LEASE_TTL):
        return 0
    try:
        done = sync_contacts()
    finally:
        release_lease(LOOP_LEASE, holder)
    if done == 0:
        _idle_until = time.monotonic() + IDLE_PAUSE
    return done


# --- Contacts, WeCom → Yutang ------------------------------------------------------------------


def apply_contact_tags(*, contact: CarrierContact, corp_tag_ids: Sequence[str]) -> None:
    """The contact's corp tags as WeCom now has them (an edit callback): the changes since
    the last known state become the customer's tag changes (source ``wecom``)."""
    links = {c.corp_tag_id: c for c in CorpTag.objects.filter(brand_id=contact.brand_id)}
    if any(t not in links for t in corp_tag_ids):
        pull_corp_tags(brand_id=contact.brand_id)  # a corp tag made since the last pull
        links = {c.corp_tag_id: c for c in CorpTag.objects.filter(brand_id=contact.brand_id)}
    now_on = {links[t].pk for t in corp_tag_ids if t in links}
    before = set(
        ContactCorpTag.objects.filter(contact=contact, synced_at__isnull=False).values_list(
            "corp_tag_id", flat=True
        )
    )
    added, removed = now_on - before, before - now_on
    if not added and not removed:
        return
    by_pk = {c.pk: c for c in links.values()}
    customer = customers.survivor(contact.customer)
    at = clock.now()
    with transaction.atomic():
        customers.set_tags(
            actor=None,
            customer=customer,
            add=[by_pk[i].tag_id for i in added],
            remove=[by_pk[i].tag_id for i in removed],
            source="wecom",
        )
        ContactCorpTag.objects.filter(contact=contact, corp_tag_id__in=removed).delete()
        for i in added:
            ContactCorpTag.objects.update_or_create(
                contact=contact,
                corp_tag_id=i,
                defaults={"synced_at": at, "error": "", "retry_at": None},
            )
