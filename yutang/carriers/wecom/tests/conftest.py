"""Fixtures: a frozen clock, the local WeCom server on loopback, and a client pointed at it.
Sleeping goes through `sleeps`, which records each wait and moves the frozen clock instead."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from yutang.carriers.wecom.client import WeComClient
from yutang.carriers.wecom.testserver import WeComTestServer
from yutang.core.clock import FrozenClock

START = dt.datetime(2026, 3, 2, 9, 0, 30, tzinfo=dt.UTC)


class Sleeps:
    def __init__(self, clock: FrozenClock):
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(dt.timedelta(seconds=seconds))


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def server(clock: FrozenClock) -> Iterator[WeComTestServer]:
    with WeComTestServer(clock=clock) as running:
        running.add_staff("zhangsan", "lisi", "wangwu")
        yield running


@pytest.fixture
def sleeps(clock: FrozenClock) -> Sleeps:
    return Sleeps(clock)


def make_client(
    server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps, **kwargs: object
) -> WeComClient:
    options: dict[str, object] = {
        "corp_id": server.corp_id, "secret": server.secret, "base_url": server.base_url,
        "agent_id": server.agent_id, "clock": clock, "sleep": sleeps, "rng": random.Random(7),
    }  # fmt: skip
    options.update(kwargs)
    return WeComClient(**options)  # type: ignore[arg-type]


@pytest.fixture
def client(server: WeComTestServer, clock: FrozenClock, sleeps: Sleeps) -> Iterator[WeComClient]:
    with make_client(server, clock, sleeps) as c:
        yield c
