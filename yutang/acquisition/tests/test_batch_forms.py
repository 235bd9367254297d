"""The batch forms the simulator (and any bulk caller) uses give the outcome of their
one-by-one forms: `assign_accounts` routes like `assign_account` called in turn (rotation,
weights, caps, spill-over to backups, NoCapacity at the same add), `record_contacts_added`
claims owners and tags like `record_contact_added`, `record_reaches` / `add_costs` write what
`record_reach` / `add_cost` write."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.acquisition import services
from yutang.acquisition.models import (
    AccountDay,
    Alert,
    ChannelCost,
    ContactAdd,
    LiveCode,
    ReachRecord,
)
from yutang.acquisition.tests.helpers import make_channel, make_code, make_customer, make_pool, utc
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import AuditLog, Brand, CarrierAccount
from yutang.customers import services as customers
from yutang.customers.models import Customer, CustomerTag, OwnerChange

pytestmark = pytest.mark.django_db

NOON = utc(2026, 11, 2, 4, 0)  # Monday 12:00 in Asia/Shanghai


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    clock = FrozenClock(NOON)
    with use_clock(clock):
        yield clock


def routing_world(brand: Brand) -> list[Any]:
    """Three codes sharing capped accounts, a weighted one and backups: the shared caps make
    the order of adds across codes matter."""
    shared = make_pool(brand, 2, cap=3)
    free = make_pool(brand, 1)
    backup = make_pool(brand, 1)
    return [
        make_code(brand, shared, backups=backup),
        make_code(brand, [*shared, *free], rule="weighted", weights=[3, 1, 2]),
        make_code(brand, [free[0], shared[1]]),
    ]


def routing_state(brand: Brand, chosen: list[Any]) -> tuple[Any, ...]:
    """What routing did, with each account named by its position in the brand's accounts."""
    index = {
        pk: i
        for i, pk in enumerate(
            CarrierAccount.objects.filter(brand=brand).order_by("pk").values_list("pk", flat=True)
        )
    }
    days = sorted(
        (index[a], d, n, m)
        for a, d, n, m in AccountDay.objects.filter(account__brand=brand)
        .exclude(assigned=0, added=0)
        .values_list("account_id", "day", "assigned", "added")
    )
    rotations = list(LiveCode.objects.filter(brand=brand).order_by("pk").values_list("rotation"))
    return [index[a.pk] for a in chosen], days, rotations


def test_assign_accounts_routes_a_run_like_assign_account_called_in_turn():
    plans = [(0, 0), (1, 0), (0, 5), (2, 1), (1, 9), (0, 61), (1, 62), (2, 70), (0, 80)]
    plans += [(k % 3, 90 + k) for k in range(6)] + [(0, 24 * 60 + 5), (1, 24 * 60 + 6)]
    results = []
    for batched in (False, True):
        brand = make_brand()
        codes = routing_world(brand)
        items = [(codes[c], NOON + dt.timedelta(minutes=m)) for c, m in plans]
        if batched:
            chosen = services.assign_accounts(items=items)
        else:
            chosen = [services.assign_account(live_code=code, at=at) for code, at in items]
        results.append(routing_state(brand, chosen))
    assert results[0] == results[1]
    chosen, days, rotations = results[1]
    assert len(chosen) == len(plans) and len(set(chosen)) == 4  # backups used: caps bit
    assert sum(n for _a, _d, n, _m in days) == len(plans)
    assert sum(r for (r,) in rotations) == len(plans)


def test_assign_accounts_raises_no_capacity_at_the_add_assign_account_would():
    brand = make_brand()
    owner = make_staff(brand, "operations_lead")
    pool = make_pool(brand, 1, cap=2)
    code = make_code(brand, pool, channel=make_channel(brand, owner_id=owner.pk))
    with pytest.raises(services.NoCapacity):
        services.assign_accounts(items=[(code, NOON)] * 3)
    # The one-by-one fallback counted the two that fitted, as assign_account would have.
    assert AccountDay.objects.get(account=pool[0]).assigned == 2
    assert Alert.objects.filter(brand=brand).count() == 1
    code.refresh_from_db()
    assert code.rotation == 3
    assert services.assign_accounts(items=[]) == []


def adds_world(brand: Brand) -> tuple[Any, list[Any], list[Customer]]:
    store = make_store(brand)
    account = make_pool(brand, 1, store=store)[0]
    card = make_code(
        brand,
        [account],
        channel=make_channel(brand, code="card", tags=["渠道/包裹卡", "兴趣/穿搭"]),
    )
    xhs = make_code(brand, [account], channel=make_channel(brand, code="xhs", tags=["渠道/小红书"]))
    people = [make_customer(brand) for _ in range(4)]
    # One already has an owner and a first touch: the batch must keep them.
    kept_staff = make_staff(brand, "advisor", stores=[store])
    customers.claim_owner_and_first_touch(
        customer=people[1],
        staff_id=kept_staff.pk,
        store_id=store.pk,
        channel="earlier",
        reason="manual",
    )
    services.record_contact_added(
        brand=brand, account=account, customer=people[3], state=services.state_for(xhs),
        occurred_at=NOON - dt.timedelta(days=9),
    )  # fmt: skip
    return account, [card, xhs, card, xhs], people


def adds_state(brand: Brand, people: list[Customer]) -> dict[str, Any]:
    index = {c.pk: i for i, c in enumerate(people)}
    return {
        "adds": sorted(
            (index[c], ch, first)
            for c, ch, first in ContactAdd.objects.filter(brand=brand).values_list(
                "customer_id", "channel__code", "is_first_touch"
            )
        ),
        "customers": sorted(
            (index[c.pk], c.source_channel, c.owner_staff_id is not None, c.owner_store_id)
            for c in Customer.objects.filter(pk__in=index)
        ),
        "owners": sorted(
            (index[o.customer_id], o.reason, o.owner_staff_id is not None, o.valid_from)
            for o in OwnerChange.objects.filter(customer_id__in=index)
        ),
        "tags": sorted(
            (index[c], name, source)
            for c, name, source in CustomerTag.objects.filter(customer_id__in=index).values_list(
                "customer_id", "tag__name", "source"
            )
        ),
        "audits": AuditLog.objects.filter(brand=brand, action="customer.tags").count(),
    }


def test_record_contacts_added_claims_and_tags_like_one_by_one(frozen):
    states = []
    for batched in (False, True):
        brand = make_brand()
        account, codes, people = adds_world(brand)
        adds = [
            (c, services.state_for(code), NOON + dt.timedelta(minutes=i))
            for i, (c, code) in enumerate(zip(people, codes, strict=True))
        ]
        if batched:
            services.record_contacts_added(brand=brand, account=account, adds=adds)
        else:
            for c, code_state, at in adds:
                services.record_contact_added(
                    brand=brand, account=account, customer=c, state=code_state, occurred_at=at
                )
        state = adds_state(brand, people)
        stores = {s for _i, _c, _o, s in state["customers"]}
        state["customers"] = [(i, c, o, s is not None) for i, c, o, s in state["customers"]]
        assert len(stores) == 1
        states.append(state)
    assert states[0] == states[1]
    state = states[1]
    # people[1] kept its owner and channel (its first add is still a first touch); people[3]
    # had an earlier add through a channel, so this one is not.
    firsts = [(i, first) for i, _ch, first in state["adds"]]
    assert firsts == [(0, True), (1, True), (2, True), (3, False), (3, True)]
    assert [c for _i, c, _o, _s in state["customers"]] == ["card", "earlier", "card", "xhs"]
    assert (0, "包裹卡", "channel") in state["tags"] and state["audits"] == 5
    assert [r for _i, r, _o, _v in state["owners"]].count("contact_added") == 3


def test_record_reaches_and_add_costs_write_what_the_single_forms_write():
    brand = make_brand()
    lead = make_staff(brand, "brand_admin")
    a, b = make_channel(brand), make_channel(brand)
    day = dt.date(2026, 11, 2)
    services.record_reach(actor=lead, channel_id=a.pk, date=day, count=5)
    rows = services.record_reaches(actor=lead, date=day, counts={a.pk: 7, b.pk: 3})
    assert [(r.channel_id, r.count) for r in rows] == [(a.pk, 7), (b.pk, 3)]
    assert sorted(ReachRecord.objects.filter(date=day).values_list("channel_id", "count")) == [
        (a.pk, 7),
        (b.pk, 3),
    ]
    assert AuditLog.objects.filter(brand=brand, action="channel.reach").count() == 3
    costs = services.add_costs(actor=lead, date=day, items=[(a.pk, 100, "x"), (b.pk, 0, "")])
    assert [(c.channel_id, c.amount_fen, c.note) for c in costs] == [
        (a.pk, 100, "x"),
        (b.pk, 0, ""),
    ]
    assert ChannelCost.objects.filter(brand=brand).count() == 2
    assert AuditLog.objects.filter(brand=brand, action="channel.cost").count() == 2
    other = make_channel(make_brand())
    with pytest.raises(Exception, match="No such channel"):
        services.record_reaches(actor=lead, date=day, counts={other.pk: 1})
    with pytest.raises(Exception, match="No such channel"):
        services.add_costs(actor=lead, date=day, items=[(other.pk, 1, "")])


def test_live_codes_for_states_answers_as_live_code_for_state(frozen):
    """The run's states resolved in one query, each as `live_code_for_state` resolves it: a
    brand's code, another brand's (None), a removed id, malformed or overlong states, None."""
    brand, other = make_brand(), make_brand()
    mine = [make_code(brand, make_pool(brand, 1)) for _ in range(2)]
    theirs = make_code(other, make_pool(other, 1))
    states: list[str | None] = [
        services.state_for(mine[0]), services.state_for(mine[1]), services.state_for(theirs),
        services.state_for(mine[0]), f"lc{theirs.pk + 1000}", "channel-x", "lc", "lc" + "9" * 40,
        "", None,
    ]  # fmt: skip
    found = services.live_codes_for_states(brand=brand, states=states)
    assert list(found) == list(dict.fromkeys(states))  # each distinct state once, in order
    for state in states:
        expected = services.live_code_for_state(brand=brand, state=state)
        assert found[state] == expected, state
    assert found[services.state_for(mine[1])] == mine[1]
    assert found[services.state_for(theirs)] is None
    assert services.live_codes_for_states(brand=brand, states=[None, "x"]) == {
        None: None,
        "x": None,
    }
