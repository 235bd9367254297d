"""Keyset (cursor) pagination on descending ids: stable under inserts, O(page) per request."""

from __future__ import annotations

import base64
from typing import TypeVar

from django.db.models import Model, QuerySet

from yutang.core.errors import N_, ValidationFailed

M = TypeVar("M", bound=Model)

MAX_PAGE_SIZE = 500
#: Largest primary key the databases hold; a cursor past it was not made by us.
MAX_ID = 2**63 - 1


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, _, value = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        if kind != "id":
            raise ValueError(kind)
        last_id = int(value)
        if not 1 <= last_id <= MAX_ID:
            raise ValueError(value)
        return last_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            N_("The cursor is not one this API gave out."), field="cursor"
        ) from exc


def page_by_id_desc(
    queryset: QuerySet[M], *, cursor: str | None, limit: int
) -> tuple[list[M], str | None]:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed(
            N_("limit must be between 1 and {MAX_PAGE_SIZE}."),
            params={"MAX_PAGE_SIZE": MAX_PAGE_SIZE},
            field="limit",
        )
    qs = queryset.order_by("-pk")
    if cursor:
        qs = qs.filter(pk__lt=decode_cursor(cursor))
    rows = list(qs[: limit + 1])
    next_cursor = encode_cursor(rows[limit - 1].pk) if len(rows) > limit else None
    return rows[:limit], next_cursor
