"""Normalisation of direct identifiers before they are hashed and encrypted."""

from __future__ import annotations

import phonenumbers

from yutang.core.errors import N_, ValidationFailed


def normalize_phone(raw: str, *, field: str = "phone", default_region: str = "CN") -> str:
    """Return the E.164 form (`+8613812341234`); numbers without a country code are +86."""
    text = raw.strip()
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed(
            N_("{raw!r} is not a phone number."), params={"raw": raw}, field=field
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationFailed(
            N_("{raw!r} is not a valid phone number."), params={"raw": raw}, field=field
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str, *, field: str = "email") -> str:
    text = raw.strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or "." not in domain or " " in text:
        raise ValidationFailed(
            N_("{raw!r} is not an email address."), params={"raw": raw}, field=field
        )
    return f"{local}@{domain.lower()}"
