"""REST handlers for carriers: status, connect, test, and the inbound callback endpoint."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Router

from yutang.carriers import services
from yutang.carriers.base import CallbackRejected, CallbackRequest, ParsedCallback
from yutang.carriers.schemas import CallbackOut, CarrierStatusOut, ConnectIn
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
