"""A generic HTTP SMS provider. The JSON contract (docs/messaging.md, "SMS provider"):

- POST {base_url}/messages, signed (X-Yutang-Signature) with the api_secret:
  {"id", "to", "sign_name", "template_id", "params", "text"} → 200 {"message_id"};
  the same id again → 200 or 409 with the first message_id (the provider dedupes);
  4xx → permanent failure with {"error": {"code", "message"}}; 429/5xx → retried.
- POST {base_url}/ping → 200 when the credentials are good.
- Callbacks to Yutang (delivery receipts, replies such as 退订/TD) use the JSON inbound
  contract signed with callback_secret.

Marketing text ends with the opt-out instruction (`opt_out_text`, by default
"拒收请回复R或退订回T"), and a reply that is exactly one of the account's `opt_out_keywords`
(by default R and T, the ones that text names) withdraws SMS marketing consent, as the
brand's own unsubscribe keywords do. Connecting an account checks that every keyword appears
in the text, so what customers are told and what Yutang obeys cannot drift apart."""

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

#: Chinese rules ask marketing SMS to say how to opt out; the replies it names opt out.
DEFAULT_OPT_OUT = "拒收请回复R或退订回T"
DEFAULT_OPT_OUT_KEYWORDS = ("R", "T")


def opt_out_settings(settings: object) -> tuple[str, tuple[str, ...]]:
    """The account's opt-out text and the replies that opt out (the defaults go together)."""
    get = getattr(settings, "get", None)
    text = str((get("opt_out_text") if get else "") or DEFAULT_OPT_OUT)
    keywords = (get("opt_out_keywords") if get else None) or (
        DEFAULT_OPT_OUT_KEYWORDS if text == DEFAULT_OPT_OUT else ()
    )
    return text, tuple(str(k) for k in keywords)


class SmsCarrier:
    kind = "sms"
    capabilities = frozenset({Capability.DIRECT_MESSAGE})
    limits = PlatformLimits(max_text_chars=500)

    def __init__(self, config: AccountConfig):
        self.config = config
        self.base_url = str(config.settings.get("base_url", "")).rstrip("/")
        self.sign_name = str(config.settings.get("sign_name", ""))
        self.templates = dict(config.settings.get("templates") or {})
        self.secret = str(config.credentials.get("api_secret", ""))
        self.opt_out_text, self.opt_out_keywords = opt_out_settings(config.settings)

    def _require(self) -> None:
        if not self.base_url or not self.secret or not self.sign_name:
            raise CarrierError("base_url, sign_name and api_secret are required", transient=False)

    def send(self, message: Outbound) -> SendResult:
        self._require()
        content = dict(message.content)
        template_id = str(content.get("template_id") or self.templates.get(message.kind, ""))
        text = str(content.get("text", ""))
        if message.kind == "marketing" and text and self.opt_out_text not in text:
            text = f"{text} {self.opt_out_text}"
        if not template_id and not text:
            raise CarrierError("an SMS needs a template_id or text", transient=False)
        data = post_signed(
            f"{self.base_url}/messages",
            self.secret,
            {
                "id": message.idempotency_key,
                "to": message.recipient,
                "sign_name": self.sign_name,
                "template_id": template_id,
                "params": content.get("params") or {},
                "text": text,
            },
        )
        message_id = data.get("message_id")
        if not message_id:
            raise CarrierError("the SMS provider answered without message_id", transient=True)
        return SendResult(carrier_message_id=str(message_id))

    def check_connection(self) -> None:
        self._require()
        post_signed(f"{self.base_url}/ping", self.secret, {"sign_name": self.sign_name})

    def parse_callback(self, request: CallbackRequest) -> ParsedCallback:
        return jsonwire.parse(
            self.config, request, str(self.config.credentials.get("callback_secret", ""))
        )
