"""Adds follow the person when customers merge (and go back on unmerge); the survivor keeps
exactly one first touch: its earliest add through a channel. An add of the absorbed customer
that the kept one also has (the same account at the same instant: one carrier add recorded
under both records, which the unique (account, customer, added_at) forbids twice) stays with
the absorbed customer: the merged person has it once, and unmerge has nothing to give back."""

from __future__ import annotations

from collections.abc import Sequence

from yutang.acquisition.models import ContactAdd
from yutang.customers.models import Customer
from yutang.customers.services import (
    MergeParticipant,
    register_merge_participant,
    rows_follow_the_customer,
)


def _first_touch(customers: Sequence[Customer]) -> None:
    for customer in customers:
        adds = ContactAdd.objects.filter(customer=customer, channel__isnull=False)
        first = adds.order_by("added_at", "id").first()
        if first is None:
            continue
        adds.exclude(pk=first.pk).filter(is_first_touch=True).update(is_first_touch=False)
        if not first.is_first_touch:
            ContactAdd.objects.filter(pk=first.pk).update(is_first_touch=True)


def _move(keep: Customer, absorb: Customer) -> list[int]:
    held = set(ContactAdd.objects.filter(customer=keep).values_list("account_id", "added_at"))
    ids = [
        pk
        for pk, account_id, added_at in ContactAdd.objects.filter(customer=absorb).values_list(
            "pk", "account_id", "added_at"
        )
        if (account_id, added_at) not in held
    ]
    ContactAdd.objects.filter(pk__in=ids).update(customer=keep)
    return ids


def register() -> None:
    generic = rows_follow_the_customer(ContactAdd, after=_first_touch)
    register_merge_participant(
        "acquisition_adds",
        MergeParticipant(move=_move, restore=generic.restore, after=generic.after),
    )
