"""The webhook step against a real local HTTP server: signed, timestamped, retried with the
same idempotency key, and failed steps exit after bounded retries."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from yutang.core.clock import FrozenClock, use_clock
from yutang.journeys import engine, services, webhooks
from yutang.journeys.models import Enrollment, StepRun
from yutang.journeys.tests.helpers import T0, customer, live, setup

pytestmark = pytest.mark.django_db
SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    def __init__(self, fail_first: int = 0):
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                status = 500 if len(receiver.calls) <= receiver.fail_first else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_signed_webhook_retried_with_same_key():
    brand, admin = setup()
    c = customer(brand)
    with Receiver(fail_first=1) as rx:
        j = live(admin, [{"id": "hook", "type": "webhook", "url": rx.url, "secret": SECRET}])
        with use_clock(FrozenClock(T0)):
            services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[c.pk])
        engine.fast_forward(start=T0, until=T0 + dt.timedelta(hours=1))
    assert len(rx.calls) == 2
    (h1, b1), (h2, b2) = rx.calls
    assert h1["Idempotency-Key"] == h2["Idempotency-Key"]
    payload = json.loads(b2)
    assert (payload["customer_id"], payload["step_id"]) == (c.pk, "hook")
    sent_at = dt.datetime.fromtimestamp(int(h2["X-Yutang-Timestamp"]), dt.UTC)
    assert webhooks.verify(SECRET, h2["X-Yutang-Timestamp"], b2, h2["X-Yutang-Signature"], sent_at)
    assert not webhooks.verify(
        "other-secret-xxxxxx", h2["X-Yutang-Timestamp"], b2, h2["X-Yutang-Signature"], sent_at
    )
    assert not webhooks.verify(
        SECRET,
        h2["X-Yutang-Timestamp"],
        b2,
        h2["X-Yutang-Signature"],
        sent_at + dt.timedelta(minutes=6),
    )
    assert Enrollment.objects.get().state == "completed"
    assert StepRun.objects.filter(step_id="hook").count() == 1


def test_webhook_that_keeps_failing_exits_the_customer():
    brand, admin = setup()
    c = customer(brand)
    with Receiver(fail_first=100) as rx:
        j = live(admin, [{"id": "hook", "type": "webhook", "url": rx.url, "secret": SECRET}])
        with use_clock(FrozenClock(T0)):
            services.enrol_customers(actor=admin, journey_id=j.pk, customer_ids=[c.pk])
        engine.fast_forward(start=T0, until=T0 + dt.timedelta(days=1))
    assert len(rx.calls) == engine.MAX_FAILURES
    e = Enrollment.objects.get()
    assert (e.state, e.exit_reason, e.last_error) == (
        "exited",
        "step_failed",
        "WebhookFailed: webhook answered HTTP 500",
    )
