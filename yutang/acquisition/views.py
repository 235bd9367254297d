"""Public pages: the short-link redirect and a live code's landing page. No login; every
miss is the same plain 404 so that codes cannot be probed."""

from __future__ import annotations

from django.core.cache import cache
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotFound,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from yutang.acquisition import qr, services
from yutang.core import clock
from yutang.core.errors import NotFound

#: Clicks allowed per IP address per minute before the redirect answers 429.
CLICKS_PER_MINUTE = 60


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _rate_limited(ip: str) -> bool:
    minute = clock.now().strftime("%Y%m%d%H%M")
    key = f"acq-click:{services.ip_hash(ip)}:{minute}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    return count > CLICKS_PER_MINUTE


@never_cache
@require_GET
def short_link(request: HttpRequest, code: str) -> HttpResponse:
    ip = client_ip(request)
    if _rate_limited(ip):
        return HttpResponse("Too many requests.", status=429, content_type="text/plain")
    try:
        target = services.follow_short_link(
            code=code, user_agent=request.META.get("HTTP_USER_AGENT", "")[:500], ip=ip
        )
    except NotFound:
        # The same bytes for unknown, malformed and expired codes.
        return HttpResponseNotFound("Not found.", content_type="text/plain")
    if target.url:
        return HttpResponseRedirect(target.url)
    assert target.live_code is not None
    return HttpResponseRedirect(
        reverse("acquisition-landing", args=[target.live_code.public_token])
    )


def landing_url(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(reverse("acquisition-landing", args=[token]))


@require_GET
def landing(request: HttpRequest, token: str) -> HttpResponse:
    code = services.live_code_by_token(token=token)
    if code is None:
        raise Http404
    return render(
        request,
        "acquisition/landing.html",
        {"code": code, "channel": code.channel,
         "qr_src": reverse("acquisition-landing-qr", args=[token])},
    )  # fmt: skip


@require_GET
def landing_qr(request: HttpRequest, token: str) -> HttpResponse:
    code = services.live_code_by_token(token=token)
    if code is None:
        raise Http404
    url = code.carrier_qr_url or landing_url(request, token)
    return HttpResponse(qr.png(url, scale=8), content_type="image/png")
