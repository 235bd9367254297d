"""The WeCom carrier end to end against the local WeCom protocol server: encrypted callbacks
through our HTTP endpoint, the welcome message sent first, contacts and deletions, mass
messages waiting for the staff member's confirmation, and error handling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import make_account, make_brand, make_staff
from yutang.carriers import services as carriers
from yutang.carriers.adapters.wecom import WeComCarrier, message_parts
from yutang.carriers.base import Outbound
from yutang.carriers.models import CarrierConnection, CarrierContact, InboundReceipt
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand, CarrierAccount
from yutang.customers.models import Identity
from yutang.events.models import Event
from yutang.messaging import services as messaging
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import grant

pytestmark = pytest.mark.django_db

# A Wednesday, 10:00 in Shanghai: outside quiet hours.
NOON = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    frozen = FrozenClock(NOON)
    with use_clock(frozen):
        yield frozen


@pytest.fixture
def server(frozen: FrozenClock) -> Iterator[WeComTestServer]:
    cache.clear()  # tokens are cached per corp; start each test without one
    with WeComTestServer(clock=frozen) as running:
        running.add_staff("zhangsan", "lisi")
        yield running
    cache.clear()


def connect(server: WeComTestServer, brand: Brand | None = None) -> CarrierAccount:
    """The callback account holds the corp credentials, as docs/wecom.md describes."""
    brand = brand or make_brand()
    account = make_account(brand, external_id="zhangsan")
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


def set_welcome(brand: Brand, text: str) -> None:
    messaging.update_policy(actor=make_staff(brand), changes={"default_welcome": text})


def callback_url(account: CarrierAccount, query: dict[str, str]) -> str:
    return f"/api/v1/carriers/{account.pk}/callback?{urlencode(query)}"


def post(account: CarrierAccount, server: WeComTestServer, fields: dict) -> tuple[int, str]:
    query, body = server.callback(fields)
    response = Client().post(callback_url(account, query), data=body, content_type="text/xml")
    return response.status_code, response.content.decode()


def external_calls(server: WeComTestServer) -> list[str]:
    return [c.api for c in server.calls() if c.api != "gettoken"]


def test_the_url_check_is_answered_with_the_decrypted_echo(server):
    account = connect(server)
    query, echo = server.url_verification()
    response = Client().get(f"/api/v1/carriers/{account.pk}/callback", query)
    assert (response.status_code, response.content.decode()) == (200, echo)

    query["msg_signature"] = "0" * 40
    forged = Client().get(f"/api/v1/carriers/{account.pk}/callback", query)
    assert forged.status_code == 401


def test_an_add_sends_the_welcome_first_then_records_the_customer_once(server):
    account = connect(server)
    set_welcome(account.brand, "你好，我是小鱼")
    fields = server.add_customer(userid="zhangsan", external_userid="wm-ext-1", state="lc:7")

    assert post(account, server, fields) == (200, "success")

    # Nothing touched WeCom before the welcome message (only the token fetch).
    assert external_calls(server) == ["externalcontact/send_welcome_msg"]
    assert [m["body"]["text"]["content"] for m in server.welcome_messages] == ["你好，我是小鱼"]
    identity = Identity.objects.get(kind="wecom_external_userid")
    event = Event.objects.get(type="contact.added")
    assert event.customer_id == identity.customer_id
    assert event.properties["live_code"] == "lc:7"
    contact = CarrierContact.objects.get()
    assert (contact.account_id, contact.status, contact.state) == (account.pk, "active", "lc:7")
    welcome = Message.objects.get(cause="welcome")
    assert (welcome.status, welcome.customer_id) == ("sent", identity.customer_id)

    # WeCom retries callbacks it thinks were lost: the replay is handled once.
    assert post(account, server, fields) == (200, "success")
    assert len(server.welcome_messages) == 1
    assert Event.objects.filter(type="contact.added").count() == 1
    assert InboundReceipt.objects.count() == 1


def test_a_callback_about_another_member_lands_on_that_members_account(server):
    account = connect(server)
    set_welcome(account.brand, "欢迎")
    lisi = make_account(account.brand, external_id="lisi")  # shares the corp credentials

    fields = server.add_customer(userid="lisi", external_userid="wm-ext-2")
    assert post(account, server, fields) == (200, "success")

    assert CarrierContact.objects.get().account_id == lisi.pk
    assert len(server.welcome_messages) == 1


def test_a_member_without_a_yutang_account_changes_nothing(server):
    account = connect(server)
    server.add_staff("wangwu")
    fields = server.add_customer(userid="wangwu", external_userid="wm-ext-3")
    assert post(account, server, fields) == (200, "success")
    assert not CarrierContact.objects.exists()
    assert not Event.objects.exists()


def test_the_customer_deleting_the_member_marks_the_contact_lost(server, frozen):
    account = connect(server)
    post(account, server, server.add_customer(userid="zhangsan", external_userid="wm-ext-4"))
    frozen.advance(dt.timedelta(hours=1))

    gone = server.customer_deletes_staff(userid="zhangsan", external_userid="wm-ext-4")
    assert post(account, server, gone) == (200, "success")

    contact = CarrierContact.objects.get()
    assert (contact.status, contact.lost_by) == ("lost", "customer")
    assert Event.objects.filter(type="contact.deleted").count() == 1


def test_a_forged_or_foreign_callback_is_rejected_and_nothing_is_stored(server):
    account = connect(server)
    fields = server.add_customer(userid="zhangsan", external_userid="wm-ext-5")
    query, body = server.callback(fields)
    query["msg_signature"] = "f" * 40
    url = callback_url(account, query)
    response = Client().post(url, data=body, content_type="text/xml")
    assert response.status_code == 401
    assert response.json()["code"] == "callback_rejected"

    other = WeComTestServer(corp_id="ww-other-corp", encoding_aes_key=server.encoding_aes_key)
    foreign_query, foreign_body = other.callback({**fields, "ToUserName": "ww-other-corp"})
    url = callback_url(account, foreign_query)
    assert Client().post(url, data=foreign_body, content_type="text/xml").status_code == 401
    assert not InboundReceipt.objects.exists()
    assert not Event.objects.exists()
    assert server.welcome_messages == []


def test_marketing_waits_for_the_members_confirmation_on_wecom(server):
    account = connect(server)
    post(account, server, server.add_customer(userid="zhangsan", external_userid="wm-ext-6"))
    customer = CarrierContact.objects.get().customer
    grant(customer, "marketing")

    message = messaging.enqueue_message(
        brand=account.brand,
        customer=customer,
        account=account,
        kind="marketing",
        content={"type": "text", "text": "春季新品上架"},
        cause="broadcast",
        idempotency_key="spring-1",
    )
    assert deliver_due_messages() == 1

    message.refresh_from_db()
    assert message.status == "pending_confirmation"
    (task,) = server.group_msgs.values()
    assert message.carrier_message_id == task.msgid
    assert task.request["sender"] == "zhangsan"
    assert task.request["external_userid"] == ["wm-ext-6"]
    assert task.request["text"] == {"content": "春季新品上架"}
    assert task.results == {"zhangsan": {"wm-ext-6": 0}}  # pending until zhangsan confirms


def test_a_permanent_wecom_error_fails_the_message_with_wecoms_reason(server):
    account = connect(server)
    post(account, server, server.add_customer(userid="zhangsan", external_userid="wm-ext-7"))
    customer = CarrierContact.objects.get().customer
    grant(customer, "marketing")
    server.fail_next("externalcontact/add_msg_template", 84061, errmsg="not external contact")

    message = messaging.enqueue_message(
        brand=account.brand,
        customer=customer,
        account=account,
        kind="marketing",
        content={"type": "text", "text": "新品"},
        cause="broadcast",
        idempotency_key="spring-2",
    )
    deliver_due_messages()

    message.refresh_from_db()
    assert message.status == "failed"
    assert "84061" in message.reason


def test_the_welcome_code_is_used_once(server):
    account = connect(server)
    fields = server.add_customer(userid="zhangsan", external_userid="wm-ext-8")
    adapter = carriers.adapter_for(account)
    assert isinstance(adapter, WeComCarrier)
    outbound = Outbound(
        idempotency_key="w1",
        brand_id=account.brand_id,
        account_id=account.pk,
        customer_id=0,
        recipient="wm-ext-8",
        kind="service",
        content={"type": "text", "text": "欢迎", "welcome_code": str(fields["WelcomeCode"])},
        cause="welcome",
    )
    assert adapter.send(outbound).duplicate is False
    assert adapter.send(outbound).duplicate is True  # WeCom said 41051: already sent
    assert len(server.welcome_messages) == 1


def test_connection_check_records_connected_or_wecoms_refusal(server):
    account = connect(server)
    assert carriers.test_connection(actor=None, account_id=account.pk, account=account).status == (
        "connected"
    )

    carriers.connect_carrier(
        actor=None, account=account, credentials={"secret": "wrong"}, settings={}
    )
    cache.clear()
    connection = carriers.test_connection(actor=None, account_id=account.pk, account=account)
    assert connection.status == CarrierConnection.Status.ERROR
    assert "gettoken" in connection.last_error


def test_content_maps_to_wecom_text_and_attachments():
    text, attachments = message_parts(
        {
            "type": "text",
            "text": "hi",
            "attachments": [
                {"type": "link", "title": "新品", "url": "https://example.com/a"},
                {"type": "image", "image_url": "https://example.com/a.png"},
            ],
        }
    )
    assert text == "hi"
    assert [a.as_json()["msgtype"] for a in attachments] == ["link", "image"]
    text, attachments = message_parts({"type": "link", "title": "T", "url": "https://e.com"})
    assert text == "" and attachments[0].as_json()["link"]["url"] == "https://e.com"
