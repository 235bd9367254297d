"""Carrier contacts follow the person when customers merge, and go back on unmerge.

A contact is how the brand reaches someone through one account; after a merge the survivor is
the person, so messaging routes to, and segments' carrier condition reads, every contact either
side held."""

from __future__ import annotations

from yutang.carriers.models import CarrierContact
from yutang.customers.services import register_merge_participant, rows_follow_the_customer


def register() -> None:
    register_merge_participant("carrier_contacts", rows_follow_the_customer(CarrierContact))
