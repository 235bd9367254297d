"""Normalising identities before they are hashed: the same person must always hash the same."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from yutang.core import crypto
from yutang.core.errors import N_, ValidationFailed
from yutang.core.identifiers import normalize_email, normalize_phone
from yutang.customers.models import STRONG_KINDS, IdentityKind


@dataclass(frozen=True)
class NormalizedIdentity:
    kind: str
    namespace: str
    value: str

    @functools.cached_property
    def hash(self) -> str:
        # Kind and namespace are part of the key: the same string as a phone and as an
        # external id are different facts.
        return crypto.hash_pii(f"{self.kind}\x1f{self.namespace}\x1f{self.value}")

    @property
    def is_strong(self) -> bool:
        return self.kind in STRONG_KINDS

    @property
    def masked(self) -> str:
        return crypto.mask_identifier(self.kind, self.value)


_KINDS = frozenset(IdentityKind.values)  # .values builds a new list on every call


@functools.lru_cache(maxsize=65536)
def _e164(text: str) -> tuple[str, str | None]:
    """Phone parsing is the costliest step of validating an event; the same people's
    numbers recur batch after batch, so outcomes (including refusals) are remembered."""
    try:
        return normalize_phone(text), None
    except ValidationFailed as exc:
        return "", exc.message


def normalize_identity(
    kind: str, value: str, namespace: str = "", *, field: str = "identities"
) -> NormalizedIdentity:
    """The identity as it is stored and hashed; a ValidationFailed naming `field` otherwise.

    The same people's identities recur batch after batch: a valid one is normalised (and,
    once asked for, hashed) once per process and PII key, then returned from a cache — the
    same immutable object. Invalid input is never cached and raises as below."""
    try:
        return _normalized(kind, value, namespace, settings.PII_KEY)
    except ValidationFailed:
        return _normalize(kind, value, namespace, field=field)  # raises, naming the field


def normalizer(field: str = "identities") -> Callable[[str, str, str, int], NormalizedIdentity]:
    """`normalize_identity` for the identities of a batch of records: `normalize(kind, value,
    namespace, n)` is `normalize_identity(kind, value, namespace, field=f"{field}.{n}")` with
    the PII key read once (reading a Django setting costs more than the cache lookup) and the
    field named only when the identity is refused."""
    pii_key = settings.PII_KEY

    def normalize(kind: str, value: str, namespace: str, n: int) -> NormalizedIdentity:
        try:
            return _normalized(kind, value, namespace, pii_key)
        except ValidationFailed:
            return _normalize(kind, value, namespace, field=f"{field}.{n}")  # raises

    return normalize


@functools.lru_cache(maxsize=131072)
def _normalized(kind: str, value: str, namespace: str, pii_key: str) -> NormalizedIdentity:
    # The hash is computed now, under `pii_key` (part of the cache key), so a cached identity
    # never carries a hash made under another key (tests switch keys).
    identity = _normalize(kind, value, namespace, field="identities")
    identity.hash  # noqa: B018
    return identity


def _normalize(kind: str, value: str, namespace: str, *, field: str) -> NormalizedIdentity:
    if kind not in _KINDS:
        raise ValidationFailed(
            N_("Unknown identity kind {kind!r}."), params={"kind": kind}, field=f"{field}.kind"
        )
    text = (value or "").strip()
    if not text:
        raise ValidationFailed(N_("An identity needs a value."), field=f"{field}.value")
    if len(text) > 256:
        raise ValidationFailed(
            N_("An identity value is at most 256 characters."), field=f"{field}.value"
        )
    namespace = (namespace or "").strip()
    if kind == IdentityKind.PHONE:
        phone, error = _e164(text)
        if error is not None:
            raise ValidationFailed(error, field=f"{field}.value")
        text = phone
    elif kind == IdentityKind.EMAIL:
        text = normalize_email(text, field=f"{field}.value")
    if kind == IdentityKind.WECHAT_OPENID:
        if not namespace:
            raise ValidationFailed(
                N_("A WeChat openid needs the app id it belongs to."), field=f"{field}.namespace"
            )
    else:
        namespace = ""
    return NormalizedIdentity(kind=kind, namespace=namespace, value=text)
