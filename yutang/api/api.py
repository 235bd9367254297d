"""The REST API: one NinjaAPI under /api/v1/, routers per domain, one error shape.

Every error is JSON ``{"code", "message", "field"}`` with the right status code."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from yutang import __version__
from yutang.acquisition.api import router as acquisition_router
from yutang.analytics.api import router as analytics_router
from yutang.carriers.api import router as carriers_router
from yutang.commerce.api import router as commerce_router
from yutang.core.api import router as core_router
from yutang.core.apiauth import StaffSessionAuth, StaffTokenAuth
from yutang.core.errors import YutangError
from yutang.customers.api import router as customers_router
from yutang.events.api import router as events_router
from yutang.journeys.api import router as journeys_router
from yutang.messaging.api import router as messaging_router
from yutang.segments.api import router as segments_router
from yutang.simulator.api import router as simulator_router

api = NinjaAPI(
    title="Yutang API",
    version=__version__,
    description=(
        "Yutang's REST API. Authenticate with `Authorization: Bearer <token>` "
        "(create a token in the console or with `yutang createtoken`), or with the console "
        "session. Errors are `{code, message, field}`."
    ),
    auth=[StaffTokenAuth(), StaffSessionAuth()],
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)

api.add_router("", core_router)
api.add_router("", customers_router)
api.add_router("", events_router)
api.add_router("", commerce_router)
api.add_router("", segments_router)
api.add_router("", carriers_router)
api.add_router("", messaging_router)
api.add_router("", simulator_router)
api.add_router("", acquisition_router)
api.add_router("", analytics_router)
api.add_router("", journeys_router)


def _error(
    request: HttpRequest, status: int, code: str, message: str, field: str | None
) -> HttpResponse:
    return api.create_response(
        request, {"code": code, "message": message, "field": field}, status=status
    )


_PARAM_SOURCES = {"body", "query", "path", "header", "cookie", "form", "file"}


def _field_of(loc: list[Any] | tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _PARAM_SOURCES:
        parts = parts[1:]
        # Body payloads are nested under the handler's parameter name ("payload").
        if len(parts) > 1 and parts[0] == "payload":
            parts = parts[1:]
    return ".".join(parts)


@api.exception_handler(NinjaValidationError)
def on_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    field = _field_of(first.get("loc", ()))
    kind = first.get("type", "")
    loc = first.get("loc", ())
    if kind == "extra_forbidden" and loc and loc[0] == "query":
        message = f"Unknown query parameter {field!r}."
    elif kind == "extra_forbidden":
        message = f"Unknown field {field!r}."
    else:
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else "Invalid request."
    return _error(request, 422, "invalid", message, field or None)


@api.exception_handler(YutangError)
def on_yutang_error(request: HttpRequest, exc: YutangError) -> HttpResponse:
    return _error(request, exc.status_code, exc.code, exc.message, exc.field)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(
        request, 401, "unauthenticated", "A valid API token or session is required.", None
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, ValueError):
        # Ninja wraps a body it cannot parse; say what is wrong with it.
        detail = (
            f"{cause.msg} at line {cause.lineno}, column {cause.colno}"
            if isinstance(cause, json.JSONDecodeError)
            else "it is not UTF-8 text"
        )
        message = f"The request body is not valid JSON: {detail}."
        return _error(request, 400, "invalid_json", message, "body")
    return _error(request, exc.status_code, "error", str(exc), None)


# --- Errors outside any operation (see yutang/api/urls.py) --------------------------------


def not_found(request: HttpRequest) -> HttpResponse:
    return _error(request, 404, "not_found", f"No API endpoint at {request.path}.", None)


def method_not_allowed(request: HttpRequest, allowed: list[str]) -> HttpResponse:
    message = f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed)}."
    response = _error(request, 405, "method_not_allowed", message, None)
    response["Allow"] = ", ".join(allowed)
    return response


# --- Broadcasts to a segment (resolved on this floor; see yutang/api/segment_broadcasts.py) ---

from yutang.api.segment_broadcasts import router as segment_broadcasts_router  # noqa: E402

api.add_router("", segment_broadcasts_router)
