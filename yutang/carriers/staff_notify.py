"""Notifications to staff members through their carrier: the carrier layer's answer to "tell
this person something" (an overdue task's reminder).

Which channel: the staff member's active carrier accounts, WeCom first —

- **WeCom**: an app message (应用消息, ``message/send``) from the corp's app (``agent_id`` in the
  connected account's settings) to the member's userid (the account's ``external_id``),
  through :class:`~yutang.carriers.wecom.client.WeComClient` — which also holds WeCom's limit
  of 30 app messages a minute per member (its rate-limit window is shared through the cache).
  The client neither sleeps nor retries here: a call over the limit or a failed call raises
  :class:`NotifyFailed` with ``retry_later`` and the caller tries on a later pass.
- **sandbox**: the reminder is recorded as a `SandboxDelivery` of kind ``staff`` to
  ``staff:<external id>`` (the demo and tests read it), deduped by the key.
- otherwise (no such account, or WeCom connected without an app): channel ``console`` — the
  caller keeps its own record; the console shows it.

Higher floors call `notify_staff` (journeys' task reminders, through
`yutang.journeys.extensions`); this module imports nothing above carriers.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from yutang.carriers.adapters.wecom import corp_config
from yutang.carriers.services import account_config
from yutang.carriers.wecom.client import RateLimits, RetryPolicy, WeComClient
from yutang.carriers.wecom.errors import ClientRateLimited, WeComError
from yutang.core import clock
from yutang.core.models import CarrierAccount

#: Account kinds that can reach a staff member, best first.
KINDS = ("wecom", "sandbox")


@dataclass(frozen=True)
class Notified:
    channel: str  # "wecom", "sandbox" or "console"
    ref: str = ""  # the carrier's message id, the sandbox record's id


class NotifyFailed(Exception):
    def __init__(self, message: str, *, retry_later: bool):
        super().__init__(message)
        self.retry_later = retry_later


def notify_staff(*, brand_id: int, staff_id: int, text: str, key: str) -> Notified:
    """Send `text` to the staff member on the best carrier they hold; `key` identifies this
    notification (the sandbox dedupes on it)."""
    accounts = sorted(
        CarrierAccount.objects.filter(
            brand_id=brand_id, staff_id=staff_id, is_active=True, kind__in=KINDS
        ),
        key=lambda a: (KINDS.index(a.kind), a.pk),
    )
    for account in accounts:
        if account.kind == "wecom":
            found = _wecom(account, text)
            if found is not None:
                return found
        elif account.kind == "sandbox":
            return _sandbox(account, text, key)
    return Notified("console")


def _wecom(account: CarrierAccount, text: str) -> Notified | None:
    corp = corp_config(account_config(account))
    if corp is None or not corp.secret or corp.agent_id is None:
        return None  # WeCom without an app cannot message its members
    client = WeComClient(
        corp_id=corp.corp_id,
        secret=corp.secret,
        base_url=corp.base_url,
        agent_id=corp.agent_id,
        limits=RateLimits(max_wait_seconds=0.0),
        retry=RetryPolicy(retries=0),
    )
    try:
        with client:
            answer = client.send_app_message(touser=[account.external_id], text=text[:600])
    except ClientRateLimited as exc:
        raise NotifyFailed(f"WeCom app messages: {exc}", retry_later=True) from exc
    except WeComError as exc:
        raise NotifyFailed(f"WeCom app message failed: {exc}", retry_later=exc.retryable) from exc
    invalid = str(answer.get("invaliduser", "")).split("|")
    if account.external_id in invalid:
        raise NotifyFailed(
            f"WeCom does not know the member {account.external_id!r}", retry_later=False
        )
    return Notified("wecom", str(answer.get("msgid", "")))


def _sandbox(account: CarrierAccount, text: str, key: str) -> Notified:
    from yutang.carriers.models import SandboxDelivery

    fields = {"brand_id": account.brand_id, "account_id": account.pk,
              "idempotency_key": f"staff:{key}"[:200]}  # fmt: skip
    try:
        with transaction.atomic():
            row = SandboxDelivery.objects.create(
                **fields,
                recipient=f"staff:{account.external_id}"[:200],
                kind="staff",
                content={"type": "text", "text": text},
                delivered_at=clock.now(),
            )
    except IntegrityError:
        row = SandboxDelivery.objects.get(**fields)
    return Notified("sandbox", f"sbx-{row.pk}")
