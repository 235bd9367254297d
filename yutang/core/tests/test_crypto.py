"""The lookup hash of identifiers is HMAC-SHA256 under the PII key, however it is computed."""

from __future__ import annotations

import hashlib
import hmac

from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from yutang.core import crypto


@given(st.text(max_size=300))
def test_hash_pii_is_hmac_sha256_under_the_lookup_key(value):
    _, mac_key = crypto._keys("k" * 40)
    with override_settings(PII_KEY="k" * 40):
        assert crypto.hash_pii(value) == (
            hmac.new(mac_key, value.encode(), hashlib.sha256).hexdigest()
        )


def test_another_pii_key_gives_another_hash():
    with override_settings(PII_KEY="a" * 40):
        first = crypto.hash_pii("+8613800000001")
    with override_settings(PII_KEY="b" * 40):
        second = crypto.hash_pii("+8613800000001")
    assert first != second


def test_cached_normalised_identities_follow_the_pii_key():
    """Identities are normalised and hashed once per process and key: switching the key
    never serves a hash made under the other one, and bad input still names its field."""
    import pytest

    from yutang.core.errors import ValidationFailed
    from yutang.customers.identities import normalize_identity

    hashes: dict[str, str] = {}
    for key in ("a" * 40, "b" * 40, "a" * 40):
        with override_settings(PII_KEY=key):
            identity = normalize_identity("phone", "138 0000 0001")
            assert identity.value == "+8613800000001"
            assert identity.hash == crypto.hash_pii("phone\x1f\x1f+8613800000001")
            hashes.setdefault(key, identity.hash)
            assert hashes[key] == identity.hash
    assert hashes["a" * 40] != hashes["b" * 40]
    with pytest.raises(ValidationFailed) as raised:
        normalize_identity("phone", "not a phone", field="identities.3")
    assert raised.value.field == "identities.3.value"
