"""SMS end to end against a local HTTP SMS provider speaking the documented contract: the
outbox sends through an SMS carrier account, the provider posts a delivery receipt and the
customer's opt-out reply through the signed inbound callback, and Yutang withdraws consent
and confirms once. Then the outbox's retry: transient provider errors are retried with
exponential backoff and jitter on the injectable clock, up to `max_attempts`, then fail with
the provider's reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.factories import make_brand, make_staff
from yutang.carriers import services as carriers
from yutang.carriers.models import CarrierConnection
from yutang.carriers.sms_testserver import SmsTestServer
from yutang.core import services as core_services
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.errors import ValidationFailed
from yutang.core.models import Brand, CarrierAccount
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Consent, Customer
from yutang.events.models import Event
from yutang.messaging import delivery
from yutang.messaging import services as messaging
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import NOON, grant

pytestmark = pytest.mark.django_db
PHONE = "+8613800138000"


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    clock = FrozenClock(NOON)
    with use_clock(clock):
        yield clock


@pytest.fixture
def provider(frozen: FrozenClock) -> Iterator[SmsTestServer]:
    with SmsTestServer() as running:
        yield running


def sms_account(provider: SmsTestServer, brand: Brand | None = None, **settings: Any):
    brand = brand or make_brand()
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="sms", external_id="sms-main", display_name="短信"
    )
    carriers.connect_carrier(
        actor=None,
        account=account,
        credentials={
            "api_secret": provider.api_secret,
            "callback_secret": provider.callback_secret,
        },
        settings={"base_url": provider.base_url, "sign_name": "鱼塘", **settings},
    )
    return account


def customer_with_phone(brand: Brand, phone: str = PHONE) -> Customer:
    found = customers.resolve_customer(
        brand=brand, identities=[normalize_identity("phone", phone)], source="test"
    ).customer
    grant(found, "marketing")
    return found


def send(account: CarrierAccount, customer: Customer, text: str, kind: str = "marketing"):
    return messaging.enqueue_message(
        brand=account.brand,
        customer=customer,
        account=account,
        kind=kind,
        content={"text": text},
        cause="manual",
        idempotency_key=f"sms:{customer.pk}:{text}",
    )


def post_callback(account: CarrierAccount, provider: SmsTestServer, events: list[dict]) -> int:
    body, headers = provider.signed(events)
    response = Client().post(
        f"/api/v1/carriers/{account.pk}/callback",
        data=body,
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200, response.content
    return int(response.json()["accepted"])


def withdrawals(customer: Customer) -> int:
    return Event.objects.filter(
        customer_id=customer.pk, type="consent.changed", properties__status="withdrawn"
    ).count()


def test_a_marketing_sms_a_receipt_and_an_opt_out_reply(provider, frozen):
    account = sms_account(provider)
    lin = customer_with_phone(account.brand)
    message = send(account, lin, "春季新品上市")
    deliver_due_messages()

    (sent,) = provider.received
    assert sent["to"] == PHONE and sent["sign_name"] == "鱼塘"
    assert sent["text"] == "春季新品上市 拒收请回复R或退订回T"  # the opt-out the keywords obey
    message.refresh_from_db()
    assert (message.status, message.carrier_message_id) == ("sent", "sms-1")

    frozen.advance(dt.timedelta(minutes=1))
    assert post_callback(account, provider, [provider.receipt("sms-1")]) == 1
    message.refresh_from_db()
    assert message.status == "delivered"
    assert Event.objects.filter(type="message.delivered", customer_id=lin.pk).count() == 1

    reply = provider.reply(PHONE, "R")
    assert post_callback(account, provider, [reply]) == 1
    consent = Consent.objects.get(customer=lin, purpose="marketing", carrier="sms")
    assert consent.status == "withdrawn"
    assert withdrawals(lin) == 1
    # The replayed callback, then 退订 as well: withdrawn once, confirmed once.
    assert post_callback(account, provider, [reply]) == 0
    assert post_callback(account, provider, [provider.reply(PHONE, "退订")]) == 1
    assert withdrawals(lin) == 1
    confirmation = Message.objects.get(cause="reply")
    assert (confirmation.kind, confirmation.customer_id) == ("service", lin.pk)
    deliver_due_messages()
    texts = [m["text"] for m in provider.received]
    assert texts[1:] == [
        "您已退订营销消息，我们不会再向您推送促销信息。"
    ]  # a service SMS: no suffix

    blocked = send(account, lin, "会员日")
    deliver_due_messages()
    blocked.refresh_from_db()
    assert (blocked.status, blocked.rule) == ("blocked", "consent")
    assert len(provider.received) == 2


def test_t_also_opts_out_and_a_sentence_does_not(provider, frozen):
    account = sms_account(provider)
    wang = customer_with_phone(account.brand, "+8613900139000")
    post_callback(account, provider, [provider.reply("+8613900139000", "好的，谢谢")])
    assert withdrawals(wang) == 0
    post_callback(account, provider, [provider.reply("+8613900139000", " t。")])
    assert withdrawals(wang) == 1


def test_a_custom_opt_out_text_must_name_its_keywords(provider, frozen):
    account = sms_account(provider)
    brand = account.brand

    def connect(**settings: Any) -> None:
        carriers.connect_carrier(actor=None, account=account, credentials={}, settings=settings)

    with pytest.raises(ValidationFailed) as missing:
        connect(opt_out_text="回N退订")
    assert missing.value.field == "settings.opt_out_keywords"
    with pytest.raises(ValidationFailed, match="'Q'"):
        connect(opt_out_text="回N退订", opt_out_keywords=["N", "Q"])
    connect(opt_out_text="回N退订", opt_out_keywords=["N"])
    zhao = customer_with_phone(brand, "+8613700137000")
    send(account, zhao, "周末特惠")
    deliver_due_messages()
    assert provider.received[-1]["text"] == "周末特惠 回N退订"
    post_callback(account, provider, [provider.reply("+8613700137000", "R")])
    assert withdrawals(zhao) == 0  # R is not what this account told the customer
    post_callback(account, provider, [provider.reply("+8613700137000", "n")])
    assert withdrawals(zhao) == 1


# --- Retry -----------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_backoff_and_jitter_then_sent_once(provider, frozen):
    account = sms_account(provider)
    lin = customer_with_phone(account.brand)
    message = send(account, lin, "您的订单已发货", kind="service")
    provider.fail_next(503, times=2)

    waits = []
    for attempt in (1, 2):
        deliver_due_messages()
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("sending", attempt)
        assert message.reason == "HTTP 503: 通道繁忙"
        wait = message.claimed_until - frozen.now()
        ceiling = delivery.BASE_BACKOFF * 2 ** (attempt - 1)  # 30 s, then 60 s
        assert ceiling / 2 <= wait <= ceiling
        waits.append(wait)
        # Not before its time: a pass in between leaves it alone.
        frozen.advance(wait / 2)
        deliver_due_messages()
        assert provider.sends() == attempt
        frozen.set(message.claimed_until)

    deliver_due_messages()
    message.refresh_from_db()
    assert (message.status, message.attempts, message.carrier_message_id) == ("sent", 3, "sms-1")
    assert [p["id"] for p in provider.received] == [f"{account.brand_id}:{message.idempotency_key}"]
    assert Event.objects.filter(type="message.sent").count() == 1


def test_backoff_jitter_spreads_retries(provider, frozen):
    account = sms_account(provider)
    people = [customer_with_phone(account.brand, f"+861380013{n:04d}") for n in range(6)]
    for n, person in enumerate(people):
        send(account, person, f"取件码 {n}", kind="service")
    provider.fail_next(429, times=6)
    deliver_due_messages()
    leases = set(Message.objects.values_list("claimed_until", flat=True))
    assert len(leases) == 6  # six messages, six different retry times
    for at in leases:
        assert dt.timedelta(seconds=15) <= at - frozen.now() <= dt.timedelta(seconds=30)


def test_after_max_attempts_the_message_fails_with_the_providers_reason(provider, frozen):
    account = sms_account(provider)
    messaging.update_policy(actor=make_staff(account.brand), changes={"max_attempts": 3})
    lin = customer_with_phone(account.brand)
    message = send(account, lin, "验证码 1234", kind="service")
    provider.fail_next(502, times=10, message="上游网关错误")

    for _ in range(3):
        deliver_due_messages()
        message.refresh_from_db()
        if message.claimed_until is not None:
            frozen.set(message.claimed_until)
    assert (message.status, message.attempts) == ("failed", 3)
    assert message.reason == "HTTP 502: 上游网关错误"
    assert provider.sends() == 3
    frozen.advance(dt.timedelta(hours=2))
    deliver_due_messages()
    assert provider.sends() == 3  # failed for good
    connection = CarrierConnection.objects.get(account=account)
    assert (connection.status, connection.last_error) == ("error", "HTTP 502: 上游网关错误")
    assert not Event.objects.filter(type="message.sent").exists()


def test_a_permanent_error_fails_at_once(provider, frozen):
    account = sms_account(provider)
    lin = customer_with_phone(account.brand)
    message = send(account, lin, "验证码 5678", kind="service")
    provider.fail_next(400, message="号码格式错误")
    deliver_due_messages()
    message.refresh_from_db()
    assert (message.status, message.attempts, message.reason) == (
        "failed",
        1,
        "HTTP 400: 号码格式错误",
    )
