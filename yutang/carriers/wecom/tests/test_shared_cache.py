"""YUTANG_CACHE_URL: the WeCom access token and rate-limit windows shared by two processes
through the real Redis on loopback (skipped with the reason when Redis is unreachable, unless
YUTANG_REQUIRE_REDIS=1), and the settings that parse the URL."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings

from yutang.carriers.wecom.client import RateLimits, WeComClient
from yutang.carriers.wecom.errors import ClientRateLimited
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock
from yutang.settings import _cache_from_url

from .conftest import START

REDIS_URL = os.environ.get("YUTANG_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LIST = "externalcontact/get_corp_tag_list"


def _redis_problem() -> str | None:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - redis is a dependency
        return f"redis-py is not installed ({exc})"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis unreachable at {REDIS_URL} ({type(exc).__name__}: {str(exc)[:120]})"
    return None


@pytest.fixture
def redis_cache() -> Iterator[dict[str, dict[str, str]]]:
    problem = _redis_problem()
    if problem:
        if os.environ.get("YUTANG_REQUIRE_REDIS", "") == "1":
            pytest.fail(f"YUTANG_REQUIRE_REDIS=1 but {problem}")
        pytest.skip(problem)
    # A prefix of its own: the test never touches other keys of that Redis database.
    config = {**_cache_from_url(REDIS_URL), "KEY_PREFIX": f"yutang-test-{secrets.token_hex(6)}"}
    yield {"default": config}
    with override_settings(CACHES={"default": config}):
        import redis

        prefix = config["KEY_PREFIX"]
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        caches["default"].close()


OTHER_PROCESS = """
import datetime as dt, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yutang.settings")
import django
django.setup()
from django.test.utils import override_settings
from yutang.carriers.wecom.client import RateLimits, WeComClient
from yutang.carriers.wecom.errors import ClientRateLimited
from yutang.core.clock import FrozenClock
args = json.loads(sys.argv[1])
with override_settings(CACHES=args["caches"]):
    client = WeComClient(
        corp_id=args["corp_id"], secret=args["secret"], base_url=args["base_url"],
        clock=FrozenClock(dt.datetime.fromisoformat(args["now"])),
        limits=RateLimits(per_api_per_minute=3, max_wait_seconds=0),
    )
    out = {"token": client.access_token(), "calls": 0, "limited": False}
    try:
        for _ in range(2):
            client.get_corp_tag_list()
            out["calls"] += 1
    except ClientRateLimited:
        out["limited"] = True
    sys.stdout.write(json.dumps(out))
"""


def test_two_processes_share_one_token_and_one_rate_window_through_redis(redis_cache):
    clock = FrozenClock(START)
    with WeComTestServer(clock=clock) as server, override_settings(CACHES=redis_cache):
        limits = RateLimits(per_api_per_minute=3, max_wait_seconds=0)
        here = WeComClient(
            corp_id=server.corp_id,
            secret=server.secret,
            base_url=server.base_url,
            clock=clock,
            limits=limits,
        )
        token = here.access_token()
        here.get_corp_tag_list()
        here.get_corp_tag_list()  # two of the three calls this minute allows

        args = {
            "caches": redis_cache,
            "corp_id": server.corp_id,
            "secret": server.secret,
            "base_url": server.base_url,
            "now": clock.now().isoformat(),
        }
        other = subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        seen = json.loads(other.stdout)
        # The other process used our token (WeCom saw one gettoken) and our window: it had
        # one call left, and its second was refused without reaching WeCom.
        assert seen == {"token": token, "calls": 1, "limited": True}
        assert [c.api for c in server.calls()] == ["gettoken", LIST, LIST, LIST]
        with pytest.raises(ClientRateLimited):
            here.get_corp_tag_list()  # and this process sees the other's call too
        here.close()


def test_the_cache_url_picks_the_backend():
    assert _cache_from_url("")["BACKEND"].endswith("LocMemCache")
    assert _cache_from_url("locmem://")["BACKEND"].endswith("LocMemCache")
    redis_config = _cache_from_url("redis://10.0.0.5:6379/2")
    assert redis_config["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert urlsplit(redis_config["LOCATION"]).netloc == "10.0.0.5:6379"
    with pytest.raises(ImproperlyConfigured, match="YUTANG_CACHE_URL"):
        _cache_from_url("memcached://127.0.0.1:11211")
