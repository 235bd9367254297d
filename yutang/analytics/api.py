"""REST handlers of the operations overview (thin: validate, call one service, render)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from yutang.analytics import exports, services
from yutang.analytics.schemas import ExportQuery, OverviewOut, OverviewQuery, overview_dict
from yutang.core.apiauth import actor
from yutang.core.apiparams import StrictQuery

router = Router(tags=["analytics"])


@router.get("/analytics/overview", response=OverviewOut)
def overview(request: HttpRequest, filters: StrictQuery[OverviewQuery]) -> object:
    """The operations dashboard's figures for the days `from`..`to` (inclusive, in the
    brand's time zone), optionally for one store (id or code) and one first-touch channel.
    Every figure is defined in docs/metrics.md."""
    result = services.overview(actor=actor(request), **filters.model_dump())
    return overview_dict(result)


@router.get("/analytics/overview/export")
def export(request: HttpRequest, filters: StrictQuery[ExportQuery]) -> HttpResponse:
    """The overview as CSV (one table: kpis, series, carriers or sources) or XLSX (all
    tables, one sheet each). Needs `analytics.export`."""
    args = filters.model_dump()
    content, content_type, name = exports.export_overview(actor=actor(request), **args)
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
