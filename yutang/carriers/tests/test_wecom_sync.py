"""The WeCom capabilities the adapter declares, end to end against the local WeCom server:
tag sync both ways (and the tag library's callbacks), edit callbacks updating the profile,
customer handover (100 per call, 2 in-service transfers per 90 days, takeover after 24 h,
refusals, resigned members, callbacks and polling), and moments posts with each member's
publish status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import Api, console_client, make_account, make_staff
from yutang.carriers import handover, moments, tagsync
from yutang.carriers.adapters.wecom import WeComCarrier
from yutang.carriers.models import (
    CarrierContact,
    ContactCorpTag,
    CorpTag,
    HandoverItem,
    MomentPost,
    MomentSender,
)
from yutang.carriers.tests.test_wecom_adapter import NOON, connect, post
from yutang.carriers.wecom.client import WeComClient
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import CarrierAccount, Staff
from yutang.customers import services as customers
from yutang.customers.models import Customer, CustomerTag, Identity
from yutang.events.models import Event

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(hours=24)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    clock = FrozenClock(NOON)
    with use_clock(clock):
        yield clock


@pytest.fixture
def server(frozen: FrozenClock) -> Iterator[WeComTestServer]:
    cache.clear()
    with WeComTestServer(clock=frozen) as running:
        running.add_staff("zhangsan", "lisi")
        yield running
    cache.clear()


def with_staff(account: CarrierAccount) -> Staff:
    staff = make_staff(account.brand)
    CarrierAccount.objects.filter(pk=account.pk).update(staff=staff)
    account.refresh_from_db()
    return staff


def add(account: CarrierAccount, server: WeComTestServer, ext: str, userid: str = "zhangsan"):
    assert post(account, server, server.add_customer(userid=userid, external_userid=ext)) == (
        200,
        "success",
    )
    contact = CarrierContact.objects.get(external_hash=_hash(account, ext, userid))
    return contact.customer


def _hash(account: CarrierAccount, ext: str, userid: str) -> str:
    from yutang.carriers.services import contact_hash

    target = CarrierAccount.objects.get(brand=account.brand, external_id=userid)
    return contact_hash(target.pk, ext)


def server_tags(server: WeComTestServer, userid: str, ext: str) -> set[str]:
    return set(server.relations[(userid, ext)].tags)


# --- Tag sync ------------------------------------------------------------------------------------


def test_a_yutang_tag_change_marks_and_unmarks_the_corp_tag(server):
    account = connect(server)
    lin = add(account, server, "wm-lin")
    vip = customers.create_tag(actor=None, brand=account.brand, group="会员", name="VIP")

    link = tagsync.link_tag(actor=make_staff(account.brand), brand=account.brand, tag_id=vip.pk)
    (group,) = server.tag_groups.values()
    assert group["group_name"] == "会员" and [t["name"] for t in group["tag"]] == ["VIP"]
    assert link.corp_tag_id == group["tag"][0]["id"]

    assert tagsync.sync_contacts() == 0  # nobody has the tag yet
    customers.set_tags(actor=None, customer=lin, add=[vip.pk])
    assert tagsync.sync_contacts() == 1
    assert server_tags(server, "zhangsan", "wm-lin") == {link.corp_tag_id}
    assert tagsync.sync_contacts() == 0  # in sync: no call
    marks = len(server.calls("externalcontact/mark_tag"))

    customers.set_tags(actor=None, customer=lin, remove=[vip.pk])
    assert tagsync.sync_contacts() == 1
    assert server_tags(server, "zhangsan", "wm-lin") == set()
    assert len(server.calls("externalcontact/mark_tag")) == marks + 1
    assert not ContactCorpTag.objects.exists()


def test_a_refused_mark_is_held_back_not_retried_in_a_hot_loop(server, frozen):
    account = connect(server)
    lin = add(account, server, "wm-lin")
    vip = customers.create_tag(actor=None, brand=account.brand, group="会员", name="VIP")
    tagsync.link_tag(actor=None, brand=account.brand, tag_id=vip.pk)
    customers.set_tags(actor=None, customer=lin, add=[vip.pk])
    server.fail_next("externalcontact/mark_tag", 48002, errmsg="api forbidden")

    assert tagsync.sync_contacts() == 0
    (held,) = ContactCorpTag.objects.all()
    assert held.synced_at is None and "48002" in held.error
    assert tagsync.sync_contacts() == 0
    assert len(server.calls("externalcontact/mark_tag")) == 1
    frozen.advance(tagsync.RETRY_AFTER)
    assert tagsync.sync_contacts() == 1
    assert server_tags(server, "zhangsan", "wm-lin") == {held.corp_tag.corp_tag_id}


def test_corp_tags_made_in_wecom_and_a_members_tagging_reach_yutang(server, frozen):
    account = connect(server)
    lin = add(account, server, "wm-lin")
    admin = WeComClient(corp_id=server.corp_id, secret=server.secret, base_url=server.base_url)
    made = admin.add_corp_tag(tags=["高意向"], group_name="意向")
    corp_id = made["tag"][0]["id"]

    # WeCom tells us the tag library changed: the tag is linked to a Yutang tag.
    assert post(account, server, server.tag_event(change_type="create", tag_id=corp_id))[0] == 200
    link = CorpTag.objects.get(corp_tag_id=corp_id)
    assert (link.tag.group.name, link.tag.name) == ("意向", "高意向")

    # The member tags the customer and notes them in the WeCom app.
    edit = server.staff_edits_customer(
        userid="zhangsan", external_userid="wm-lin", add_tags=(corp_id,),
        remark="林姐 老客户", description="喜欢新品", remark_mobiles=["13800138000"],
    )  # fmt: skip
    assert post(account, server, edit) == (200, "success")
    tag = CustomerTag.objects.get(customer=lin)
    assert (tag.tag_id, tag.source) == (link.tag_id, "wecom")
    contact = CarrierContact.objects.get(customer=lin)
    assert (contact.remark, contact.description) == ("林姐 老客户", "喜欢新品")
    assert Identity.objects.filter(customer=lin, kind="phone").count() == 1
    assert Event.objects.filter(type="profile.updated", customer_id=lin.pk).count() == 1
    assert Customer.objects.get(pk=lin.pk).display_name == "客户"  # filled from WeCom's name
    assert tagsync.sync_contacts() == 0  # nothing to push back
    assert not server.calls("externalcontact/mark_tag")

    frozen.advance(dt.timedelta(minutes=5))
    untag = server.staff_edits_customer(
        userid="zhangsan", external_userid="wm-lin", remove_tags=(corp_id,)
    )
    assert post(account, server, untag) == (200, "success")
    assert not CustomerTag.objects.filter(customer=lin).exists()

    # Deleted in the WeCom admin console: unlinked; the Yutang tag stays.
    frozen.advance(dt.timedelta(minutes=5))
    admin.del_corp_tag(tag_id=[corp_id])
    assert post(account, server, server.tag_event(change_type="delete", tag_id=corp_id))[0] == 200
    assert not CorpTag.objects.exists()
    assert link.tag.__class__.objects.filter(pk=link.tag_id).exists()
    admin.close()


def test_an_edit_callback_whose_details_wecom_will_not_give_is_answered_503_and_not_stored(server):
    account = connect(server)
    add(account, server, "wm-lin")
    edit = server.staff_edits_customer(userid="zhangsan", external_userid="wm-lin", remark="x")
    server.fail_next("externalcontact/get", 48002, errmsg="api forbidden")
    query, body = server.callback(edit)
    from urllib.parse import urlencode

    answer = Client().post(
        f"/api/v1/carriers/{account.pk}/callback?{urlencode(query)}",
        data=body,
        content_type="text/xml",
    )
    assert answer.status_code == 503 and answer.json()["code"] == "carrier_unavailable"
    assert CarrierContact.objects.get().remark == ""
    assert post(account, server, edit) == (200, "success")  # WeCom's retry goes through
    assert CarrierContact.objects.get().remark == "x"


# --- Handover ------------------------------------------------------------------------------------


def test_a_handover_moves_customers_after_the_takeover_and_their_owner_follows(server, frozen):
    account = connect(server)
    zhang = with_staff(account)
    lisi_account = make_account(account.brand, external_id="lisi")
    li = with_staff(lisi_account)
    people = [add(account, server, f"wm-{n}") for n in range(101)]
    Customer.objects.filter(pk__in=[p.pk for p in people]).update(owner_staff=zhang)
    vip = customers.create_tag(actor=None, brand=account.brand, group="会员", name="VIP")
    tagsync.link_tag(actor=None, brand=account.brand, tag_id=vip.pk)
    customers.set_tags(actor=None, customer=people[0], add=[vip.pk])
    tagsync.sync_contacts()

    admin = make_staff(account.brand)
    request = handover.start_handover(
        actor=admin, from_account_id=account.pk, to_account_id=lisi_account.pk,
        message="您好，我是新的专属顾问李四",
    )  # fmt: skip
    assert handover.run_handovers() == 101
    calls = server.calls("externalcontact/transfer_customer")
    assert [len(c.body["external_userid"]) for c in calls if c.body] == [100, 1]
    assert calls[0].body and calls[0].body["transfer_success_msg"] == "您好，我是新的专属顾问李四"
    assert handover.handover_summary(request)["counts"]["waiting"] == 101

    refused = server.refuse_transfer(external_userid="wm-1")
    frozen.advance(DAY)
    done = server.complete_transfers()
    assert len(done) == 100
    assert post(account, server, refused) == (200, "success")
    for fields in done[:50]:  # half arrive as callbacks, half are found by polling
        assert post(account, server, fields) == (200, "success")
    frozen.advance(dt.timedelta(minutes=1))
    assert handover.run_handovers() == 50

    counts = handover.handover_summary(request)["counts"]
    assert (counts["taken_over"], counts["refused"], counts["waiting"]) == (100, 1, 0)
    moved = Customer.objects.get(pk=people[0].pk)
    assert moved.owner_staff_id == li.pk
    assert Customer.objects.get(pk=people[1].pk).owner_staff_id == zhang.pk
    old = CarrierContact.objects.get(account=account, customer=people[0])
    new = CarrierContact.objects.get(account=lisi_account, customer=people[0])
    assert (old.status, old.lost_by, new.status) == ("lost", "transfer", "active")
    assert not Event.objects.filter(type="contact.deleted").exists()  # moved, not deleted
    # The corp tags came along (WeCom keeps them): tag sync has nothing to redo.
    assert ContactCorpTag.objects.filter(contact=new).count() == 1
    assert tagsync.sync_contacts() == 0


def test_two_in_service_transfers_in_90_days_then_the_customer_is_skipped(server, frozen):
    account = connect(server)
    lisi_account = make_account(account.brand, external_id="lisi")
    lin = add(account, server, "wm-lin")
    admin = make_staff(account.brand)
    route = [(account, lisi_account), (lisi_account, account)]
    for source, target in route:
        handover.start_handover(actor=admin, from_account_id=source.pk, to_account_id=target.pk)
        handover.run_handovers()
        frozen.advance(DAY)
        handover.run_handovers()
        assert HandoverItem.objects.order_by("-id")[0].status == "taken_over"
    third = handover.start_handover(
        actor=admin, from_account_id=account.pk, to_account_id=lisi_account.pk,
        customer_ids=[lin.pk],
    )  # fmt: skip
    (item,) = third.items.all()
    assert (item.status, "90 days" in item.reason) == ("skipped", True)
    calls = len(server.calls("externalcontact/transfer_customer"))
    handover.run_handovers()
    assert len(server.calls("externalcontact/transfer_customer")) == calls  # never asked


def test_a_resigned_members_customers_go_through_the_resigned_api(server, frozen):
    account = connect(server)
    lisi_account = make_account(account.brand, external_id="lisi")
    add(account, server, "wm-lin")
    server.resign_staff("zhangsan")
    request = handover.start_handover(
        actor=make_staff(account.brand), from_account_id=account.pk,
        to_account_id=lisi_account.pk, kind="resigned",
    )  # fmt: skip
    handover.run_handovers()
    assert len(server.calls("externalcontact/resigned/transfer_customer")) == 1
    frozen.advance(DAY)
    handover.run_handovers()
    assert handover.handover_summary(request)["counts"]["taken_over"] == 1


def test_handover_over_the_api_and_from_the_console(server):
    account = connect(server)
    lisi_account = make_account(account.brand, external_id="lisi")
    lin = add(account, server, "wm-lin")
    add(account, server, "wm-wang")
    admin = make_staff(account.brand)
    api = Api(admin)
    bad = api.post(
        "/carriers/handovers",
        {"from_account_id": account.pk, "to_account_id": account.pk},
    )
    assert bad.status_code == 422 and bad.json()["field"] == "to_account_id"
    made = api.post(
        "/carriers/handovers",
        {"from_account_id": account.pk, "to_account_id": lisi_account.pk, "customer_ids": [lin.pk]},
    )
    assert made.status_code == 200 and made.json()["counts"]["queued"] == 1
    assert api.get(f"/carriers/handovers/{made.json()['id']}").json()["id"] == made.json()["id"]

    console = console_client(admin)
    page = console.get(f"/messaging/carriers/{account.pk}/handover/")
    assert page.status_code == 200 and "移交客户" in page.content.decode()
    sent = console.post(
        f"/messaging/carriers/{account.pk}/handover/",
        {"to_account_id": lisi_account.pk, "kind": "in_service", "message": ""},
    )
    assert sent.status_code == 302
    # Wang is queued; Lin's handover from the API is already under way: skipped, not twice.
    assert HandoverItem.objects.filter(status="queued").count() == 2
    (skipped,) = HandoverItem.objects.filter(status="skipped")
    assert skipped.customer_id == lin.pk and "under way" in skipped.reason


# --- Moments -------------------------------------------------------------------------------------


def test_a_moments_post_is_created_once_and_follows_each_members_publishing(server, frozen):
    account = connect(server)
    lisi_account = make_account(account.brand, external_id="lisi")
    admin = make_staff(account.brand)
    made = Api(admin).post(
        "/carriers/moments",
        {
            "account_ids": [account.pk, lisi_account.pk],
            "content": {"type": "link", "title": "春季新品", "url": "https://brand.example/new"},
        },
    )
    assert made.status_code == 200 and made.json()["status"] == "queued"
    assert moments.run_loop() == 2  # created, then its job result read
    (job,) = server.moment_jobs.values()
    assert job["request"]["visible_range"]["sender_list"]["user_list"] == ["zhangsan", "lisi"]
    assert job["request"]["attachments"][0]["link"]["url"] == "https://brand.example/new"
    moment = MomentPost.objects.get()
    assert (moment.status, moment.moment_id) == ("publishing", job["moment_id"])

    assert moments.run_loop() == 1  # asked: nobody published yet
    server.publish_moment(moment.moment_id, userid="lisi")
    assert moments.run_loop() == 0  # not due again before CHECK_EVERY
    frozen.advance(moments.CHECK_EVERY)
    moments.run_loop()
    senders = dict(MomentSender.objects.values_list("account__external_id", "status"))
    assert senders == {"zhangsan": "pending", "lisi": "published"}
    server.publish_moment(moment.moment_id, userid="zhangsan")
    frozen.advance(moments.CHECK_EVERY)
    moments.run_loop()
    moment.refresh_from_db()
    assert moment.status == "done"
    assert len(server.calls("externalcontact/add_moment_task")) == 1
    shown = Api(admin).get(f"/carriers/moments/{moment.pk}").json()
    assert {s["status"] for s in shown["senders"]} == {"published"}


def test_a_post_interrupted_while_wecom_created_it_fails_and_is_never_sent_twice(server, frozen):
    account = connect(server)
    post_ = moments.create_moment(
        actor=make_staff(account.brand), account_ids=[account.pk], content={"text": "上新"}
    )
    # A worker marked it `creating` and died before recording WeCom's answer.
    MomentPost.objects.filter(pk=post_.pk).update(status="creating", checked_at=frozen.now())
    moments.run_loop()
    frozen.advance(moments.LOST_AFTER)
    moments.run_loop()
    post_.refresh_from_db()
    assert post_.status == "failed" and "check the WeCom admin console" in post_.error
    assert not server.calls("externalcontact/add_moment_task")


def test_the_adapter_declares_only_what_it_implements():
    declared = {str(c) for c in WeComCarrier.capabilities}
    assert "group_message" not in declared and "group_join_code" not in declared
    assert {"tag_sync", "customer_handover", "moments_post"} <= declared
