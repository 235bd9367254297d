"""The local server delivers encrypted, signed callbacks to a real HTTP endpoint. The receiver
here is a minimal stand-in for the carriers app's callback view: it verifies and decrypts with
our crypto, parses with our parser, stores by dedupe key, and answers as WeCom expects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from yutang.carriers.wecom.callbacks import (
    AnyCallback,
    ExternalChatUpdated,
    ExternalContactAdded,
    parse_callback,
)
from yutang.carriers.wecom.crypto import CallbackCrypto, CallbackRejected
from yutang.carriers.wecom.testserver import WeComTestServer


class Receiver:
    def __init__(self, crypto: CallbackCrypto):
        self.crypto = crypto
        self.stored: dict[str, AnyCallback] = {}
        self.rejected: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = dict(parse_qsl(urlsplit(self.path).query))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    text = receiver.crypto.decrypt_body(
                        msg_signature=query.get("msg_signature", ""), timestamp=query.get("timestamp", ""),
                        nonce=query.get("nonce", ""), body=body,
                    )  # fmt: skip
                    event = parse_callback(text)
                except CallbackRejected as error:
                    receiver.rejected.append(error.code)
                    self.send_response(error.status_code)
                    self.end_headers()
                    return
                receiver.stored.setdefault(event.dedupe_key, event)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/wecom/callback"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver(server: WeComTestServer) -> Iterator[Receiver]:
    crypto = CallbackCrypto(token=server.callback_token, encoding_aes_key=server.encoding_aes_key,
                            receive_id=server.corp_id)  # fmt: skip
    running = Receiver(crypto)
    yield running
    running.close()


def test_callbacks_are_delivered_and_replays_stored_once(
    server: WeComTestServer, receiver: Receiver
) -> None:
    added = server.add_customer(userid="zhangsan", external_userid="wm-1", state="qr-7")
    first = server.deliver_callback(receiver.url, added)
    replay = server.deliver_callback(receiver.url, added)
    assert (first.status_code, first.text, replay.status_code) == (200, "success", 200)
    chat = server.create_group_chat(owner="zhangsan", members=[])
    server.deliver_callback(
        receiver.url, server.join_group_chat(chat_id=str(chat["ChatId"]), external_userid="wm-1")
    )
    server.deliver_callback(receiver.url, server.tag_event(change_type="create", tag_id="et1"))
    server.deliver_callback(
        receiver.url, server.customer_deletes_staff(userid="zhangsan", external_userid="wm-1")
    )
    kinds = sorted(type(e).__name__ for e in receiver.stored.values())
    assert kinds == [
        "ExternalChatUpdated",
        "ExternalContactAdded",
        "ExternalTagChanged",
        "FollowUserDeleted",
    ]
    added_event = next(e for e in receiver.stored.values() if isinstance(e, ExternalContactAdded))
    assert (added_event.state, added_event.welcome_code) == ("qr-7", added["WelcomeCode"])
    update = next(e for e in receiver.stored.values() if isinstance(e, ExternalChatUpdated))
    assert update.member_change_list == ("wm-1",)


def test_callback_from_another_corp_is_rejected_and_not_stored(
    server: WeComTestServer, receiver: Receiver
) -> None:
    with WeComTestServer(
        corp_id="ww-other", token=receiver.crypto.token, encoding_aes_key=server.encoding_aes_key
    ) as other:
        other.add_staff("zhangsan")
        response = other.deliver_callback(receiver.url, other.add_customer(userid="zhangsan"))
    assert response.status_code == 403
    assert receiver.rejected == ["wecom_wrong_receive_id"]
    assert receiver.stored == {}


def test_forged_signature_is_rejected(server: WeComTestServer, receiver: Receiver) -> None:
    import httpx

    query, body = server.callback(server.add_customer(userid="zhangsan"))
    response = httpx.post(
        receiver.url, params={**query, "msg_signature": "f" * 40}, content=body.encode()
    )
    assert response.status_code == 403
    assert receiver.rejected == ["wecom_bad_signature"]
    assert receiver.stored == {}


def test_server_runs_standalone_for_the_demo() -> None:
    import json
    import subprocess
    import sys

    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "yutang.carriers.wecom.testserver", "--staff", "demo1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        settings = json.loads(process.stdout.readline())
        answer = httpx.get(settings["base_url"] + "gettoken",
                           params={"corpid": settings["corp_id"], "corpsecret": settings["secret"]}).json()  # fmt: skip
        assert answer["errcode"] == 0 and answer["expires_in"] == 7200
        assert len(settings["encoding_aes_key"]) == 43
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
