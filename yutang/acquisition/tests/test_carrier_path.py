"""Acquisition through the real carrier path: a contact added through a live code (sandbox
callback or an encrypted WeCom callback through our HTTP endpoint) gets the live code's
welcome FIRST, then the add is counted and attributed (tags, owner, first touch), once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import make_brand, make_staff, make_store
from yutang.acquisition import services
from yutang.acquisition.carrier_hooks import coupon_line
from yutang.acquisition.models import AccountDay, ContactAdd
from yutang.acquisition.tests.helpers import make_channel, make_code
from yutang.carriers import services as carriers
from yutang.carriers.adapters import sandbox
from yutang.carriers.base import Outbound
from yutang.carriers.models import SandboxDelivery
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.commerce import services as commerce
from yutang.core import services as core_services
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Customer, CustomerTag
from yutang.events.models import Event

pytestmark = pytest.mark.django_db

# A Wednesday, 10:00 in Shanghai.
NOON = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    frozen = FrozenClock(NOON)
    with use_clock(frozen):
        yield frozen


def sandbox_account(brand: Brand, name: str) -> CarrierAccount:
    store = make_store(brand)
    staff = make_staff(brand, "advisor", stores=[store])
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="sandbox", external_id=f"sbx-{name}",
        display_name=name, staff_id=staff.pk, store_id=store.pk,
    )  # fmt: skip
    carriers.connect_carrier(
        actor=None, account=account, credentials={"callback_secret": "s3cret"}, settings={}
    )
    return account


def test_a_sandbox_add_gets_the_live_code_welcome_first_and_is_attributed_once(frozen):
    brand = make_brand()
    xiaoyu, xiaomei = sandbox_account(brand, "小鱼"), sandbox_account(brand, "小美")
    channel = make_channel(brand, code="card", tags=["来源/包裹卡"], hook_coupon_code="HOOK10")
    code = make_code(
        brand, [xiaoyu, xiaomei], channel=channel,
        welcome_text="你好 {name}，我是 {staff}",
        welcome_attachments=[
            {"type": "link", "url": "https://example.com/g", "title": "指南", "description": "d"}
        ],
    )  # fmt: skip
    account = services.assign_account(live_code=code, at=frozen.now())
    assert account.pk in (xiaoyu.pk, xiaomei.pk)
    add = {"type": "contact.added", "id": "add-1", "contact": "ext-1", "display_name": "阿花",
           "state": services.state_for(code)}  # fmt: skip
    stored_at_send: list[int] = []

    def customer_behaviour(message: Outbound) -> list[dict[str, Any]]:
        # The sandbox asks this as it delivers: was the add already stored at that moment?
        stored_at_send.append(Event.objects.filter(type="contact.added").count())
        return []

    sandbox.set_behaviour(customer_behaviour)
    try:
        sandbox.emit(carriers.account_config(account), [add])
    finally:
        sandbox.set_behaviour(None)
    assert stored_at_send == [0]  # the welcome went out before contact.added was stored

    delivery = SandboxDelivery.objects.get(account=account)
    expected = f"你好 阿花，我是 {account.display_name}\n{coupon_line('HOOK10')}"
    assert delivery.content["text"] == expected
    assert "HOOK10" in delivery.content["text"]
    assert delivery.content["attachments"] == [
        {"type": "link", "url": "https://example.com/g", "title": "指南", "text": "d"}
    ]
    event = Event.objects.get(type="contact.added")
    assert event.properties["live_code"] == services.state_for(code)
    assert SandboxDelivery.objects.count() == 1

    row = ContactAdd.objects.get()
    customer = Customer.objects.get(pk=event.customer_id)
    assert (row.account_id, row.live_code_id, row.channel_id, row.is_first_touch) == (
        account.pk, code.pk, channel.pk, True,
    )  # fmt: skip
    assert (customer.owner_staff_id, customer.owner_store_id, customer.source_channel) == (
        account.staff_id, account.store_id, "card",
    )  # fmt: skip
    tags = CustomerTag.objects.filter(customer=customer).values_list(
        "tag__group__name", "tag__name"
    )
    assert list(tags) == [("来源", "包裹卡")]
    day = AccountDay.objects.get(account=account)
    # One add counts once against the cap: assigned (routing) and added (carrier) both 1.
    assert (day.assigned, day.added) == (1, 1)

    # The carrier replays the callback: nothing changes.
    sandbox.emit(carriers.account_config(account), [add])
    assert SandboxDelivery.objects.count() == 1
    assert ContactAdd.objects.count() == 1
    assert Event.objects.filter(type="contact.added").count() == 1
    day.refresh_from_db()
    assert (day.assigned, day.added) == (1, 1)

    # An order paid after the add is attributed to the account's staff and store.
    frozen.advance(dt.timedelta(hours=2))
    result = commerce.post_order(
        brand=brand, actor=None, source="tmall", external_id="T-1", paid_at=frozen.now(),
        amount_fen=9900, customer_id=customer.pk,
    )  # fmt: skip
    assert (result.order.staff_id, result.order.attributed_store_id, result.order.channel) == (
        account.staff_id, account.store_id, "card",
    )  # fmt: skip


def test_an_existing_owner_and_first_touch_are_kept(frozen):
    brand = make_brand()
    account = sandbox_account(brand, "小鱼")
    other = sandbox_account(brand, "老王")
    first = make_code(brand, [other], channel=make_channel(brand, code="sms"))
    second = make_code(brand, [account], channel=make_channel(brand, code="card"))
    config = carriers.account_config
    phone = [{"kind": "phone", "value": "13800138000"}]
    sandbox.emit(config(other), [{"type": "contact.added", "id": "a", "contact": "e",
                                  "identities": phone, "state": services.state_for(first)}])  # fmt: skip
    customer = Customer.objects.get()
    frozen.advance(dt.timedelta(days=1))
    sandbox.emit(config(account), [{"type": "contact.added", "id": "b", "contact": "e",
                                    "identities": phone,
                                    "state": services.state_for(second)}])  # fmt: skip
    # The same person (same phone) added on another account later: one customer, two adds.
    adds = ContactAdd.objects.order_by("id")
    assert list(adds.values_list("customer_id", "channel__code", "is_first_touch")) == [
        (customer.pk, "sms", True), (customer.pk, "card", False),
    ]  # fmt: skip
    customer.refresh_from_db()
    assert (customer.owner_staff_id, customer.source_channel) == (other.staff_id, "sms")


@pytest.fixture
def server(frozen: FrozenClock) -> Iterator[WeComTestServer]:
    cache.clear()
    with WeComTestServer(clock=frozen) as running:
        running.add_staff("zhangsan", "lisi")
        yield running
    cache.clear()


def connect_wecom(server: WeComTestServer, brand: Brand, userid: str) -> CarrierAccount:
    store = make_store(brand)
    staff = make_staff(brand, "advisor", stores=[store])
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="wecom", external_id=userid, display_name=userid,
        staff_id=staff.pk, store_id=store.pk,
    )  # fmt: skip
    carriers.connect_carrier(
        actor=None,
        account=account,
        credentials={
            "secret": server.secret,
            "token": server.callback_token,
            "encoding_aes_key": server.encoding_aes_key,
        },
        settings={"corp_id": server.corp_id, "base_url": server.base_url},
    )
    return account


def post(account: CarrierAccount, server: WeComTestServer, fields: dict) -> int:
    query, body = server.callback(fields)
    response = Client().post(
        f"/api/v1/carriers/{account.pk}/callback?" + "&".join(f"{k}={v}" for k, v in query.items()),
        data=body,
        content_type="text/xml",
    )
    return response.status_code


def test_a_wecom_add_sends_the_live_code_welcome_first(server):
    brand = make_brand()
    account = connect_wecom(server, brand, "zhangsan")
    channel = make_channel(brand, code="store", hook_coupon_code="NEW5")
    code = make_code(brand, [account], channel=channel, welcome_text="欢迎 {name}！")
    fields = server.add_customer(
        userid="zhangsan", external_userid="wm-ext-9", state=services.state_for(code)
    )
    before = len(server.calls())  # creating the code created its contact way
    assert [c.api for c in server.calls()][-1] == "externalcontact/add_contact_way"
    assert post(account, server, fields) == 200

    calls = [c.api for c in server.calls()[before:] if c.api != "gettoken"]
    assert calls == ["externalcontact/send_welcome_msg"]  # first, and nothing else is needed
    (welcome,) = server.welcome_messages
    assert welcome["body"]["text"]["content"].startswith("欢迎 ")
    assert "NEW5" in welcome["body"]["text"]["content"]
    row = ContactAdd.objects.get()
    assert (row.live_code_id, row.channel_id) == (code.pk, channel.pk)
    customer = row.customer
    assert (customer.owner_staff_id, customer.source_channel) == (account.staff_id, "store")

    assert post(account, server, fields) == 200  # WeCom retries: handled once
    assert len(server.welcome_messages) == 1
    assert ContactAdd.objects.count() == 1


def test_the_contact_way_follows_the_pool_as_accounts_fill(server, frozen):
    brand = make_brand()
    zhangsan = connect_wecom(server, brand, "zhangsan")
    lisi = connect_wecom(server, brand, "lisi")
    CarrierAccount.objects.filter(pk__in=[zhangsan.pk, lisi.pk]).update(daily_add_cap=1)
    code = make_code(brand, [zhangsan, lisi], channel=make_channel(brand, code="qr"))

    # Creating the live code created its multi-person contact way.
    code.refresh_from_db()
    (way,) = server.contact_ways.values()
    assert (way["type"], way["user"], way["state"]) == (2, ["zhangsan", "lisi"], code.state)
    assert code.carrier_config_id == way["config_id"]
    assert code.carrier_qr_url == way["qr_code"] != ""
    assert services.sync_live_code_carrier(live_code=code).status == "unchanged"
    calls_before = len(server.calls("externalcontact/update_contact_way"))

    # zhangsan takes an add through WeCom and reaches the cap: WeCom no longer offers them.
    fields = server.add_customer(userid="zhangsan", external_userid="wm-1", state=code.state)
    assert post(zhangsan, server, fields) == 200
    assert server.contact_ways[code.carrier_config_id]["user"] == ["lisi"]
    assert len(server.calls("externalcontact/update_contact_way")) == calls_before + 1
    code.refresh_from_db()
    assert code.carrier_members == ["lisi"]

    # lisi fills too: WeCom needs a member, so the way keeps lisi and the code says why.
    fields = server.add_customer(userid="lisi", external_userid="wm-2", state=code.state)
    assert post(lisi, server, fields) == 200
    code.refresh_from_db()
    assert server.contact_ways[code.carrier_config_id]["user"] == ["lisi"]
    assert "room" in code.carrier_sync_error

    # The next local day both have room again: the worker loop rewrites the member list.
    frozen.advance(dt.timedelta(days=1))
    assert services.carrier_sync_loop() == 1
    assert server.contact_ways[code.carrier_config_id]["user"] == ["zhangsan", "lisi"]
    assert services.carrier_sync_loop() == 0  # nothing changed: WeCom is not called again


def test_a_failed_sync_is_kept_and_retried_and_the_lease_keeps_one_syncer(server, frozen):
    from yutang.core.worker import acquire_lease

    brand = make_brand()
    zhangsan = connect_wecom(server, brand, "zhangsan")
    server.fail_next("externalcontact/add_contact_way", 84061, errmsg="not external contact")
    code = make_code(brand, [zhangsan])
    code.refresh_from_db()
    assert not server.contact_ways and code.carrier_config_id == ""
    assert "84061" in code.carrier_sync_error

    # Another worker holds the lease: this one does nothing.
    assert acquire_lease(services.CARRIER_SYNC_LEASE, "other-worker", dt.timedelta(minutes=1))
    assert services.carrier_sync_loop() == 0
    assert not server.contact_ways
    frozen.advance(dt.timedelta(minutes=5))  # the other worker's lease expired
    assert services.carrier_sync_loop() == 1
    code.refresh_from_db()
    assert (code.carrier_sync_error, list(server.contact_ways)) == ("", [code.carrier_config_id])


def test_sandbox_codes_have_no_contact_way(frozen):
    brand = make_brand()
    code = make_code(brand, [sandbox_account(brand, "小鱼")])
    result = services.sync_live_code_carrier(live_code=code)
    assert result.status == "skipped"
    code.refresh_from_db()
    assert (code.carrier_config_id, code.carrier_qr_url) == ("", "")


def test_rest_and_cli_sync_a_live_codes_contact_way(server, frozen):
    import io

    from django.core.management import CommandError, call_command

    from tests.factories import Api

    brand = make_brand()
    zhangsan = connect_wecom(server, brand, "zhangsan")
    server.fail_next("externalcontact/add_contact_way", 84061, errmsg="not external contact")
    code = make_code(brand, [zhangsan])
    lead = make_staff(brand, "operations_lead")

    response = Api(lead).post(f"/live-codes/{code.pk}/carrier-sync", {})
    assert response.status_code == 200
    assert response.json()["status"] == "synced"
    assert response.json()["user_ids"] == ["zhangsan"]
    shown = Api(lead).get(f"/live-codes/{code.pk}").json()
    assert shown["carrier_qr_url"].startswith("https://")
    assert (shown["carrier_members"], shown["carrier_sync_error"]) == (["zhangsan"], "")

    other = make_brand()
    assert (
        Api(make_staff(other, "operations_lead"))
        .post(f"/live-codes/{code.pk}/carrier-sync", {})
        .status_code
        == 404
    )  # another brand's code does not exist for them

    out = io.StringIO()
    call_command("live_codes", "sync", stdout=out)
    assert out.getvalue().splitlines() == [f"{code.pk}\tunchanged\tzhangsan"]
    with pytest.raises(CommandError, match="--live-code"):
        call_command("live_codes", "sync", "--live-code", "999999", stdout=io.StringIO())

    # The pool changes while WeCom refuses: the update stands, the error is kept, the CLI fails.
    lisi = connect_wecom(server, brand, "lisi")
    server.fail_next("externalcontact/update_contact_way", 84061, times=2, errmsg="refused")
    services.update_live_code(
        actor=lead, live_code_id=code.pk,
        members=[{"account_id": zhangsan.pk}, {"account_id": lisi.pk}],
    )  # fmt: skip
    code.refresh_from_db()
    assert code.members.count() == 2 and "84061" in code.carrier_sync_error
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 live code"):
        call_command("live_codes", "sync", stdout=out)
    assert out.getvalue().startswith(f"{code.pk}\terror\tzhangsan,lisi\t")
    call_command("live_codes", "sync", "--live-code", str(code.pk), stdout=io.StringIO())
    assert server.contact_ways[code.carrier_config_id]["user"] == ["zhangsan", "lisi"]


def test_the_console_shows_the_contact_way_and_syncs_it(server, frozen):
    from tests.factories import console_client

    brand = make_brand()
    zhangsan = connect_wecom(server, brand, "zhangsan")
    server.fail_next("externalcontact/add_contact_way", 84061, errmsg="refused")
    code = make_code(brand, [zhangsan])
    client = console_client(make_staff(brand, "operations_lead"))

    page = client.get(f"/live-codes/{code.pk}/").content.decode()
    assert "企业微信联系我" in page and "84061" in page and "立即同步" in page

    response = client.post(f"/live-codes/{code.pk}/carrier-sync/", follow=True)
    page = response.content.decode()
    assert response.status_code == 200
    assert "企业微信联系我已是最新。" in page and "<code>zhangsan</code>" in page
    assert 'data-testid="sync-error"' not in page

    advisor = console_client(make_staff(brand, "advisor", stores=[make_store(brand)]))
    assert advisor.post(f"/live-codes/{code.pk}/carrier-sync/").status_code == 403
