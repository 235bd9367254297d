"""Fifty simultaneous adds never push an account past its daily cap."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.factories import make_brand
from yutang.acquisition import services
from yutang.acquisition.models import AccountDay, Alert
from yutang.acquisition.tests.helpers import make_channel, make_code, make_pool, utc


@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_adds_on_two_codes_sharing_accounts_respect_every_cap():
    brand = make_brand()
    pool = make_pool(brand, 3, cap=10)
    channel = make_channel(brand)
    codes = [make_code(brand, pool, channel=channel), make_code(brand, pool, channel=channel)]
    at = utc(2026, 11, 2, 4, 0)
    barrier = threading.Barrier(50)
    chosen: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            barrier.wait(timeout=60)
            account = services.assign_account(live_code=codes[n % 2], at=at)
            chosen.append(account.pk)
        except services.NoCapacity:
            refused.append(n)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=add, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert errors == []
    assert len(chosen) == 30 and len(refused) == 20
    days = {d.account_id: d.assigned for d in AccountDay.objects.filter(account__in=pool)}
    assert days == {a.pk: 10 for a in pool}
    assert {chosen.count(a.pk) for a in pool} == {10}
    assert Alert.objects.filter(live_code__in=codes).count() == 2
