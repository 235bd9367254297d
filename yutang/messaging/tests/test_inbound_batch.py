"""The set-based inbound entry point (`handle_inbound_batch`) has the same outcome as
`handle_inbound` fact by fact: two identical brands get the same callback facts, one each
way, and every row the inbound path writes is compared (customers by creation order)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.acquisition.models import AccountDay, ContactAdd
from yutang.acquisition.services import state_for
from yutang.acquisition.tests.helpers import make_channel, make_code
from yutang.carriers import inbound
from yutang.carriers import services as carriers
from yutang.carriers.adapters import sandbox
from yutang.carriers.models import CarrierContact, InboundReceipt
from yutang.core import services as core_services
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Consent, Customer, CustomerTag
from yutang.events.models import Event
from yutang.messaging import services
from yutang.messaging.models import Message

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 11, 4, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    frozen = FrozenClock(NOON)
    with use_clock(frozen):
        yield frozen


def setup_brand() -> tuple[Brand, CarrierAccount, str]:
    brand = make_brand()
    store = make_store(brand)
    staff = make_staff(brand, "advisor", stores=[store])
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="sandbox", external_id="sbx-1",
        display_name="小鱼", staff_id=staff.pk, store_id=store.pk,
    )  # fmt: skip
    carriers.connect_carrier(
        actor=None, account=account, credentials={"callback_secret": "s3cret"}, settings={}
    )
    channel = make_channel(brand, code="card", tags=["来源/包裹卡"])
    code = make_code(brand, [account], channel=channel, welcome_text="你好 {name}")
    return brand, account, state_for(code)


def facts(brand: Brand, account: CarrierAccount, state: str) -> list[inbound.InboundFact]:
    """A callback's worth of everything: adds (one person twice, on another day), replies
    (one an unsubscribe), clicks, group changes, a deletion between them, an unknown
    sender, a run of deletions."""
    b, a = brand.pk, account.pk
    t = [NOON - dt.timedelta(hours=3, minutes=m) for m in range(60, 0, -1)]
    out: list[inbound.InboundFact] = []
    for n in range(5):
        out.append(inbound.ContactAdded(b, a, f"ext-{n}", t[n], f"顾客{n}", state))
    out += [
        inbound.MessageReceived(b, a, "ext-0", t[10], "好的", "m-1"),
        inbound.LinkClicked(b, a, "ext-1", "https://x.invalid/o", t[11]),
        inbound.GroupJoined(b, a, "ext-2", "g1", t[12]),
        inbound.MessageReceived(b, a, "ext-3", t[13], "退订"),
        inbound.MessageReceived(b, a, "ext-3", t[14], "谢谢"),
        inbound.LinkClicked(b, a, "ext-nobody", "https://x.invalid/o", t[15]),
        inbound.ContactDeleted(b, a, "ext-1", t[16]),
        inbound.GroupLeft(b, a, "ext-2", "g1", t[17]),
        inbound.ContactAdded(b, a, "ext-5", t[18], "顾客5", state),
        inbound.ContactAdded(b, a, "ext-1", t[19], "顾客1", state),
        inbound.LinkClicked(b, a, "ext-1", "https://x.invalid/o", t[20]),
        inbound.LinkClicked(b, a, "ext-5", "https://x.invalid/o", t[21]),
        # A run of deletions (one of a contact the account never had).
        inbound.ContactDeleted(b, a, "ext-3", t[22]),
        inbound.ContactDeleted(b, a, "ext-nobody", t[23]),
        inbound.ContactDeleted(b, a, "ext-4", t[24], "staff"),
    ]
    return out


def snapshot(brand: Brand) -> dict[str, Any]:
    rank = {
        pk: i
        for i, pk in enumerate(
            Customer.objects.filter(brand=brand).order_by("pk").values_list("pk", flat=True)
        )
    }

    def props(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k not in ("account_id", "message_id", "live_code")}

    return {
        "customers": sorted(
            (rank[c.pk], c.display_name, c.merged_into_id is None, c.owner_staff_id is not None,
             c.owner_store_id is not None)
            for c in Customer.objects.filter(brand=brand)
        ),
        "events": sorted(
            (e.type, rank[e.customer_id], e.occurred_at, sorted(props(e.properties).items()))
            for e in Event.objects.filter(brand=brand)
        ),
        "contacts": sorted(
            (rank[c.customer_id], c.status, bool(c.state), c.lost_by, c.added_at, c.lost_at)
            for c in CarrierContact.objects.filter(brand=brand)
        ),
        "messages": sorted(
            (rank[m.customer_id], m.cause, m.kind, m.status, m.content.get("text"), m.due_at)
            for m in Message.objects.filter(brand=brand)
        ),
        "adds": sorted(
            (rank[c.customer_id], c.channel.code if c.channel else "", c.is_first_touch,
             c.added_at, bool(c.state))
            for c in ContactAdd.objects.filter(brand=brand).select_related("channel")
        ),
        "days": sorted(
            (d.day, d.added) for d in AccountDay.objects.filter(account__brand=brand)
        ),
        "tags": sorted(
            (rank[t.customer_id], str(t.tag.group), t.tag.name, t.source)
            for t in CustomerTag.objects.filter(customer__brand=brand).select_related("tag")
        ),
        "consents": sorted(
            (rank[c.customer_id], c.purpose, c.carrier, c.status)
            for c in Consent.objects.filter(customer__brand=brand)
        ),
        "deliveries": sandbox_count(brand),
    }  # fmt: skip


def sandbox_count(brand: Brand) -> int:
    from yutang.carriers.models import SandboxDelivery

    return SandboxDelivery.objects.filter(account__brand=brand).count()


def test_a_batch_of_callback_facts_has_the_same_outcome_as_one_by_one(frozen) -> None:
    one_brand, one_account, one_state = setup_brand()
    for fact in facts(one_brand, one_account, one_state):
        services.handle_inbound(fact)
    batch_brand, batch_account, batch_state = setup_brand()
    services.handle_inbound_batch(facts(batch_brand, batch_account, batch_state))
    one, batch = snapshot(one_brand), snapshot(batch_brand)
    assert one == batch
    # The comparison covers something: every kind of fact left its mark.
    types = {e[0] for e in one["events"]}
    assert {"contact.added", "contact.deleted", "message.received", "link.clicked",
            "group.joined", "group.left", "consent.changed"} <= types  # fmt: skip
    assert len(one["customers"]) == 6
    assert len([m for m in one["messages"] if m[1] == "welcome"]) == 7
    assert "withdrawn" in {c[3] for c in one["consents"]}
    assert len(one["adds"]) == 7 and one["days"]
    lost = [c for c in one["contacts"] if c[1] == "lost"]
    assert len(lost) == 2 and {c[3] for c in lost} == {"customer", "staff"}


def test_a_sandbox_callback_goes_through_the_batch_and_a_replay_changes_nothing(frozen) -> None:
    brand, account, state = setup_brand()
    items = [
        {"type": "contact.added", "id": f"add-{n}", "contact": f"ext-{n}",
         "display_name": f"顾客{n}", "state": state, "occurred_at": NOON.isoformat()}
        for n in range(3)
    ] + [
        {"type": "link.clicked", "id": f"click-{n}", "contact": f"ext-{n}",
         "link": "https://x.invalid/o", "occurred_at": NOON.isoformat()}
        for n in range(3)
    ]  # fmt: skip
    config = carriers.account_config(account)
    assert sandbox.emit(config, items) == 6
    before = snapshot(brand)
    assert sandbox.emit(config, items) == 0
    assert snapshot(brand) == before
    assert InboundReceipt.objects.filter(account=account).count() == 6
    assert len([e for e in before["events"] if e[0] == "link.clicked"]) == 3
