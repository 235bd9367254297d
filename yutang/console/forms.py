"""Console forms validate with the same Pydantic schemas as the REST API, so a rule lives in
one place. Errors come back keyed by field for the template to show beside the input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.http import QueryDict
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from yutang.core.errors import YutangError

M = TypeVar("M", bound=BaseModel)


def form_data(
    post: QueryDict,
    *,
    fields: Iterable[str],
    lists: Iterable[str] = (),
    checkboxes: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> dict[str, Any]:
    """Turn posted form fields into schema input: lists from multi-selects, booleans from
    checkboxes, and empty optional inputs into None (an empty number field means "none")."""
    data: dict[str, Any] = {}
    for name in fields:
        if name in lists:
            data[name] = [v for v in post.getlist(name) if v != ""]
        elif name in checkboxes:
            data[name] = post.get(name) in ("on", "true", "1")
        else:
            value = post.get(name, "")
            data[name] = None if (value == "" and name in optional) else value
    return data


def validate(schema: type[M], data: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    try:
        return schema.model_validate(data), {}
    except PydanticValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "__all__"
            errors.setdefault(field, error["msg"])
        return None, errors


def error_for(exc: YutangError) -> dict[str, str]:
    return {exc.field or "__all__": exc.localized()}
