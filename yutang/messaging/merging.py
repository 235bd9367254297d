"""Messages follow the person when customers merge, and go back on unmerge.

The policy gate counts a person's touches (frequency caps, duplicates, quiet days) from their
messages; after a merge both sides' messages are that person's, so the survivor's caps see
them all. Unmerge hands each message back to the customer it was addressed to."""

from __future__ import annotations

from yutang.customers.services import register_merge_participant, rows_follow_the_customer
from yutang.messaging.models import Message


def register() -> None:
    register_merge_participant("messages", rows_follow_the_customer(Message))
