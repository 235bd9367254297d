"""Email through Django's SMTP backend, with List-Unsubscribe (RFC 2369) and one-click
unsubscribe (RFC 8058): marketing mail carries a signed, expiring link per customer
(`yutang.carriers.unsubscribe`, when YUTANG_PUBLIC_URL is set) with
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, and the account's `unsubscribe_mailto`
when set. The Message-ID derives from the idempotency key, so a resend after a crash carries
the same id and mail systems fold the two. Replies and bounces come back through a relay that
posts the JSON inbound contract (signed with callback_secret)."""

from __future__ import annotations

import hashlib
import smtplib
from typing import Any

from django.core.mail import EmailMessage, get_connection

from yutang.carriers import unsubscribe
from yutang.carriers.adapters import jsonwire
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


class EmailCarrier:
    kind = "email"
    capabilities = frozenset({Capability.DIRECT_MESSAGE})
    limits = PlatformLimits()

    def __init__(self, config: AccountConfig):
        self.config = config
        s, c = config.settings, config.credentials
        self.host = str(s.get("host", ""))
        self.port = int(s.get("port") or 25)
        self.use_tls = bool(s.get("use_tls", False))
        self.from_email = str(s.get("from_email", ""))
        self.unsubscribe_mailto = str(s.get("unsubscribe_mailto", ""))
        self.username = str(c.get("username", ""))
        self.password = str(c.get("password", ""))

    def _connection(self) -> Any:
        if not self.host or not self.from_email:
            raise CarrierError("host and from_email are required", transient=False)
        return get_connection(
            "django.core.mail.backends.smtp.EmailBackend",
            host=self.host,
            port=self.port,
            username=self.username or None,
            password=self.password or None,
            use_tls=self.use_tls,
            timeout=10,
            fail_silently=False,
        )

    def send(self, message: Outbound) -> SendResult:
        connection = self._connection()
        content = message.content
        digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:32]
        domain = self.from_email.rpartition("@")[2] or "yutang.local"
        message_id = f"<{digest}@{domain}>"
        headers = {"Message-ID": message_id}
        if message.kind == "marketing":
            one_click = message.unsubscribe_url or unsubscribe.url_for(
                message.account_id, message.customer_id
            )
            targets = [f"<{one_click}>"] if one_click else []
            if self.unsubscribe_mailto:
                targets.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
            if targets:
                headers["List-Unsubscribe"] = ", ".join(targets)
            if one_click:
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail = EmailMessage(
            subject=str(content.get("subject") or content.get("title") or ""),
            body=str(content.get("text", "")),
            from_email=self.from_email,
            to=[message.recipient],
            headers=headers,
            connection=connection,
        )
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            raise CarrierError(f"recipient refused: {exc.recipients}", transient=False) from None
        except smtplib.SMTPResponseException as exc:
            transient = 400 <= exc.smtp_code < 500
            raise CarrierError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                transient=transient,
                code=str(exc.smtp_code),
            ) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise CarrierError(f"SMTP unreachable: {type(exc).__name__}", transient=True) from None
        return SendResult(carrier_message_id=message_id)

    def check_connection(self) -> None:
        connection = self._connection()
        try:
            connection.open()
        except (smtplib.SMTPException, OSError) as exc:
            raise CarrierError(f"SMTP: {type(exc).__name__}: {exc}"[:300], transient=True) from None
        finally:
            connection.close()

    def parse_callback(self, request: CallbackRequest) -> ParsedCallback:
        return jsonwire.parse(
            self.config, request, str(self.config.credentials.get("callback_secret", ""))
        )
