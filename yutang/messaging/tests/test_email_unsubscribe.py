"""One-click unsubscribe end to end: a marketing email goes through the outbox to a local
SMTP server (aiosmtpd); the test reads List-Unsubscribe from the mail it received, POSTs
``List-Unsubscribe=One-Click`` to that link as a mail client would (RFC 8058), and sees
marketing consent on email withdrawn once. The link is signed, expires and carries no PII."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.test.utils import override_settings

from tests.factories import make_brand
from yutang.carriers import services as carriers
from yutang.carriers import unsubscribe as links
from yutang.core import services as core_services
from yutang.core.clock import FrozenClock, use_clock
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Consent
from yutang.events.models import Event
from yutang.messaging import services as messaging
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.tests.helpers import NOON, grant

pytestmark = pytest.mark.django_db
PUBLIC = "https://yutang.brand.example"
ADDRESS = "lin.xiaoyu@example.com"
FORM = "application/x-www-form-urlencoded"


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    clock = FrozenClock(NOON)
    with use_clock(clock), override_settings(PUBLIC_URL=PUBLIC):
        yield clock


def setup_email(port: int):
    brand = make_brand("林家铺子")
    account = core_services.create_carrier_account(
        actor=None, brand=brand, kind="email", external_id="news", display_name="会员通讯"
    )
    carriers.connect_carrier(
        actor=None,
        account=account,
        credentials={},
        settings={
            "host": "127.0.0.1",
            "port": port,
            "from_email": "news@brand.example",
            "unsubscribe_mailto": "unsubscribe@brand.example",
        },
    )
    lin = customers.resolve_customer(
        brand=brand, identities=[normalize_identity("email", ADDRESS)], source="test"
    ).customer
    grant(lin, "marketing")
    return account, lin


def withdrawals(customer_id: int) -> int:
    return Event.objects.filter(
        customer_id=customer_id, type="consent.changed", properties__status="withdrawn"
    ).count()


def test_the_link_in_the_received_mail_unsubscribes_once(smtp, frozen):
    sink, port = smtp
    account, lin = setup_email(port)
    messaging.enqueue_message(
        brand=account.brand,
        customer=lin,
        account=account,
        kind="marketing",
        content={"subject": "春季上新", "text": "新品八折"},
        cause="manual",
        idempotency_key="spring",
    )
    deliver_due_messages()

    (envelope,) = sink.messages
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    targets = re.findall(r"<([^>]+)>", str(mail["List-Unsubscribe"]))
    assert targets[1] == "mailto:unsubscribe@brand.example?subject=unsubscribe"
    link = urlsplit(targets[0])
    assert f"{link.scheme}://{link.netloc}" == PUBLIC and link.path.startswith("/u/")
    token = link.path.removeprefix("/u/")
    # No PII in the link: it names only the account and customer ids (and its expiry).
    decoded = base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()
    assert decoded.split(".")[:2] == [str(account.pk), str(lin.pk)]
    assert ADDRESS not in link.path and "lin" not in decoded

    page = Client().get(link.path)
    assert page.status_code == 200
    assert "退订" in page.content.decode() and "林家铺子" in page.content.decode()
    assert "Unsubscribe" in Client().get(link.path, {"lang": "en"}).content.decode()
    assert withdrawals(lin.pk) == 0  # looking is not unsubscribing

    # What a mail client does (RFC 8058): POST the one-click body, no cookies, no CSRF token.
    client = Client(enforce_csrf_checks=True)
    done = client.post(link.path, "List-Unsubscribe=One-Click", content_type=FORM)
    assert done.status_code == 200
    assert Consent.objects.get(customer=lin, purpose="marketing", carrier="email").status == (
        "withdrawn"
    )
    assert withdrawals(lin.pk) == 1
    again = client.post(link.path, "List-Unsubscribe=One-Click", content_type=FORM)
    assert again.status_code == 200
    assert withdrawals(lin.pk) == 1  # idempotent

    messaging.enqueue_message(
        brand=account.brand,
        customer=lin,
        account=account,
        kind="marketing",
        content={"subject": "会员日", "text": "满减"},
        cause="manual",
        idempotency_key="members-day",
    )
    deliver_due_messages()
    assert len(sink.messages) == 1  # the gate's consent rule stops the next one


def test_a_forged_altered_or_expired_link_does_nothing(smtp, frozen):
    _, port = smtp
    account, lin = setup_email(port)
    token = links.make_token(account.pk, lin.pk)
    payload, mac = token.split(".")
    other = base64.urlsafe_b64encode(f"{account.pk}.{lin.pk + 1}.9999999999".encode()).decode()
    for bad in (f"{other.rstrip('=')}.{mac}", f"{payload}.{mac[:-2]}AA", "nonsense"):
        assert Client().post(
            f"/u/{bad}", "List-Unsubscribe=One-Click", content_type=FORM
        ).status_code == (404)
    assert Client().post(f"/u/{token}", "other=1", content_type=FORM).status_code == 400
    frozen.advance(links.LIFETIME + dt.timedelta(seconds=1))
    expired = Client().post(f"/u/{token}", "List-Unsubscribe=One-Click", content_type=FORM)
    assert expired.status_code == 404
    assert withdrawals(lin.pk) == 0


def test_without_a_public_url_only_mailto_is_offered(smtp, frozen):
    sink, port = smtp
    account, lin = setup_email(port)
    with override_settings(PUBLIC_URL=""):
        messaging.enqueue_message(
            brand=account.brand,
            customer=lin,
            account=account,
            kind="marketing",
            content={"subject": "新品", "text": "新品"},
            cause="manual",
            idempotency_key="no-link",
        )
        deliver_due_messages()
    mail = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    assert str(mail["List-Unsubscribe"]) == "<mailto:unsubscribe@brand.example?subject=unsubscribe>"
    assert mail["List-Unsubscribe-Post"] is None
