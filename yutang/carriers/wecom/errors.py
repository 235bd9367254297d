"""Typed errors of the WeCom API. Callers branch on the class, never on ``errmsg`` (WeCom says
errmsg may change). Every error carries the API path, ``errcode`` and ``errmsg``."""

from __future__ import annotations

from yutang.core.errors import YutangError


class WeComError(YutangError):
    """WeCom answered with a non-zero errcode (or could not be reached)."""

    status_code = 502
    code = "wecom_error"
    retryable = False

    def __init__(
        self, message: str, *, errcode: int | None = None, errmsg: str = "", api: str = ""
    ):
        super().__init__(message)
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api

    def __str__(self) -> str:
        return f"{self.message} (api={self.api}, errcode={self.errcode})"


class WeComUnavailable(WeComError):
    """Network failure or a non-JSON / non-200 answer. Whether the call took effect is unknown,
    so the client does not retry it; an outbox retries with its idempotency key."""

    code = "wecom_unavailable"
    retryable = True


class WeComTokenInvalid(WeComError):
    """40014 / 42001 / 40001 on an API call: the access token is invalid or expired. The client
    refreshes and retries once before raising this."""

    code = "wecom_token_invalid"


class WeComCredentialsRejected(WeComError):
    """gettoken refused the corp id or secret (40001, 40013, 40091...). Fix the configuration."""

    status_code = 400
    code = "wecom_credentials_rejected"


class WeComRateLimited(WeComError):
    """45009 (frequency limit) or 45033 (concurrency limit), after the client's backoff."""

    code = "wecom_rate_limited"
    retryable = True


class WeComRetryable(WeComError):
    """-1 (system busy), 6000 (data version conflict), 41096 (welcome message being
    distributed by another app): WeCom says the call may be retried."""

    code = "wecom_retryable"
    retryable = True


class WelcomeMessageAlreadySent(WeComError):
    """41051: the welcome message was already delivered (or the chat has started). Final."""

    status_code = 409
    code = "wecom_welcome_already_sent"


class WeComInvalidParameter(WeComError):
    """40058 / 40035 and friends: the request is wrong; retrying will not help."""

    status_code = 422
    code = "wecom_invalid_parameter"


class ExternalUserInvalid(WeComError):
    """40096: not a valid external_userid for this corp."""

    status_code = 404
    code = "wecom_external_user_invalid"


class NoContactRelation(WeComError):
    """84061: the staff member and the customer are not (or no longer) connected."""

    status_code = 409
    code = "wecom_no_contact_relation"


class TransferTooFrequent(WeComError):
    """40128: the customer was transferred too often (2 in-service transfers per 90 days)."""

    status_code = 409
    code = "wecom_transfer_too_frequent"


class TransferInProgress(WeComError):
    """40129: the customer already has a transfer waiting for takeover."""

    status_code = 409
    code = "wecom_transfer_in_progress"


class WeComForbidden(WeComError):
    """48002 (API forbidden), 60020 (IP not in the trusted list), 48001 (unauthorized):
    the app lacks the permission or the server's IP is not trusted."""

    status_code = 403
    code = "wecom_forbidden"


class ClientRateLimited(WeComError):
    """Our own limiter refused the call: waiting for the next window would take longer than
    the client is allowed to wait. Nothing was sent to WeCom."""

    code = "wecom_client_rate_limited"
    retryable = True


TOKEN_ERRCODES = frozenset({40014, 42001, 40001})
RATE_LIMIT_ERRCODES = frozenset({45009, 45033})
RETRYABLE_ERRCODES = frozenset({-1, 6000, 41096})

_BY_CODE: dict[int, type[WeComError]] = {
    40014: WeComTokenInvalid,
    42001: WeComTokenInvalid,
    40001: WeComTokenInvalid,
    45009: WeComRateLimited,
    45033: WeComRateLimited,
    -1: WeComRetryable,
    6000: WeComRetryable,
    41096: WeComRetryable,
    41051: WelcomeMessageAlreadySent,
    40058: WeComInvalidParameter,
    40035: WeComInvalidParameter,
    40003: WeComInvalidParameter,
    40031: WeComInvalidParameter,
    40096: ExternalUserInvalid,
    84061: NoContactRelation,
    40128: TransferTooFrequent,
    40129: TransferInProgress,
    48001: WeComForbidden,
    48002: WeComForbidden,
    60020: WeComForbidden,
}

_GETTOKEN_BY_CODE: dict[int, type[WeComError]] = {
    40001: WeComCredentialsRejected,
    40013: WeComCredentialsRejected,
    40091: WeComCredentialsRejected,
    41002: WeComCredentialsRejected,
    41004: WeComCredentialsRejected,
}


def error_for(*, errcode: int, errmsg: str, api: str) -> WeComError:
    """The typed error for one WeCom answer."""
    table = _GETTOKEN_BY_CODE if api == "gettoken" else {}
    cls = table.get(errcode) or _BY_CODE.get(errcode, WeComError)
    return cls(
        f"WeCom {api} failed with errcode {errcode}", errcode=errcode, errmsg=errmsg, api=api
    )
