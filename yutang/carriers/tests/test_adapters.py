"""The webhook and SMS adapters against a local HTTP server that speaks their documented
JSON contract, and the email adapter against a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.factories import Api, make_brand, make_staff
from yutang.carriers import services, signing
from yutang.carriers.base import CarrierError, Outbound
from yutang.carriers.models import CarrierConnection
from yutang.core import crypto
from yutang.core import services as core_services

pytestmark = pytest.mark.django_db
SECRET = "provider-secret"


class Provider(BaseHTTPRequestHandler):
    """A minimal SMS provider / brand webhook: verifies our signature, dedupes by id."""

    received: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    fail_next: list[int] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        problem = signing.verify(SECRET, dict(self.headers), body)
        if problem:
            return self._answer(401, {"error": {"code": "bad_signature", "message": problem}})
        if self.fail_next:
            code = self.fail_next.pop(0)
            return self._answer(
                code,
                {
                    "error": {
                        "code": str(code),
                        "message": "号码格式错误" if code == 400 else "busy",
                    }
                },
            )
        payload = json.loads(body)
        if self.path.endswith("/ping") or payload.get("type") == "ping":
            return self._answer(200, {"ok": True})
        key = payload["id"]
        if key in self.seen:
            return self._answer(409, {"message_id": self.seen[key]})
        self.seen[key] = f"p-{len(self.seen) + 1}"
        self.received.append(payload)
        return self._answer(200, {"message_id": self.seen[key]})

    def _answer(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[str]:
    Provider.received, Provider.seen, Provider.fail_next = [], {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def account(kind: str, **connection: Any):
    brand = make_brand()
    acc = core_services.create_carrier_account(
        actor=None, brand=brand, kind=kind, external_id=f"{kind}-1", display_name=kind
    )
    services.connect_carrier(actor=None, account=acc, **connection)
    return acc


def out(acc, key="k1", kind="marketing", recipient="+8613800138000", **content: Any) -> Outbound:
    return Outbound(
        idempotency_key=key,
        brand_id=acc.brand_id,
        account_id=acc.pk,
        customer_id=1,
        recipient=recipient,
        kind=kind,
        content=content or {"text": "新品上市"},
    )


def test_sms_sends_signed_json_dedupes_and_maps_errors(provider):
    acc = account(
        "sms",
        credentials={"api_secret": SECRET},
        settings={"base_url": provider, "sign_name": "鱼塘", "templates": {"marketing": "T1"}},
    )
    adapter = services.adapter_for(acc)
    first = adapter.send(out(acc))
    again = adapter.send(out(acc))
    assert first.carrier_message_id == again.carrier_message_id == "p-1"
    (sent,) = Provider.received
    assert sent == {
        "id": "k1",
        "to": "+8613800138000",
        "sign_name": "鱼塘",
        "template_id": "T1",
        "params": {},
        "text": "新品上市 拒收请回复R或退订回T",
    }
    Provider.fail_next = [400]
    with pytest.raises(CarrierError) as permanent:
        adapter.send(out(acc, key="k2"))
    assert not permanent.value.transient and "号码格式错误" in permanent.value.reason
    Provider.fail_next = [503]
    with pytest.raises(CarrierError) as transient:
        adapter.send(out(acc, key="k3"))
    assert transient.value.transient


def test_connection_test_records_status_and_last_error(provider):
    acc = account(
        "sms",
        credentials={"api_secret": "wrong"},
        settings={"base_url": provider, "sign_name": "鱼塘"},
    )
    conn = services.test_connection(actor=None, account_id=acc.pk, account=acc)
    assert conn.status == "error" and "HTTP 401" in conn.last_error
    services.connect_carrier(
        actor=None, account=acc, credentials={"api_secret": SECRET}, settings={}
    )
    assert (
        services.test_connection(actor=None, account_id=acc.pk, account=acc).status == "connected"
    )
    stored = CarrierConnection.objects.get(account=acc)
    assert SECRET not in stored.credentials_encrypted
    assert json.loads(crypto.decrypt_pii(stored.credentials_encrypted))["api_secret"] == SECRET


def test_unreachable_provider_is_a_transient_error():
    acc = account(
        "webhook",
        credentials={"signing_secret": SECRET},
        settings={"url": "http://127.0.0.1:9/none"},
    )
    with pytest.raises(CarrierError) as exc:
        services.adapter_for(acc).send(out(acc))
    assert exc.value.transient


def test_webhook_posts_a_signed_message(provider):
    acc = account(
        "webhook", credentials={"signing_secret": SECRET}, settings={"url": provider + "/hook"}
    )
    result = services.adapter_for(acc).send(out(acc, recipient="42", text="hi"))
    assert result.carrier_message_id == "p-1"
    (sent,) = Provider.received
    assert (sent["type"], sent["recipient"], sent["content"]) == ("message", "42", {"text": "hi"})


def test_api_connect_validates_keys_and_never_returns_secrets(provider):
    acc = account("webhook", credentials={}, settings={})
    api = Api(make_staff(acc.brand))
    bad = api.put(f"/carriers/{acc.pk}/connection", {"credentials": {"token": "x"}})
    assert bad.status_code == 422 and bad.json()["field"] == "credentials.token"
    ok = api.put(
        f"/carriers/{acc.pk}/connection",
        {"credentials": {"signing_secret": SECRET}, "settings": {"url": provider}},
    )
    assert ok.status_code == 200 and SECRET not in ok.content.decode()
    tested = api.post(f"/carriers/{acc.pk}/test", {})
    assert tested.json()["status"] == "connected"


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def test_email_through_a_local_smtp_server_with_list_unsubscribe():
    sink = Sink()
    with socket.socket() as probe:  # a free loopback port for the SMTP server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        acc = account(
            "email",
            credentials={},
            settings={
                "host": "127.0.0.1",
                "port": port,
                "from_email": "hello@brand.example",
                "unsubscribe_mailto": "unsubscribe@brand.example",
            },
        )
        adapter = services.adapter_for(acc)
        adapter.check_connection()
        result = adapter.send(out(acc, recipient="lin@example.com", subject="春季", text="新品"))
    finally:
        controller.stop()
    (envelope,) = sink.messages
    raw = envelope.content.decode()
    assert envelope.rcpt_tos == ["lin@example.com"]
    assert "List-Unsubscribe: <mailto:unsubscribe@brand.example?subject=unsubscribe>" in raw
    assert f"Message-ID: {result.carrier_message_id}" in raw


def test_sandbox_batch_send_dedupes_by_key_like_single_sends():
    from yutang.carriers.base import send_many
    from yutang.carriers.models import SandboxDelivery

    acc = account("sandbox", credentials={"callback_secret": "s"}, settings={})
    adapter = services.adapter_for(acc)
    earlier = adapter.send(out(acc, key="a", recipient="wm-a"))
    results = send_many(
        adapter,
        [
            out(acc, key="a", recipient="wm-a"),  # accepted before: a duplicate
            out(acc, key="b", recipient="wm-b", text="你好"),
            out(acc, key="b", recipient="wm-b", text="你好"),  # twice in one batch
            out(acc, key="c", recipient="wm-c"),
        ],
    )
    assert [r.duplicate for r in results] == [True, False, True, False]  # type: ignore[union-attr]
    ids = [r.carrier_message_id for r in results]  # type: ignore[union-attr]
    assert ids[0] == earlier.carrier_message_id and ids[1] == ids[2] != ids[3]
    rows = {d.idempotency_key: d for d in SandboxDelivery.objects.filter(account=acc)}
    assert sorted(rows) == ["a", "b", "c"]
    assert rows["b"].content == {"text": "你好"} and rows["b"].recipient == "wm-b"
    assert ids[1] == f"sbx-{rows['b'].pk}"
