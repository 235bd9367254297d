"""The WeCom (企业微信) carrier adapter: the Carrier protocol on top of our WeCom client.

One WeCom corp serves a brand; each staff member who holds customers is a `CarrierAccount` of
kind ``wecom`` whose ``external_id`` is the member's WeCom userid. The corp's credentials
(``secret``, callback ``token`` and ``encoding_aes_key``; settings ``corp_id``, optional
``base_url`` and ``agent_id``) are connected on one of those accounts — the callback account
whose URL is saved in the WeCom admin console — and shared by the brand's other WeCom accounts.

Platform reality shapes what ``send`` does (docs/wecom.md):

- the welcome message (cause ``welcome``) goes out with ``send_welcome_msg`` and the add
  callback's ``welcome_code``: automatically, within 20 seconds, once (41051 = already sent);
- everything else becomes a mass-message task (``add_msg_template``) for the staff member to
  confirm in the WeCom app, so the outbox records it as ``pending_confirmation``.

Callbacks are verified (``msg_signature``) and decrypted, then normalised into the facts of
`yutang.carriers.inbound`. The callback names the staff member (``UserID``), so a fact is
attributed to that member's account, whichever account received the callback.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from yutang.carriers.base import (
    AccountConfig,
    CallbackRejected,
    CallbackRequest,
    Capability,
    CarrierError,
    Outbound,
    ParsedCallback,
    PlatformLimits,
    RecipientResult,
    RecipientStatus,
    SendResult,
)
from yutang.carriers.inbound import (
    ContactAdded,
    ContactDeleted,
    ContactEdited,
    ContactTransferred,
    CorpTagsChanged,
    GroupJoined,
    GroupLeft,
    InboundFact,
    TransferFailed,
)
from yutang.carriers.wecom import callbacks as wc
from yutang.carriers.wecom.client import (
    DEFAULT_BASE_URL,
    MAX_TEMPLATE_RECIPIENTS,
    Attachment,
    ImageAttachment,
    LinkAttachment,
    MiniprogramAttachment,
    WeComClient,
)
from yutang.carriers.wecom.crypto import CallbackCrypto
from yutang.carriers.wecom.crypto import CallbackRejected as WeComCallbackRejected
from yutang.carriers.wecom.errors import WeComError, WelcomeMessageAlreadySent
from yutang.core import clock
from yutang.core.errors import ValidationFailed

SETTINGS_KEYS = {"corp_id", "base_url", "agent_id"}
CREDENTIAL_KEYS = {"secret", "token", "encoding_aes_key"}
#: External contact ids start with these; anything else in a group is a staff member.
EXTERNAL_PREFIXES = ("wm", "wo")


@dataclass(frozen=True)
class CorpConfig:
    corp_id: str
    secret: str
    token: str
    encoding_aes_key: str
    base_url: str
    agent_id: int | None


def corp_config(config: AccountConfig) -> CorpConfig | None:
    """The corp credentials for an account: its own, or those connected on another WeCom
    account of the same brand (and the same corp id, when this account names one)."""
    if config.credentials.get("secret"):
        return _corp(config.credentials, config.settings)
    from yutang.carriers.models import CarrierConnection

    wanted = str(config.settings.get("corp_id", ""))
    for connection in CarrierConnection.objects.filter(
        brand_id=config.brand_id, account__kind="wecom", account__is_active=True
    ).order_by("account_id"):
        credentials = connection.credentials
        if credentials.get("secret") and wanted in ("", connection.settings.get("corp_id")):
            return _corp(credentials, connection.settings)
    return None


def brand_adapter(brand_id: int, *, userid: str = "") -> WeComCarrier | None:
    """A WeCom adapter for brand-level calls (tags, moments, handovers): the account of
    `userid` when given, else the brand's first active WeCom account; None without one."""
    from yutang.carriers.services import adapter_for
    from yutang.core.models import CarrierAccount

    accounts = CarrierAccount.objects.filter(brand_id=brand_id, kind="wecom", is_active=True)
    if userid:
        accounts = accounts.filter(external_id=userid)
    account = accounts.order_by("id").first()
    if account is None:
        return None
    adapter = adapter_for(account)
    assert isinstance(adapter, WeComCarrier)
    return adapter


def _corp(credentials: Mapping[str, Any], settings: Mapping[str, Any]) -> CorpConfig | None:
    corp_id = str(settings.get("corp_id", ""))
    if not corp_id:
        return None
    agent = str(settings.get("agent_id") or "")
    return CorpConfig(
        corp_id=corp_id,
        secret=str(credentials.get("secret", "")),
        token=str(credentials.get("token", "")),
        encoding_aes_key=str(credentials.get("encoding_aes_key", "")),
        base_url=str(settings.get("base_url") or DEFAULT_BASE_URL),
        agent_id=int(agent) if agent.isdigit() else None,
    )


def _attachment(item: Mapping[str, Any]) -> Attachment:
    kind = item.get("type", "")
    if kind == "image":
        return ImageAttachment(
            media_id=str(item.get("media_id", "")), pic_url=str(item.get("image_url", ""))
        )
    if kind == "link":
        return LinkAttachment(
            title=str(item.get("title") or item.get("url", "")),
            url=str(item.get("url", "")),
            picurl=str(item.get("image_url", "")),
            desc=str(item.get("text", "")),
        )
    if kind == "miniprogram":
        return MiniprogramAttachment(
            title=str(item.get("title", "")),
            pic_media_id=str(item.get("media_id", "")),
            appid=str(item.get("appid", "")),
            page=str(item.get("pagepath", "")),
        )
    raise CarrierError(f"WeCom cannot send a {kind or 'typeless'} attachment.", transient=False)


def message_parts(content: Mapping[str, Any]) -> tuple[str, list[Attachment]]:
    """Our message content (one text, image, link or mini-program card, plus the welcome's
    attachments) as WeCom's text and attachment list."""
    kind = content.get("type", "text")
    text = str(content.get("text", "")) if kind == "text" else ""
    attachments = [] if kind == "text" else [_attachment(content)]
    attachments += [_attachment(a) for a in content.get("attachments", ()) or ()]
    return text, attachments


def _as_carrier_error(exc: WeComError) -> CarrierError:
    return CarrierError(
        f"WeCom {exc.api or 'call'} failed: {exc.errcode} {exc.errmsg}".strip(),
        transient=exc.retryable,
        code=str(exc.errcode),
    )


class WeComCarrier:
    kind = "wecom"
    # Group messages and group join codes are not declared: customer groups (客户群) belong to
    # the community issue, which will add them with their own services.
    capabilities = frozenset(
        {
            Capability.WELCOME_MESSAGE,
            Capability.CONFIRMED_BROADCAST,
            Capability.MOMENTS_POST,  # carriers.moments
            Capability.LIVE_CODE,  # acquisition, through upsert_contact_way
            Capability.TAG_SYNC,  # carriers.tagsync
            Capability.CUSTOMER_HANDOVER,  # carriers.handover
            Capability.CONTACT_BASED,
        }
    )
    # WeCom lets a customer receive as many corp mass messages a month as the month has days.
    limits = PlatformLimits(days_in_month=True, max_text_chars=4000)

    def __init__(self, config: AccountConfig):
        self.config = config
        self.corp = corp_config(config)
        self._client: WeComClient | None = None

    def client(self) -> WeComClient:
        if self.corp is None or not self.corp.secret:
            raise CarrierError(
                "WeCom is not connected: set corp_id and the secret on a WeCom account.",
                transient=False,
                code="not_connected",
            )
        if self._client is None:
            self._client = WeComClient(
                corp_id=self.corp.corp_id,
                secret=self.corp.secret,
                base_url=self.corp.base_url,
                agent_id=self.corp.agent_id,
            )
        return self._client

    # -- sending ------------------------------------------------------------------------------

    def send(self, message: Outbound) -> SendResult:
        (result,) = self.send_batch([message])
        if isinstance(result, CarrierError):
            raise result
        return result

    def send_batch(self, messages: Sequence[Outbound]) -> list[SendResult | CarrierError]:
        """Welcome messages one by one (send_welcome_msg); every other message becomes part of
        a mass-message task: the messages of a batch with the same content share one task
        (add_msg_template with up to 10,000 customers), so a broadcast is one task for the
        member to confirm, not one per customer."""
        results: list[SendResult | CarrierError | None] = [None] * len(messages)
        tasks: dict[str, list[int]] = defaultdict(list)
        for n, message in enumerate(messages):
            if message.cause == "welcome":
                results[n] = self._guarded(self._welcome, [message])[0]
            else:
                same = json.dumps(dict(message.content), sort_keys=True, ensure_ascii=False)
                tasks[same].append(n)
        for group in tasks.values():
            for start in range(0, len(group), MAX_TEMPLATE_RECIPIENTS):
                chunk = group[start : start + MAX_TEMPLATE_RECIPIENTS]
                batch = [messages[n] for n in chunk]
                answers = self._guarded(self._task, batch)
                for n, answer in zip(chunk, answers, strict=True):
                    results[n] = answer
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    @staticmethod
    def _guarded(
        call: Callable[[Sequence[Outbound]], list[SendResult | CarrierError]],
        batch: Sequence[Outbound],
    ) -> list[SendResult | CarrierError]:
        """`call(batch)`, or its error for every message of the batch."""
        size = len(batch)
        try:
            return call(batch)
        except WeComError as exc:
            return [_as_carrier_error(exc)] * size
        except ValidationFailed as exc:
            return [CarrierError(str(exc), transient=False, code="invalid_content")] * size
        except CarrierError as exc:
            return [exc] * size

    def _welcome(self, batch: Sequence[Outbound]) -> list[SendResult | CarrierError]:
        (message,) = batch
        text, attachments = message_parts(message.content)
        code = str(message.content.get("welcome_code", ""))
        if not code:
            raise CarrierError(
                "WeCom gave no welcome_code for this add: a welcome message is "
                "configured in the WeCom admin console, which sends it instead.",
                transient=False,
                code="no_welcome_code",
            )
        try:
            self.client().send_welcome_msg(welcome_code=code, text=text, attachments=attachments)
        except WelcomeMessageAlreadySent:
            return [SendResult(carrier_message_id=f"welcome:{code[:24]}", duplicate=True)]
        return [SendResult(carrier_message_id=f"welcome:{code[:24]}")]

    def _task(self, messages: Sequence[Outbound]) -> list[SendResult | CarrierError]:
        """One task for messages of the same content (one result per message, in order).
        Nothing reaches a customer until the member confirms the task in the WeCom app."""
        client = self.client()
        text, attachments = message_parts(messages[0].content)
        earlier = self._earlier_tasks(client, messages, text, attachments)
        fresh = [m.recipient for m in messages if m.recipient not in earlier]
        created = None
        if fresh:
            created = client.add_msg_template(
                chat_type="single",
                external_userid=list(dict.fromkeys(fresh)),
                sender=self.config.external_id,
                text=text,
                attachments=attachments,
            )
        out: list[SendResult | CarrierError] = []
        for m in messages:
            if m.recipient in earlier:
                # A try before ours reached WeCom (its answer was lost): that task is this
                # message; a second one would reach the customer twice.
                out.append(
                    SendResult(
                        carrier_message_id=earlier[m.recipient],
                        duplicate=True,
                        pending_confirmation=True,
                    )
                )
            elif created is None or not created.msgid or m.recipient in created.fail_list:
                out.append(
                    CarrierError(
                        "WeCom refused the recipient (not a contact of this staff member).",
                        transient=False,
                        code="fail_list",
                    )
                )
            else:
                out.append(SendResult(carrier_message_id=created.msgid, pending_confirmation=True))
        return out

    def _earlier_tasks(
        self,
        client: WeComClient,
        messages: Sequence[Outbound],
        text: str,
        attachments: Sequence[Attachment],
    ) -> dict[str, str]:
        """`add_msg_template` takes no idempotency key, so a retry first looks for the tasks
        earlier tries created: by this member (creator), created since the gate let the
        messages pass, with the same text and number of attachments; each customer of ours
        such a task reaches is already sent (recipient → msgid). First tries skip the
        look-up."""
        retried = [m for m in messages if m.attempt > 1]
        if not retried:
            return {}
        wanted = {m.recipient for m in retried}
        sender = self.config.external_id
        end = int(clock.now().timestamp()) + 60
        passed = [m.first_passed_at for m in retried if m.first_passed_at is not None]
        since = min(passed) if passed else clock.now() - dt.timedelta(days=1)
        # A minute of slack for clocks; WeCom lists at most a month at a time.
        start = max(int(since.timestamp()) - 60, end - 31 * 86400)
        found: dict[str, str] = {}
        cursor = ""
        while True:
            page = client.get_groupmsg_list_v2(
                chat_type="single",
                start_time=start,
                end_time=end,
                creator=sender,
                cursor=cursor,
                limit=100,
            )
            for item in page.items:
                msgid = str(item.get("msgid", ""))
                same = str((item.get("text") or {}).get("content", "")) == text and len(
                    item.get("attachments") or []
                ) == len(attachments)
                if msgid and same:
                    for ext in self._task_recipients(client, msgid, sender) & wanted:
                        found.setdefault(ext, msgid)
            cursor = page.next_cursor
            if not cursor or len(found) == len(wanted):
                return found

    @staticmethod
    def _task_recipients(client: WeComClient, msgid: str, sender: str) -> set[str]:
        out: set[str] = set()
        cursor = ""
        while True:
            page = client.get_groupmsg_send_result(
                msgid=msgid, userid=sender, cursor=cursor, limit=1000
            )
            out |= {str(row.get("external_userid", "")) for row in page.items}
            cursor = page.next_cursor
            if not cursor:
                return out

    # -- confirmation results --------------------------------------------------------------

    #: get_groupmsg_send_result's status per recipient.
    SEND_STATUS = {
        0: RecipientStatus.PENDING,
        1: RecipientStatus.SENT,
        2: RecipientStatus.NOT_A_CONTACT,
        3: RecipientStatus.LIMIT_REACHED,
    }

    def confirmation_results(self, task_id: str) -> dict[str, RecipientResult]:
        """What became of each customer of one of this member's mass-message tasks: one
        get_groupmsg_send_result call per 1,000 customers (through the client's limiter)."""
        client = self.client()
        out: dict[str, RecipientResult] = {}
        cursor = ""
        try:
            while True:
                page = client.get_groupmsg_send_result(
                    msgid=task_id, userid=self.config.external_id, cursor=cursor, limit=1000
                )
                for row in page.items:
                    status = self.SEND_STATUS.get(int(row.get("status", 0) or 0))
                    ext = str(row.get("external_userid", ""))
                    if status is None or not ext:
                        continue
                    sent = row.get("send_time")
                    at = dt.datetime.fromtimestamp(int(sent), tz=dt.UTC) if sent else None
                    out[ext] = RecipientResult(status, at)
                cursor = page.next_cursor
                if not cursor:
                    return out
        except WeComError as exc:
            raise _as_carrier_error(exc) from exc

    def cancel_task(self, task_id: str) -> None:
        """Stop a mass message the member never confirmed (cancel_groupmsg_send)."""
        try:
            self.client().cancel_groupmsg_send(msgid=task_id)
        except WeComError as exc:
            raise _as_carrier_error(exc) from exc

    def check_connection(self) -> None:
        try:
            self.client().access_token(force_refresh=True)
        except WeComError as exc:
            raise _as_carrier_error(exc) from exc

    # -- callbacks ----------------------------------------------------------------------------

    def _crypto(self) -> CallbackCrypto:
        corp = self.corp
        if corp is None or not corp.token or not corp.encoding_aes_key:
            raise CallbackRejected("WeCom callbacks are not configured (token, encoding_aes_key)")
        try:
            return CallbackCrypto(
                token=corp.token, encoding_aes_key=corp.encoding_aes_key, receive_id=corp.corp_id
            )
        except ValueError as exc:
            raise CallbackRejected(f"WeCom callback settings are invalid: {exc}") from None

    def parse_callback(self, request: CallbackRequest) -> ParsedCallback:
        """GET with ``echostr`` is WeCom checking the URL (answered with the decrypted echo);
        POST is an event. Verification failures raise CallbackRejected; nothing is stored."""
        crypto = self._crypto()
        query = request.query
        try:
            if query.get("echostr"):
                echo = crypto.verify_url(
                    msg_signature=query.get("msg_signature", ""),
                    timestamp=query.get("timestamp", ""),
                    nonce=query.get("nonce", ""),
                    echostr=query["echostr"],
                )
                return ParsedCallback(facts=(), reply=echo.encode())
            xml = crypto.decrypt_body(
                msg_signature=query.get("msg_signature", ""),
                timestamp=query.get("timestamp", ""),
                nonce=query.get("nonce", ""),
                body=request.body,
            )
            event = wc.parse_callback(xml)
        except WeComCallbackRejected as exc:
            raise CallbackRejected(str(exc)) from None
        if event.corp_id != crypto.receive_id:
            raise CallbackRejected("the callback is for another corp")
        return ParsedCallback(facts=self._facts(event), reply=b"success")

    def _account_id(self, userid: str) -> int | None:
        if userid == self.config.external_id:
            return self.config.account_id
        from yutang.core.models import CarrierAccount

        return (
            CarrierAccount.objects.filter(
                brand_id=self.config.brand_id, kind="wecom", external_id=userid, is_active=True
            )
            .values_list("pk", flat=True)
            .first()
        )

    def _facts(self, event: wc.AnyCallback) -> list[tuple[str, InboundFact]]:
        at = dt.datetime.fromtimestamp(event.create_time, tz=dt.UTC)
        key = f"wecom:{event.dedupe_key}"
        if isinstance(event, wc.ExternalContactCallback):
            account_id = self._account_id(event.user_id)
            if account_id is None:
                return []  # a member who holds no Yutang account: nothing of ours changed
            brand_id = self.config.brand_id
            if isinstance(event, wc.ExternalContactAdded | wc.ExternalContactHalfAdded):
                fact: InboundFact = ContactAdded(
                    brand_id=brand_id,
                    account_id=account_id,
                    external_id=event.external_user_id,
                    occurred_at=at,
                    state=event.state[:30],
                    welcome_code=event.welcome_code,
                )
                return [(key, fact)]
            if isinstance(event, wc.ExternalContactDeleted) and (
                event.source == "DELETE_BY_TRANSFER"
            ):
                # A handover took the customer to another member: not a deletion.
                transferred = ContactTransferred(
                    brand_id=brand_id,
                    account_id=account_id,
                    external_id=event.external_user_id,
                    occurred_at=at,
                )
                return [(key, transferred)]
            if isinstance(event, wc.TransferFailed):
                failed = TransferFailed(
                    brand_id=brand_id,
                    account_id=account_id,
                    external_id=event.external_user_id,
                    occurred_at=at,
                    reason=event.fail_reason,
                )
                return [(key, failed)]
            if isinstance(event, wc.ExternalContactEdited):
                edited = self._edited(event, account_id, at)
                return [(key, edited)] if edited is not None else []
            if isinstance(event, wc.FollowUserDeleted | wc.ExternalContactDeleted):
                # del_follow_user: the customer deleted the member; del_external_contact: the
                # member deleted the customer.
                fact = ContactDeleted(
                    brand_id=brand_id,
                    account_id=account_id,
                    external_id=event.external_user_id,
                    occurred_at=at,
                    by="customer" if isinstance(event, wc.FollowUserDeleted) else "staff",
                )
                return [(key, fact)]
            return []
        if isinstance(event, wc.ExternalChatUpdated) and event.update_detail in (
            "add_member",
            "del_member",
        ):
            cls = GroupJoined if event.update_detail == "add_member" else GroupLeft
            return [
                (
                    f"{key}:{member}",
                    cls(
                        brand_id=self.config.brand_id,
                        account_id=self.config.account_id,
                        external_id=member,
                        group_id=event.chat_id,
                        occurred_at=at,
                    ),
                )
                for member in event.member_change_list
                if member.startswith(EXTERNAL_PREFIXES)
            ]
        if isinstance(event, wc.ExternalTagChanged):
            return [
                (
                    key,
                    CorpTagsChanged(
                        brand_id=self.config.brand_id,
                        account_id=self.config.account_id,
                        occurred_at=at,
                        change_type=event.change_type,
                        tag_id=event.tag_id,
                        tag_type=event.tag_type,
                    ),
                )
            ]
        return []  # chat creation, dismissal, owner changes: the community issue's

    GENDERS: dict[int, Literal["unknown", "female", "male"]] = {1: "male", 2: "female"}

    def _edited(
        self, event: wc.ExternalContactEdited, account_id: int, at: dt.datetime
    ) -> ContactEdited | None:
        """The edit callback names the contact only: read what the member now has on it
        (externalcontact/get, the member's follow_user entry)."""
        client = self.client()
        cursor = ""
        try:
            while True:
                data = client.get_external_contact(
                    external_userid=event.external_user_id, cursor=cursor
                )
                mine = [
                    f for f in data.get("follow_user") or [] if f.get("userid") == event.user_id
                ]
                cursor = str(data.get("next_cursor") or "")
                if mine or not cursor:
                    break
        except WeComError as exc:
            raise _as_carrier_error(exc) from exc
        if not mine:
            return None  # no longer the member's contact
        follow, profile = mine[0], data.get("external_contact") or {}
        return ContactEdited(
            brand_id=self.config.brand_id,
            account_id=account_id,
            external_id=event.external_user_id,
            occurred_at=at,
            name=str(profile.get("name", ""))[:120],
            gender=self.GENDERS.get(int(profile.get("gender", 0) or 0), "unknown"),
            remark=str(follow.get("remark", "")),
            description=str(follow.get("description", "")),
            remark_mobiles=tuple(str(m) for m in follow.get("remark_mobiles") or []),
            corp_tag_ids=tuple(
                str(t.get("tag_id", ""))
                for t in follow.get("tags") or []
                if int(t.get("type", 1) or 1) == 1 and t.get("tag_id")
            ),
        )

    # -- live codes ---------------------------------------------------------------------------

    def upsert_contact_way(
        self, *, config_id: str, user_ids: Sequence[str], state: str, remark: str = ""
    ) -> tuple[str, str]:
        """Create or rewrite a multi-person 联系我 contact way; returns (config_id, qr_code)."""
        client = self.client()
        try:
            if config_id:
                client.update_contact_way(
                    config_id=config_id, user=list(user_ids), state=state, remark=remark
                )
                way = client.get_contact_way(config_id=config_id)
                return config_id, str(way.get("qr_code", ""))
            created = client.add_contact_way(
                type=2, scene=2, user=list(user_ids), state=state, remark=remark
            )
        except WeComError as exc:
            raise _as_carrier_error(exc) from exc
        return created.config_id, created.qr_code
