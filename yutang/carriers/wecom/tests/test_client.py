"""Client plumbing against the local server over real HTTP: the shared token cache, refresh on
40014/42001/40001, backoff on 45009/45033 and retryable codes, the client-side rate limiter,
and error typing. Waits go through the injected sleep, which moves the frozen clock."""

from __future__ import annotations

import datetime as dt
import logging
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.test.utils import override_settings

from yutang.carriers.wecom.client import RateLimits, RetryPolicy, WeComClient
from yutang.carriers.wecom.errors import (
    ClientRateLimited,
    ExternalUserInvalid,
    NoContactRelation,
    TransferInProgress,
    TransferTooFrequent,
    WeComCredentialsRejected,
    WeComError,
    WeComForbidden,
    WeComInvalidParameter,
    WeComRateLimited,
    WeComRetryable,
    WeComTokenInvalid,
    WeComUnavailable,
    WelcomeMessageAlreadySent,
    error_for,
)
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock

from .conftest import Sleeps, make_client

LIST = "externalcontact/get_corp_tag_list"


def test_token_is_fetched_once_and_shared_across_client_instances(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    first = make_client(server, clock, sleeps)
    second = make_client(server, clock, sleeps)
    first.get_corp_tag_list()
    second.get_corp_tag_list()
    first.get_corp_tag_list()
    assert [r.api for r in server.calls()] == ["gettoken", LIST, LIST, LIST]
    assert len(server.tokens) == 1


def test_token_cache_is_per_corp_and_secret(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    make_client(server, clock, sleeps).get_corp_tag_list()
    with pytest.raises(WeComCredentialsRejected) as caught:
        make_client(server, clock, sleeps, secret="another-secret").get_corp_tag_list()
    assert caught.value.errcode == 40001
    assert caught.value.api == "gettoken"
    assert [r.api for r in server.calls()] == ["gettoken", LIST, "gettoken"]


def test_unknown_corp_is_rejected(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    with pytest.raises(WeComCredentialsRejected) as caught:
        make_client(server, clock, sleeps, corp_id="ww-nobody").get_corp_tag_list()
    assert caught.value.errcode == 40013


def test_secret_never_appears_in_repr_or_request_log(
    server: WeComTestServer, client: WeComClient
) -> None:
    client.get_corp_tag_list()
    assert server.secret not in repr(client)
    assert all(server.secret not in str(r.params) for r in server.calls())


def test_expired_token_42001_is_refreshed_and_the_call_retried_once(
    server: WeComTestServer, client: WeComClient, clock: FrozenClock
) -> None:
    client.get_corp_tag_list()
    clock.advance(dt.timedelta(hours=2, seconds=1))  # the server's token has expired
    client.get_corp_tag_list()
    calls = server.calls()
    assert [r.api for r in calls] == ["gettoken", LIST, LIST, "gettoken", LIST]
    assert [r.errcode for r in calls] == [0, 0, 42001, 0, 0]


def test_invalid_token_40014_is_refreshed(server: WeComTestServer, client: WeComClient) -> None:
    client.get_corp_tag_list()
    server.revoke_tokens()
    client.get_corp_tag_list()
    assert [(r.api, r.errcode) for r in server.calls()][-3:] == [
        (LIST, 40014),
        ("gettoken", 0),
        (LIST, 0),
    ]


@pytest.mark.parametrize("errcode", [40014, 42001, 40001])
def test_token_errors_refresh_only_once(
    server: WeComTestServer, client: WeComClient, errcode: int
) -> None:
    server.fail_next(LIST, errcode, times=2)
    with pytest.raises(WeComTokenInvalid) as caught:
        client.get_corp_tag_list()
    assert caught.value.errcode == errcode
    assert [r.api for r in server.calls()] == ["gettoken", LIST, "gettoken", LIST]
    # the bad token is not kept: the next call starts with a fresh one
    client.get_corp_tag_list()
    assert [r.api for r in server.calls()][-2:] == ["gettoken", LIST]


@pytest.mark.parametrize("errcode", [45009, 45033])
def test_rate_limit_errors_back_off_exponentially_with_jitter(
    server: WeComTestServer, client: WeComClient, sleeps: Sleeps, errcode: int
) -> None:
    server.fail_next(LIST, errcode, times=2)
    assert client.get_corp_tag_list() == []
    assert [r.errcode for r in server.calls(LIST)] == [errcode, errcode, 0]
    assert len(sleeps.waits) == 2
    assert 0.25 <= sleeps.waits[0] <= 0.5
    assert 0.5 <= sleeps.waits[1] <= 1.0


@pytest.mark.parametrize("errcode", [45009, 45033])
def test_rate_limit_backoff_is_bounded(
    server: WeComTestServer, client: WeComClient, sleeps: Sleeps, errcode: int
) -> None:
    server.fail_next(LIST, errcode, times=10)
    with pytest.raises(WeComRateLimited) as caught:
        client.get_corp_tag_list()
    assert caught.value.retryable is True
    assert len(server.calls(LIST)) == 4  # the first try and three retries
    assert len(sleeps.waits) == 3
    assert sleeps.waits[2] <= client.retry.cap_seconds


def test_backoff_ceiling_is_capped() -> None:
    policy = RetryPolicy(retries=10, base_seconds=1, cap_seconds=5)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(10)]
    assert all(d <= 5 for d in delays)
    assert all(d >= 2.5 for d in delays[3:])


@pytest.mark.parametrize("errcode", [-1, 6000, 41096])
def test_retryable_codes_are_retried(
    server: WeComTestServer, client: WeComClient, errcode: int
) -> None:
    server.fail_next(LIST, errcode)
    client.get_corp_tag_list()
    assert [r.errcode for r in server.calls(LIST)] == [errcode, 0]


def test_retryable_code_that_persists_raises_typed(
    server: WeComTestServer, client: WeComClient
) -> None:
    server.fail_next(LIST, -1, times=5)
    with pytest.raises(WeComRetryable):
        client.get_corp_tag_list()


def test_permanent_errors_are_not_retried(
    server: WeComTestServer, client: WeComClient, sleeps: Sleeps
) -> None:
    server.fail_next(LIST, 48002)
    with pytest.raises(WeComForbidden) as caught:
        client.get_corp_tag_list()
    assert (caught.value.errcode, caught.value.api) == (48002, LIST)
    assert len(server.calls(LIST)) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("errcode", "cls"),
    [
        (41051, WelcomeMessageAlreadySent), (41096, WeComRetryable), (45009, WeComRateLimited),
        (45033, WeComRateLimited), (40014, WeComTokenInvalid), (42001, WeComTokenInvalid),
        (40096, ExternalUserInvalid), (84061, NoContactRelation), (40128, TransferTooFrequent),
        (40129, TransferInProgress), (40058, WeComInvalidParameter), (60020, WeComForbidden),
        (99999, WeComError),
    ],
)  # fmt: skip
def test_error_typing(errcode: int, cls: type[WeComError]) -> None:
    error = error_for(errcode=errcode, errmsg="m", api="externalcontact/x")
    assert type(error) is cls
    assert (error.errcode, error.errmsg, error.api) == (errcode, "m", "externalcontact/x")
    assert error.code.startswith("wecom_")
    assert error.as_dict()["code"] == error.code


def test_unreachable_server_is_unavailable(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    base_url = server.base_url
    server.stop()
    client = WeComClient(
        corp_id=server.corp_id, secret=server.secret, base_url=base_url, clock=clock, sleep=sleeps
    )
    with pytest.raises(WeComUnavailable) as caught:
        client.get_corp_tag_list()
    assert caught.value.retryable is True


def test_non_json_answer_is_unavailable(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    client = make_client(
        server, clock, sleeps, base_url=server.base_url.replace("/cgi-bin/", "/elsewhere/")
    )
    with pytest.raises(WeComUnavailable) as caught:
        client.get_corp_tag_list()
    assert "HTTP 404" in caught.value.message


def test_injected_http_client_is_used(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda request: seen.append(request.url.path)]})
    with http:
        make_client(server, clock, sleeps, http=http).get_corp_tag_list()
    assert seen == ["/cgi-bin/gettoken", "/cgi-bin/" + LIST]


def test_client_side_limit_waits_for_the_next_window(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    client = make_client(server, clock, sleeps, limits=RateLimits(per_api_per_minute=3))
    for _ in range(4):
        client.get_corp_tag_list()
    # 09:00:30 start: three calls fit in the minute, the fourth waits 30 s for 09:01:00
    assert sleeps.waits == [30.0]
    assert [r.at.second for r in server.calls(LIST)] == [30, 30, 30, 0]


def test_client_side_limit_is_shared_across_instances(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps
) -> None:
    limits = RateLimits(per_api_per_minute=2, max_wait_seconds=5)
    make_client(server, clock, sleeps, limits=limits).get_corp_tag_list()
    make_client(server, clock, sleeps, limits=limits).get_corp_tag_list()
    with pytest.raises(ClientRateLimited):
        make_client(server, clock, sleeps, limits=limits).get_corp_tag_list()
    assert len(server.calls(LIST)) == 2  # the refused call never reached WeCom
    # other APIs have their own window
    make_client(server, clock, sleeps, limits=limits).list_group_chats()


def test_hourly_limit_applies(server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps) -> None:
    client = make_client(
        server, clock, sleeps, limits=RateLimits(per_api_per_hour=2, max_wait_seconds=60)
    )
    client.get_corp_tag_list()
    client.get_corp_tag_list()
    with pytest.raises(ClientRateLimited):
        client.get_corp_tag_list()
    assert sleeps.waits == []  # 59.5 minutes to wait is over the bound, so no wait at all


def test_app_messages_are_limited_per_member(
    server: WeComTestServer, client: WeComClient, sleeps: Sleeps
) -> None:
    for n in range(30):
        client.send_app_message(touser=["zhangsan"], text=f"请确认群发 {n}")
    client.send_app_message(touser=["lisi"], text="请确认群发")
    assert sleeps.waits == []
    client.send_app_message(touser=["zhangsan", "lisi"], text="第 31 条")
    assert sleeps.waits == [30.0]  # zhangsan's minute was full
    assert len([m for m in server.app_messages if m["touser"] == "zhangsan"]) == 31


def test_tokens_and_secrets_never_reach_the_logs(
    server: WeComTestServer, client: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.get_corp_tag_list()
    token = next(iter(server.tokens))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "gettoken" in text  # httpx did log the requests...
    assert token not in text and server.secret not in text  # ...without the credentials
    assert "access_token=***" in text


def test_token_is_shared_with_another_process_through_the_cache(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps, tmp_path: Path
) -> None:
    # A file cache stands in for Redis: any cache every process can reach.
    shared = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        }
    }
    script = f"""
import django, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yutang.settings")
django.setup()
from django.test.utils import override_settings
from yutang.carriers.wecom.client import WeComClient
with override_settings(CACHES={shared!r}):
    client = WeComClient(corp_id={server.corp_id!r}, secret={server.secret!r}, base_url={server.base_url!r})
    client.get_corp_tag_list()
    sys.stdout.write(client.access_token())
"""
    with override_settings(CACHES=shared):
        token = make_client(server, clock, sleeps).access_token()
        other = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
    assert other.stdout == token
    assert [r.api for r in server.calls()] == ["gettoken", LIST]  # the other process fetched none


def test_gettoken_backs_off_on_rate_limits_too(
    server: WeComTestServer, client: WeComClient, sleeps: Sleeps
) -> None:
    server.fail_next("gettoken", 45009)
    client.get_corp_tag_list()
    assert [(r.api, r.errcode) for r in server.calls()] == [
        ("gettoken", 45009),
        ("gettoken", 0),
        (LIST, 0),
    ]
    assert len(sleeps.waits) == 1
