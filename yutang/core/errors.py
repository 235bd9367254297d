"""Typed business errors. Services raise them; the API maps them to status codes and the
console to messages. Each carries a stable `code`, a human message and, where one input is
at fault, the `field` that names it."""

from __future__ import annotations


class YutangError(Exception):
    status_code = 400
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class ValidationFailed(YutangError):
    status_code = 422
    code = "invalid"


class NotFound(YutangError):
    """Also raised when a row exists but is outside the caller's scope, so that a response
    never reveals that a row the caller may not see exists."""

    status_code = 404
    code = "not_found"


class PermissionDenied(YutangError):
    status_code = 403
    code = "forbidden"


class Conflict(YutangError):
    status_code = 409
    code = "conflict"


class PolicyBlocked(YutangError):
    status_code = 409
    code = "policy_blocked"
