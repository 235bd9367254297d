"""Sets ``request.staff``: the logged-in user's role in the brand chosen in the session, and
activates that brand's display time zone."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers

from yutang.core.services import current_staff_role

SESSION_BRAND_KEY = "yutang_brand_id"


class CurrentStaffMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.staff = None  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            staff = current_staff_role(user=user, brand_id=request.session.get(SESSION_BRAND_KEY))
            if staff is not None:
                request.staff = staff  # type: ignore[attr-defined]
                timezone.activate(staff.brand.tz)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class ConsoleLanguageMiddleware:
    """zh-hans unless the person chose another language with the switcher (language cookie).

    Unlike Django's LocaleMiddleware this ignores the browser's Accept-Language, so the
    console is Chinese by default on any machine, as a Chinese operations team expects."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        supported = {code for code, _ in settings.LANGUAGES}
        language = chosen if chosen in supported else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        response.headers.setdefault("Content-Language", language)
        patch_vary_headers(response, ("Cookie",))
        translation.deactivate()
        return response
