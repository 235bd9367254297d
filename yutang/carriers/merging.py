"""Carrier contacts follow the person when customers merge, and go back on unmerge.

A contact is how the brand reaches someone through one account; after a merge the survivor is
the person, so messaging routes to, and segments' carrier condition reads, every contact either
side held."""

from __future__ import annotations

from yutang.carriers.models import CarrierContact
from yutang.customers.models import Customer
from yutang.customers.services import MergeParticipant, register_merge_participant


def _move(keep: Customer, absorb: Customer) -> list[int]:
    ids = list(CarrierContact.objects.filter(customer=absorb).values_list("pk", flat=True))
    CarrierContact.objects.filter(pk__in=ids).update(customer=keep)
    return ids


def _restore(keep: Customer, absorb: Customer, ids: list[int]) -> None:
    CarrierContact.objects.filter(pk__in=ids, customer=keep).update(customer=absorb)


def register() -> None:
    register_merge_participant("carrier_contacts", MergeParticipant(move=_move, restore=_restore))
