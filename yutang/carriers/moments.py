"""Moments posts (客户朋友圈) through WeCom's add_moment_task, with each member's publish status.

`create_moment` writes the post and its senders (the members' WeCom accounts); the
`carriers.moments` worker loop creates the task on WeCom (`add_moment_task` → a job id),
reads the job's result (`get_moment_task_result` → the moment id, and members WeCom refused),
then asks which members published it (`get_moment_task`: publish_status 1) every
`CHECK_EVERY` until every member did or `GIVE_UP_AFTER` passed. Like a mass message, nothing
reaches customers until a member publishes it in the WeCom app.

`add_moment_task` has no idempotency key. A post is marked `creating` (committed) before the
call; a worker killed between WeCom's answer and our record leaves it `creating` without a
job id, and after `LOST_AFTER` it fails with a reason that says to check WeCom — it is never
created twice. Moments go to every contact of the members who publish them, so the per-
customer policy gate does not apply to them (docs/messaging.md).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q

from yutang.carriers.base import CarrierError
from yutang.carriers.models import MomentPost, MomentSender
from yutang.core import audit, clock
from yutang.core.errors import N_, NotFound, ValidationFailed
from yutang.core.models import CarrierAccount, Staff
from yutang.core.permissions import Action, require

if TYPE_CHECKING:
    from yutang.carriers.wecom.client import WeComClient

P = MomentPost.Status
CHECK_EVERY = dt.timedelta(minutes=10)
LOST_AFTER = dt.timedelta(minutes=10)
GIVE_UP_AFTER = dt.timedelta(days=3)
LOOP_LEASE = "carriers.moments"
LOOP_LEASE_TTL = dt.timedelta(minutes=5)


def create_moment(
    *,
    actor: Staff,
    account_ids: Sequence[int],
    content: Mapping[str, Any],
    kind: str = "marketing",
) -> MomentPost:
    """A moments post for these members (their WeCom accounts) to publish. `content` is a
    message content: text, or a link or image with optional text."""
    from yutang.carriers.adapters.wecom import message_parts

    require(actor, Action.MESSAGE_BROADCAST)
    if kind not in ("service", "marketing"):
        raise ValidationFailed(N_("kind must be service or marketing."), field="kind")
    ids = list(dict.fromkeys(account_ids))
    if not ids:
        raise ValidationFailed(N_("Choose at least one WeCom account."), field="account_ids")
    accounts = {
        a.pk: a
        for a in CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW).filter(
            pk__in=ids, kind="wecom", is_active=True
        )
    }
    for n, account_id in enumerate(ids):
        if account_id not in accounts:
            raise NotFound(
                N_("No such WeCom account: {account_id}."),
                params={"account_id": account_id},
                field=f"account_ids.{n}",
            )
    body = dict(content)
    try:
        text, attachments = message_parts(body)
    except CarrierError as exc:
        raise ValidationFailed(exc.reason, field="content") from None
    if not text and not attachments:
        raise ValidationFailed(N_("A moments post needs text or an attachment."), field="content")
    with transaction.atomic():
        post = MomentPost.objects.create(
            brand=actor.brand, created_by=actor, kind=kind, content=body, created_at=clock.now()
        )
        MomentSender.objects.bulk_create([MomentSender(post=post, account_id=i) for i in ids])
        audit.record(brand=actor.brand, actor=actor, action="moment.create", target=post)
    return post


def get_moment(*, actor: Staff, moment_id: int) -> MomentPost:
    found = (
        MomentPost.objects.for_actor(actor, Action.MESSAGE_VIEW)
        .filter(pk=moment_id)
        .prefetch_related("senders__account")
        .first()
    )
    if found is None:
        raise NotFound(
            N_("No such moments post: {moment_id}."),
            params={"moment_id": moment_id},
            field="moment_id",
        )
    return found


def moment_summary(post: MomentPost) -> dict[str, Any]:
    return {
        "id": post.pk,
        "status": post.status,
        "kind": post.kind,
        "moment_id": post.moment_id,
        "error": post.error,
        "created_at": post.created_at,
        "senders": [
            {"account_id": s.account_id, "status": s.status, "published_at": s.published_at}
            for s in post.senders.all()
        ],
    }


# --- The worker ----------------------------------------------------------------------------------


def _client(brand_id: int) -> WeComClient:
    from yutang.carriers.adapters.wecom import brand_adapter

    adapter = brand_adapter(brand_id)
    if adapter is None:
        raise CarrierError("no WeCom account is connected", transient=False)
    return adapter.client()


def _wecom(call: Any, **kwargs: Any) -> Any:
    from yutang.carriers.adapters.wecom import _as_carrier_error
    from yutang.carriers.wecom.errors import WeComError

    try:
        return call(**kwargs)
    except WeComError as exc:
        raise _as_carrier_error(exc) from exc


def _fail(post: MomentPost, reason: str, now: dt.datetime) -> None:
    MomentPost.objects.filter(pk=post.pk).update(
        status=P.FAILED, error=reason[:300], checked_at=now
    )


def create_tasks(*, now: dt.datetime) -> int:
    from yutang.carriers.adapters.wecom import message_parts

    done = 0
    for post in MomentPost.objects.filter(status=P.QUEUED).order_by("id")[:50]:
        # Committed before the call: a crash after it leaves the post `creating`, never sent
        # twice (see the module's docstring).
        if not MomentPost.objects.filter(pk=post.pk, status=P.QUEUED).update(
            status=P.CREATING, checked_at=now
        ):
            continue
        senders = list(post.senders.select_related("account").order_by("id"))
        text, attachments = message_parts(post.content)
        try:
            jobid = _wecom(
                _client(post.brand_id).add_moment_task,
                text=text,
                attachments=attachments,
                sender_list=[s.account.external_id for s in senders],
            )
        except CarrierError as exc:
            if exc.transient:
                MomentPost.objects.filter(pk=post.pk).update(status=P.QUEUED, error=exc.reason)
            else:
                _fail(post, exc.reason, now)
            continue
        MomentPost.objects.filter(pk=post.pk).update(jobid=jobid, error="", checked_at=None)
        done += 1
    lost = MomentPost.objects.filter(status=P.CREATING, jobid="", checked_at__lte=now - LOST_AFTER)
    done += lost.update(
        status=P.FAILED,
        error="interrupted while WeCom created the task: check the WeCom admin console",
    )
    return done


def check_tasks(*, now: dt.datetime) -> int:
    due = Q(checked_at__isnull=True) | Q(checked_at__lte=now - CHECK_EVERY)
    done = 0
    for post in (
        MomentPost.objects.filter(due, status__in=[P.CREATING, P.PUBLISHING])
        .exclude(jobid="")
        .order_by("id")[:200]
    ):
        try:
            client = _client(post.brand_id)
            if post.status == P.CREATING:
                done += _job_result(client, post, now)
            else:
                done += _publish_status(client, post, now)
        except CarrierError as exc:
            MomentPost.objects.filter(pk=post.pk).update(checked_at=now, error=exc.reason[:300])
    return done


def _job_result(client: Any, post: MomentPost, now: dt.datetime) -> int:
    job = _wecom(client.get_moment_task_result, jobid=post.jobid)
    if int(job.get("status", 0) or 0) != 3:
        MomentPost.objects.filter(pk=post.pk).update(checked_at=now)
        return 0
    result = job.get("result") or {}
    if int(result.get("errcode", 0) or 0) != 0:
        _fail(post, f"WeCom: {result.get('errcode')} {result.get('errmsg', '')}", now)
        return 1
    invalid = set((result.get("invalid_sender_list") or {}).get("user_list") or [])
    for sender in post.senders.select_related("account"):
        if sender.account.external_id in invalid:
            MomentSender.objects.filter(pk=sender.pk).update(status=MomentSender.Status.INVALID)
    MomentPost.objects.filter(pk=post.pk).update(
        status=P.PUBLISHING, moment_id=str(result.get("moment_id", "")), checked_at=None
    )
    return 1


def _publish_status(client: Any, post: MomentPost, now: dt.datetime) -> int:
    published: set[str] = set()
    cursor = ""
    while True:
        page = _wecom(client.get_moment_task, moment_id=post.moment_id, cursor=cursor)
        published |= {
            str(row.get("userid", ""))
            for row in page.items
            if int(row.get("publish_status", 0) or 0) == 1
        }
        cursor = page.next_cursor
        if not cursor:
            break
    waiting = 0
    for sender in post.senders.select_related("account").filter(status=MomentSender.Status.PENDING):
        if sender.account.external_id in published:
            MomentSender.objects.filter(pk=sender.pk).update(
                status=MomentSender.Status.PUBLISHED, published_at=now
            )
        else:
            waiting += 1
    finished = waiting == 0 or now - post.created_at >= GIVE_UP_AFTER
    MomentPost.objects.filter(pk=post.pk).update(
        status=P.DONE if finished else P.PUBLISHING, checked_at=now
    )
    return 1


def run_loop() -> int:
    """The worker loop (`carriers.moments`): one worker at a time."""
    from yutang.core.worker import acquire_lease, release_lease

    holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]
    if not acquire_lease(LOOP_LEASE, holder, LOOP_LEASE_TTL):
        return 0
    try:
        now = clock.now()
        return create_tasks(now=now) + check_tasks(now=now)
    finally:
        release_lease(LOOP_LEASE, holder)
