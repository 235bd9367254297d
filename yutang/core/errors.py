"""Typed business errors. Services raise them; the API maps them to status codes and the
console to messages. Each carries a stable `code`, a human message and, where one input is
at fault, the `field` that names it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext
from django.utils.translation import gettext_noop as N_

__all__ = [
    "N_",
    "Conflict",
    "NotFound",
    "PermissionDenied",
    "PolicyBlocked",
    "ValidationFailed",
    "YutangError",
]


class YutangError(Exception):
    """`message` is English (logs, the REST API, tests); `localized()` is the same message in
    the active language (the console). A message with variable parts is raised as an English
    template marked for translation with `N_` plus `params`, so the template, not the filled
    text, is what translators see:

        raise Conflict(N_("A store with code {code!r} exists."), params={"code": code},
                       field="code")

    The template uses str.format placeholders; a template without params is used as is."""

    status_code = 400
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        params: Mapping[str, Any] | None = None,
    ):
        self.template = str(message)
        self.params = dict(params) if params else {}
        self.message = self.template.format(**self.params) if self.params else self.template
        super().__init__(self.message)
        self.field = field
        if code is not None:
            self.code = code

    def localized(self) -> str:
        """The message in the active language: the template's translation, then the params.
        A translation that does not fit the params falls back to English, never to an error."""
        translated = gettext(self.template)
        if not self.params:
            return translated
        try:
            return translated.format(**self.params)
        except (KeyError, IndexError, ValueError):
            return self.message

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
