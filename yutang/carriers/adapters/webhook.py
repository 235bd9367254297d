"""The webhook carrier: a signed POST to the brand's own system, so any carrier Yutang does
not support can be plugged in. Contract in docs/messaging.md ("Webhook carrier")."""

from __future__ import annotations

from yutang.carriers.adapters import jsonwire
from yutang.carriers.adapters.http import post_signed
from yutang.carriers.base import (
    AccountConfig,
    CallbackRequest,
    Capability,
    CarrierError,
    Outbound,
    ParsedCallback,
    PlatformLimits,
    SendResult,
)


class WebhookCarrier:
    kind = "webhook"
    capabilities = frozenset({Capability.DIRECT_MESSAGE})
    limits = PlatformLimits()

    def __init__(self, config: AccountConfig):
        self.config = config
        self.url = str(config.settings.get("url", ""))
        self.secret = str(config.credentials.get("signing_secret", ""))

    def _require(self) -> None:
        if not self.url or not self.secret:
            raise CarrierError("webhook url and signing_secret are required", transient=False)

    def send(self, message: Outbound) -> SendResult:
        self._require()
        data = post_signed(
            self.url,
            self.secret,
            {
                "type": "message",
                "id": message.idempotency_key,
                "brand_id": message.brand_id,
                "account_id": message.account_id,
                "customer_id": message.customer_id,
                "recipient": message.recipient,
                "kind": message.kind,
                "content": dict(message.content),
            },
            {"X-Yutang-Idempotency-Key": message.idempotency_key},
        )
        return SendResult(carrier_message_id=str(data.get("message_id") or message.idempotency_key))

    def check_connection(self) -> None:
        self._require()
        post_signed(self.url, self.secret, {"type": "ping"})

    def parse_callback(self, request: CallbackRequest) -> ParsedCallback:
        return jsonwire.parse(
            self.config, request, str(self.config.credentials.get("callback_secret") or self.secret)
        )
