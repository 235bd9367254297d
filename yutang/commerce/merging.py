"""Orders follow the person when customers merge, and go back on unmerge."""

from __future__ import annotations

from django.db.models import Q

from yutang.commerce.models import Order
from yutang.customers.models import Customer
from yutang.customers.services import (
    MergeParticipant,
    register_merge_participant,
    rows_follow_the_customer,
)
from yutang.events.models import Event


def _restore(keep: Customer, absorb: Customer, ids: list[int]) -> None:
    orders = list(Order.objects.filter(pk__in=ids, customer=keep))
    Order.objects.filter(pk__in=[o.pk for o in orders]).update(customer=absorb)
    # Refunds (and late-arriving payments) of these orders recorded while merged went to the
    # survivor; they belong to the order's customer.
    keys = Q()
    for order in orders:
        keys |= Q(idempotency_key=f"order.paid:{order.source}:{order.external_id}")
        keys |= Q(idempotency_key__startswith=f"order.refunded:{order.source}:{order.external_id}:")
    if orders:
        Event.objects.filter(keys, customer=keep).update(customer=absorb)


def register() -> None:
    move = rows_follow_the_customer(Order).move
    register_merge_participant("orders", MergeParticipant(move=move, restore=_restore))
