"""The outbox end to end through the sandbox carrier: enqueue in the caller's transaction,
the gate at send time, deferral and expiry, retries, events, inbound callbacks."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import transaction

from tests.factories import Api, make_staff
from yutang.carriers import services as carriers
from yutang.carriers import signing
from yutang.carriers.adapters import sandbox
from yutang.carriers.base import CallbackRejected, CallbackRequest
from yutang.carriers.models import CarrierContact, InboundReceipt, SandboxDelivery
from yutang.core.clock import FrozenClock, use_clock
from yutang.customers.models import Consent
from yutang.events.models import Event
from yutang.messaging import services
from yutang.messaging.delivery import deliver_due_messages
from yutang.messaging.models import Message
from yutang.messaging.tests.helpers import NOON, SECRET, add_contact, sandbox_account, setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen():
    with use_clock(FrozenClock(NOON)) as c:
        yield c


def enqueue(brand, customer, account, key, kind="marketing", text="春季新品", **kw):
    return services.enqueue_message(
        brand=brand,
        customer=customer,
        account=account,
        kind=kind,
        content={"type": "text", "text": text},
        cause="journey",
        idempotency_key=key,
        **kw,
    )


def test_enqueued_in_a_rolled_back_transaction_leaves_nothing(frozen):
    brand, account, (c1, *_) = setup(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(brand, c1, account, "k1")
        raise RuntimeError("the journey step failed")
    assert not Message.objects.exists()


def test_a_message_goes_once_to_the_sandbox_with_a_sent_event(frozen):
    brand, account, (c1, *_) = setup(1)
    m = enqueue(brand, c1, account, "k1")
    assert enqueue(brand, c1, account, "k1").pk == m.pk  # same key, same message
    assert deliver_due_messages() == 1
    m.refresh_from_db()
    assert (m.status, m.attempts, m.sent_at) == ("sent", 1, NOON)
    d = SandboxDelivery.objects.get()
    assert d.idempotency_key == f"{brand.pk}:k1" and d.content["text"] == "春季新品"
    assert m.carrier_message_id == f"sbx-{d.pk}"
    ev = Event.objects.get(type="message.sent")
    assert ev.customer_id == c1.pk and ev.properties["message_id"] == str(m.pk)
    assert deliver_due_messages() == 0


def test_second_marketing_message_the_same_day_is_blocked_by_frequency(frozen):
    brand, account, (c1, *_) = setup(1)
    enqueue(brand, c1, account, "k1")
    enqueue(brand, c1, account, "k2", text="another")
    deliver_due_messages()
    statuses = dict(Message.objects.values_list("idempotency_key", "status"))
    assert statuses == {"k1": "sent", "k2": "blocked"}
    assert Message.objects.get(idempotency_key="k2").rule == "frequency"
    assert SandboxDelivery.objects.count() == 1


def test_the_marketing_share_blocks_at_its_ceiling_and_not_when_set_to_100_percent(frozen):
    from django.db import connection

    from yutang.messaging.models import AccountTouchLock

    brand, account, (c1, c2, posted) = setup(3)
    # the share over every message the account sends (not only its broadcasts)
    services.update_policy(actor=make_staff(brand), changes={"marketing_share_scope": "all"})
    # 20 marketing posts of the account already in the window (all to one other customer): at
    # the default 20% the next marketing message is blocked; at 100% the rule cannot block,
    # and a pass neither counts nor locks the account.
    for n in range(20):
        m = enqueue(brand, posted, account, f"old-{n}", text=f"old {n}")
        Message.objects.filter(pk=m.pk).update(status="sent", passed_at=NOON)
    enqueue(brand, c1, account, "capped", text="新品 A")
    deliver_due_messages()
    capped = Message.objects.get(idempotency_key="capped")
    assert (capped.status, capped.rule) == ("blocked", "marketing_share")
    # On PostgreSQL a message the share could stop is decided under its account's lock, with
    # the posts counted once (delivery.decide); SQLite's single writer needs no lock.
    assert AccountTouchLock.objects.exists() == (connection.vendor == "postgresql")
    AccountTouchLock.objects.all().delete()

    services.update_policy(actor=make_staff(brand), changes={"marketing_share_max": 1})
    enqueue(brand, c2, account, "free", text="新品 B")
    deliver_due_messages()
    assert Message.objects.get(idempotency_key="free").status == "sent"
    assert not AccountTouchLock.objects.exists()


@pytest.mark.parametrize("provisional_max", [50, 0])
def test_the_share_decides_the_same_counted_before_or_under_the_lock(
    frozen, monkeypatch, provisional_max
):
    """On PostgreSQL `delivery.decide` passes a message the share could stop provisionally
    and decides it again with the posts counted under the account's lock — or, past
    `PROVISIONAL_MAX`, counts the posts first and locks nothing for its blocks. Both give
    the decisions of the batch decided in order on counted posts (the one-by-one path),
    the share's block coming before the duplicate rule's."""
    from django.db import connection

    from yutang.messaging import delivery, gate
    from yutang.messaging.models import AccountTouchLock, TouchLock

    monkeypatch.setattr(delivery, "PROVISIONAL_MAX", provisional_max)
    brand, account, (*customers, posted) = setup(5)
    services.update_policy(actor=make_staff(brand), changes={"marketing_share_scope": "all"})
    # 3 marketing and 17 service posts in the window: one more marketing message is within
    # 20% (4 of 21), a second is not (5 of 22).
    for n in range(20):
        kind = "marketing" if n < 3 else "service"
        m = enqueue(brand, posted, account, f"old-{n}", text=f"old {n}", kind=kind)
        Message.objects.filter(pk=m.pk).update(status="sent", passed_at=NOON)
    # The last customer had this text yesterday: the share blocks it before the duplicate rule.
    m = enqueue(brand, customers[-1], account, "seen", text="新品", kind="service")
    Message.objects.filter(pk=m.pk).update(status="sent", passed_at=NOON - dt.timedelta(days=1))
    for n, c in enumerate(customers):
        enqueue(brand, c, account, f"new-{n}", text="新品")
    queued = list(Message.objects.filter(status="queued").order_by("due_at", "id"))
    adapters = delivery.Adapters()
    policy = adapters.brand(brand.pk)[1]
    candidates = [delivery.candidate_of(m) for m in queued]
    ctx = delivery.load_context(
        brand=brand, candidates=candidates, now=NOON, adapters=adapters, policy=policy
    )
    expected = {}
    for m, cnd in zip(queued, candidates, strict=True):
        d = gate.evaluate(cnd, ctx)
        if d.outcome == "pass":
            ctx.record(cnd)
        expected[m.idempotency_key] = ("sent" if d.outcome == "pass" else "blocked", d.rule)
    assert sorted(expected.values()) == [
        ("blocked", "marketing_share"),
        ("blocked", "marketing_share"),
        ("blocked", "marketing_share"),
        ("sent", ""),
    ]
    deliver_due_messages()
    got = dict(
        (key, (status, rule))
        for key, status, rule in Message.objects.filter(
            idempotency_key__startswith="new-"
        ).values_list("idempotency_key", "status", "rule")
    )
    assert got == expected
    locked = connection.vendor == "postgresql"
    assert AccountTouchLock.objects.exists() == locked  # the pass locked it
    touch_locked = set(TouchLock.objects.values_list("customer_id", flat=True))
    if not locked:
        assert not touch_locked
    elif provisional_max:  # every message the share could stop was decided under the lock
        assert touch_locked == {c.pk for c in customers}
    else:  # counted first: only the pass locked its customer
        assert touch_locked == {customers[0].pk}


def test_a_provisional_decision_left_undecided_is_refused_even_under_python_O():
    """`delivery.decide` ends by checking that no provisional pass survived (it would send a
    message the marketing share was never checked for): a real exception, not an `assert`
    that `python -O` strips."""
    import subprocess
    import sys

    from yutang.messaging import delivery, gate

    delivery._check_final([gate.Decision("pass"), gate.Decision("block", "frequency")])
    with pytest.raises(delivery.GateError):
        delivery._check_final([gate.Decision("pass"), gate.PROVISIONAL])
    # An equal Decision built elsewhere is caught too (the check compares values).
    with pytest.raises(delivery.GateError):
        delivery._check_final(
            [gate.Decision("pass", "marketing_share", reason=gate.PROVISIONAL.reason)]
        )
    # The check stays under -O, where an assert would vanish.
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'yutang.settings');"
        "django.setup(); from yutang.messaging import delivery, gate\n"
        "try:\n delivery._check_final([gate.PROVISIONAL])\n"
        "except delivery.GateError:\n print('refused')"
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "refused"


def test_a_marketing_pass_within_the_share_locks_the_account_on_postgresql(frozen):
    from django.db import connection

    from yutang.messaging.models import AccountTouchLock, TouchLock

    brand, account, (c1, posted) = setup(2)
    services.update_policy(actor=make_staff(brand), changes={"marketing_share_scope": "all"})
    for n in range(20):  # 20 service posts: one marketing message stays within 20%
        m = enqueue(brand, posted, account, f"old-{n}", text=f"old {n}", kind="service")
        Message.objects.filter(pk=m.pk).update(status="sent", passed_at=NOON)
    enqueue(brand, c1, account, "within", text="新品 A")
    deliver_due_messages()
    assert Message.objects.get(idempotency_key="within").status == "sent"
    # The pass spent the account's share and the customer's caps under their lock rows
    # (PostgreSQL); SQLite's single writer needs none.
    locked = connection.vendor == "postgresql"
    assert AccountTouchLock.objects.filter(account=account).exists() == locked
    assert TouchLock.objects.filter(customer=c1).exists() == locked


def test_no_consent_blocks_and_a_deleted_contact_blocks(frozen):
    brand, account, (c1,) = setup(1)
    c2 = add_contact(account, "no-consent", consent=False)
    sandbox.emit(
        carriers.account_config(account),
        [{"type": "contact.deleted", "contact": f"wm-{brand.pk}-0", "id": "del-1"}],
    )
    enqueue(brand, c1, account, "k1")
    enqueue(brand, c2, account, "k2")
    deliver_due_messages()
    rules = dict(Message.objects.values_list("idempotency_key", "rule"))
    assert rules == {"k1": "carrier", "k2": "consent"}
    assert Event.objects.filter(type="contact.deleted", customer=c1).count() == 1
    assert CarrierContact.objects.get(customer=c1).status == "lost"


def test_quiet_hours_defer_then_send_when_allowed(frozen):
    brand, account, (c1,) = setup(1)
    frozen.set(dt.datetime(2026, 3, 11, 14, 0, tzinfo=dt.UTC))  # 22:00 Shanghai
    m = enqueue(brand, c1, account, "k1")
    deliver_due_messages()
    m.refresh_from_db()
    assert (m.status, m.rule) == ("deferred", "quiet_hours")
    assert m.due_at == dt.datetime(2026, 3, 12, 0, 30, tzinfo=dt.UTC)  # 08:30 Shanghai
    frozen.set(dt.datetime(2026, 3, 12, 0, 29, tzinfo=dt.UTC))
    assert deliver_due_messages() == 0
    frozen.set(dt.datetime(2026, 3, 12, 0, 30, tzinfo=dt.UTC))
    deliver_due_messages()
    m.refresh_from_db()
    assert m.status == "sent" and SandboxDelivery.objects.count() == 1


def test_a_deferred_message_expires_at_its_deadline(frozen):
    brand, account, (c1,) = setup(1)
    frozen.set(dt.datetime(2026, 3, 11, 14, 0, tzinfo=dt.UTC))
    m = enqueue(brand, c1, account, "k1", not_after=dt.datetime(2026, 3, 11, 15, 0, tzinfo=dt.UTC))
    deliver_due_messages()
    m.refresh_from_db()
    assert (m.status, m.rule) == ("expired", "quiet_hours")
    assert not SandboxDelivery.objects.exists()


def test_service_messages_pass_quiet_hours(frozen):
    brand, account, (c1,) = setup(1)
    frozen.set(dt.datetime(2026, 3, 11, 14, 0, tzinfo=dt.UTC))
    m = enqueue(brand, c1, account, "k1", kind="service", text="您的订单已发货")
    deliver_due_messages()
    m.refresh_from_db()
    assert m.status == "sent"


def test_signed_callbacks_are_verified_and_replays_stored_once(frozen):
    brand, account, _ = setup(0)
    body = json.dumps(
        {
            "events": [
                {
                    "id": "e1",
                    "type": "contact.added",
                    "contact": "wm-x",
                    "occurred_at": NOON.isoformat(),
                }
            ]
        }
    ).encode()
    client = Api(make_staff(brand)).client
    url = f"/api/v1/carriers/{account.pk}/callback"
    bad = client.post(
        url,
        data=body,
        content_type="application/json",
        headers={"X-Yutang-Signature": signing.signature("wrong", int(NOON.timestamp()), body)},
    )
    assert bad.status_code == 401 and bad.json()["code"] == "callback_rejected"
    stale = client.post(
        url,
        data=body,
        content_type="application/json",
        headers={
            "X-Yutang-Signature": signing.signature(SECRET, int(NOON.timestamp()) - 600, body)
        },
    )
    assert stale.status_code == 401 and "window" in stale.json()["message"]
    assert not InboundReceipt.objects.exists() and not Event.objects.exists()
    good = {"X-Yutang-Signature": signing.signature(SECRET, int(NOON.timestamp()), body)}
    for _ in range(2):
        r = client.post(url, data=body, content_type="application/json", headers=good)
        assert r.status_code == 200
    assert r.json() == {"accepted": 0}
    assert InboundReceipt.objects.count() == 1
    assert Event.objects.filter(type="contact.added").count() == 1
    assert CarrierContact.objects.count() == 1


def test_bad_callback_bodies_name_the_path(frozen):
    brand, account, _ = setup(0)
    body = json.dumps(
        {"events": [{"id": "e1", "type": "contact.added", "occurred_at": "x"}]}
    ).encode()
    with pytest.raises(CallbackRejected, match=r"events\.0\.occurred_at"):
        carriers.receive_callback(
            account_id=account.pk,
            request=CallbackRequest(headers=signing.sign(SECRET, body), body=body),
        )
    assert not InboundReceipt.objects.exists()


def test_replies_become_events_and_unsubscribe_withdraws_once_and_confirms_once(frozen):
    brand, account, (c1,) = setup(1)
    config = carriers.account_config(account)
    contact = f"wm-{brand.pk}-0"
    sandbox.emit(
        config, [{"type": "message.received", "contact": contact, "text": "在吗", "id": "r0"}]
    )
    assert Event.objects.filter(type="message.received", customer=c1).count() == 1
    assert services.is_unsubscribe("TD", ["退订", "TD"]) and services.is_unsubscribe(
        " 退订！", ["退订"]
    )
    assert not services.is_unsubscribe("不要取消我的订单", ["取消"])
    for n, text in enumerate(["退订", "td", "退订。"]):
        frozen.advance(dt.timedelta(minutes=1))
        sandbox.emit(
            config,
            [{"type": "message.received", "contact": contact, "text": text, "id": f"r{n + 1}"}],
        )
    consent = Consent.objects.get(customer=c1, purpose="marketing", carrier="sandbox")
    assert consent.status == "withdrawn"
    confirmations = Message.objects.filter(cause="reply")
    assert confirmations.count() == 1
    enqueue(brand, c1, account, "k-after")
    deliver_due_messages()
    assert Message.objects.get(idempotency_key="k-after").rule == "consent"
    assert confirmations.get().status == "sent"  # the confirmation is a service message


def test_delivery_receipts_move_status_forward_and_emit_events(frozen):
    brand, account, (c1,) = setup(1)
    m = enqueue(brand, c1, account, "k1")
    deliver_due_messages()
    m.refresh_from_db()
    config = carriers.account_config(account)
    sandbox.emit(
        config,
        [
            {
                "type": "delivery.receipt",
                "message_id": m.carrier_message_id,
                "status": "read",
                "id": "rc1",
            },
            {
                "type": "delivery.receipt",
                "message_id": m.carrier_message_id,
                "status": "delivered",
                "id": "rc2",
            },
        ],
    )
    m.refresh_from_db()
    assert m.status == "read"
    assert Event.objects.filter(type="message.read").count() == 1
    assert not Event.objects.filter(type="message.delivered").exists()  # never backwards


def test_welcome_goes_first_from_the_provider_then_default(frozen):
    from yutang.carriers import inbound

    brand, account, _ = setup(0)

    def provider(fact):
        return inbound.WelcomeContent(text=f"欢迎 from {fact.state}") if fact.state else None

    inbound.register_welcome_provider(provider)
    try:
        add_contact(account, "wm-w1", state="livecode-7")
    finally:
        inbound._WELCOME_PROVIDERS.remove(provider)
    first = SandboxDelivery.objects.get()
    assert first.content["text"] == "欢迎 from livecode-7"
    welcome = Message.objects.get(cause="welcome")
    assert (
        welcome.status == "sent" and welcome.customer.pk == CarrierContact.objects.get().customer_id
    )


def test_sandbox_behaviour_hook_replies_through_the_callback_path(frozen):
    brand, account, (c1,) = setup(1)
    sandbox.set_behaviour(
        lambda out: [{"type": "message.received", "contact": out.recipient, "text": "TD"}]
    )
    try:
        enqueue(brand, c1, account, "k1")
        deliver_due_messages()
    finally:
        sandbox.set_behaviour(None)
    assert InboundReceipt.objects.filter(kind="MessageReceived").count() == 1
    assert Consent.objects.get(customer=c1, carrier="sandbox").status == "withdrawn"


def test_pending_confirmation_then_confirm_or_timeout(frozen):
    brand, account, customers = setup(2, confirm_broadcasts=True)
    admin = make_staff(brand)
    b = services.create_broadcast(
        actor=admin,
        account_id=account.pk,
        kind="marketing",
        content={"text": "新品"},
        customer_ids=[customers[0].pk],
    )
    deliver_due_messages()
    m = Message.objects.get(broadcast=b)
    assert m.status == "pending_confirmation"
    assert services.confirm_broadcast(actor=admin, broadcast_id=b.pk) == 1
    m.refresh_from_db()
    assert m.status == "sent"
    b2 = services.create_broadcast(
        actor=admin,
        account_id=account.pk,
        kind="marketing",
        content={"text": "二号"},
        customer_ids=[customers[1].pk],
    )
    deliver_due_messages()
    frozen.advance(dt.timedelta(hours=25))
    deliver_due_messages()
    m2 = Message.objects.get(broadcast=b2)
    assert (m2.status, m2.rule) == ("expired", "confirmation")


def test_preview_counts_blocked_and_deferred_by_rule(frozen):
    brand, account, customers = setup(3)
    no_consent = add_contact(account, "wm-nc", consent=False)
    enqueue(brand, customers[0], account, "earlier")
    deliver_due_messages()
    p = services.preview_policy(
        brand=brand,
        account=account,
        kind="marketing",
        content={"text": "x"},
        customer_ids=[c.pk for c in customers] + [no_consent.pk],
    )
    assert (p.total, p.would_send, p.blocked, p.deferred) == (
        4,
        2,
        {"frequency": 1, "consent": 1},
        {},
    )
    late = services.preview_policy(
        brand=brand,
        account=account,
        kind="marketing",
        content={"text": "x"},
        customer_ids=[customers[1].pk],
        at=dt.datetime(2026, 3, 11, 14, tzinfo=dt.UTC),
    )
    assert late.deferred == {"quiet_hours": 1}
    assert not Message.objects.filter(idempotency_key__startswith="broadcast").exists()


def test_by_default_the_marketing_share_counts_and_limits_broadcasts_only(frozen):
    brand, account, (c1, c2, posted) = setup(3)
    for n in range(20):  # 20 marketing one-to-one messages: not posts
        m = enqueue(brand, posted, account, f"old-{n}", text=f"old {n}")
        Message.objects.filter(pk=m.pk).update(status="sent", passed_at=NOON)
    enqueue(brand, c1, account, "journey-offer", text="新人首单立减")
    deliver_due_messages()
    assert Message.objects.get(idempotency_key="journey-offer").status == "sent"
    # 20 marketing broadcasts in the window: the next marketing broadcast is over 20%
    Message.objects.filter(idempotency_key__startswith="old-").update(cause="broadcast")
    services.enqueue_message(
        brand=brand, customer=c2, account=account, kind="marketing",
        content={"type": "text", "text": "双11 会员日"}, cause="broadcast",
        idempotency_key="broadcast-sale",
    )  # fmt: skip
    deliver_due_messages()
    post = Message.objects.get(idempotency_key="broadcast-sale")
    assert (post.status, post.rule) == ("blocked", "marketing_share")


def test_the_claim_sweeps_the_queue_and_starts_over_for_rows_behind_it(frozen):
    import datetime as dt

    brand, account, customers = setup(5)
    for n, c in enumerate(customers[:4]):
        enqueue(brand, c, account, f"q{n}", kind="service", text=f"通知 {n}")
    assert deliver_due_messages(limit=2) == 2  # a full read: the sweep goes on after it
    # Queued late with an earlier due time: behind the sweep.
    early = enqueue(
        brand, customers[4], account, "early", kind="service", text="早",
        due_at=NOON - dt.timedelta(hours=1),
    )  # fmt: skip
    assert deliver_due_messages(limit=2) == 2  # the two after the sweep's last row
    assert Message.objects.get(pk=early.pk).status == "queued"
    assert deliver_due_messages(limit=2) == 1  # the end of the sweep: it starts over
    assert Message.objects.get(pk=early.pk).status == "sent"
    assert Message.objects.filter(status="sent").count() == 5
    assert SandboxDelivery.objects.count() == 5


def test_kept_post_counts_equal_a_full_count_as_the_window_slides_and_posts_arrive():
    """`delivery.PostCounts` keeps a large account's settled counts and reads only the edges
    (the recent posts as the growth of the accounts' tallies): at every step (posts passing
    now, older ones leaving the window, the settled part moving forward, the clock set back)
    it gives what counting the whole window gives."""
    from yutang.messaging.delivery import PostCounts, _posts_between, add_posts

    brand, account, (customer,) = setup(1)
    other = sandbox_account(brand)
    kept = PostCounts(min_posts=1)  # keep every account's counts (the default keeps large ones)
    causes = ["broadcast", "campaign"]
    week = dt.timedelta(days=7)
    n = 0

    def post(at, acc=account, kind="marketing", cause="campaign"):
        nonlocal n
        n += 1
        with use_clock(FrozenClock(at)):
            m = enqueue(brand, customer, account, f"p{n}", text=f"t{n}")
        with transaction.atomic():  # as a delivery pass lets a post through
            Message.objects.filter(pk=m.pk).update(
                status="sent", passed_at=at, account=acc, kind=kind, cause=cause
            )
            if cause in ("broadcast", "campaign"):
                add_posts({acc.pk: [int(kind == "marketing"), 1]})

    for hours in range(0, 10 * 24, 7):  # ten days of posts, every 7 hours, both kinds
        at = NOON - dt.timedelta(hours=hours)
        post(at, kind="marketing" if hours % 3 == 0 else "service", cause="broadcast")
        post(at, acc=other, kind="service", cause="broadcast")
    post(NOON - dt.timedelta(hours=1), cause="journey")  # one-to-one: not a post
    ids = sorted([account.pk, other.pk])

    def check(now):
        got = dict(kept.counts(ids, causes, now - week, now))
        assert got == _posts_between(ids, causes, now - week, None), now
        return got

    first = check(NOON)
    assert first[account.pk][1] > first[account.pk][0] > 0 and first[other.pk][0] == 0
    assert kept.kept  # both accounts' settled counts kept
    for minutes in (1, 5, 30, 3 * 60, 26 * 60):  # the window slides; posts pass meanwhile
        now = NOON + dt.timedelta(minutes=minutes)
        post(now - dt.timedelta(seconds=30))
        post(now, acc=other, kind="marketing", cause="campaign")
        check(now)
    for minutes in (31, 32):  # the settled part stays: the recent posts from the tallies
        now = NOON + dt.timedelta(minutes=minutes)
        post(now, kind="service", cause="broadcast")
        post(now, acc=other, kind="marketing", cause="campaign")
        check(now)
    check(NOON - dt.timedelta(hours=5))  # the clock set back: counted in full again
    check(NOON + dt.timedelta(days=30))  # the whole window past what was kept
    # Another scope's causes are not tallied: their recent posts are counted one by one.
    every = ["broadcast", "campaign", "journey"]
    now = NOON + dt.timedelta(days=30, minutes=1)
    assert dict(kept.counts(ids, every, now - week, now)) == _posts_between(
        ids, every, now - week, None
    )
    post(now, cause="journey")
    assert dict(kept.counts(ids, every, now - week, now)) == _posts_between(
        ids, every, now - week, None
    )


def test_each_pass_adds_the_posts_it_lets_through_to_the_accounts_tallies(frozen):
    """`AccountTouchLock.posts` / `.marketing_posts` grow by the posts (broadcast and campaign
    messages) a delivery pass lets through, marketing and service, and not by one-to-one
    messages or blocked ones: `PostCounts` reads recent posts from them."""
    from yutang.messaging.models import AccountTouchLock

    brand, account, customers = setup(4)
    for n, c in enumerate(customers[:3]):
        services.enqueue_message(
            brand=brand, customer=c, account=account, kind="marketing",
            content={"type": "text", "text": "活动"}, cause="campaign",
            idempotency_key=f"camp{n}",
        )  # fmt: skip
    services.enqueue_message(
        brand=brand, customer=customers[0], account=account, kind="service",
        content={"type": "text", "text": "上新"}, cause="broadcast", idempotency_key="post",
    )  # fmt: skip
    enqueue(brand, customers[3], account, "one-to-one")
    enqueue(brand, customers[3], account, "blocked", text="again")  # frequency: blocked
    assert deliver_due_messages() == 6
    statuses = dict(Message.objects.values_list("idempotency_key", "status"))
    assert statuses["blocked"] == "blocked" and statuses["camp0"] == "sent"
    tally = AccountTouchLock.objects.get(account=account)
    posts = Message.objects.filter(cause__in=["broadcast", "campaign"], passed_at__isnull=False)
    assert (tally.marketing_posts, tally.posts) == (
        posts.filter(kind="marketing").count(),
        posts.count(),
    )
    assert tally.posts == 4 and tally.marketing_posts == 3
