"""A merge hands the absorbed customer's carrier contacts and messages to the survivor, so the
gate counts one person's touches together; unmerge hands them back."""

from __future__ import annotations

import datetime as dt

import pytest

from yutang.carriers.models import CarrierContact
from yutang.core.clock import FrozenClock, use_clock
from yutang.customers import services as customers
from yutang.messaging import services
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.tests.helpers import NOON, add_contact, setup

pytestmark = pytest.mark.django_db


def enqueue(brand, customer, account, key):
    return services.enqueue_message(
        brand=brand, customer=customer, account=account, kind="marketing",
        content={"type": "text", "text": f"新品 {key}"}, cause="journey", idempotency_key=key,
    )  # fmt: skip


def test_contacts_and_touches_follow_the_person_through_merge_and_back_on_unmerge():
    with use_clock(FrozenClock(NOON - dt.timedelta(hours=1))):
        brand, account, (absorb,) = setup(1)
    with use_clock(FrozenClock(NOON)):
        keep = add_contact(account, f"wm-{brand.pk}-keep")
        absorb_contact = CarrierContact.objects.get(customer=absorb)
        sent = enqueue(brand, absorb, account, "before-merge")
        assert deliver_due_messages() == 1
        sent.refresh_from_db()
        assert sent.status == "sent"

        merge = customers.merge_customers(brand=brand, keep=keep, absorb=absorb, actor=None,
                                          reason="same phone")  # fmt: skip
        held = set(CarrierContact.objects.filter(customer=keep).values_list("pk", flat=True))
        assert absorb_contact.pk in held and len(held) == 2
        assert not CarrierContact.objects.filter(customer=absorb).exists()
        sent.refresh_from_db()
        assert sent.customer_id == keep.pk
        # The person already had today's marketing touch (as the absorbed customer): the
        # survivor's daily cap sees it.
        second = enqueue(brand, keep, account, "after-merge")
        deliver_due_messages()
        second.refresh_from_db()
        assert (second.status, second.rule) == ("blocked", "frequency")

        customers.unmerge(actor=None, merge_id=merge.pk, brand=brand)
        absorb_contact.refresh_from_db()
        sent.refresh_from_db()
        second.refresh_from_db()
        assert absorb_contact.customer_id == absorb.pk
        assert CarrierContact.objects.filter(customer=keep).count() == 1
        assert sent.customer_id == absorb.pk
        assert second.customer_id == keep.pk  # addressed to the survivor: stays there
        # Apart again, the survivor has had no marketing touch today.
        third = enqueue(brand, keep, account, "after-unmerge")
        deliver_due_messages()
        third.refresh_from_db()
        assert third.status == "sent"
