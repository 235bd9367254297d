from __future__ import annotations

import pytest

from yutang.core.errors import ValidationFailed
from yutang.simulator.scenario import load_scenario, parse_scenario, shipped_scenarios

GOOD = """\
name: tiny
channels:
  - key: a
    name: A
    reach_per_day: 10
"""


def test_shipped_scenarios_all_validate() -> None:
    names = {p.stem for p in shipped_scenarios()}
    assert names == {"fashion-300k", "coffee-stores", "hair-clinic", "spam", "steady"}
    for path in shipped_scenarios():
        assert load_scenario(path).name == path.stem


def test_a_minimal_scenario_takes_the_documented_defaults() -> None:
    s = parse_scenario(GOOD)
    assert s.days == 365 and s.plan.policy.marketing_per_day == 1
    assert s.plan.policy.marketing_per_week == 3
    assert (s.plan.policy.quiet_start, s.plan.policy.quiet_end) == ("21:30", "08:30")


def test_negative_reach_names_path_and_line() -> None:
    text = (
        GOOD
        + "  - key: b\n    name: B\n    reach_per_day: 1\n  - key: c\n    name: C\n    reach_per_day: -5\n"
    )
    with pytest.raises(ValidationFailed) as caught:
        parse_scenario(text, source="x.yaml")
    assert caught.value.field == "channels[2].reach_per_day"
    assert "channels[2].reach_per_day: must be ≥ 0 (line 11)" in caught.value.message


def test_bad_type_is_named() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_scenario(GOOD.replace("reach_per_day: 10", "reach_per_day: lots"))
    assert caught.value.field == "channels[0].reach_per_day"
    assert "(line 5)" in caught.value.message


def test_unknown_key_is_refused_with_its_line() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_scenario(GOOD + "plan:\n  touches_per_dya: 3\n")
    assert caught.value.field == "plan.touches_per_dya"
    assert "unknown key (line 7)" in caught.value.message


def test_yaml_syntax_error_gives_the_line() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_scenario("name: x\nchannels: [\n  {key: a\n", source="broken.yaml")
    assert "YAML syntax error" in caught.value.message
    assert caught.value.field is not None and caught.value.field.startswith("yaml:")


def test_cross_field_rules() -> None:
    with pytest.raises(ValidationFailed, match="add_rate_floor must not exceed"):
        parse_scenario(GOOD + "    add_rate_floor: 0.5\n    add_rate_ceiling: 0.1\n")
    with pytest.raises(ValidationFailed, match="unknown stores"):
        parse_scenario(GOOD + "    stores: [nowhere]\n")
    with pytest.raises(ValidationFailed, match="a YAML mapping"):
        parse_scenario("- 1\n- 2\n")
    with pytest.raises(ValidationFailed, match="No scenario file"):
        load_scenario("no-such-scenario")
