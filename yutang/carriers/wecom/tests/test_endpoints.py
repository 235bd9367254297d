"""Every endpoint of the client against the local WeCom server over real HTTP, with the
platform rules the server enforces: welcome-code window and single use, mass messages pending
until staff confirm, transfer limits and the 24-hour takeover."""

from __future__ import annotations

import datetime as dt

import pytest

from yutang.carriers.wecom.client import (
    FileAttachment,
    ImageAttachment,
    LinkAttachment,
    MiniprogramAttachment,
    TransferOutcome,
    VideoAttachment,
    WeComClient,
)
from yutang.carriers.wecom.errors import (
    ExternalUserInvalid,
    NoContactRelation,
    TransferInProgress,
    WeComError,
    WeComInvalidParameter,
    WelcomeMessageAlreadySent,
)
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock
from yutang.core.errors import ValidationFailed

from .conftest import Sleeps, make_client

# -- contact ways -----------------------------------------------------------------------------------


def test_contact_way_lifecycle(server: WeComTestServer, client: WeComClient) -> None:
    created = client.add_contact_way(type=2, scene=2, user=["zhangsan", "lisi"], state="store-12-poster",
                                     remark="门店海报")  # fmt: skip
    assert created.config_id and created.qr_code.endswith(created.config_id)
    way = client.get_contact_way(config_id=created.config_id)
    assert (way["state"], way["user"], way["remark"]) == (
        "store-12-poster",
        ["zhangsan", "lisi"],
        "门店海报",
    )
    client.update_contact_way(config_id=created.config_id, state="store-12-v2", user=["wangwu"])
    way = client.get_contact_way(config_id=created.config_id)
    assert (way["state"], way["user"], way["remark"]) == ("store-12-v2", ["wangwu"], "门店海报")
    page = client.list_contact_ways(limit=10)
    assert [w["config_id"] for w in page.items] == [created.config_id] and page.next_cursor == ""
    client.del_contact_way(config_id=created.config_id)
    with pytest.raises(WeComError) as caught:
        client.get_contact_way(config_id=created.config_id)
    assert caught.value.errcode == 41044


def test_contact_way_list_pages_with_cursor(client: WeComClient) -> None:
    ids = [
        client.add_contact_way(type=1, scene=2, user=["zhangsan"], state=f"s{n}").config_id
        for n in range(5)
    ]
    first = client.list_contact_ways(limit=2)
    second = client.list_contact_ways(limit=2, cursor=first.next_cursor)
    third = client.list_contact_ways(limit=2, cursor=second.next_cursor)
    assert third.next_cursor == ""
    assert sorted(w["config_id"] for p in (first, second, third) for w in p.items) == sorted(ids)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state": "x" * 31}, "state"),
        ({"user": []}, "user"),
        ({"user": ["zhangsan", ""]}, "user[1]"),
        ({"type": 1, "user": ["zhangsan", "lisi"]}, "user"),
        ({"scene": 3}, "scene"),
    ],
)
def test_contact_way_validation_names_the_field_and_sends_nothing(
    server: WeComTestServer, client: WeComClient, kwargs: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"type": 2, "scene": 2, "user": ["zhangsan"], **kwargs}
    with pytest.raises(ValidationFailed) as caught:
        client.add_contact_way(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert server.calls() == []


def test_state_of_exactly_30_characters_is_accepted(client: WeComClient) -> None:
    created = client.add_contact_way(type=1, scene=2, user=["zhangsan"], state="渠" * 30)
    assert client.get_contact_way(config_id=created.config_id)["state"] == "渠" * 30


def test_server_refuses_unknown_staff(client: WeComClient) -> None:
    with pytest.raises(WeComInvalidParameter) as caught:
        client.add_contact_way(type=1, scene=2, user=["nobody"])
    assert caught.value.errcode == 40003


# -- welcome messages ---------------------------------------------------------------------------------


def test_welcome_message_within_20_seconds_is_delivered_once(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    event = server.add_customer(userid="zhangsan", external_userid="wm-1", state="poster")
    clock.advance(dt.timedelta(seconds=19))
    client.send_welcome_msg(
        welcome_code=str(event["WelcomeCode"]), text="欢迎！",
        attachments=[ImageAttachment(media_id="MEDIA"), LinkAttachment(title="会员", url="https://example.com/m"),
                     MiniprogramAttachment(title="商城", pic_media_id="P", appid="wx123", page="/index"),
                     VideoAttachment(media_id="V"), FileAttachment(media_id="F")],
    )  # fmt: skip
    assert len(server.welcome_messages) == 1
    sent = server.welcome_messages[0]
    assert (sent["userid"], sent["external_userid"]) == ("zhangsan", "wm-1")
    assert [a["msgtype"] for a in sent["body"]["attachments"]] == [
        "image",
        "link",
        "miniprogram",
        "video",
        "file",
    ]
    with pytest.raises(WelcomeMessageAlreadySent) as caught:
        client.send_welcome_msg(welcome_code=str(event["WelcomeCode"]), text="again")
    assert caught.value.errcode == 41051
    assert len(server.welcome_messages) == 1
    assert len(server.calls("externalcontact/send_welcome_msg")) == 2  # 41051 is final, not retried


def test_welcome_code_expires_after_20_seconds(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    event = server.add_customer(userid="zhangsan")
    clock.advance(dt.timedelta(seconds=21))
    with pytest.raises(WeComInvalidParameter):
        client.send_welcome_msg(welcome_code=str(event["WelcomeCode"]), text="late")
    assert server.welcome_messages == []


def test_welcome_is_retried_on_41096_and_still_sent_once(
    server: WeComTestServer, client: WeComClient
) -> None:
    event = server.add_customer(userid="zhangsan")
    server.fail_next("externalcontact/send_welcome_msg", 41096)
    client.send_welcome_msg(welcome_code=str(event["WelcomeCode"]), text="hi")
    assert [r.errcode for r in server.calls("externalcontact/send_welcome_msg")] == [41096, 0]
    assert len(server.welcome_messages) == 1


def test_welcome_goes_out_before_any_other_call(
    server: WeComTestServer, client: WeComClient
) -> None:
    client.get_corp_tag_list()  # warm the token so the welcome is not delayed by gettoken
    event = server.add_customer(userid="zhangsan", external_userid="wm-9")
    start = len(server.calls())
    client.send_welcome_msg(welcome_code=str(event["WelcomeCode"]), text="hi")
    client.get_external_contact(external_userid="wm-9")
    assert [r.api for r in server.calls()[start:]] == [
        "externalcontact/send_welcome_msg",
        "externalcontact/get",
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"welcome_code": ""}, "welcome_code"),
        ({"text": ""}, "text"),
        ({"attachments": [ImageAttachment(media_id="m")] * 10}, "attachments"),
        ({"attachments": [ImageAttachment()]}, "attachments[0].image"),
        (
            {"attachments": [LinkAttachment(title="t", url="javascript:alert(1)")]},
            "attachments[0].url",
        ),
    ],
)
def test_welcome_validation(
    server: WeComTestServer, client: WeComClient, kwargs: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"welcome_code": "code", "text": "hi", **kwargs}
    with pytest.raises(ValidationFailed) as caught:
        client.send_welcome_msg(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert server.calls() == []


def test_nine_attachments_are_allowed(server: WeComTestServer, client: WeComClient) -> None:
    event = server.add_customer(userid="zhangsan")
    client.send_welcome_msg(
        welcome_code=str(event["WelcomeCode"]), attachments=[ImageAttachment(media_id="m")] * 9
    )
    assert len(server.welcome_messages[0]["body"]["attachments"]) == 9


# -- mass messages -------------------------------------------------------------------------------------


def test_mass_message_is_pending_until_staff_confirm(
    server: WeComTestServer, client: WeComClient
) -> None:
    for ext in ("wm-a", "wm-b"):
        server.add_customer(userid="zhangsan", external_userid=ext)
    created = client.add_msg_template(external_userid=["wm-a", "wm-b", "wm-stranger"], sender="zhangsan",
                                      text="春季上新", attachments=[LinkAttachment(title="新品", url="https://example.com")])  # fmt: skip
    assert created.fail_list == ["wm-stranger"]
    pending = client.get_groupmsg_send_result(msgid=created.msgid, userid="zhangsan")
    assert [(r["external_userid"], r["status"]) for r in pending.items] == [
        ("wm-a", 0),
        ("wm-b", 0),
    ]
    assert client.get_groupmsg_task(msgid=created.msgid).items == [
        {"userid": "zhangsan", "status": 0}
    ]
    server.customer_deletes_staff(userid="zhangsan", external_userid="wm-b")
    server.confirm_group_msg(created.msgid)
    done = client.get_groupmsg_send_result(msgid=created.msgid, userid="zhangsan")
    assert [(r["external_userid"], r["status"]) for r in done.items] == [("wm-a", 1), ("wm-b", 2)]
    assert client.get_groupmsg_task(msgid=created.msgid).items[0]["status"] == 1
    assert len(server.calls("externalcontact/add_msg_template")) == 1


def test_mass_message_list_and_cancel(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    server.add_customer(userid="lisi", external_userid="wm-c")
    created = client.add_msg_template(external_userid=["wm-c"], text="活动")
    client.cancel_groupmsg_send(msgid=created.msgid)
    assert client.get_groupmsg_task(msgid=created.msgid).items == [{"userid": "lisi", "status": 3}]
    now = int(clock.now().timestamp())
    listed = client.get_groupmsg_list_v2(chat_type="single", start_time=now - 60, end_time=now + 60)
    assert [m["msgid"] for m in listed.items] == [created.msgid]
    with pytest.raises(ValidationFailed) as caught:
        client.get_groupmsg_list_v2(chat_type="single", start_time=now, end_time=now + 40 * 86400)
    assert caught.value.field == "end_time"


def test_mass_message_recipient_limit(server: WeComTestServer, client: WeComClient) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.add_msg_template(external_userid=[f"wm{n}" for n in range(10_001)], text="x")
    assert caught.value.field == "external_userid"
    assert server.calls() == []


# -- customers and groups --------------------------------------------------------------------------------


def test_external_contact_get_list_and_batch_pages(
    server: WeComTestServer, client: WeComClient
) -> None:
    for n in range(5):
        server.add_customer(userid="zhangsan", external_userid=f"wm-{n}", name=f"客户{n}")
    server.add_customer(userid="lisi", external_userid="wm-0")
    got = client.get_external_contact(external_userid="wm-0")
    assert got["external_contact"]["name"] == "客户0"
    assert sorted(f["userid"] for f in got["follow_user"]) == ["lisi", "zhangsan"]
    assert client.list_external_contacts(userid="zhangsan") == [f"wm-{n}" for n in range(5)]
    seen: list[tuple[str, str]] = []
    cursor = ""
    pages = 0
    while True:
        page = client.batch_get_by_user(userid_list=["zhangsan", "lisi"], limit=2, cursor=cursor)
        pages += 1
        seen += [
            (r["follow_info"]["userid"], r["external_contact"]["external_userid"])
            for r in page.items
        ]
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages == 3 and len(seen) == 6 and ("lisi", "wm-0") in seen
    with pytest.raises(ExternalUserInvalid):
        client.get_external_contact(external_userid="wm-unknown")
    with pytest.raises(NoContactRelation):
        client.list_external_contacts(userid="wangwu")
    with pytest.raises(ValidationFailed) as caught:
        client.batch_get_by_user(userid_list=[f"u{n}" for n in range(101)])
    assert caught.value.field == "userid_list"


def test_group_chats(server: WeComTestServer, client: WeComClient) -> None:
    server.create_group_chat(owner="zhangsan", members=["wm-1"], name="VIP 群")
    other = server.create_group_chat(owner="lisi", members=[])
    page = client.list_group_chats(owner_userids=["zhangsan"])
    assert len(page.items) == 1
    chat = client.get_group_chat(chat_id=page.items[0]["chat_id"], need_name=True)
    assert (chat["name"], chat["owner"]) == ("VIP 群", "zhangsan")
    assert [m["userid"] for m in chat["member_list"]] == ["zhangsan", "wm-1"]
    assert {c["chat_id"] for c in client.list_group_chats().items} == {
        chat["chat_id"],
        other["ChatId"],
    }


# -- tags ------------------------------------------------------------------------------------------------


def test_corp_tags_and_marking(server: WeComTestServer, client: WeComClient) -> None:
    server.add_customer(userid="zhangsan", external_userid="wm-1")
    group = client.add_corp_tag(group_name="会员等级", tags=["金卡", "银卡"])
    gold, silver = (t["id"] for t in group["tag"])
    client.edit_corp_tag(id=silver, name="白银")
    names = {t["name"] for g in client.get_corp_tag_list() for t in g["tag"]}
    assert names == {"金卡", "白银"}
    client.add_corp_tag(group_id=group["group_id"], tags=["铜卡"])
    assert len(client.get_corp_tag_list(group_id=[group["group_id"]])[0]["tag"]) == 3
    client.mark_tag(userid="zhangsan", external_userid="wm-1", add_tag=[gold, silver])
    client.mark_tag(userid="zhangsan", external_userid="wm-1", remove_tag=[silver])
    follow = client.get_external_contact(external_userid="wm-1")["follow_user"][0]
    assert follow["tag_id"] == [gold]
    client.del_corp_tag(tag_id=[gold])
    assert client.get_external_contact(external_userid="wm-1")["follow_user"][0]["tag_id"] == []
    with pytest.raises(NoContactRelation):
        client.mark_tag(userid="lisi", external_userid="wm-1", add_tag=[silver])
    with pytest.raises(ValidationFailed) as caught:
        client.add_corp_tag(tags=["x"])
    assert caught.value.field == "group_id"
    with pytest.raises(ValidationFailed) as caught:
        client.add_corp_tag(group_name="g", tags=["x" * 31])
    assert caught.value.field == "tags[0]"


# -- transfers -------------------------------------------------------------------------------------------


def test_transfer_takes_over_after_24_hours(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    server.add_customer(userid="zhangsan", external_userid="wm-1")
    outcome = client.transfer_customer(
        handover_userid="zhangsan", takeover_userid="lisi", external_userid=["wm-1"]
    )
    assert outcome == [TransferOutcome(external_userid="wm-1", errcode=0)]
    waiting = client.transfer_result(handover_userid="zhangsan", takeover_userid="lisi")
    assert [c["status"] for c in waiting.items] == [2]
    assert client.list_external_contacts(userid="zhangsan") == ["wm-1"]
    clock.advance(dt.timedelta(hours=24))
    done = client.transfer_result(handover_userid="zhangsan", takeover_userid="lisi")
    assert [c["status"] for c in done.items] == [1]
    assert client.list_external_contacts(userid="lisi") == ["wm-1"]


def test_two_in_service_transfers_per_90_days(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    server.add_customer(userid="zhangsan", external_userid="wm-1")
    route = [("zhangsan", "lisi"), ("lisi", "wangwu"), ("wangwu", "zhangsan")]
    codes = []
    for handover, takeover in route:
        codes.append(client.transfer_customer(handover_userid=handover, takeover_userid=takeover,
                                              external_userid=["wm-1"])[0].errcode)  # fmt: skip
        clock.advance(dt.timedelta(hours=25))
    assert codes == [0, 0, 40128]
    assert TransferOutcome(external_userid="wm-1", errcode=0).error is None
    clock.advance(dt.timedelta(days=90))
    again = client.transfer_customer(
        handover_userid="wangwu", takeover_userid="zhangsan", external_userid=["wm-1"]
    )
    assert again[0].errcode == 0


def test_pending_transfer_and_missing_relation_per_customer(
    server: WeComTestServer, client: WeComClient
) -> None:
    server.add_customer(userid="zhangsan", external_userid="wm-1")
    client.transfer_customer(
        handover_userid="zhangsan", takeover_userid="lisi", external_userid=["wm-1"]
    )
    outcome = client.transfer_customer(handover_userid="zhangsan", takeover_userid="wangwu",
                                       external_userid=["wm-1", "wm-none"])  # fmt: skip
    assert [(o.external_userid, o.errcode) for o in outcome] == [
        ("wm-1", 40129),
        ("wm-none", 84061),
    ]
    assert [type(o.error) for o in outcome] == [TransferInProgress, NoContactRelation]


def test_refused_transfer_does_not_count(server: WeComTestServer, client: WeComClient) -> None:
    server.add_customer(userid="zhangsan", external_userid="wm-1")
    client.transfer_customer(
        handover_userid="zhangsan", takeover_userid="lisi", external_userid=["wm-1"]
    )
    server.refuse_transfer(external_userid="wm-1")
    assert [
        c["status"]
        for c in client.transfer_result(handover_userid="zhangsan", takeover_userid="lisi").items
    ] == [3]
    assert client.list_external_contacts(userid="zhangsan") == ["wm-1"]


def test_transfer_batch_limit_is_enforced_client_side(
    server: WeComTestServer, client: WeComClient
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.transfer_customer(handover_userid="zhangsan", takeover_userid="lisi",
                                 external_userid=[f"wm-{n}" for n in range(101)])  # fmt: skip
    assert caught.value.field == "external_userid"
    assert "100" in caught.value.message
    with pytest.raises(ValidationFailed) as caught:
        client.transfer_customer(
            handover_userid="zhangsan", takeover_userid="zhangsan", external_userid=["wm"]
        )
    assert caught.value.field == "takeover_userid"
    assert server.calls() == []


def test_hundred_customers_in_one_call(server: WeComTestServer, client: WeComClient) -> None:
    ids = [f"wm-{n}" for n in range(100)]
    for ext in ids:
        server.add_customer(userid="zhangsan", external_userid=ext, with_welcome_code=False)
    outcome = client.transfer_customer(
        handover_userid="zhangsan", takeover_userid="lisi", external_userid=ids
    )
    assert [o.errcode for o in outcome] == [0] * 100


def test_resigned_transfer(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    server.add_customer(userid="wangwu", external_userid="wm-1")
    with pytest.raises(WeComError) as caught:
        client.resigned_transfer_customer(
            handover_userid="wangwu", takeover_userid="lisi", external_userid=["wm-1"]
        )
    assert caught.value.errcode == 40097
    server.resign_staff("wangwu")
    outcome = client.resigned_transfer_customer(handover_userid="wangwu", takeover_userid="lisi",
                                                external_userid=["wm-1"])  # fmt: skip
    assert outcome[0].errcode == 0
    clock.advance(dt.timedelta(hours=24, seconds=1))
    result = client.resigned_transfer_result(handover_userid="wangwu", takeover_userid="lisi")
    assert [c["status"] for c in result.items] == [1]


# -- moments and app messages ------------------------------------------------------------------------------


def test_moment_task(server: WeComTestServer, client: WeComClient) -> None:
    jobid = client.add_moment_task(text="新品上市", attachments=[ImageAttachment(media_id="M")],
                                   sender_list=["zhangsan", "ghost"], tag_list=["et1"])  # fmt: skip
    result = client.get_moment_task_result(jobid=jobid)
    assert result["status"] == 3
    assert result["result"]["moment_id"]
    assert result["result"]["invalid_sender_list"]["user_list"] == ["ghost"]
    body = server.calls("externalcontact/add_moment_task")[0].body
    assert body is not None and body["visible_range"]["external_contact_list"] == {
        "tag_list": ["et1"]
    }


def test_app_message_needs_agent_id(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    client = make_client(server, clock, sleeps, agent_id=None)
    with pytest.raises(ValidationFailed) as caught:
        client.send_app_message(touser=["zhangsan"], text="hi")
    assert caught.value.field == "agent_id"


def test_app_message_reports_invalid_users(server: WeComTestServer, client: WeComClient) -> None:
    answer = client.send_app_message(touser=["zhangsan", "ghost"], text="请确认今天的群发")
    assert answer["invaliduser"] == "ghost"
    assert [m["touser"] for m in server.app_messages] == ["zhangsan"]
