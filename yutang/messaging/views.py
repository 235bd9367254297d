"""The public one-click unsubscribe page (no login): GET shows what the link does and a
button; POST with ``List-Unsubscribe=One-Click`` (what mail clients send, RFC 8058, and what
the button sends) unsubscribes. zh-hans by default, English with ``?lang=en``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from yutang.core.errors import NotFound
from yutang.messaging import unsubscribe as service


@csrf_exempt  # RFC 8058: mail clients POST without cookies or a CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    language = "en" if request.GET.get("lang") == "en" else "zh-hans"
    with translation.override(language):
        context: dict[str, object] = {"language": language, "path": request.path}
        try:
            found = service.subscription(token)
        except NotFound:
            return render(
                request, "messaging/unsubscribe.html", {**context, "invalid": True}, status=404
            )
        context.update(brand=found.account.brand.name, done=found.withdrawn)
        if request.method == "POST":
            if request.POST.get("List-Unsubscribe") != "One-Click":
                context["bad_request"] = True
                return render(request, "messaging/unsubscribe.html", context, status=400)
            service.unsubscribe(token)
            context["done"] = True
        response = render(request, "messaging/unsubscribe.html", context)
        response.headers["Content-Language"] = language
        response.headers["Cache-Control"] = "no-store"
        return response
