"""orjson reads request bodies and writes ingestion's JSON columns for speed; the outcome must
be exactly the standard `json` module's: the same values (an integer stays an integer, every
digit kept), the same refusals, the same stored jsonb."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Api, make_brand, make_staff
from yutang.api.api import FastParser
from yutang.core.bulk import json_dumps
from yutang.core.permissions import Role
from yutang.events.models import Event


def _typed(value: Any) -> Any:
    """A value with the type of every number spelled out (1 == 1.0 == True in Python), and
    NaN comparable."""
    if isinstance(value, dict):
        return {"dict": [(k, _typed(v)) for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [_typed(v) for v in value]}
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def _outcome(read: Any, body: bytes) -> Any:
    try:
        return _typed(read(body))
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        return ("refused", type(exc).__name__)


def _parse(body: bytes) -> Any:
    request = RequestFactory().post("/api/v1/events", body, content_type="application/json")
    return FastParser().parse_body(request)


BODIES = [
    b'{"events": [{"type": "custom.x", "properties": {"n": 1, "f": 1.5, "s": "\\u9c7c"}}]}',
    b'{"a": 123456789012345678901234567890}',  # orjson would read a float
    b'{"a": -9223372036854775809, "b": 18446744073709551616}',
    b'{"a": 9223372036854775807, "b": -0, "c": -0.0, "d": 1e-7, "e": 0.1000000000000000055}',
    b'{"a": NaN, "b": Infinity}',
    b'{"a": 1e400}',
    b'{"a": "\\ud800"}',  # a lone surrogate
    b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark
    '{"a": "鱼塘"}'.encode("utf-16"),
    b'{"a": 1, "a": 2}',
    b'{"a": [1, 2,]}',
    b'{"a": "\xe9"}',  # not UTF-8
    b"",
    b'"just text"',
    '{"a": "退订\\t\\\\ \\"q\\"\\n"}'.encode(),
]


@pytest.mark.parametrize("body", BODIES)
def test_bodies_read_as_json_loads_reads_them(body):
    assert _outcome(_parse, body) == _outcome(json.loads, body)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_document_reads_as_json_loads_reads_it(value):
    body = json.dumps({"v": value}, ensure_ascii=False).encode()
    assert _outcome(_parse, body) == _outcome(json.loads, body)


@settings(max_examples=300, deadline=None)
@given(JSON | st.dictionaries(st.integers(), st.text(max_size=3)) | st.just(float("nan")))
def test_json_dumps_writes_the_value_json_dumps_writes(value):
    written = json_dumps(value)
    assert _typed(json.loads(written)) == _typed(json.loads(json.dumps(value)))


def test_json_dumps_refuses_what_json_dumps_refuses():
    for value in ({"at": object()}, {"s": {1, 2}}):
        with pytest.raises(TypeError):
            json_dumps(value)


@pytest.mark.django_db
def test_an_event_keeps_every_digit_of_a_long_integer():
    api = Api(make_staff(make_brand(), Role.BRAND_ADMIN))
    body = (
        '{"events": [{"type": "custom.big", "occurred_at": "2026-01-02T03:04:05+08:00", '
        '"idempotency_key": "k1", "identities": [{"kind": "external", "value": "e1"}], '
        '"properties": {"n": 123456789012345678901234567890, "f": 0.1, "t": "鱼\\u5858"}}]}'
    )
    response = api.post("/events", body)
    assert response.status_code == 200, response.content
    assert response.json()["stored"] == 1
    stored = Event.objects.get(idempotency_key="k1").properties
    assert stored == {"n": 123456789012345678901234567890, "f": 0.1, "t": "鱼塘"}
    assert type(stored["n"]) is int
