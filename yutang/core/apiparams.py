"""Query parameters that refuse unknown names.

Ninja maps a query string onto the handler's Query schema and silently drops any parameter
the schema does not name, so `GET /stores?kindd=franchise` would list every store. A
mistyped filter must be a 422 naming the parameter instead, like an unknown body field.

Use ``filters: StrictQuery[StoreFilters]`` in place of ``Query[StoreFilters]``; every query
parameter of a handler must then be declared this way (they form one group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from django.http import HttpRequest
from ninja.errors import ValidationError
from ninja.params.models import Query as QueryParam
from ninja.params.models import QueryModel

if TYPE_CHECKING:
    from ninja import NinjaAPI

T = TypeVar("T")


class StrictQueryModel(QueryModel):
    @classmethod
    def get_request_data(
        cls, request: HttpRequest, api: NinjaAPI, path_params: dict[str, Any]
    ) -> dict[str, Any] | None:
        known = set(getattr(cls, "__ninja_flatten_map__", {}))
        unknown = sorted(set(request.GET) - known)
        if unknown:
            raise ValidationError(
                [
                    {
                        "type": "extra_forbidden",
                        "loc": ("query", name),
                        "msg": "Extra inputs are not permitted",
                    }
                    for name in unknown
                ]
            )
        return super().get_request_data(request, api, path_params)

    @classmethod
    def _map_data_paths(cls, data: dict[str, Any]) -> dict[str, Any]:
        if not getattr(cls, "__ninja_flatten_map__", None):
            # A schema without fields (an endpoint that takes no filters, declared so that
            # unknown parameters are refused) has nothing to map; validate it empty.
            return {name: {} for name in cls.model_fields}
        return super()._map_data_paths(data)


class _StrictQueryParam(QueryParam):  # type: ignore[misc]
    _model = StrictQueryModel

    @classmethod
    def _param_source(cls) -> str:
        return "query"


class _StrictQueryShortcut:
    def __getitem__(self, schema: Any) -> Any:
        return Annotated[schema, _StrictQueryParam(...)]


if TYPE_CHECKING:
    StrictQuery = Annotated[T, _StrictQueryParam(...)]
else:
    StrictQuery = _StrictQueryShortcut()
