"""API authentication: per-staff bearer tokens, or the console session (with CSRF)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from yutang.core.models import Staff
from yutang.core.services import authenticate_token


class StaffTokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Staff | None:
        staff = authenticate_token(token)
        if staff is not None:
            request.staff = staff  # type: ignore[attr-defined]
        return staff


class StaffSessionAuth(SessionAuth):
    """The console's session; the current brand's staff row is set by the console middleware."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        staff = getattr(request, "staff", None)
        return staff if isinstance(staff, Staff) else None


def actor(request: HttpRequest) -> Staff:
    staff: Staff = request.auth  # type: ignore[attr-defined]
    return staff
