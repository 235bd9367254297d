"""A local WeCom protocol server for tests, the demo and the simulator.

It listens on 127.0.0.1 (port 0 by default), speaks the documented JSON API that
:class:`~yutang.carriers.wecom.client.WeComClient` uses, and keeps real state: access tokens
with expiry, staff (follow users), customers and their relationships, contact ways, group chats,
corp tags, mass-message templates, welcome codes, transfers, moments and app messages. Time
comes from an injectable clock, so a test moves time instead of sleeping.

Tests can make the next N calls of an API fail with a chosen errcode (:meth:`fail_next`), read
every request in order (:attr:`requests`), and build encrypted, signed callbacks to POST to a
URL or through Django's test client (:meth:`callback`, :meth:`deliver_callback`).

Rules it enforces, as WeCom documents them:

* welcome codes are single-use and valid 20 seconds after the add event; a second use answers
  41051, a late or unknown one 40058 (WeCom's exact code for a late call is undocumented);
* a mass message (add_msg_template) stays pending (status 0) until :meth:`confirm_group_msg`
  — the staff member pressing "send" in the app; then each customer's result is 1 (sent),
  2 (no longer the member's contact) or 3 (the customer already received as many corp mass
  messages as WeCom's receiving rule allows: by default as many a month as the month has
  days, or :attr:`mass_message_rule` ``("day", 1)`` / ``("week", 7)``, in China time);
* transfers: ≤ 100 customers per call, each customer at most 2 in-service transfers per 90 days
  (40128), one pending at a time (40129), taken over 24 hours after the request.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import json
import secrets
import threading
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from yutang.core.clock import Clock, SystemClock

from .callbacks import render_callback
from .crypto import CallbackCrypto, SignedEnvelope

CHINA = zoneinfo.ZoneInfo("Asia/Shanghai")
CONTROL = "/_control/"
TOKEN_LIFETIME_SECONDS = 7200
WELCOME_CODE_SECONDS = 20
TRANSFER_TAKEOVER = dt.timedelta(hours=24)
TRANSFER_WINDOW = dt.timedelta(days=90)
MAX_IN_SERVICE_TRANSFERS = 2


class ApiError(Exception):
    def __init__(self, errcode: int, errmsg: str):
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class RecordedRequest:
    """One request as the server saw it (``access_token`` removed from ``params``)."""

    api: str
    method: str
    params: dict[str, str]
    body: dict[str, Any] | None
    at: dt.datetime
    errcode: int = 0


@dataclass
class Relation:
    userid: str
    external_userid: str
    created_at: dt.datetime
    state: str = ""
    remark: str = ""
    tags: set[str] = field(default_factory=set)
    description: str = ""
    remark_mobiles: list[str] = field(default_factory=list)


@dataclass
class WelcomeCode:
    code: str
    userid: str
    external_userid: str
    issued_at: dt.datetime
    used: bool = False


@dataclass
class GroupMsg:
    msgid: str
    request: dict[str, Any]
    creator: str
    created_at: dt.datetime
    # sender -> external_userid -> status (0 pending, 1 sent, 2 not a customer)
    results: dict[str, dict[str, int]]
    confirmed: set[str] = field(default_factory=set)
    cancelled: bool = False
    send_time: dict[str, int] = field(default_factory=dict)


@dataclass
class Transfer:
    kind: str  # "in_service" or "resigned"
    handover: str
    takeover: str
    external_userid: str
    requested_at: dt.datetime
    refused: bool = False
    completed: bool = False


class WeComTestServer:
    """A running local WeCom. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        *,
        corp_id: str = "ww-test-corp",
        secret: str = "test-secret",  # noqa: S107 - a local test server, not a credential
        agent_id: int = 1000002,
        token: str = "test-token",  # noqa: S107 - a local test server, not a credential
        encoding_aes_key: str | None = None,
        clock: Clock | None = None,
    ):
        self.corp_id = corp_id
        self.secret = secret
        self.agent_id = agent_id
        self.callback_token = token
        self.encoding_aes_key = encoding_aes_key or _random_aes_key()
        self.crypto = CallbackCrypto(
            token=token, encoding_aes_key=self.encoding_aes_key, receive_id=corp_id
        )
        self.clock: Clock = clock or SystemClock()
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.requests: list[RecordedRequest] = []
        self.tokens: dict[str, dt.datetime] = {}
        self.staff: set[str] = set()
        self.resigned: set[str] = set()
        self.customers: dict[str, dict[str, Any]] = {}
        self.relations: dict[tuple[str, str], Relation] = {}
        self.contact_ways: dict[str, dict[str, Any]] = {}
        self.welcome_codes: dict[str, WelcomeCode] = {}
        self.welcome_messages: list[dict[str, Any]] = []
        self.group_chats: dict[str, dict[str, Any]] = {}
        self.tag_groups: dict[str, dict[str, Any]] = {}
        self.group_msgs: dict[str, GroupMsg] = {}
        self.transfers: list[Transfer] = []
        self.moment_jobs: dict[str, dict[str, Any]] = {}
        self.app_messages: list[dict[str, Any]] = []
        self._failures: dict[str, list[tuple[int, str]]] = {}
        #: WeCom's receiving rule for mass messages (群发助手 → 设置群发规则): None is "as
        #: many a month as the month has days"; ("day", 1) or ("week", 7) the stricter ones.
        self.mass_message_rule: tuple[str, int] | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, port: int = 0) -> WeComTestServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload = server.handle(method, self.path, raw)
                body = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: tests read `requests` instead

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WeComTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/cgi-bin/"

    # -- test hooks ------------------------------------------------------------------------------

    def fail_next(self, api: str, errcode: int, *, times: int = 1, errmsg: str = "") -> None:
        """Answer the next ``times`` calls of ``api`` (e.g. "externalcontact/send_welcome_msg"
        or "gettoken") with ``errcode`` and change nothing."""
        with self.lock:
            queue = self._failures.setdefault(api, [])
            queue.extend([(errcode, errmsg or f"injected error {errcode}")] * times)

    def expire_tokens(self) -> None:
        """Make every issued token expired (the next call answers 42001)."""
        with self.lock:
            past = self.clock.now() - dt.timedelta(seconds=1)
            for token in self.tokens:
                self.tokens[token] = past

    def revoke_tokens(self) -> None:
        """Forget every issued token (the next call answers 40014)."""
        with self.lock:
            self.tokens.clear()

    def calls(self, api: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if api is None or r.api == api]

    def add_staff(self, *userids: str) -> None:
        with self.lock:
            self.staff.update(userids)

    def resign_staff(self, userid: str) -> None:
        with self.lock:
            self.resigned.add(userid)

    def add_customer(
        self,
        *,
        userid: str,
        external_userid: str | None = None,
        name: str = "客户",
        state: str = "",
        with_welcome_code: bool = True,
    ) -> dict[str, str | int]:
        """A customer adds ``userid`` (scanning a 联系我 code with ``state``). Returns the
        add_external_contact callback fields, including a fresh WelcomeCode."""
        with self.lock:
            if userid not in self.staff:
                raise ValueError(f"unknown staff member {userid}")
            ext = external_userid or f"wm{self._next_id():08d}"
            now = self.clock.now()
            self.customers.setdefault(
                ext, {"external_userid": ext, "name": name, "type": 1, "gender": 0}
            )
            self.relations[(userid, ext)] = Relation(userid, ext, now, state=state)
            fields = self._contact_event("add_external_contact", userid, ext)
            if state:
                fields["State"] = state
            if with_welcome_code:
                code = secrets.token_urlsafe(24)
                self.welcome_codes[code] = WelcomeCode(code, userid, ext, now)
                fields["WelcomeCode"] = code
            return fields

    def customer_deletes_staff(self, *, userid: str, external_userid: str) -> dict[str, str | int]:
        """The customer deletes the staff member (del_follow_user)."""
        with self.lock:
            self.relations.pop((userid, external_userid), None)
            return self._contact_event("del_follow_user", userid, external_userid)

    def staff_deletes_customer(self, *, userid: str, external_userid: str) -> dict[str, str | int]:
        with self.lock:
            self.relations.pop((userid, external_userid), None)
            return self._contact_event("del_external_contact", userid, external_userid)

    def create_group_chat(
        self, *, owner: str, members: list[str], name: str = "客户群"
    ) -> dict[str, str | int]:
        """A staff member creates a customer group. Returns the change_external_chat fields."""
        with self.lock:
            chat_id = f"wr{self._next_id():08d}"
            now = int(self.clock.now().timestamp())
            self.group_chats[chat_id] = {
                "chat_id": chat_id,
                "name": name,
                "owner": owner,
                "create_time": now,
                "notice": "",
                "status": 0,
                "member_version": "1",
                "member_list": [
                    {
                        "userid": m,
                        "type": 1 if m in self.staff else 2,
                        "join_time": now,
                        "join_scene": 1,
                    }
                    for m in [owner, *members]
                ],
                "admin_list": [],
            }
            return {**self._event_base("change_external_chat", "create"), "ChatId": chat_id}

    def join_group_chat(
        self, *, chat_id: str, external_userid: str
    ) -> dict[str, str | int | list[str]]:
        with self.lock:
            chat = self.group_chats[chat_id]
            last = chat["member_version"]
            chat["member_list"].append(
                {
                    "userid": external_userid,
                    "type": 2,
                    "join_time": int(self.clock.now().timestamp()),
                    "join_scene": 3,
                }
            )
            chat["member_version"] = str(int(last) + 1)
            return {
                **self._event_base("change_external_chat", "update"),
                "ChatId": chat_id,
                "UpdateDetail": "add_member",
                "JoinScene": 3,
                "MemChangeCnt": 1,
                "MemChangeList": [external_userid],
                "LastMemVer": last,
                "CurMemVer": chat["member_version"],
            }

    def tag_event(
        self, *, change_type: str, tag_id: str, tag_type: str = "tag"
    ) -> dict[str, str | int]:
        return {
            **self._event_base("change_external_tag", change_type),
            "Id": tag_id,
            "TagType": tag_type,
        }

    def confirm_group_msg(self, msgid: str, *, sender: str | None = None) -> None:
        """The sender (or every sender) confirms the mass message in the WeCom app."""
        with self.lock:
            msg = self.group_msgs[msgid]
            if msg.cancelled:
                raise ValueError("the mass message was cancelled")
            now = int(self.clock.now().timestamp())
            for who, results in msg.results.items():
                if sender is not None and who != sender:
                    continue
                msg.confirmed.add(who)
                msg.send_time[who] = now
                for ext in results:
                    if (who, ext) not in self.relations:
                        results[ext] = 2
                    elif self._mass_messages_received(ext) >= self._mass_message_allowance():
                        results[ext] = 3
                    else:
                        results[ext] = 1

    def _period_start(self) -> dt.datetime:
        local = self.clock.now().astimezone(CHINA)
        day = dt.datetime.combine(local.date(), dt.time(), tzinfo=CHINA)
        kind = self.mass_message_rule[0] if self.mass_message_rule else "month"
        if kind == "day":
            return day
        if kind == "week":
            return day - dt.timedelta(days=local.weekday())
        return day.replace(day=1)

    def _mass_message_allowance(self) -> int:
        if self.mass_message_rule is not None:
            return self.mass_message_rule[1]
        local = self.clock.now().astimezone(CHINA)
        return calendar.monthrange(local.year, local.month)[1]

    def _mass_messages_received(self, external_userid: str) -> int:
        since = int(self._period_start().timestamp())
        return sum(
            1
            for m in self.group_msgs.values()
            for who, results in m.results.items()
            if results.get(external_userid) == 1 and m.send_time.get(who, 0) >= since
        )

    def refuse_transfer(self, *, external_userid: str) -> dict[str, str | int]:
        """The customer refuses a pending transfer (status 3). Returns the transfer_fail
        callback fields WeCom sends about the member who was to take over."""
        with self.lock:
            takeover = ""
            for t in self.transfers:
                if t.external_userid == external_userid and not t.completed and not t.refused:
                    t.refused = True
                    takeover = t.takeover
            return {
                **self._contact_event("transfer_fail", takeover, external_userid),
                "FailReason": "customer_refused",
            }

    def complete_transfers(self) -> list[dict[str, str | int]]:
        """Settle transfers whose 24-hour takeover time has passed (by the server's clock);
        returns the del_external_contact callbacks (Source DELETE_BY_TRANSFER) WeCom sends
        about the members who handed them over."""
        with self.lock:
            return [
                {
                    **self._contact_event("del_external_contact", t.handover, t.external_userid),
                    "Source": "DELETE_BY_TRANSFER",
                }
                for t in self._settle_transfers()
            ]

    def staff_edits_customer(
        self,
        *,
        userid: str,
        external_userid: str,
        remark: str | None = None,
        description: str | None = None,
        remark_mobiles: list[str] | None = None,
        add_tags: tuple[str, ...] = (),
        remove_tags: tuple[str, ...] = (),
    ) -> dict[str, str | int]:
        """The member edits the customer in the WeCom app (remark, description, phone
        numbers, corp tags). Returns the edit_external_contact callback fields."""
        with self.lock:
            rel = self.relations[(userid, external_userid)]
            if remark is not None:
                rel.remark = remark
            if description is not None:
                rel.description = description
            if remark_mobiles is not None:
                rel.remark_mobiles = list(remark_mobiles)
            for tid in (*add_tags, *remove_tags):
                if self._find_tag(tid) is None:
                    raise ValueError(f"unknown corp tag {tid}")
            rel.tags.update(add_tags)
            rel.tags.difference_update(remove_tags)
            return self._contact_event("edit_external_contact", userid, external_userid)

    def publish_moment(self, moment_id: str, *, userid: str) -> None:
        """A member publishes a corp moments post from the WeCom app."""
        with self.lock:
            for job in self.moment_jobs.values():
                if job["moment_id"] == moment_id:
                    if userid not in job["publish"]:
                        raise ValueError(f"{userid} was not asked to publish {moment_id}")
                    job["publish"][userid] = 1
                    return
            raise ValueError(f"unknown moment {moment_id}")

    # -- callbacks --------------------------------------------------------------------------------

    def callback(
        self, fields: dict[str, Any], *, timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], str]:
        """Encrypt and sign callback ``fields``; returns (query params, POST body)."""
        envelope = self.seal(render_callback(fields), timestamp=timestamp, nonce=nonce)
        return envelope.query, envelope.callback_body(
            to_user_name=self.corp_id, agent_id=str(self.agent_id)
        )

    def seal(
        self, message: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> SignedEnvelope:
        ts = timestamp or str(int(self.clock.now().timestamp()))
        return self.crypto.seal(message, timestamp=ts, nonce=nonce or secrets.token_hex(5))

    def url_verification(
        self, *, echo: str = "echo-1616140317555161061"
    ) -> tuple[dict[str, str], str]:
        """The GET query WeCom sends when a callback URL is saved, and the expected answer."""
        envelope = self.seal(echo)
        return {**envelope.query, "echostr": envelope.encrypt}, echo

    def deliver_callback(self, url: str, fields: dict[str, Any]) -> httpx.Response:
        """POST an encrypted callback to ``url`` as WeCom would."""
        query, body = self.callback(fields)
        return httpx.post(
            url,
            params=query,
            content=body.encode(),
            headers={"Content-Type": "text/xml"},
            timeout=10,
        )

    # -- request handling -----------------------------------------------------------------------

    def handle(self, method: str, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        if parts.path.startswith(CONTROL):
            return self._control(method, parts.path[len(CONTROL) :], raw)
        if not parts.path.startswith("/cgi-bin/"):
            return 404, {"errcode": 404, "errmsg": "not found"}
        api = parts.path[len("/cgi-bin/") :]
        params = dict(parse_qsl(parts.query))
        body: dict[str, Any] | None = None
        with self.lock:
            record = RecordedRequest(
                api=api,
                method=method,
                params={k: v for k, v in params.items() if k not in ("access_token", "corpsecret")},
                body=None,
                at=self.clock.now(),
            )
            self.requests.append(record)
            try:
                if method == "POST":
                    try:
                        loaded = json.loads(raw.decode() or "{}")
                    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                        raise ApiError(47001, "data format error") from exc
                    if not isinstance(loaded, dict):
                        raise ApiError(47001, "data format error")
                    body = loaded
                    record.body = body
                queued = self._failures.get(api)
                if queued:
                    errcode, errmsg = queued.pop(0)
                    raise ApiError(errcode, errmsg)
                if api != "gettoken":
                    self._check_token(params.get("access_token", ""))
                handler = self._routes().get((method, api))
                if handler is None:
                    raise ApiError(48002, f"api forbidden or unknown: {method} {api}")
                result = handler(params, body or {})
            except ApiError as error:
                record.errcode = error.errcode
                return 200, {"errcode": error.errcode, "errmsg": error.errmsg}
            return 200, {"errcode": 0, "errmsg": "ok", **result}

    # -- control endpoints (for a server running in its own process) --------------------------

    def _control(self, method: str, what: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """The test hooks over HTTP, under ``/_control/`` (this server only listens on
        loopback): ``add_staff`` {userids}, ``add_customer`` {userid, external_userid, state}
        → the sealed add callback {query, body, fields}, ``confirm`` {msgid, sender}, ``fail_next``
        {api, errcode, times}, and GET ``group_msgs`` (every mass-message task and its
        per-customer results)."""
        try:
            body = json.loads(raw.decode() or "{}") if method == "POST" else {}
            with self.lock:
                if method == "GET" and what == "group_msgs":
                    return 200, {
                        "group_msgs": [self._msg_state(m) for m in self.group_msgs.values()]
                    }
                if method == "POST" and what == "add_staff":
                    self.add_staff(*body["userids"])
                    return 200, {}
                if method == "POST" and what == "add_customer":
                    fields = self.add_customer(
                        userid=body["userid"],
                        external_userid=body.get("external_userid"),
                        state=body.get("state", ""),
                    )
                    query, sealed = self.callback(fields)
                    return 200, {"query": query, "body": sealed, "fields": fields}
                if method == "POST" and what == "confirm":
                    self.confirm_group_msg(body["msgid"], sender=body.get("sender"))
                    return 200, {}
                if method == "POST" and what == "fail_next":
                    self.fail_next(
                        body["api"], int(body["errcode"]), times=int(body.get("times", 1))
                    )
                    return 200, {}
        except (KeyError, ValueError, TypeError) as exc:
            return 400, {"error": f"{type(exc).__name__}: {exc}"}
        return 404, {"error": f"no control {method} {what}"}

    @staticmethod
    def _msg_state(m: GroupMsg) -> dict[str, Any]:
        return {
            "msgid": m.msgid,
            "creator": m.creator,
            "external_userid": list(m.request.get("external_userid") or []),
            "text": (m.request.get("text") or {}).get("content", ""),
            "results": m.results,
            "cancelled": m.cancelled,
        }

    def _routes(
        self,
    ) -> dict[tuple[str, str], Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]]:
        e = "externalcontact/"
        return {
            ("GET", "gettoken"): self._gettoken,
            ("POST", e + "add_contact_way"): self._add_contact_way,
            ("POST", e + "get_contact_way"): self._get_contact_way,
            ("POST", e + "list_contact_way"): self._list_contact_way,
            ("POST", e + "update_contact_way"): self._update_contact_way,
            ("POST", e + "del_contact_way"): self._del_contact_way,
            ("POST", e + "send_welcome_msg"): self._send_welcome_msg,
            ("POST", e + "add_msg_template"): self._add_msg_template,
            ("POST", e + "get_groupmsg_list_v2"): self._get_groupmsg_list_v2,
            ("POST", e + "get_groupmsg_task"): self._get_groupmsg_task,
            ("POST", e + "get_groupmsg_send_result"): self._get_groupmsg_send_result,
            ("POST", e + "cancel_groupmsg_send"): self._cancel_groupmsg_send,
            ("GET", e + "get"): self._get_external_contact,
            ("GET", e + "list"): self._list_external_contacts,
            ("POST", e + "batch/get_by_user"): self._batch_get_by_user,
            ("POST", e + "groupchat/list"): self._groupchat_list,
            ("POST", e + "groupchat/get"): self._groupchat_get,
            ("POST", e + "get_corp_tag_list"): self._get_corp_tag_list,
            ("POST", e + "add_corp_tag"): self._add_corp_tag,
            ("POST", e + "edit_corp_tag"): self._edit_corp_tag,
            ("POST", e + "del_corp_tag"): self._del_corp_tag,
            ("POST", e + "mark_tag"): self._mark_tag,
            ("POST", e + "transfer_customer"): self._transfer_in_service,
            ("POST", e + "transfer_result"): self._transfer_result_in_service,
            ("POST", e + "resigned/transfer_customer"): self._transfer_resigned,
            ("POST", e + "resigned/transfer_result"): self._transfer_result_resigned,
            ("POST", e + "add_moment_task"): self._add_moment_task,
            ("GET", e + "get_moment_task_result"): self._get_moment_task_result,
            ("POST", e + "get_moment_task"): self._get_moment_task,
            ("POST", "message/send"): self._message_send,
        }

    # -- helpers -----------------------------------------------------------------------------------

    def _next_id(self) -> int:
        return next(self._ids)

    def _event_base(self, event: str, change_type: str) -> dict[str, str | int]:
        return {
            "ToUserName": self.corp_id,
            "FromUserName": "sys",
            "CreateTime": int(self.clock.now().timestamp()),
            "MsgType": "event",
            "Event": event,
            "ChangeType": change_type,
        }

    def _contact_event(self, change_type: str, userid: str, ext: str) -> dict[str, str | int]:
        return {
            **self._event_base("change_external_contact", change_type),
            "UserID": userid,
            "ExternalUserID": ext,
        }

    def _check_token(self, token: str) -> None:
        expires = self.tokens.get(token)
        if not token or expires is None:
            raise ApiError(40014, "invalid access_token")
        if expires <= self.clock.now():
            raise ApiError(42001, "access_token expired")

    @staticmethod
    def _need(body: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
        value = body.get(name)
        if value is None or value == "" or not isinstance(value, kind):
            raise ApiError(40058, f"invalid Request Parameter: {name}")
        return value

    def _need_staff(self, userid: Any) -> str:
        if not isinstance(userid, str) or userid not in self.staff:
            raise ApiError(40003, "invalid userid")
        return userid

    def _page(self, items: list[Any], cursor: str, limit: int) -> tuple[list[Any], str]:
        start = int(cursor) if cursor.isdigit() else 0
        chunk = items[start : start + limit]
        more = start + limit < len(items)
        return chunk, str(start + limit) if more else ""

    # -- API handlers --------------------------------------------------------------------------

    def _gettoken(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if params.get("corpid") != self.corp_id:
            raise ApiError(40013, "invalid corpid")
        if params.get("corpsecret") != self.secret:
            raise ApiError(40001, "invalid credential")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = self.clock.now() + dt.timedelta(seconds=TOKEN_LIFETIME_SECONDS)
        return {"access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS}

    def _add_contact_way(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("type")
        if kind not in (1, 2) or body.get("scene") not in (1, 2):
            raise ApiError(40058, "invalid type or scene")
        state = body.get("state", "")
        if not isinstance(state, str) or len(state) > 30:
            raise ApiError(40058, "state exceeds 30 characters")
        users = body.get("user") or []
        if not users and not body.get("party"):
            raise ApiError(40058, "user or party is required")
        for u in users:
            self._need_staff(u)
        if kind == 1 and len(users) != 1:
            raise ApiError(40058, "single contact way takes one user")
        config_id = secrets.token_hex(16)
        way = {k: v for k, v in body.items()}
        way.update({"config_id": config_id, "create_time": int(self.clock.now().timestamp())})
        way["qr_code"] = (
            f"https://wework.example.invalid/qr/{config_id}" if body["scene"] == 2 else ""
        )
        self.contact_ways[config_id] = way
        return {"config_id": config_id, "qr_code": way["qr_code"]}

    def _way(self, body: dict[str, Any]) -> dict[str, Any]:
        way = self.contact_ways.get(self._need(body, "config_id"))
        if way is None:
            raise ApiError(41044, "invalid config_id")
        return way

    def _get_contact_way(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return {"contact_way": dict(self._way(body))}

    def _list_contact_way(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        ways = sorted(self.contact_ways.values(), key=lambda w: (w["create_time"], w["config_id"]))
        chunk, cursor = self._page(ways, str(body.get("cursor", "")), int(body.get("limit", 100)))
        return {
            "contact_way": [{"config_id": w["config_id"]} for w in chunk],
            "next_cursor": cursor,
        }

    def _update_contact_way(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        way = self._way(body)
        state = body.get("state")
        if state is not None and (not isinstance(state, str) or len(state) > 30):
            raise ApiError(40058, "state exceeds 30 characters")
        for u in body.get("user") or []:
            self._need_staff(u)
        way.update({k: v for k, v in body.items() if k != "config_id"})
        return {}

    def _del_contact_way(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        way = self._way(body)
        del self.contact_ways[way["config_id"]]
        return {}

    def _send_welcome_msg(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        code = self._need(body, "welcome_code")
        welcome = self.welcome_codes.get(code)
        if welcome is None:
            raise ApiError(40058, "invalid welcome_code")
        if welcome.used:
            raise ApiError(41051, "externaluser has started chatting")
        if (self.clock.now() - welcome.issued_at).total_seconds() > WELCOME_CODE_SECONDS:
            raise ApiError(40058, "welcome_code expired")
        attachments = body.get("attachments") or []
        if len(attachments) > 9:
            raise ApiError(40058, "too many attachments")
        if not body.get("text") and not attachments:
            raise ApiError(40058, "empty message")
        welcome.used = True
        self.welcome_messages.append(
            {
                "welcome_code": code,
                "userid": welcome.userid,
                "external_userid": welcome.external_userid,
                "body": body,
                "at": self.clock.now(),
            }
        )
        return {}

    def _add_msg_template(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        chat_type = body.get("chat_type", "single")
        if chat_type not in ("single", "group"):
            raise ApiError(40058, "invalid chat_type")
        if not body.get("text") and not body.get("attachments"):
            raise ApiError(40058, "empty message")
        if len(body.get("attachments") or []) > 9:
            raise ApiError(40058, "too many attachments")
        targets = list(body.get("external_userid") or [])
        if len(targets) > 10000:
            raise ApiError(40058, "too many external_userid")
        sender = body.get("sender")
        if sender is not None:
            self._need_staff(sender)
        results: dict[str, dict[str, int]] = {}
        fail_list: list[str] = []
        for ext in targets:
            senders = [sender] if sender else [u for (u, e) in self.relations if e == ext]
            senders = [s for s in senders if (s, ext) in self.relations]
            if not senders:
                fail_list.append(ext)
            for s in senders:
                results.setdefault(s, {})[ext] = 0
        if not targets and sender:
            results[sender] = {e: 0 for (u, e) in self.relations if u == sender}
        msgid = f"msg{self._next_id():08d}"
        self.group_msgs[msgid] = GroupMsg(
            msgid=msgid,
            request=body,
            creator=sender or "",
            created_at=self.clock.now(),
            results=results,
        )
        return {"msgid": msgid, "fail_list": fail_list}

    def _msg(self, body: dict[str, Any]) -> GroupMsg:
        msg = self.group_msgs.get(self._need(body, "msgid"))
        if msg is None:
            raise ApiError(41063, "invalid msgid")
        return msg

    def _get_groupmsg_list_v2(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        start, end = (
            int(self._need(body, "start_time", int)),
            int(self._need(body, "end_time", int)),
        )
        creator = body.get("creator")
        items = [
            m
            for m in self.group_msgs.values()
            if start <= int(m.created_at.timestamp()) <= end
            and (not creator or m.creator == creator)
            and m.request.get("chat_type", "single") == body.get("chat_type", "single")
        ]
        chunk, cursor = self._page(items, str(body.get("cursor", "")), int(body.get("limit", 50)))
        return {
            "group_msg_list": [
                {
                    "msgid": m.msgid,
                    "creator": m.creator,
                    "create_type": 0,
                    "create_time": str(int(m.created_at.timestamp())),
                    "text": m.request.get("text", {}),
                    "attachments": m.request.get("attachments", []),
                }
                for m in chunk
            ],
            "next_cursor": cursor,
        }

    def _get_groupmsg_task(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        msg = self._msg(body)
        tasks = []
        for sender in sorted(msg.results):
            task: dict[str, Any] = {"userid": sender, "status": 1 if sender in msg.confirmed else 0}
            if msg.cancelled and sender not in msg.confirmed:
                task["status"] = 3
            if sender in msg.send_time:
                task["send_time"] = msg.send_time[sender]
            tasks.append(task)
        chunk, cursor = self._page(tasks, str(body.get("cursor", "")), int(body.get("limit", 500)))
        return {"task_list": chunk, "next_cursor": cursor}

    def _get_groupmsg_send_result(
        self, params: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        msg = self._msg(body)
        userid = self._need(body, "userid")
        rows = [
            {
                "external_userid": ext,
                "userid": userid,
                "status": status,
                **({"send_time": msg.send_time[userid]} if status == 1 else {}),
            }
            for ext, status in sorted(msg.results.get(userid, {}).items())
        ]
        chunk, cursor = self._page(rows, str(body.get("cursor", "")), int(body.get("limit", 500)))
        return {"send_list": chunk, "next_cursor": cursor}

    def _cancel_groupmsg_send(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        msg = self._msg(body)
        msg.cancelled = True
        return {}

    def _contact_json(self, ext: str) -> dict[str, Any]:
        return dict(self.customers[ext])

    def _follow_info(self, rel: Relation) -> dict[str, Any]:
        return {
            "userid": rel.userid,
            "remark": rel.remark,
            "createtime": int(rel.created_at.timestamp()),
            "tag_id": sorted(rel.tags),
            "state": rel.state,
        }

    def _get_external_contact(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        ext = params.get("external_userid", "")
        if ext not in self.customers:
            raise ApiError(40096, "invalid external userid")
        follows = [
            {
                **self._follow_info(r),
                "description": r.description,
                "remark_mobiles": list(r.remark_mobiles),
                "tags": [self._tag_info(t) for t in sorted(r.tags)],
            }
            for (u, e), r in sorted(self.relations.items())
            if e == ext
        ]
        chunk, cursor = self._page(follows, params.get("cursor", ""), 500)
        return {
            "external_contact": self._contact_json(ext),
            "follow_user": chunk,
            "next_cursor": cursor,
        }

    def _list_external_contacts(
        self, params: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        userid = self._need_staff(params.get("userid"))
        exts = sorted(e for (u, e) in self.relations if u == userid)
        if not exts:
            raise ApiError(84061, "not external contact")
        return {"external_userid": exts}

    def _batch_get_by_user(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        users = self._need(body, "userid_list", list)
        if len(users) > 100:
            raise ApiError(40058, "userid_list exceeds 100")
        for u in users:
            self._need_staff(u)
        rows = [
            {
                "external_contact": self._contact_json(r.external_userid),
                "follow_info": self._follow_info(r),
            }
            for (u, e), r in sorted(self.relations.items())
            if u in users
        ]
        limit = int(body.get("limit", 50))
        if not 1 <= limit <= 100:
            raise ApiError(40058, "limit out of range")
        chunk, cursor = self._page(rows, str(body.get("cursor", "")), limit)
        return {"external_contact_list": chunk, "next_cursor": cursor}

    def _groupchat_list(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        owners = (body.get("owner_filter") or {}).get("userid_list") or []
        chats = [
            {"chat_id": c["chat_id"], "status": c["status"]}
            for c in self.group_chats.values()
            if not owners or c["owner"] in owners
        ]
        chunk, cursor = self._page(chats, str(body.get("cursor", "")), int(body.get("limit", 100)))
        return {"group_chat_list": chunk, "next_cursor": cursor}

    def _groupchat_get(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        chat = self.group_chats.get(self._need(body, "chat_id"))
        if chat is None:
            raise ApiError(40050, "chatid not found")
        return {"group_chat": json.loads(json.dumps(chat))}

    def _get_corp_tag_list(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        tag_ids = set(body.get("tag_id") or [])
        group_ids = set(body.get("group_id") or [])
        out = []
        for group in self.tag_groups.values():
            if group_ids and group["group_id"] not in group_ids:
                continue
            tags = [t for t in group["tag"] if not tag_ids or t["id"] in tag_ids]
            if tag_ids and not tags:
                continue
            out.append({**group, "tag": [dict(t) for t in tags]})
        return {"tag_group": out}

    def _tag_info(self, tag_id: str) -> dict[str, Any]:
        found = self._find_tag(tag_id)
        group, tag = found if found else ({"group_name": ""}, {"name": ""})
        return {
            "group_name": group["group_name"],
            "tag_name": tag["name"],
            "tag_id": tag_id,
            "type": 1,
        }

    def _find_tag(self, tag_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for group in self.tag_groups.values():
            for tag in group["tag"]:
                if tag["id"] == tag_id:
                    return group, tag
        return None

    def _add_corp_tag(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        tags = self._need(body, "tag", list)
        now = int(self.clock.now().timestamp())
        group_id = body.get("group_id")
        if group_id:
            group = self.tag_groups.get(group_id)
            if group is None:
                raise ApiError(40068, "invalid tag group id")
        else:
            name = self._need(body, "group_name")
            if any(g["group_name"] == name for g in self.tag_groups.values()):
                raise ApiError(40071, "tag group name already exists")
            gid = f"et{self._next_id():08d}"
            group = {
                "group_id": gid,
                "group_name": name,
                "create_time": now,
                "order": int(body.get("order", 0)),
                "tag": [],
            }
            self.tag_groups[gid] = group
        added = []
        for spec in tags:
            name = spec.get("name") if isinstance(spec, dict) else None
            if not isinstance(name, str) or not name or len(name) > 30:
                raise ApiError(40058, "invalid tag name")
            if any(t["name"] == name for t in group["tag"]):
                raise ApiError(40071, "tag name already exists")
            tag = {
                "id": f"et{self._next_id():08d}",
                "name": name,
                "create_time": now,
                "order": int(spec.get("order", 0)),
            }
            group["tag"].append(tag)
            added.append(tag)
        return {"tag_group": {**{k: v for k, v in group.items() if k != "tag"}, "tag": added}}

    def _edit_corp_tag(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        ident = self._need(body, "id")
        if ident in self.tag_groups:
            target = self.tag_groups[ident]
            if "name" in body:
                target["group_name"] = body["name"]
        else:
            found = self._find_tag(ident)
            if found is None:
                raise ApiError(40068, "invalid tag id")
            target = found[1]
            if "name" in body:
                target["name"] = body["name"]
        if "order" in body:
            target["order"] = body["order"]
        return {}

    def _del_corp_tag(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        tag_ids = body.get("tag_id") or []
        group_ids = body.get("group_id") or []
        if not tag_ids and not group_ids:
            raise ApiError(40058, "tag_id or group_id required")
        for gid in group_ids:
            if self.tag_groups.pop(gid, None) is None:
                raise ApiError(40068, "invalid tag group id")
        for tid in tag_ids:
            found = self._find_tag(tid)
            if found is None:
                raise ApiError(40068, "invalid tag id")
            found[0]["tag"].remove(found[1])
        for rel in self.relations.values():
            rel.tags.difference_update(tag_ids)
        return {}

    def _mark_tag(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        userid = self._need_staff(body.get("userid"))
        rel = self.relations.get((userid, self._need(body, "external_userid")))
        if rel is None:
            raise ApiError(84061, "not external contact")
        add, remove = body.get("add_tag") or [], body.get("remove_tag") or []
        for tid in [*add, *remove]:
            if self._find_tag(tid) is None:
                raise ApiError(40068, "invalid tag id")
        rel.tags.update(add)
        rel.tags.difference_update(remove)
        return {}

    def _settle_transfers(self) -> list[Transfer]:
        """Complete transfers whose 24-hour takeover time has passed; returns those."""
        now = self.clock.now()
        settled = []
        for t in self.transfers:
            if t.completed or t.refused or now - t.requested_at < TRANSFER_TAKEOVER:
                continue
            t.completed = True
            settled.append(t)
            old = self.relations.pop((t.handover, t.external_userid), None)
            self.relations[(t.takeover, t.external_userid)] = Relation(
                t.takeover,
                t.external_userid,
                t.requested_at + TRANSFER_TAKEOVER,
                state=old.state if old else "",
                tags=set(old.tags) if old else set(),
            )
        return settled

    def _transfer(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        self._settle_transfers()
        handover = self._need(body, "handover_userid")
        takeover = self._need_staff(body.get("takeover_userid"))
        if handover not in self.staff:
            raise ApiError(40003, "invalid handover userid")
        if kind == "resigned" and handover not in self.resigned:
            raise ApiError(40097, "handover userid has not resigned")
        if kind == "in_service" and handover in self.resigned:
            raise ApiError(40097, "handover userid has resigned; use resigned transfer")
        ids = self._need(body, "external_userid", list)
        if len(ids) > 100:
            raise ApiError(40058, "external_userid exceeds 100")
        now = self.clock.now()
        out = []
        for ext in ids:
            errcode = 0
            history = [t for t in self.transfers if t.external_userid == ext]
            recent = [
                t
                for t in history
                if t.kind == "in_service"
                and not t.refused
                and now - t.requested_at < TRANSFER_WINDOW
            ]
            if (handover, ext) not in self.relations:
                errcode = 84061
            elif any(not t.completed and not t.refused for t in history):
                errcode = 40129
            elif kind == "in_service" and len(recent) >= MAX_IN_SERVICE_TRANSFERS:
                errcode = 40128
            if errcode == 0:
                self.transfers.append(Transfer(kind, handover, takeover, ext, now))
            out.append({"external_userid": ext, "errcode": errcode})
        return {"customer": out}

    def _transfer_result(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        self._settle_transfers()
        handover = self._need(body, "handover_userid")
        takeover = self._need(body, "takeover_userid")
        rows = []
        for t in self.transfers:
            if t.kind != kind or t.handover != handover or t.takeover != takeover:
                continue
            status = 1 if t.completed else 3 if t.refused else 2
            row: dict[str, Any] = {"external_userid": t.external_userid, "status": status}
            row["takeover_time"] = int((t.requested_at + TRANSFER_TAKEOVER).timestamp())
            rows.append(row)
        chunk, cursor = self._page(rows, str(body.get("cursor", "")), 1000)
        return {"customer": chunk, "next_cursor": cursor}

    def _transfer_in_service(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return self._transfer(body, "in_service")

    def _transfer_resigned(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return self._transfer(body, "resigned")

    def _transfer_result_in_service(
        self, params: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._transfer_result(body, "in_service")

    def _transfer_result_resigned(
        self, params: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._transfer_result(body, "resigned")

    def _add_moment_task(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("text") and not body.get("attachments"):
            raise ApiError(40058, "empty moment")
        if len(body.get("attachments") or []) > 9:
            raise ApiError(40058, "too many attachments")
        senders = ((body.get("visible_range") or {}).get("sender_list") or {}).get(
            "user_list"
        ) or []
        jobid = f"job{self._next_id():08d}"
        self.moment_jobs[jobid] = {
            "request": body,
            "moment_id": f"mom{self._next_id():08d}",
            "invalid_sender_list": {"user_list": [s for s in senders if s not in self.staff]},
            "publish": {s: 0 for s in senders if s in self.staff},
        }
        return {"jobid": jobid}

    def _get_moment_task(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        moment_id = self._need(body, "moment_id")
        job = next((j for j in self.moment_jobs.values() if j["moment_id"] == moment_id), None)
        if job is None:
            raise ApiError(40058, "invalid moment_id")
        rows = [{"userid": u, "publish_status": p} for u, p in sorted(job["publish"].items())]
        chunk, cursor = self._page(rows, str(body.get("cursor", "")), int(body.get("limit", 500)))
        return {"task_list": chunk, "next_cursor": cursor}

    def _get_moment_task_result(
        self, params: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        job = self.moment_jobs.get(params.get("jobid", ""))
        if job is None:
            raise ApiError(40058, "invalid jobid")
        return {
            "status": 3,
            "type": "add_moment_task",
            "result": {
                "errcode": 0,
                "errmsg": "ok",
                "moment_id": job["moment_id"],
                "invalid_sender_list": job["invalid_sender_list"],
                "invalid_external_contact_list": {"tag_list": []},
            },
        }

    def _message_send(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if body.get("agentid") != self.agent_id:
            raise ApiError(40056, "invalid agentid")
        if body.get("msgtype") != "text" or not (body.get("text") or {}).get("content"):
            raise ApiError(40058, "only text messages are modelled")
        users = str(self._need(body, "touser")).split("|")
        invalid = [u for u in users if u not in self.staff]
        msgid = f"am{self._next_id():08d}"
        for u in users:
            if u in self.staff:
                self.app_messages.append(
                    {
                        "touser": u,
                        "content": body["text"]["content"],
                        "msgid": msgid,
                        "at": self.clock.now(),
                    }
                )
        return {"invaliduser": "|".join(invalid), "msgid": msgid}


def _random_aes_key() -> str:
    import base64

    return base64.b64encode(secrets.token_bytes(32)).decode()[:43]


def main(argv: list[str] | None = None) -> None:
    """Run a local WeCom on loopback for the demo or manual testing; prints its settings as one
    JSON line, then serves until interrupted. ``python -m yutang.carriers.wecom.testserver``"""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="A local WeCom protocol server (loopback only).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--corp-id", default="ww-test-corp")
    parser.add_argument("--staff", default="zhangsan,lisi", help="comma-separated staff user ids")
    args = parser.parse_args(argv)
    server = WeComTestServer(corp_id=args.corp_id)
    server.add_staff(*[s for s in args.staff.split(",") if s])
    server.start(port=args.port)
    settings = {
        "base_url": server.base_url,
        "control_url": server.base_url.replace("/cgi-bin/", CONTROL),
        "corp_id": server.corp_id,
        "secret": server.secret,
        "agent_id": server.agent_id,
        "token": server.callback_token,
        "encoding_aes_key": server.encoding_aes_key,
    }
    sys.stdout.write(json.dumps(settings) + "\n")
    sys.stdout.flush()
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
