"""A local HTTP SMS provider for tests and the demo, speaking the contract the `sms` adapter
documents (docs/messaging.md, "SMS provider contract"):

- ``POST /messages`` signed with the API secret (``X-Yutang-Signature``):
  ``{"id", "to", "sign_name", "template_id", "params", "text"}`` → ``200 {"message_id"}``; the
  same ``id`` again → ``409 {"message_id"}`` with the first id (it sends once); a bad
  signature → 401, a missing field → 400 ``{"error": {"code", "message"}}``;
- ``POST /ping`` → 200 when the signature is good.

Tests make the next calls fail (:meth:`fail_next`: 429 or 5xx are transient, other 4xx
permanent), read what it accepted (:attr:`received`) and every request (:attr:`requests`), and
build the signed callbacks a provider posts back to Yutang — delivery receipts and the
customer's replies — with :meth:`receipt`, :meth:`reply` and :meth:`signed`.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from yutang.carriers import signing
from yutang.core import clock


@dataclass
class Failure:
    status: int
    code: str
    message: str


@dataclass
class SmsTestServer:
    api_secret: str = "sms-api-secret"
    callback_secret: str = "sms-callback-secret"
    received: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)
    _ids: dict[str, str] = field(default_factory=dict)
    _failures: list[Failure] = field(default_factory=list)
    _events: itertools.count = field(default_factory=lambda: itertools.count(1))
    _httpd: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SmsTestServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = server.handle(self.path, dict(self.headers), body)
                raw = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SmsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "the server is not running"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- test hooks ---------------------------------------------------------------------------

    def fail_next(
        self, status: int, *, times: int = 1, code: str = "", message: str = "通道繁忙"
    ) -> None:
        """Answer the next `times` sends with this HTTP status (nothing is sent)."""
        with self.lock:
            self._failures += [Failure(status, code or str(status), message)] * times

    def sends(self) -> int:
        """How many POST /messages it answered (accepted, deduped or failed)."""
        return sum(1 for path, _ in self.requests if path == "/messages")

    # -- the provider -------------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        with self.lock:
            status, answer = self._handle(path, headers, body)
            self.requests.append((path, status))
            return status, answer

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        problem = signing.verify(self.api_secret, headers, body)
        if problem:
            return 401, {"error": {"code": "bad_signature", "message": problem}}
        if path == "/ping":
            return 200, {"ok": True}
        if path != "/messages":
            return 404, {"error": {"code": "not_found", "message": path}}
        if self._failures:
            failure = self._failures.pop(0)
            return failure.status, {"error": {"code": failure.code, "message": failure.message}}
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"error": {"code": "bad_json", "message": "body is not JSON"}}
        for name in ("id", "to", "sign_name"):
            if not payload.get(name):
                return 400, {"error": {"code": "missing", "message": f"{name} is required"}}
        if not payload.get("template_id") and not payload.get("text"):
            return 400, {"error": {"code": "missing", "message": "template_id or text"}}
        key = str(payload["id"])
        if key in self._ids:
            return 409, {"message_id": self._ids[key]}
        self._ids[key] = f"sms-{len(self._ids) + 1}"
        self.received.append(payload)
        return 200, {"message_id": self._ids[key]}

    # -- callbacks to Yutang ------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": f"sms-event-{next(self._events)}",
            "type": kind,
            "occurred_at": clock.now().isoformat(),
            **fields,
        }

    def receipt(self, message_id: str, status: str = "delivered", reason: str = "") -> dict:
        return self._event("delivery.receipt", message_id=message_id, status=status, reason=reason)

    def reply(self, phone: str, text: str) -> dict[str, Any]:
        return self._event("message.received", contact=phone, text=text)

    def signed(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """A callback body and its signature header, as the provider posts them."""
        body = json.dumps({"events": events}, ensure_ascii=False).encode()
        return body, signing.sign(self.callback_secret, body)
