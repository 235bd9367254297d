"""URLs of the REST API: Ninja's operations, then a catch-all, so that everything under
/api/v1/ answers in the API's JSON error shape — an unknown path is a JSON 404 and a wrong
method a JSON 405, never Django's HTML pages. Included by yutang/urls.py."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path
from django.views.decorators.csrf import csrf_exempt

from yutang.api.api import api, method_not_allowed, not_found

View = Callable[..., HttpResponseBase]


def _json_errors(view: View) -> View:
    """Ninja answers a wrong method with a plain-text 405 and its root path with an HTML
    404; turn both into the API's error shape."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return not_found(request)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = sorted(m.strip() for m in response["Allow"].split(",") if m.strip())
            return method_not_allowed(request, allowed)
        return response

    wrapped.csrf_exempt = getattr(view, "csrf_exempt", False)  # type: ignore[attr-defined]
    return wrapped


def _wrap(entry: URLPattern | URLResolver) -> URLPattern | URLResolver:
    if isinstance(entry, URLPattern):
        return URLPattern(
            entry.pattern, _json_errors(entry.callback), entry.default_args, entry.name
        )
    return entry


@csrf_exempt
def _unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    return not_found(request)


_patterns, _app_name, _namespace = api.urls

#: For `path("api/v1/", urls)`: Ninja's URL names stay under the "api" namespace.
urls = (
    [*(_wrap(p) for p in _patterns), re_path(r"^(?P<rest>.*)$", _unknown_endpoint)],
    _app_name,
    _namespace,
)
