"""Builders for acquisition tests: real rows through the real services."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from tests.factories import make_account, make_staff, make_store
from yutang.acquisition import services
from yutang.acquisition.models import Channel, LiveCode
from yutang.core.models import Brand, CarrierAccount, Store
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Customer

_seq = itertools.count(1)


def make_channel(brand: Brand, **fields: Any) -> Channel:
    n = next(_seq)
    values: dict[str, Any] = {"code": f"ch{n}", "name": f"Channel {n}", "type": "package_card"}
    values.update(fields)
    return services.create_channel(actor=None, brand=brand, **values)


def make_pool(
    brand: Brand, n: int, *, cap: int | None = None, store: Store | None = None
) -> list[CarrierAccount]:
    accounts = []
    for _ in range(n):
        staff = make_staff(brand, "advisor", stores=[store or make_store(brand)])
        account = make_account(brand, staff=staff, store=store)
        if cap is not None:
            CarrierAccount.objects.filter(pk=account.pk).update(daily_add_cap=cap)
            account.refresh_from_db()
        accounts.append(account)
    return accounts


def make_code(
    brand: Brand,
    accounts: list[CarrierAccount],
    *,
    rule: str = "round_robin",
    channel: Channel | None = None,
    backups: list[CarrierAccount] = (),  # type: ignore[assignment]
    weights: list[int] | None = None,
    **fields: Any,
) -> LiveCode:
    channel = channel or make_channel(brand)
    members = [
        {"account_id": a.pk, "weight": (weights[i] if weights else 1)}
        for i, a in enumerate(accounts)
    ] + [{"account_id": a.pk, "is_backup": True} for a in backups]
    return services.create_live_code(
        actor=None, brand=brand, channel_id=channel.pk, name=f"Code {next(_seq)}", rule=rule,
        members=members, **fields,
    )  # fmt: skip


def make_customer(brand: Brand, **profile: Any) -> Customer:
    n = next(_seq)
    identity = normalize_identity("external", f"cust-{n}-{brand.pk}")
    return customers.resolve_customer(
        brand=brand, identities=[identity], source="test", profile=profile or None
    ).customer


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
