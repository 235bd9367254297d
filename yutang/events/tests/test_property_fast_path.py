"""The fast path for canonical event properties gives exactly what pydantic gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yutang.core.errors import ValidationFailed
from yutang.events.types import _FAST, STANDARD_TYPES, validate_properties

FAST_TYPES = sorted(name for name, fast in _FAST.items() if fast is not None)
TEXTS = st.one_of(
    st.sampled_from(["", " ", "wecom", " wecom", "wecom ", "marketing", "service", "granted",
                     "withdrawn", "a" * 200, "a" * 201, "\u3000x", "x\u00a0", "订单"]),
    st.text(max_size=5),
)  # fmt: skip
VALUES: st.SearchStrategy[Any] = st.one_of(
    TEXTS,
    st.integers(min_value=-2, max_value=10**12 + 1),
    st.sampled_from([0, 1, 10**12, True, False, None, 1.0, 2.5, [], {"a": None}]),
)
KEYS = st.sampled_from(
    ["carrier", "account_id", "channel", "live_code", "group_id", "text", "message_id", "kind",
     "link", "order_id", "source", "amount_fen", "store_code", "refund_id", "coupon_code",
     "delta", "reason", "referrer_customer_id", "invite_code", "purpose", "status", "proof",
     "extra", "page"]
)  # fmt: skip


def pydantic_outcome(event_type: str, properties: dict[str, Any]) -> Any:
    try:
        model = STANDARD_TYPES[event_type].model_validate(properties)
    except Exception as exc:
        return ("refused", type(exc).__name__)
    return model.model_dump(exclude_none=True)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(FAST_TYPES), st.dictionaries(KEYS, VALUES, max_size=6))
def test_fast_path_returns_only_what_pydantic_returns(event_type, properties):
    fast = _FAST[event_type]
    assert fast is not None
    got = fast(dict(properties))
    if got is not None:
        expected = pydantic_outcome(event_type, properties)
        assert got == expected
        assert list(got) == list(expected)  # the same key order as well


def test_canonical_events_take_the_fast_path_and_keep_defaults_and_extras():
    fast = _FAST["message.received"]
    assert fast is not None
    props = {"carrier": "wecom", "message_id": "m1", "thread": "t9"}
    assert fast(props) == {"carrier": "wecom", "text": "", "message_id": "m1", "thread": "t9"}
    assert validate_properties("message.received", props) == fast(props)
    # Not canonical: pydantic strips and coerces; the fast path declines.
    assert fast({"carrier": " wecom "}) is None
    assert validate_properties("message.received", {"carrier": " wecom "})["carrier"] == "wecom"


def test_bad_properties_still_get_pydantics_error():
    with pytest.raises(ValidationFailed) as caught:
        validate_properties("order.paid", {"order_id": "O1", "source": "tmall", "amount_fen": -5})
    assert caught.value.field == "properties.amount_fen"
