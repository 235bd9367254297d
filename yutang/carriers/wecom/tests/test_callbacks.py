"""Callback parsing: every modelled event, unknown ones, replay keys, and the full path from
the local server's encrypted callback to a typed event."""

from __future__ import annotations

import pytest

from yutang.carriers.wecom.callbacks import (
    ExternalChatCreated,
    ExternalChatDismissed,
    ExternalChatUpdated,
    ExternalContactAdded,
    ExternalContactDeleted,
    ExternalContactEdited,
    ExternalContactHalfAdded,
    ExternalTagChanged,
    FollowUserDeleted,
    TransferFailed,
    UnknownCallback,
    parse_callback,
    render_callback,
)
from yutang.carriers.wecom.crypto import CallbackCrypto, MalformedCallback
from yutang.carriers.wecom.testserver import WeComTestServer

BASE = {"ToUserName": "ww-corp", "FromUserName": "sys", "CreateTime": 1403610513,
        "MsgType": "event"}  # fmt: skip


def contact(change_type: str, **extra: str) -> str:
    return render_callback({**BASE, "Event": "change_external_contact", "ChangeType": change_type,
                            "UserID": "zhangsan", "ExternalUserID": "woAJ2GCAAAXtWyujaWJHDDGi0mAC",
                            **extra})  # fmt: skip


def test_add_external_contact_carries_state_and_welcome_code() -> None:
    event = parse_callback(
        contact("add_external_contact", State="ch-store-12", WelcomeCode="WELCOMECODE")
    )
    assert event == ExternalContactAdded(
        corp_id="ww-corp", create_time=1403610513, msg_type="event",
        event="change_external_contact", change_type="add_external_contact", fields={},
        user_id="zhangsan", external_user_id="woAJ2GCAAAXtWyujaWJHDDGi0mAC",
        state="ch-store-12", welcome_code="WELCOMECODE",
    )  # fmt: skip


def test_add_without_welcome_code_has_an_empty_one() -> None:
    event = parse_callback(contact("add_external_contact"))
    assert isinstance(event, ExternalContactAdded)
    assert (event.state, event.welcome_code) == ("", "")


@pytest.mark.parametrize(
    ("change_type", "extra", "cls"),
    [
        ("add_half_external_contact", {"State": "s", "WelcomeCode": "w"}, ExternalContactHalfAdded),
        ("edit_external_contact", {}, ExternalContactEdited),
        ("del_external_contact", {"Source": "DELETE_BY_TRANSFER"}, ExternalContactDeleted),
        ("del_follow_user", {}, FollowUserDeleted),
        ("transfer_fail", {"FailReason": "customer_refused"}, TransferFailed),
    ],
)
def test_each_contact_change_has_its_type(
    change_type: str, extra: dict[str, str], cls: type
) -> None:
    event = parse_callback(contact(change_type, **extra))
    assert type(event) is cls
    assert event.change_type == change_type
    if cls is ExternalContactDeleted:
        assert isinstance(event, ExternalContactDeleted) and event.source == "DELETE_BY_TRANSFER"
    if cls is TransferFailed:
        assert isinstance(event, TransferFailed) and event.fail_reason == "customer_refused"


def test_chat_create_update_dismiss() -> None:
    chat = {**BASE, "Event": "change_external_chat", "ChatId": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"}
    created = parse_callback(render_callback({**chat, "ChangeType": "create"}))
    dismissed = parse_callback(render_callback({**chat, "ChangeType": "dismiss"}))
    updated = parse_callback(render_callback({
        **chat, "ChangeType": "update", "UpdateDetail": "add_member", "JoinScene": 1,
        "MemChangeCnt": 2, "MemChangeList": ["Jack", "Rose"], "LastMemVer": "9c3f", "CurMemVer": "71217",
    }))  # fmt: skip
    assert isinstance(created, ExternalChatCreated) and created.chat_id == chat["ChatId"]
    assert isinstance(dismissed, ExternalChatDismissed)
    assert isinstance(updated, ExternalChatUpdated)
    assert (updated.update_detail, updated.join_scene, updated.quit_scene) == (
        "add_member",
        1,
        None,
    )
    assert updated.member_change_list == ("Jack", "Rose")
    assert (updated.member_change_count, updated.last_member_version, updated.current_member_version) == (
        2, "9c3f", "71217")  # fmt: skip


@pytest.mark.parametrize("change_type", ["create", "update", "delete", "shuffle"])
def test_tag_changes(change_type: str) -> None:
    event = parse_callback(render_callback({**BASE, "Event": "change_external_tag", "Id": "TAG1",
                                            "TagType": "tag_group", "ChangeType": change_type,
                                            "StrategyId": "1"}))  # fmt: skip
    assert isinstance(event, ExternalTagChanged)
    assert (event.change_type, event.tag_id, event.tag_type, event.strategy_id) == (
        change_type, "TAG1", "tag_group", "1")  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        {**BASE, "Event": "change_external_contact", "ChangeType": "something_new"},
        {**BASE, "Event": "change_external_chat", "ChangeType": "archive"},
        {**BASE, "Event": "change_external_tag", "ChangeType": "merge"},
        {**BASE, "Event": "enter_agent"},
        {**BASE, "MsgType": "text", "Content": "hello"},
    ],
)
def test_unknown_events_come_back_typed(fields: dict[str, str | int]) -> None:
    event = parse_callback(render_callback(fields))
    assert type(event) is UnknownCallback
    assert event.fields["CreateTime"] == "1403610513"


def test_replay_has_the_same_key_and_distinct_events_differ() -> None:
    first = parse_callback(contact("add_external_contact", State="a", WelcomeCode="w1"))
    replay = parse_callback(contact("add_external_contact", State="a", WelcomeCode="w1"))
    other_code = parse_callback(contact("add_external_contact", State="a", WelcomeCode="w2"))
    later = parse_callback(render_callback({**BASE, "CreateTime": 1403610514, "Event": "change_external_contact",
                                            "ChangeType": "add_external_contact", "UserID": "zhangsan",
                                            "ExternalUserID": "woAJ2GCAAAXtWyujaWJHDDGi0mAC",
                                            "State": "a", "WelcomeCode": "w1"}))  # fmt: skip
    assert first.dedupe_key == replay.dedupe_key
    assert len({first.dedupe_key, other_code.dedupe_key, later.dedupe_key}) == 3


@pytest.mark.parametrize(
    ("xml", "field"),
    [
        ("<xml><Event>x</Event></xml>", "CreateTime"),
        ("<xml><CreateTime>soon</CreateTime></xml>", "CreateTime"),
        ("<xml>", "message"),
    ],
)
def test_not_a_callback_is_malformed(xml: str, field: str) -> None:
    with pytest.raises(MalformedCallback) as caught:
        parse_callback(xml)
    assert caught.value.field == field


def test_server_callback_decrypts_to_the_typed_event(server: WeComTestServer) -> None:
    fields = server.add_customer(userid="zhangsan", external_userid="wm-cust-1", state="poster-7")
    query, body = server.callback(fields)
    receiver = CallbackCrypto(token=server.callback_token, encoding_aes_key=server.encoding_aes_key,
                              receive_id=server.corp_id)  # fmt: skip
    event = parse_callback(receiver.decrypt_body(**query, body=body))
    assert isinstance(event, ExternalContactAdded)
    assert (event.user_id, event.external_user_id, event.state) == (
        "zhangsan",
        "wm-cust-1",
        "poster-7",
    )
    assert event.welcome_code == fields["WelcomeCode"]
    # the same delivery twice is the same event
    query2, body2 = server.callback(fields)
    assert body2 != body  # fresh random bytes and nonce...
    assert (
        parse_callback(receiver.decrypt_body(**query2, body=body2)).dedupe_key == event.dedupe_key
    )


def test_server_url_verification(server: WeComTestServer) -> None:
    query, expected = server.url_verification()
    receiver = CallbackCrypto(token=server.callback_token, encoding_aes_key=server.encoding_aes_key,
                              receive_id=server.corp_id)  # fmt: skip
    assert receiver.verify_url(**query) == expected
