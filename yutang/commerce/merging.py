"""Orders follow the person when customers merge, and go back on unmerge."""

from __future__ import annotations

from yutang.commerce.models import Order
from yutang.customers.models import Customer
from yutang.customers.services import MergeParticipant, register_merge_participant


def _move(keep: Customer, absorb: Customer) -> list[int]:
    ids = list(Order.objects.filter(customer=absorb).values_list("pk", flat=True))
    Order.objects.filter(pk__in=ids).update(customer=keep)
    return ids


def _restore(keep: Customer, absorb: Customer, ids: list[int]) -> None:
    Order.objects.filter(pk__in=ids, customer=keep).update(customer=absorb)


def register() -> None:
    register_merge_participant("orders", MergeParticipant(move=_move, restore=_restore))
