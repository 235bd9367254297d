"""REST handlers for carriers: status, connect, test, and the inbound callback endpoint."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Router

from yutang.carriers import handover, moments, services, tagsync
from yutang.carriers.base import CallbackRejected, CallbackRequest, CarrierError, ParsedCallback
from yutang.carriers.schemas import (
    CallbackOut,
    CarrierStatusOut,
    ConnectIn,
    CorpTagOut,
    HandoverIn,
    HandoverOut,
    MomentIn,
    MomentOut,
    PulledOut,
)
from yutang.core.apiauth import actor

router = Router(tags=["carriers"])
CallbackReplyDefault = ParsedCallback(facts=()).reply


def _out(s: services.AccountStatus) -> dict[str, object]:
    return {
        "account_id": s.account.pk,
        "kind": s.account.kind,
        "display_name": s.account.display_name,
        "status": s.status,
        "last_error": s.last_error,
        "checked_at": s.checked_at,
        "capabilities": s.capabilities,
        "configured": s.configured,
    }


def _one(request: HttpRequest, account_id: int) -> dict[str, object]:
    for s in services.list_carriers(actor=actor(request)):
        if s.account.pk == account_id:
            return _out(s)
    raise AssertionError("the service found the account")


@router.get("/carriers", response=list[CarrierStatusOut])
def list_carriers(request: HttpRequest) -> object:
    """Every carrier account you can see, with connection status and last error."""
    return [_out(s) for s in services.list_carriers(actor=actor(request))]


@router.put("/carriers/{account_id}/connection", response=CarrierStatusOut)
def connect(request: HttpRequest, account_id: int, payload: ConnectIn) -> object:
    """Store credentials (encrypted) and settings for an account."""
    services.connect_carrier(
        actor=actor(request),
        account_id=account_id,
        credentials=payload.credentials,
        settings=payload.settings,
    )
    return _one(request, account_id)


@router.post("/carriers/{account_id}/test", response=CarrierStatusOut)
def test(request: HttpRequest, account_id: int) -> object:
    """Reach the carrier with the stored credentials; records connected or the error."""
    services.test_connection(actor=actor(request), account_id=account_id)
    return _one(request, account_id)


def _answer(request: HttpRequest, account_id: int) -> tuple[int, bytes] | HttpResponse:
    try:
        return services.answer_callback(
            account_id=account_id,
            request=CallbackRequest(
                headers=dict(request.headers), body=request.body, query=request.GET.dict()
            ),
        )
    except CallbackRejected as exc:
        return JsonResponse(
            {"code": "callback_rejected", "message": str(exc), "field": None}, status=401
        )
    except CarrierError as exc:
        # Handling it needed the carrier (e.g. WeCom's contact details for an edit event) and
        # the carrier failed: nothing was stored, and a 503 makes the carrier send it again.
        return JsonResponse(
            {"code": "carrier_unavailable", "message": exc.reason, "field": None}, status=503
        )


@router.post(
    "/carriers/{account_id}/callback",
    auth=None,
    response={200: CallbackOut},
    include_in_schema=True,
)
def callback(request: HttpRequest, account_id: int) -> HttpResponse:
    """Inbound callback from the carrier (signed; see docs/messaging.md). A failed signature
    is 401 and nothing is stored; a replay is accepted and handled once. Carriers that expect
    a particular answer get it (WeCom: ``success``)."""
    answered = _answer(request, account_id)
    if isinstance(answered, HttpResponse):
        return answered
    accepted, reply = answered
    if reply != CallbackReplyDefault:
        return HttpResponse(reply, content_type="text/plain; charset=utf-8")
    return JsonResponse({"accepted": accepted})


@router.get("/carriers/{account_id}/callback", auth=None, include_in_schema=True)
def verify_callback_url(request: HttpRequest, account_id: int) -> HttpResponse:
    """WeCom checks a callback URL when it is saved: a signed GET with ``echostr``, answered
    with the decrypted echo as plain text. Other carriers answer 401."""
    answered = _answer(request, account_id)
    if isinstance(answered, HttpResponse):
        return answered
    _, reply = answered
    if reply == CallbackReplyDefault:
        return JsonResponse(
            {"code": "callback_rejected", "message": "no URL check for this carrier"}, status=401
        )
    return HttpResponse(reply, content_type="text/plain; charset=utf-8")


# --- Handover, moments, tag sync (WeCom) ---------------------------------------------------


@router.post("/carriers/handovers", response=HandoverOut)
def start_handover(request: HttpRequest, payload: HandoverIn) -> object:
    """Hand a WeCom member's customers (all, or `customer_ids`) to another member: 在职继承
    (`in_service`) or 离职继承 (`resigned`). The worker calls WeCom 100 customers at a time;
    each customer's item ends taken over, refused, skipped (2 transfers per 90 days) or
    failed."""
    found = handover.start_handover(actor=actor(request), **payload.model_dump())
    return handover.handover_summary(found)


@router.get("/carriers/handovers", response=list[HandoverOut])
def list_handovers(request: HttpRequest) -> object:
    return [handover.handover_summary(h) for h in handover.list_handovers(actor=actor(request))]


@router.get("/carriers/handovers/{handover_id}", response=HandoverOut)
def get_handover(request: HttpRequest, handover_id: int) -> object:
    found = handover.get_handover(actor=actor(request), handover_id=handover_id)
    return handover.handover_summary(found)


@router.post("/carriers/moments", response=MomentOut)
def create_moment(request: HttpRequest, payload: MomentIn) -> object:
    """A moments post (客户朋友圈) for WeCom members to publish; each member's status follows."""
    post = moments.create_moment(actor=actor(request), **payload.model_dump())
    return moments.moment_summary(moments.get_moment(actor=actor(request), moment_id=post.pk))


@router.get("/carriers/moments/{moment_id}", response=MomentOut)
def get_moment(request: HttpRequest, moment_id: int) -> object:
    return moments.moment_summary(moments.get_moment(actor=actor(request), moment_id=moment_id))


@router.post("/carriers/wecom/tags/{tag_id}/link", response=CorpTagOut)
def link_tag(request: HttpRequest, tag_id: int) -> object:
    """Sync a Yutang tag with a WeCom corp tag of the same group and name (added on WeCom
    when missing): customers who have it get it on their WeCom contacts, and back."""
    staff = actor(request)
    link = tagsync.link_tag(actor=staff, brand=staff.brand, tag_id=tag_id)
    return {"tag_id": link.tag_id, "corp_tag_id": link.corp_tag_id,
            "group_name": link.group_name, "name": link.name}  # fmt: skip


@router.post("/carriers/wecom/tags/pull", response=PulledOut)
def pull_tags(request: HttpRequest) -> object:
    """Read the corp's tag library now and link every corp tag to a Yutang tag."""
    from yutang.core.permissions import Action, require

    staff = actor(request)
    require(staff, Action.CUSTOMER_MANAGE)
    return {"changed": tagsync.pull_corp_tags(brand_id=staff.brand_id)}
