"""Typed WeCom callback events, parsed from decrypted callback XML.

``parse_callback(xml_text)`` returns one of the dataclasses below. Events we do not model come
back as :class:`UnknownCallback` (never an exception) so the caller can store and ignore them.
Every event has ``dedupe_key``: WeCom re-sends a callback it did not see acknowledged in time,
byte for byte, so two deliveries of the same event share the key while distinct events differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from xml.etree.ElementTree import Element

from .crypto import MalformedCallback, parse_xml

ChatUpdateDetail = Literal[
    "add_member", "del_member", "change_owner", "change_name", "change_notice", ""
]
TagChangeType = Literal["create", "update", "delete", "shuffle"]


@dataclass(frozen=True)
class Callback:
    """Fields every callback has. ``fields`` holds every leaf element as text."""

    corp_id: str
    create_time: int
    msg_type: str
    event: str
    change_type: str
    fields: dict[str, str] = field(repr=False, compare=False)

    @property
    def dedupe_key(self) -> str:
        """Equal for replays of one callback, different for different callbacks."""
        canonical = json.dumps(sorted(self.fields.items()), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


# -- change_external_contact --------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalContactCallback(Callback):
    user_id: str
    external_user_id: str


@dataclass(frozen=True)
class ExternalContactAdded(ExternalContactCallback):
    """add_external_contact. ``welcome_code`` is empty when a welcome message is configured in
    the admin console (then WeCom sends it itself). Use the code within 20 seconds, once."""

    state: str
    welcome_code: str


@dataclass(frozen=True)
class ExternalContactHalfAdded(ExternalContactCallback):
    """add_half_external_contact: the customer added the staff member, who has not accepted."""

    state: str
    welcome_code: str


@dataclass(frozen=True)
class ExternalContactEdited(ExternalContactCallback):
    """edit_external_contact: remark, description or tags of the relationship changed."""


@dataclass(frozen=True)
class ExternalContactDeleted(ExternalContactCallback):
    """del_external_contact: the staff member deleted the customer. ``source`` is
    ``DELETE_BY_TRANSFER`` when a transfer (在职继承) removed the relationship."""

    source: str


@dataclass(frozen=True)
class FollowUserDeleted(ExternalContactCallback):
    """del_follow_user: the customer deleted (or blocked) the staff member."""


@dataclass(frozen=True)
class TransferFailed(ExternalContactCallback):
    """transfer_fail: ``fail_reason`` is customer_refused or customer_limit_exceed."""

    fail_reason: str


# -- change_external_chat -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalChatCallback(Callback):
    chat_id: str


@dataclass(frozen=True)
class ExternalChatCreated(ExternalChatCallback):
    pass


@dataclass(frozen=True)
class ExternalChatUpdated(ExternalChatCallback):
    update_detail: str
    join_scene: int | None
    quit_scene: int | None
    member_change_count: int | None
    member_change_list: tuple[str, ...]
    last_member_version: str
    current_member_version: str


@dataclass(frozen=True)
class ExternalChatDismissed(ExternalChatCallback):
    pass


# -- change_external_tag ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalTagChanged(Callback):
    """create/update/delete: ``tag_id`` is a tag or tag group id (``tag_type``). shuffle:
    ``tag_id`` is the group whose order changed, or empty for the order of all groups."""

    tag_id: str
    tag_type: str
    strategy_id: str


@dataclass(frozen=True)
class UnknownCallback(Callback):
    """An event or change type we do not model. Store it; do not fail on it."""


AnyCallback = (
    ExternalContactAdded
    | ExternalContactHalfAdded
    | ExternalContactEdited
    | ExternalContactDeleted
    | FollowUserDeleted
    | TransferFailed
    | ExternalChatCreated
    | ExternalChatUpdated
    | ExternalChatDismissed
    | ExternalTagChanged
    | UnknownCallback
)


class _Base(TypedDict):
    corp_id: str
    create_time: int
    msg_type: str
    event: str
    change_type: str
    fields: dict[str, str]


class _People(TypedDict):
    user_id: str
    external_user_id: str


_TAG_CHANGES = ("create", "update", "delete", "shuffle")


def _leaves(root: Element) -> dict[str, str]:
    """Every leaf element by its path (repeated leaves get an index), so the key is total."""
    out: dict[str, str] = {}

    def walk(node: Element, prefix: str) -> None:
        counts: dict[str, int] = {}
        for child in node:
            n = counts.get(child.tag, 0)
            counts[child.tag] = n + 1
            name = f"{prefix}{child.tag}" + (f"[{n}]" if n else "")
            if len(child):
                walk(child, name + "/")
            else:
                out[name] = (child.text or "").strip()

    walk(root, "")
    return out


def _optional_int(fields: dict[str, str], name: str) -> int | None:
    value = fields.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedCallback(f"{name} must be an integer", field=name) from exc


def parse_callback(xml_text: str | bytes) -> AnyCallback:
    """Parse one decrypted callback. Raises MalformedCallback only for XML that is not a
    callback at all (not XML, or no CreateTime); unknown events come back as UnknownCallback."""
    root = parse_xml(xml_text, what="message")
    fields = _leaves(root)
    create_time = _optional_int(fields, "CreateTime")
    if create_time is None:
        raise MalformedCallback("the message has no CreateTime", field="CreateTime")
    event = fields.get("Event", "")
    change_type = fields.get("ChangeType", "")
    base: _Base = {
        "corp_id": fields.get("ToUserName", ""),
        "create_time": create_time,
        "msg_type": fields.get("MsgType", ""),
        "event": event,
        "change_type": change_type,
        "fields": fields,
    }
    if event == "change_external_contact":
        people: _People = {
            "user_id": fields.get("UserID", ""),
            "external_user_id": fields.get("ExternalUserID", ""),
        }
        if change_type == "add_external_contact":
            return ExternalContactAdded(
                **base, **people, state=fields.get("State", ""),
                welcome_code=fields.get("WelcomeCode", ""),
            )  # fmt: skip
        if change_type == "add_half_external_contact":
            return ExternalContactHalfAdded(
                **base, **people, state=fields.get("State", ""),
                welcome_code=fields.get("WelcomeCode", ""),
            )  # fmt: skip
        if change_type == "edit_external_contact":
            return ExternalContactEdited(**base, **people)
        if change_type == "del_external_contact":
            return ExternalContactDeleted(**base, **people, source=fields.get("Source", ""))
        if change_type == "del_follow_user":
            return FollowUserDeleted(**base, **people)
        if change_type == "transfer_fail":
            return TransferFailed(**base, **people, fail_reason=fields.get("FailReason", ""))
    elif event == "change_external_chat":
        chat_id = fields.get("ChatId", "")
        if change_type == "create":
            return ExternalChatCreated(**base, chat_id=chat_id)
        if change_type == "dismiss":
            return ExternalChatDismissed(**base, chat_id=chat_id)
        if change_type == "update":
            members = tuple(
                value for name, value in fields.items() if name.startswith("MemChangeList/Item")
            )
            return ExternalChatUpdated(
                **base,
                chat_id=chat_id,
                update_detail=fields.get("UpdateDetail", ""),
                join_scene=_optional_int(fields, "JoinScene"),
                quit_scene=_optional_int(fields, "QuitScene"),
                member_change_count=_optional_int(fields, "MemChangeCnt"),
                member_change_list=members,
                last_member_version=fields.get("LastMemVer", ""),
                current_member_version=fields.get("CurMemVer", ""),
            )
    elif event == "change_external_tag" and change_type in _TAG_CHANGES:
        return ExternalTagChanged(
            **base,
            tag_id=fields.get("Id", ""),
            tag_type=fields.get("TagType", ""),
            strategy_id=fields.get("StrategyId", ""),
        )
    return UnknownCallback(**base)


def render_callback(fields: Mapping[str, Any]) -> str:
    """Build callback XML from element names (the local test server uses it). A list value
    becomes repeated ``<Item>`` children, as in ``MemChangeList``."""
    from xml.sax.saxutils import escape

    parts = ["<xml>"]
    for name, value in fields.items():
        if isinstance(value, list):
            items = "".join(f"<Item><![CDATA[{escape(v)}]]></Item>" for v in value)
            parts.append(f"<{name}>{items}</{name}>")
        elif isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{escape(value)}]]></{name}>")
    parts.append("</xml>")
    return "".join(parts)
