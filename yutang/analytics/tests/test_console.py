"""The console's home page: the operations overview through the real Django stack."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import Api, console_client, make_staff
from yutang.analytics.exports import KPIS, format_value
from yutang.analytics.tests.fixtures import NOW, World, build_world
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db

MARCH = "from=2026-03-01&to=2026-03-31"


@pytest.fixture
def world() -> World:
    return build_world()


def _page(client, query: str) -> str:
    with use_clock(FrozenClock(NOW)):
        response = client.get(f"/?{query}")
    assert response.status_code == 200
    return response.content.decode()


def _kpis(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="kpi-([a-z_]+)">([^<]*)<', html))


def test_home_shows_the_same_kpis_as_the_api(world):
    html = _page(console_client(world.admin), MARCH)
    with use_clock(FrozenClock(NOW)):
        api = Api(world.admin).get(f"/analytics/overview?{MARCH}").json()
    from yutang.analytics.exports import kpi_cards

    expected = {c["key"]: c["shown"] for c in kpi_cards(api)}
    assert _kpis(html) == expected
    assert expected["gmv_fen"] == "¥379.00" and expected["deletion_rate"] == "14.3%"
    assert len(expected) == len(KPIS)
    # acquisition, journeys and messaging provide every section (an app that is missing
    # shows "not available yet" instead: test_services covers that)
    assert html.count('data-status="ok"') == 3 and 'data-status="unavailable"' not in html
    assert 'id="overview-data"' in html and "echarts.min.js" in html
    assert 'data-testid="export-xlsx"' in html


def test_filters_scope_and_english(world):
    manager = make_staff(world.brand, Role.STORE_MANAGER, stores=[world.store_a])
    client = console_client(manager)
    html = _page(client, MARCH)
    assert _kpis(html)["gmv_fen"] == format_value(17900, "fen")
    assert '<option value="A"' in html and '<option value="B"' not in html
    denied = _page(client, f"{MARCH}&store=B")  # someone else's store: an error, not data
    assert 'data-testid="overview-error"' in denied
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    english = _page(client, f"{MARCH}&channel=package_card")
    assert "Deletion rate" in english and "Messages sent and blocked by rule" in english
    assert _kpis(english)["gross_adds"] == "2"


@pytest.mark.parametrize(
    "query", ["from=nope&to=2026-03-31", "preset=decade", f"{MARCH}&granularity=hour"]
)
def test_bad_filters_are_named_and_the_page_still_renders(world, query):
    html = _page(console_client(world.admin), query)
    assert 'data-testid="overview-error"' in html
    assert 'data-testid="kpi-contacts_held"' in html


def test_advisor_has_no_download_and_sees_the_overview(world):
    advisor = make_staff(world.brand, Role.ADVISOR, stores=[world.store_a])
    html = _page(console_client(advisor), MARCH)
    assert 'data-testid="export-csv"' not in html
    assert _kpis(html)["contacts_held"] == "3"


def test_home_query_count_does_not_grow_with_the_data(world):
    client = console_client(world.admin)
    _page(client, MARCH)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            _page(client, MARCH)
        return len(ctx.captured_queries)

    first = count()
    build_world()  # more data (another brand) and more stores/customers in the database
    assert count() == first
