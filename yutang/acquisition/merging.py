"""Adds follow the person when customers merge (and go back on unmerge); the survivor keeps
exactly one first touch: its earliest add through a channel."""

from __future__ import annotations

from collections.abc import Sequence

from yutang.acquisition.models import ContactAdd
from yutang.customers.models import Customer
from yutang.customers.services import register_merge_participant, rows_follow_the_customer


def _first_touch(customers: Sequence[Customer]) -> None:
    for customer in customers:
        adds = ContactAdd.objects.filter(customer=customer, channel__isnull=False)
        first = adds.order_by("added_at", "id").first()
        if first is None:
            continue
        adds.exclude(pk=first.pk).filter(is_first_touch=True).update(is_first_touch=False)
        if not first.is_first_touch:
            ContactAdd.objects.filter(pk=first.pk).update(is_first_touch=True)


def register() -> None:
    register_merge_participant(
        "acquisition_adds", rows_follow_the_customer(ContactAdd, after=_first_touch)
    )
