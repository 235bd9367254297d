from __future__ import annotations

import pytest

from tests.factories import Api, make_brand, make_staff
from yutang.core.permissions import Role
from yutang.simulator.scenario import SCENARIO_DIR

pytestmark = pytest.mark.django_db

STEADY = (SCENARIO_DIR / "steady.yaml").read_text(encoding="utf-8")
SPAM = (SCENARIO_DIR / "spam.yaml").read_text(encoding="utf-8")


def test_whatif_compares_two_plans_on_one_seed_and_writes_nothing() -> None:
    from yutang.events.models import Event

    api = Api(make_staff(make_brand(), Role.OPERATIONS_LEAD))
    response = api.post(
        "/simulator/whatif",
        {"scenario_yaml": SPAM, "compare_yaml": STEADY, "days": 60, "scale": 0.2},
    )
    assert response.status_code == 200, response.content
    spam, steady = response.json()["results"]
    assert (spam["scenario"], steady["scenario"]) == ("spam", "steady")
    assert spam["seed"] == steady["seed"] == 7
    assert len(spam["pool_by_day"]) == 60 and spam["pool_by_day"][-1] == spam["pool"]
    assert spam["deletions"] > steady["deletions"]
    assert not Event.objects.exists()


def test_whatif_errors_name_the_scenario_and_path() -> None:
    api = Api(make_staff(make_brand(), Role.BRAND_ADMIN))
    bad = STEADY.replace("reach_per_day: 3000", "reach_per_day: -1")
    response = api.post("/simulator/whatif", {"scenario_yaml": STEADY, "compare_yaml": bad})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "compare.channels[0].reach_per_day"
    assert "must be ≥ 0 (line 13)" in body["message"]
    too_big = api.post("/simulator/whatif", {"scenario_yaml": STEADY, "scale": 10})
    assert too_big.status_code == 422 and too_big.json()["field"] == "scale"
    unknown = api.post("/simulator/whatif", {"scenario_yaml": STEADY, "sede": 3})
    assert unknown.status_code == 422 and unknown.json()["field"] == "sede"


def test_roles_without_simulation_run_are_refused() -> None:
    brand = make_brand()
    for role in (Role.COMMUNITY_OPERATOR, Role.ANALYST):
        response = Api(make_staff(brand, role)).post(
            "/simulator/whatif", {"scenario_yaml": STEADY, "days": 5}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
