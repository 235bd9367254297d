"""/api/v1/analytics/overview and its export, through the real HTTP stack."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from tests.factories import Api, make_staff
from yutang.analytics.tests.fixtures import NOW, World, build_world
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db

MARCH = "from=2026-03-01&to=2026-03-31"


@pytest.fixture
def world() -> World:
    return build_world()


def _get(api: Api, path: str):
    with use_clock(FrozenClock(NOW)):
        return api.get(path)


def test_overview_over_rest_has_the_hand_computed_numbers(world):
    response = _get(Api(world.admin), f"/analytics/overview?{MARCH}")
    assert response.status_code == 200, response.content
    body = response.json()
    t = body["totals"]
    assert (t["contacts_opening"], t["gross_adds"], t["deletions"], t["contacts_held"]) == (
        2,
        5,
        1,
        5,
    )
    assert t["deletion_rate"] == {"numerator": 1, "denominator": 7, "rate": 1 / 7}
    assert t["first_order_rate"]["rate"] == 2 / 3
    assert t["repurchase_rate"] == {"numerator": 2, "denominator": 3, "rate": 2 / 3}
    assert (t["gmv_fen"], t["refunds_fen"], t["net_gmv_fen"]) == (37900, 1000, 36900)
    assert body["gmv_per_contact_fen"] == 7580 and body["people_held"] == 5
    assert body["time_zone"] == "Asia/Shanghai" and body["granularity"] == "day"
    assert len(body["series"]) == 31 and body["series"][0]["start"] == "2026-03-01"
    assert body["sources"][0] == {"source": "store_pos", "orders": 1, "buyers": 1, "gmv_fen": 20000}
    statuses = {s["key"]: s["status"] for s in body["sections"]}
    assert statuses["messages"] == "ok"  # the messaging app is installed and provides it
    assert statuses["journeys"] == "ok"  # so is journeys


def test_filters_and_store_scope_over_rest(world):
    manager = make_staff(world.brand, Role.STORE_MANAGER, stores=[world.store_a])
    api = Api(manager)
    mine = _get(api, f"/analytics/overview?{MARCH}").json()
    assert mine["totals"]["gmv_fen"] == 17900
    denied = _get(api, f"/analytics/overview?{MARCH}&store=B")
    assert denied.status_code == 404 and denied.json()["field"] == "store"
    by_channel = _get(Api(world.admin), f"/analytics/overview?{MARCH}&channel=xhs").json()
    assert by_channel["channel"] == "xhs" and by_channel["totals"]["gross_adds"] == 3
    by_store = _get(Api(world.admin), f"/analytics/overview?{MARCH}&store={world.store_b.pk}")
    assert by_store.json()["store"] == {"id": world.store_b.pk, "code": "B", "name": "加盟店 B"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-03-01", "to"),
        ("from=2026-13-01&to=2026-03-31", "from"),
        ("from=2026-03-02&to=2026-03-01", "end"),
        (f"{MARCH}&granularity=hour", "granularity"),
        (f"{MARCH}&stor=A", "stor"),
    ],
)
def test_bad_queries_are_422_naming_the_parameter(world, query, field):
    response = _get(Api(world.admin), f"/analytics/overview?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_csv_export_has_the_same_numbers(world):
    response = _get(Api(world.admin), f"/analytics/overview/export?{MARCH}&format=csv")
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="overview-2026-03-01-2026-03-31-kpis.csv"'
    )
    text = response.content.decode("utf-8-sig")
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows["gmv_fen"]["value"] == "37900"
    assert (rows["deletion_rate"]["numerator"], rows["deletion_rate"]["denominator"]) == ("1", "7")
    series = _get(Api(world.admin), f"/analytics/overview/export?{MARCH}&table=series")
    lines = list(csv.reader(io.StringIO(series.content.decode("utf-8-sig"))))
    assert len(lines) == 32 and lines[2][0] == "2026-03-02" and lines[2][19] == "9900"


def test_xlsx_export_has_every_table(world):
    response = _get(Api(world.admin), f"/analytics/overview/export?{MARCH}&format=xlsx")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    # one sheet per section with a provider (acquisition, journeys and messaging are installed)
    assert book.sheetnames == [
        "kpis", "series", "carriers", "sources",
        "section_channels", "section_journeys", "section_messages",
    ]  # fmt: skip
    sources = list(book["sources"].iter_rows(values_only=True))
    assert sources[1] == ("store_pos", 1, 1, 20000)
    book.close()


def test_export_needs_the_export_action(world):
    operator = make_staff(world.brand, Role.COMMUNITY_OPERATOR)
    response = _get(Api(operator), f"/analytics/overview/export?{MARCH}")
    assert response.status_code == 403
    # ...but the operator may read the dashboard itself
    assert _get(Api(operator), f"/analytics/overview?{MARCH}").status_code == 200
