"""A typed client for the WeCom (企业微信) external-contact API (客户联系), on httpx.

One ``WeComClient`` talks for one (corp id, secret). The access token lives in Django's cache
under a key derived from both, so every client instance in a process shares one token, and
every process does too when the cache is shared (``YUTANG_CACHE_URL=redis://…``; the default
in-memory cache is per process). Calls are rate limited per corp and API in the same cache
(per process with the default cache, for all processes with Redis), back off on 45009/45033
(exponential with jitter, bounded) and refresh the token once on 40014/42001/40001. The clock
and the sleep function are injectable so tests never sleep.

Methods take keyword arguments, validate what WeCom would reject (naming the field) before any
request, and return the JSON answer (``dict``) or a small typed result. Lists that WeCom pages
with a cursor come back as :class:`Page`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from django.core.cache import caches

from yutang.core import clock as core_clock
from yutang.core.clock import Clock
from yutang.core.errors import ValidationFailed

from .errors import (
    RATE_LIMIT_ERRCODES,
    RETRYABLE_ERRCODES,
    TOKEN_ERRCODES,
    ClientRateLimited,
    WeComError,
    WeComTokenInvalid,
    WeComUnavailable,
    error_for,
)

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com/cgi-bin/"

MAX_STATE_LENGTH = 30
MAX_ATTACHMENTS = 9
MAX_TRANSFER_BATCH = 100
MAX_BATCH_USERS = 100
MAX_TEMPLATE_RECIPIENTS = 10_000


# httpx logs every request URL at INFO, and WeCom puts access_token (and, for gettoken, the
# secret) in the query string. Redact them wherever httpx's records go.
_SECRET_IN_URL = re.compile(r"(access_token|corpsecret)=[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with access tokens and secrets in URLs replaced by ``***``."""
    return _SECRET_IN_URL.sub(r"\1=***", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(str(a)) if isinstance(a, str | httpx.URL) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, RedactSecrets) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(RedactSecrets())


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimits:
    """Client-side limits. Defaults are WeCom's documented ones: per corp and API 10,000 calls a
    minute and 150,000 an hour; app messages to one member at most 30 a minute (more are
    silently dropped by WeCom). ``max_wait_seconds`` bounds how long a call waits for the next
    window before raising :class:`ClientRateLimited`."""

    per_api_per_minute: int = 10_000
    per_api_per_hour: int = 150_000
    app_messages_per_member_per_minute: int = 30
    max_wait_seconds: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for 45009/45033 and WeCom's retryable codes (-1, 6000, 41096): ``retries``
    attempts after the first, waiting ``base * 2**n`` seconds capped at ``cap``, with full
    jitter in [50%, 100%] of that."""

    retries: int = 3
    base_seconds: float = 0.5
    cap_seconds: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * (2**attempt))
        return ceiling * (0.5 + rng.random() / 2)


# -- request and result types ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImageAttachment:
    media_id: str = ""
    pic_url: str = ""

    def as_json(self) -> dict[str, Any]:
        image = {k: v for k, v in (("media_id", self.media_id), ("pic_url", self.pic_url)) if v}
        return {"msgtype": "image", "image": image}


@dataclass(frozen=True)
class LinkAttachment:
    title: str
    url: str
    picurl: str = ""
    desc: str = ""

    def as_json(self) -> dict[str, Any]:
        link = {"title": self.title, "url": self.url}
        link.update({k: v for k, v in (("picurl", self.picurl), ("desc", self.desc)) if v})
        return {"msgtype": "link", "link": link}


@dataclass(frozen=True)
class MiniprogramAttachment:
    title: str
    pic_media_id: str
    appid: str
    page: str

    def as_json(self) -> dict[str, Any]:
        return {
            "msgtype": "miniprogram",
            "miniprogram": {
                "title": self.title,
                "pic_media_id": self.pic_media_id,
                "appid": self.appid,
                "page": self.page,
            },
        }


@dataclass(frozen=True)
class VideoAttachment:
    media_id: str

    def as_json(self) -> dict[str, Any]:
        return {"msgtype": "video", "video": {"media_id": self.media_id}}


@dataclass(frozen=True)
class FileAttachment:
    media_id: str

    def as_json(self) -> dict[str, Any]:
        return {"msgtype": "file", "file": {"media_id": self.media_id}}


Attachment = (
    ImageAttachment | LinkAttachment | MiniprogramAttachment | VideoAttachment | FileAttachment
)


@dataclass(frozen=True)
class Page:
    """One page of a cursor-paged list. ``next_cursor`` is empty on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class ContactWayCreated:
    config_id: str
    qr_code: str


@dataclass(frozen=True)
class MsgTemplateCreated:
    """``fail_list``: external_userids WeCom refused (not a customer of the sender...)."""

    msgid: str
    fail_list: list[str]


@dataclass(frozen=True)
class TransferOutcome:
    """Per customer errcode of a transfer request (0 = accepted, waiting for takeover)."""

    external_userid: str
    errcode: int

    @property
    def error(self) -> WeComError | None:
        """The typed error for this customer (TransferTooFrequent, TransferInProgress,
        NoContactRelation...), or None when accepted."""
        if self.errcode == 0:
            return None
        return error_for(errcode=self.errcode, errmsg="", api="transfer_customer")


# -- the rate limiter ---------------------------------------------------------------------------


class CacheRateLimiter:
    """Fixed-window counters in Django's cache (atomic ``incr``; shared across processes with a
    shared cache backend). A call that would exceed a window waits for the next one, through
    the injected sleep, up to ``max_wait_seconds``."""

    def __init__(
        self,
        *,
        cache_alias: str,
        clock: Callable[[], dt.datetime],
        sleep: Callable[[float], None],
        max_wait_seconds: float,
    ):
        self._cache = caches[cache_alias]
        self._now = clock
        self._sleep = sleep
        self._max_wait = max_wait_seconds

    def _try(self, windows: Sequence[tuple[str, int, int]]) -> float:
        """Count one call in every window, or count none and return the seconds to wait."""
        now = self._now().timestamp()
        taken: list[str] = []
        for name, seconds, limit in windows:
            start = int(now // seconds) * seconds
            key = f"yutang:wecom:rl:{name}:{seconds}:{start}"
            self._cache.add(key, 0, timeout=seconds + 5)
            try:
                count = self._cache.incr(key)
            except ValueError:  # expired between add and incr
                self._cache.set(key, 1, timeout=seconds + 5)
                count = 1
            taken.append(key)
            if count > limit:
                for k in taken:
                    with contextlib.suppress(ValueError):
                        self._cache.decr(k)
                return start + seconds - now
        return 0.0

    def acquire(self, windows: Sequence[tuple[str, int, int]], *, api: str) -> None:
        waited = 0.0
        for _ in range(8):
            wait = self._try(windows)
            if wait <= 0:
                return
            if waited + wait > self._max_wait:
                break
            self._sleep(wait)
            waited += wait
        raise ClientRateLimited(f"client-side rate limit for {api} reached", api=api)


# -- the client ----------------------------------------------------------------------------------


def _require(condition: bool, message: str, field_name: str) -> None:
    if not condition:
        raise ValidationFailed(message, field=field_name)


def _ids(values: Iterable[str], field_name: str, *, max_items: int | None = None) -> list[str]:
    items = list(values)
    for i, value in enumerate(items):
        _require(
            isinstance(value, str) and value != "", "must be a non-empty id", f"{field_name}[{i}]"
        )
    if max_items is not None:
        _require(
            len(items) <= max_items,
            f"at most {max_items} per call (got {len(items)}); split the list",
            field_name,
        )
    return items


def _attachments(attachments: Sequence[Attachment], field_name: str) -> list[dict[str, Any]]:
    _require(
        len(attachments) <= MAX_ATTACHMENTS,
        f"at most {MAX_ATTACHMENTS} attachments (got {len(attachments)})",
        field_name,
    )
    out = []
    for i, attachment in enumerate(attachments):
        if isinstance(attachment, ImageAttachment):
            _require(
                bool(attachment.media_id or attachment.pic_url),
                "an image needs media_id or pic_url",
                f"{field_name}[{i}].image",
            )
        if isinstance(attachment, LinkAttachment):
            _require(bool(attachment.title), "a link needs a title", f"{field_name}[{i}].title")
            _require(
                attachment.url.startswith(("http://", "https://")),
                "a link needs an http(s) url",
                f"{field_name}[{i}].url",
            )
        out.append(attachment.as_json())
    return out


def _state(state: str | None) -> None:
    if state is not None:
        _require(
            len(state) <= MAX_STATE_LENGTH,
            f"state is at most {MAX_STATE_LENGTH} characters (got {len(state)})",
            "state",
        )


class WeComClient:
    """The WeCom external-contact API for one (corp id, secret).

    ``base_url`` points at WeCom or at the local test server. ``clock`` defaults to Yutang's
    injectable clock, ``sleep`` to ``time.sleep``; ``rng`` drives backoff jitter.
    ``agent_id`` is needed only for :meth:`send_app_message`.
    """

    def __init__(
        self,
        *,
        corp_id: str,
        secret: str,
        base_url: str = DEFAULT_BASE_URL,
        agent_id: int | None = None,
        cache_alias: str = "default",
        limits: RateLimits | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ):
        if not corp_id:
            raise ValueError("corp_id must not be empty")
        if not secret:
            raise ValueError("secret must not be empty")
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._secret = secret
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._cache = caches[cache_alias]
        self.limits = limits or RateLimits()
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._limiter = CacheRateLimiter(
            cache_alias=cache_alias,
            clock=self._now,
            sleep=sleep,
            max_wait_seconds=self.limits.max_wait_seconds,
        )
        digest = hashlib.sha256(f"{corp_id}\0{secret}".encode()).hexdigest()[:32]
        self._token_key = f"yutang:wecom:token:{digest}"
        self._corp_key = hashlib.sha256(corp_id.encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # never show the secret
        return f"WeComClient(corp_id={self.corp_id!r}, base_url={self._base_url!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WeComClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> dt.datetime:
        return self._clock.now() if self._clock is not None else core_clock.now()

    # -- plumbing -------------------------------------------------------------------------------

    def _windows(self, api: str) -> list[tuple[str, int, int]]:
        name = f"{self._corp_key}:{api}"
        return [
            (name, 60, self.limits.per_api_per_minute),
            (name, 3600, self.limits.per_api_per_hour),
        ]

    def _send(
        self, method: str, api: str, *, params: dict[str, Any], body: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, self._base_url + api, params=params, json=body)
        except httpx.HTTPError as exc:
            raise WeComUnavailable(
                f"WeCom {api} unreachable ({type(exc).__name__})", api=api
            ) from exc
        if response.status_code != 200:
            raise WeComUnavailable(f"WeCom {api} answered HTTP {response.status_code}", api=api)
        try:
            data = response.json()
        except ValueError as exc:
            raise WeComUnavailable(f"WeCom {api} answered with invalid JSON", api=api) from exc
        if not isinstance(data, dict):
            raise WeComUnavailable(f"WeCom {api} answered with a non-object", api=api)
        return data

    def access_token(self, *, force_refresh: bool = False) -> str:
        """The cached access token, fetched when missing or when ``force_refresh``."""
        if not force_refresh:
            cached = self._cache.get(self._token_key)
            if isinstance(cached, str) and cached:
                return cached
        attempt = 0
        while True:
            self._limiter.acquire(self._windows("gettoken"), api="gettoken")
            data = self._send(
                "GET",
                "gettoken",
                params={"corpid": self.corp_id, "corpsecret": self._secret},
                body=None,
            )
            errcode = int(data.get("errcode", 0) or 0)
            if errcode == 0:
                break
            if (errcode in RATE_LIMIT_ERRCODES or errcode in RETRYABLE_ERRCODES) and (
                attempt < self.retry.retries
            ):
                self._sleep(self.retry.delay(attempt, self._rng))
                attempt += 1
                continue
            raise error_for(errcode=errcode, errmsg=str(data.get("errmsg", "")), api="gettoken")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeComUnavailable("WeCom gettoken returned no access_token", api="gettoken")
        expires_in = int(data.get("expires_in", 7200) or 7200)
        # Refresh five minutes early so a token never expires between cache read and use.
        self._cache.set(self._token_key, token, timeout=max(expires_in - 300, 60))
        return token

    def _drop_token(self, stale: str) -> None:
        # Only drop the token we used: another process may already have stored a fresh one.
        if self._cache.get(self._token_key) == stale:
            self._cache.delete(self._token_key)

    def call(
        self,
        method: Literal["GET", "POST"],
        api: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        extra_windows: Sequence[tuple[str, int, int]] = (),
    ) -> dict[str, Any]:
        """One API call with token handling, rate limiting and backoff. Returns the JSON."""
        refreshed = False
        attempt = 0
        windows = [*self._windows(api), *extra_windows]
        while True:
            self._limiter.acquire(windows, api=api)
            token = self.access_token()
            data = self._send(
                method, api, params={**(params or {}), "access_token": token}, body=body
            )
            errcode = int(data.get("errcode", 0) or 0)
            if errcode == 0:
                return data
            error = error_for(errcode=errcode, errmsg=str(data.get("errmsg", "")), api=api)
            if errcode in TOKEN_ERRCODES and not refreshed:
                self._drop_token(token)
                refreshed = True
                continue
            if (errcode in RATE_LIMIT_ERRCODES or errcode in RETRYABLE_ERRCODES) and (
                attempt < self.retry.retries
            ):
                self._sleep(self.retry.delay(attempt, self._rng))
                attempt += 1
                continue
            if isinstance(error, WeComTokenInvalid):
                self._cache.delete(self._token_key)
            raise error

    def _post(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", api, body=body)

    @staticmethod
    def _page(data: dict[str, Any], key: str) -> Page:
        items = data.get(key) or []
        return Page(items=list(items), next_cursor=str(data.get("next_cursor") or ""), raw=data)

    # -- 联系我 contact ways ---------------------------------------------------------------------

    def add_contact_way(
        self,
        *,
        type: Literal[1, 2],
        scene: Literal[1, 2],
        user: Sequence[str] = (),
        party: Sequence[int] = (),
        state: str | None = None,
        remark: str | None = None,
        style: int | None = None,
        skip_verify: bool = True,
        is_temp: bool = False,
        expires_in: int | None = None,
        chat_expires_in: int | None = None,
        unionid: str | None = None,
        is_exclusive: bool | None = None,
        conclusions: dict[str, Any] | None = None,
    ) -> ContactWayCreated:
        """Create a 联系我 way (scene 1: mini-program button, 2: QR code). ``state`` (≤ 30
        characters) comes back in the add_external_contact callback, so it identifies the
        channel. A single-person way (type 1) takes exactly one user."""
        _require(type in (1, 2), "type is 1 (single) or 2 (multi)", "type")
        _require(scene in (1, 2), "scene is 1 (mini-program) or 2 (QR code)", "scene")
        users = _ids(user, "user")
        _require(bool(users or party), "give at least one user or party", "user")
        if type == 1:
            _require(len(users) == 1 and not party, "a single-person way takes one user", "user")
        _state(state)
        body: dict[str, Any] = {"type": type, "scene": scene, "skip_verify": skip_verify}
        if users:
            body["user"] = users
        if party:
            body["party"] = list(party)
        optional = {
            "state": state,
            "remark": remark,
            "style": style,
            "expires_in": expires_in,
            "chat_expires_in": chat_expires_in,
            "unionid": unionid,
            "is_exclusive": is_exclusive,
            "conclusions": conclusions,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if is_temp:
            body["is_temp"] = True
        data = self._post("externalcontact/add_contact_way", body)
        return ContactWayCreated(
            config_id=str(data.get("config_id", "")), qr_code=str(data.get("qr_code", ""))
        )

    def get_contact_way(self, *, config_id: str) -> dict[str, Any]:
        _require(bool(config_id), "config_id is required", "config_id")
        data = self._post("externalcontact/get_contact_way", {"config_id": config_id})
        return dict(data.get("contact_way") or {})

    def list_contact_ways(
        self,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        cursor: str = "",
        limit: int = 100,
    ) -> Page:
        _require(1 <= limit <= 1000, "limit is between 1 and 1000", "limit")
        body: dict[str, Any] = {"limit": limit}
        if start_time is not None:
            body["start_time"] = start_time
        if end_time is not None:
            body["end_time"] = end_time
        if cursor:
            body["cursor"] = cursor
        return self._page(self._post("externalcontact/list_contact_way", body), "contact_way")

    def update_contact_way(
        self,
        *,
        config_id: str,
        user: Sequence[str] | None = None,
        party: Sequence[int] | None = None,
        state: str | None = None,
        remark: str | None = None,
        style: int | None = None,
        skip_verify: bool | None = None,
        expires_in: int | None = None,
        chat_expires_in: int | None = None,
        unionid: str | None = None,
        conclusions: dict[str, Any] | None = None,
    ) -> None:
        """Change a way; only the given fields change (WeCom overwrites ``user``/``party``)."""
        _require(bool(config_id), "config_id is required", "config_id")
        _state(state)
        body: dict[str, Any] = {"config_id": config_id}
        if user is not None:
            body["user"] = _ids(user, "user")
        if party is not None:
            body["party"] = list(party)
        optional = {
            "state": state,
            "remark": remark,
            "style": style,
            "skip_verify": skip_verify,
            "expires_in": expires_in,
            "chat_expires_in": chat_expires_in,
            "unionid": unionid,
            "conclusions": conclusions,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        self._post("externalcontact/update_contact_way", body)

    def del_contact_way(self, *, config_id: str) -> None:
        _require(bool(config_id), "config_id is required", "config_id")
        self._post("externalcontact/del_contact_way", {"config_id": config_id})

    # -- messages -----------------------------------------------------------------------------

    def send_welcome_msg(
        self, *, welcome_code: str, text: str = "", attachments: Sequence[Attachment] = ()
    ) -> None:
        """Send the new-customer welcome message. Call it first, within 20 seconds of the
        add_external_contact callback, once. 41051 raises WelcomeMessageAlreadySent (final);
        41096 is retried with backoff (another app is sending)."""
        _require(bool(welcome_code), "welcome_code is required", "welcome_code")
        _require(bool(text or attachments), "give text or at least one attachment", "text")
        body: dict[str, Any] = {"welcome_code": welcome_code}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = _attachments(attachments, "attachments")
        self._post("externalcontact/send_welcome_msg", body)

    def add_msg_template(
        self,
        *,
        chat_type: Literal["single", "group"] = "single",
        external_userid: Sequence[str] = (),
        chat_id_list: Sequence[str] = (),
        sender: str | None = None,
        allow_select: bool | None = None,
        tag_filter: dict[str, Any] | None = None,
        text: str = "",
        attachments: Sequence[Attachment] = (),
    ) -> MsgTemplateCreated:
        """Create a mass-message (群发) task. Nothing reaches customers until the sender confirms
        it in the WeCom app; poll :meth:`get_groupmsg_send_result` for the outcome."""
        _require(chat_type in ("single", "group"), "chat_type is single or group", "chat_type")
        _require(bool(text or attachments), "give text or at least one attachment", "text")
        recipients = _ids(external_userid, "external_userid", max_items=MAX_TEMPLATE_RECIPIENTS)
        if chat_type == "single":
            _require(
                bool(recipients or sender), "give external_userid or sender", "external_userid"
            )
        body: dict[str, Any] = {"chat_type": chat_type}
        if recipients:
            body["external_userid"] = recipients
        if chat_id_list:
            body["chat_id_list"] = _ids(chat_id_list, "chat_id_list")
        if sender:
            body["sender"] = sender
        if allow_select is not None:
            body["allow_select"] = allow_select
        if tag_filter is not None:
            body["tag_filter"] = tag_filter
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = _attachments(attachments, "attachments")
        data = self._post("externalcontact/add_msg_template", body)
        return MsgTemplateCreated(
            msgid=str(data.get("msgid", "")), fail_list=list(data.get("fail_list") or [])
        )

    def get_groupmsg_list_v2(
        self,
        *,
        chat_type: Literal["single", "group"],
        start_time: int,
        end_time: int,
        creator: str | None = None,
        filter_type: int = 2,
        cursor: str = "",
        limit: int = 50,
    ) -> Page:
        _require(end_time >= start_time, "end_time must not be before start_time", "end_time")
        _require(end_time - start_time <= 31 * 86400, "the range is at most one month", "end_time")
        _require(1 <= limit <= 100, "limit is between 1 and 100", "limit")
        body: dict[str, Any] = {
            "chat_type": chat_type,
            "start_time": start_time,
            "end_time": end_time,
            "filter_type": filter_type,
            "limit": limit,
        }
        if creator:
            body["creator"] = creator
        if cursor:
            body["cursor"] = cursor
        return self._page(
            self._post("externalcontact/get_groupmsg_list_v2", body), "group_msg_list"
        )

    def get_groupmsg_task(self, *, msgid: str, cursor: str = "", limit: int = 500) -> Page:
        _require(bool(msgid), "msgid is required", "msgid")
        _require(1 <= limit <= 1000, "limit is between 1 and 1000", "limit")
        body: dict[str, Any] = {"msgid": msgid, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self._page(self._post("externalcontact/get_groupmsg_task", body), "task_list")

    def get_groupmsg_send_result(
        self, *, msgid: str, userid: str, cursor: str = "", limit: int = 500
    ) -> Page:
        """Per-customer status: 0 not sent yet, 1 sent, 2 not a customer any more, 3 the
        customer already got a mass message from this corp today (WeCom's own limit)."""
        _require(bool(msgid), "msgid is required", "msgid")
        _require(bool(userid), "userid is required", "userid")
        _require(1 <= limit <= 1000, "limit is between 1 and 1000", "limit")
        body: dict[str, Any] = {"msgid": msgid, "userid": userid, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self._page(self._post("externalcontact/get_groupmsg_send_result", body), "send_list")

    def cancel_groupmsg_send(self, *, msgid: str) -> None:
        """Stop a mass message that staff have not confirmed yet."""
        _require(bool(msgid), "msgid is required", "msgid")
        self._post("externalcontact/cancel_groupmsg_send", {"msgid": msgid})

    def send_app_message(self, *, touser: Sequence[str], text: str) -> dict[str, Any]:
        """message/send: an app (应用) text message to staff members, e.g. "please confirm the
        broadcast". Limited client-side to 30 a minute per member (WeCom drops the excess)."""
        _require(
            self.agent_id is not None, "the client needs agent_id for app messages", "agent_id"
        )
        users = _ids(touser, "touser", max_items=1000)
        _require(bool(users), "give at least one member", "touser")
        _require(bool(text) and len(text.encode()) <= 2048, "text is 1 to 2048 bytes", "text")
        per_member = [
            (
                f"{self._corp_key}:msg:{self.agent_id}:{u}",
                60,
                self.limits.app_messages_per_member_per_minute,
            )
            for u in users
        ]
        return self.call(
            "POST",
            "message/send",
            body={
                "touser": "|".join(users),
                "msgtype": "text",
                "agentid": self.agent_id,
                "text": {"content": text},
            },
            extra_windows=per_member,
        )

    # -- customers ----------------------------------------------------------------------------

    def get_external_contact(self, *, external_userid: str, cursor: str = "") -> dict[str, Any]:
        """The customer and (one page of) their follow users; ``next_cursor`` when more."""
        _require(bool(external_userid), "external_userid is required", "external_userid")
        params = {"external_userid": external_userid}
        if cursor:
            params["cursor"] = cursor
        return self.call("GET", "externalcontact/get", params=params)

    def list_external_contacts(self, *, userid: str) -> list[str]:
        _require(bool(userid), "userid is required", "userid")
        data = self.call("GET", "externalcontact/list", params={"userid": userid})
        return [str(x) for x in data.get("external_userid") or []]

    def batch_get_by_user(
        self, *, userid_list: Sequence[str], cursor: str = "", limit: int = 100
    ) -> Page:
        users = _ids(userid_list, "userid_list", max_items=MAX_BATCH_USERS)
        _require(bool(users), "give at least one userid", "userid_list")
        _require(1 <= limit <= 100, "limit is between 1 and 100", "limit")
        body: dict[str, Any] = {"userid_list": users, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        data = self._post("externalcontact/batch/get_by_user", body)
        return self._page(data, "external_contact_list")

    # -- group chats ----------------------------------------------------------------------------

    def list_group_chats(
        self,
        *,
        status_filter: int = 0,
        owner_userids: Sequence[str] = (),
        cursor: str = "",
        limit: int = 100,
    ) -> Page:
        _require(1 <= limit <= 1000, "limit is between 1 and 1000", "limit")
        body: dict[str, Any] = {"status_filter": status_filter, "limit": limit}
        if owner_userids:
            body["owner_filter"] = {"userid_list": _ids(owner_userids, "owner_userids")}
        if cursor:
            body["cursor"] = cursor
        return self._page(self._post("externalcontact/groupchat/list", body), "group_chat_list")

    def get_group_chat(self, *, chat_id: str, need_name: bool = False) -> dict[str, Any]:
        _require(bool(chat_id), "chat_id is required", "chat_id")
        body = {"chat_id": chat_id, "need_name": 1 if need_name else 0}
        return dict(self._post("externalcontact/groupchat/get", body).get("group_chat") or {})

    # -- corp tags --------------------------------------------------------------------------------

    def get_corp_tag_list(
        self, *, tag_id: Sequence[str] = (), group_id: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {}
        if tag_id:
            body["tag_id"] = _ids(tag_id, "tag_id")
        if group_id:
            body["group_id"] = _ids(group_id, "group_id")
        data = self._post("externalcontact/get_corp_tag_list", body)
        return list(data.get("tag_group") or [])

    def add_corp_tag(
        self,
        *,
        tags: Sequence[str],
        group_id: str | None = None,
        group_name: str | None = None,
        order: int | None = None,
    ) -> dict[str, Any]:
        """Add tags to a group (``group_id``) or to a new group (``group_name``)."""
        _require(bool(group_id or group_name), "give group_id or group_name", "group_id")
        names = list(tags)
        _require(bool(names), "give at least one tag", "tags")
        for i, name in enumerate(names):
            _require(0 < len(name) <= 30, "a tag name is 1 to 30 characters", f"tags[{i}]")
        body: dict[str, Any] = {"tag": [{"name": n} for n in names]}
        if group_id:
            body["group_id"] = group_id
        if group_name:
            _require(len(group_name) <= 30, "a group name is at most 30 characters", "group_name")
            body["group_name"] = group_name
        if order is not None:
            body["order"] = order
        return dict(self._post("externalcontact/add_corp_tag", body).get("tag_group") or {})

    def edit_corp_tag(self, *, id: str, name: str | None = None, order: int | None = None) -> None:
        _require(bool(id), "id is required", "id")
        _require(name is not None or order is not None, "give name or order", "name")
        body: dict[str, Any] = {"id": id}
        if name is not None:
            _require(0 < len(name) <= 30, "a name is 1 to 30 characters", "name")
            body["name"] = name
        if order is not None:
            body["order"] = order
        self._post("externalcontact/edit_corp_tag", body)

    def del_corp_tag(self, *, tag_id: Sequence[str] = (), group_id: Sequence[str] = ()) -> None:
        _require(bool(tag_id or group_id), "give tag_id or group_id", "tag_id")
        body: dict[str, Any] = {}
        if tag_id:
            body["tag_id"] = _ids(tag_id, "tag_id")
        if group_id:
            body["group_id"] = _ids(group_id, "group_id")
        self._post("externalcontact/del_corp_tag", body)

    def mark_tag(
        self,
        *,
        userid: str,
        external_userid: str,
        add_tag: Sequence[str] = (),
        remove_tag: Sequence[str] = (),
    ) -> None:
        _require(bool(userid), "userid is required", "userid")
        _require(bool(external_userid), "external_userid is required", "external_userid")
        _require(bool(add_tag or remove_tag), "give add_tag or remove_tag", "add_tag")
        body: dict[str, Any] = {"userid": userid, "external_userid": external_userid}
        if add_tag:
            body["add_tag"] = _ids(add_tag, "add_tag")
        if remove_tag:
            body["remove_tag"] = _ids(remove_tag, "remove_tag")
        self._post("externalcontact/mark_tag", body)

    # -- transfers (在职继承 / 离职继承) ----------------------------------------------------------

    def _transfer(
        self,
        api: str,
        *,
        handover_userid: str,
        takeover_userid: str,
        external_userid: Sequence[str],
        transfer_success_msg: str | None,
    ) -> list[TransferOutcome]:
        _require(bool(handover_userid), "handover_userid is required", "handover_userid")
        _require(bool(takeover_userid), "takeover_userid is required", "takeover_userid")
        _require(
            handover_userid != takeover_userid,
            "takeover must differ from handover",
            "takeover_userid",
        )
        ids = _ids(external_userid, "external_userid", max_items=MAX_TRANSFER_BATCH)
        _require(bool(ids), "give at least one external_userid", "external_userid")
        body: dict[str, Any] = {
            "handover_userid": handover_userid,
            "takeover_userid": takeover_userid,
            "external_userid": ids,
        }
        if transfer_success_msg is not None:
            _require(
                len(transfer_success_msg) <= 200, "at most 200 characters", "transfer_success_msg"
            )
            body["transfer_success_msg"] = transfer_success_msg
        data = self._post(api, body)
        return [
            TransferOutcome(
                external_userid=str(c.get("external_userid", "")), errcode=int(c.get("errcode", 0))
            )
            for c in data.get("customer") or []
        ]

    def transfer_customer(
        self,
        *,
        handover_userid: str,
        takeover_userid: str,
        external_userid: Sequence[str],
        transfer_success_msg: str | None = None,
    ) -> list[TransferOutcome]:
        """在职继承: hand customers of a serving staff member to another (≤ 100 per call). Each
        customer can be transferred in service at most twice in 90 days (errcode 40128); the
        takeover happens 24 hours later unless the customer refuses."""
        return self._transfer(
            "externalcontact/transfer_customer",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            external_userid=external_userid,
            transfer_success_msg=transfer_success_msg,
        )

    def resigned_transfer_customer(
        self, *, handover_userid: str, takeover_userid: str, external_userid: Sequence[str]
    ) -> list[TransferOutcome]:
        """离职继承: hand customers of a resigned staff member to another (≤ 100 per call)."""
        return self._transfer(
            "externalcontact/resigned/transfer_customer",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            external_userid=external_userid,
            transfer_success_msg=None,
        )

    def _transfer_result(
        self, api: str, *, handover_userid: str, takeover_userid: str, cursor: str
    ) -> Page:
        _require(bool(handover_userid), "handover_userid is required", "handover_userid")
        _require(bool(takeover_userid), "takeover_userid is required", "takeover_userid")
        body: dict[str, Any] = {
            "handover_userid": handover_userid,
            "takeover_userid": takeover_userid,
        }
        if cursor:
            body["cursor"] = cursor
        return self._page(self._post(api, body), "customer")

    def transfer_result(
        self, *, handover_userid: str, takeover_userid: str, cursor: str = ""
    ) -> Page:
        """Status per customer: 1 taken over, 2 waiting, 3 refused, 4 takeover at limit, 5 none."""
        return self._transfer_result(
            "externalcontact/transfer_result",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            cursor=cursor,
        )

    def resigned_transfer_result(
        self, *, handover_userid: str, takeover_userid: str, cursor: str = ""
    ) -> Page:
        return self._transfer_result(
            "externalcontact/resigned/transfer_result",
            handover_userid=handover_userid,
            takeover_userid=takeover_userid,
            cursor=cursor,
        )

    # -- moments (朋友圈) ------------------------------------------------------------------------

    def add_moment_task(
        self,
        *,
        text: str = "",
        attachments: Sequence[Attachment] = (),
        sender_list: Sequence[str] = (),
        department_list: Sequence[int] = (),
        tag_list: Sequence[str] = (),
    ) -> str:
        """Create a moments post task for staff to publish; returns the async ``jobid``."""
        _require(bool(text or attachments), "give text or at least one attachment", "text")
        body: dict[str, Any] = {}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = _attachments(attachments, "attachments")
        visible: dict[str, Any] = {}
        if sender_list or department_list:
            visible["sender_list"] = {
                "user_list": _ids(sender_list, "sender_list"),
                "department_list": list(department_list),
            }
        if tag_list:
            visible["external_contact_list"] = {"tag_list": _ids(tag_list, "tag_list")}
        if visible:
            body["visible_range"] = visible
        return str(self._post("externalcontact/add_moment_task", body).get("jobid", ""))

    def get_moment_task(self, *, moment_id: str, cursor: str = "", limit: int = 1000) -> Page:
        """Which members published a corp moments post: ``publish_status`` 0 not yet, 1
        published, per ``userid``."""
        _require(bool(moment_id), "moment_id is required", "moment_id")
        _require(1 <= limit <= 1000, "limit is between 1 and 1000", "limit")
        body: dict[str, Any] = {"moment_id": moment_id, "limit": limit}
        if cursor:
            body["cursor"] = cursor
        return self._page(self._post("externalcontact/get_moment_task", body), "task_list")

    def get_moment_task_result(self, *, jobid: str) -> dict[str, Any]:
        """``status``: 1 started, 2 running, 3 done; ``result`` holds moment_id when done."""
        _require(bool(jobid), "jobid is required", "jobid")
        return self.call("GET", "externalcontact/get_moment_task_result", params={"jobid": jobid})


__all__ = [
    "DEFAULT_BASE_URL",
    "Attachment",
    "CacheRateLimiter",
    "ContactWayCreated",
    "FileAttachment",
    "ImageAttachment",
    "LinkAttachment",
    "MiniprogramAttachment",
    "MsgTemplateCreated",
    "Page",
    "RateLimits",
    "RetryPolicy",
    "TransferOutcome",
    "VideoAttachment",
    "WeComClient",
    "WeComError",
]
