"""Attribution across merges, reach imports, and the scope of store roles."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from tests.factories import Api, make_brand, make_staff
from yutang.acquisition import services
from yutang.acquisition.models import ContactAdd, ReachRecord
from yutang.acquisition.tests.helpers import make_channel, make_code, make_customer, make_pool, utc
from yutang.customers import services as customers

pytestmark = pytest.mark.django_db


def test_adds_follow_a_merge_with_one_first_touch_and_go_back_on_unmerge():
    brand = make_brand()
    (account,) = make_pool(brand, 1)
    card, sms = make_channel(brand, code="card"), make_channel(brand, code="sms")
    code_card, code_sms = (
        make_code(brand, [account], channel=card),
        make_code(brand, [account], channel=sms),
    )
    keep, absorb = make_customer(brand), make_customer(brand)
    services.record_contact_added(brand=brand, account=account, customer=keep, state=code_sms.state,
                                  occurred_at=utc(2026, 10, 5))  # fmt: skip
    services.record_contact_added(brand=brand, account=account, customer=absorb,
                                  state=code_card.state, occurred_at=utc(2026, 10, 1))  # fmt: skip
    merge = customers.merge_customers(brand=brand, keep=keep, absorb=absorb, actor=None, reason="t")
    adds = ContactAdd.objects.filter(customer=keep).order_by("added_at")
    assert list(adds.values_list("channel__code", "is_first_touch")) == [
        ("card", True), ("sms", False),
    ]  # fmt: skip
    customers.unmerge(actor=None, merge_id=merge.pk, brand=brand)
    assert ContactAdd.objects.get(customer=absorb).is_first_touch
    assert ContactAdd.objects.get(customer=keep).is_first_touch


def test_merging_two_customers_with_the_same_add_keeps_it_once_and_unmerge_restores():
    brand = make_brand()
    (account,) = make_pool(brand, 1)
    code = make_code(brand, [account], channel=make_channel(brand, code="card"))
    other = make_code(brand, [account], channel=make_channel(brand, code="sms"))
    keep, absorb = make_customer(brand), make_customer(brand)
    same = utc(2026, 10, 1, 3)
    for customer in (keep, absorb):  # one carrier add recorded under two customer records
        services.record_contact_added(brand=brand, account=account, customer=customer,
                                      state=code.state, occurred_at=same)  # fmt: skip
    services.record_contact_added(brand=brand, account=account, customer=absorb,
                                  state=other.state, occurred_at=utc(2026, 10, 9))  # fmt: skip
    merge = customers.merge_customers(brand=brand, keep=keep, absorb=absorb, actor=None, reason="t")
    kept = ContactAdd.objects.filter(customer=keep).order_by("added_at")
    assert list(kept.values_list("channel__code", "added_at", "is_first_touch")) == [
        ("card", same, True), ("sms", utc(2026, 10, 9), False),
    ]  # fmt: skip
    assert ContactAdd.objects.filter(customer=absorb).count() == 1  # the duplicate stays
    customers.unmerge(actor=None, merge_id=merge.pk, brand=brand)
    assert ContactAdd.objects.filter(customer=keep).count() == 1
    back = ContactAdd.objects.filter(customer=absorb).order_by("added_at")
    assert list(back.values_list("channel__code", "is_first_touch")) == [
        ("card", True), ("sms", False),
    ]  # fmt: skip


def test_reach_import_applies_all_rows_or_reports_every_bad_one():
    brand = make_brand()
    lead = make_staff(brand, "operations_lead")
    card = make_channel(brand, code="card")
    services.create_batch(actor=lead, channel_id=card.pk, code="B2611", name="11月批次")
    api = Api(lead)
    bad = io.BytesIO(
        b"channel,date,count,batch\ncard,2026-11-01,1200,B2611\nnope,2026-11-01,5,\n"
        b"card,2026-11-31,5,\ncard,2026-11-02,-3,\ncard,2026-11-01,1,B2611\n"
    )
    bad.name = "reach.csv"
    response = api.client.post("/api/v1/reach/import", {"file": bad}, headers=api.headers)
    assert response.status_code == 422
    assert [(e["row"], e["column"]) for e in response.json()["errors"]] == [
        (3, "channel"), (4, "date"), (5, "count"), (6, "date"),
    ]  # fmt: skip
    assert not ReachRecord.objects.exists()
    good = io.BytesIO(
        b"channel,date,count,batch\ncard,2026-11-01,1200,B2611\ncard,2026-11-02,300,\n"
    )
    good.name = "reach.csv"
    response = api.client.post("/api/v1/reach/import", {"file": good}, headers=api.headers)
    assert response.status_code == 200 and response.json() == {"applied": 2, "errors": []}
    assert sorted(ReachRecord.objects.values_list("date", "count", "batch__code")) == [
        (dt.date(2026, 11, 1), 1200, "B2611"), (dt.date(2026, 11, 2), 300, None),
    ]  # fmt: skip


def test_a_card_batch_has_its_own_live_code_and_its_adds_are_attributed_to_it():
    brand = make_brand()
    lead = make_staff(brand, "operations_lead")
    (account,) = make_pool(brand, 1)
    card = make_channel(brand, code="card")
    code = make_code(brand, [account], channel=card)
    batch = services.create_batch(
        actor=lead, channel_id=card.pk, code="B2612", name="12月", cards_printed=5000,
        live_code_id=code.pk,
    )  # fmt: skip
    services.record_reach(actor=lead, channel_id=card.pk, date=dt.date(2026, 12, 1), count=800,
                          batch_id=batch.pk)  # fmt: skip
    add = services.record_contact_added(
        brand=brand, account=account, customer=make_customer(brand), state=code.state,
        occurred_at=utc(2026, 12, 2),
    )  # fmt: skip
    assert add.batch == batch and add.channel == card
    with pytest.raises(services.Conflict):
        services.create_batch(actor=lead, channel_id=card.pk, code="B2613", name="x",
                              live_code_id=code.pk)  # fmt: skip
