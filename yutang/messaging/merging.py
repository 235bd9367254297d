"""Messages follow the person when customers merge, and go back on unmerge.

The policy gate counts a person's touches (frequency caps, duplicates, quiet days) from their
messages; after a merge both sides' messages are that person's, so the survivor's caps see
them all. Unmerge hands each message back to the customer it was addressed to."""

from __future__ import annotations

from yutang.customers.models import Customer
from yutang.customers.services import MergeParticipant, register_merge_participant
from yutang.messaging.models import Message


def _move(keep: Customer, absorb: Customer) -> list[int]:
    ids = list(Message.objects.filter(customer=absorb).values_list("pk", flat=True))
    Message.objects.filter(pk__in=ids).update(customer=keep)
    return ids


def _restore(keep: Customer, absorb: Customer, ids: list[int]) -> None:
    Message.objects.filter(pk__in=ids, customer=keep).update(customer=absorb)


def register() -> None:
    register_merge_participant("messages", MergeParticipant(move=_move, restore=_restore))
