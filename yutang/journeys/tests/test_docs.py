"""Every JSON example in docs/journeys.md parses: whole definitions, single steps, triggers
and conditions (a doc example that the product refuses is a bug in one of the two)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from yutang.journeys import definition as defs
from yutang.journeys import integrations

DOC = Path(__file__).resolve().parents[3] / "docs" / "journeys.md"
BLOCK = re.compile(r"```json\n(.*?)```", re.S)
STEP_TYPES = {"send_message", "wait", "wait_until", "wait_event", "branch", "split",
              "create_task", "add_tag", "remove_tag", "set_attribute", "webhook", "extension",
              "exit"}  # fmt: skip


def _examples() -> list[tuple[int, Any]]:
    text = DOC.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, json.loads(match.group(1))))
    return found


def test_the_doc_has_json_examples():
    kinds = {_kind(data) for _, data in _examples()}
    assert {"definition", "step", "trigger", "condition"} <= kinds


def _kind(data: Any) -> str:
    if isinstance(data, dict) and "trigger" in data and "steps" in data:
        return "definition"
    if isinstance(data, dict) and data.get("type") in STEP_TYPES and "id" in data:
        return "step"
    if isinstance(data, dict) and "type" in data:
        return "trigger"
    return "condition"


@pytest.mark.parametrize(("line", "data"), _examples(), ids=lambda v: str(v)[:30])
def test_every_json_example_parses(line: int, data: Any) -> None:
    kind = _kind(data)
    if kind == "definition":
        defs.parse(data)
    elif kind == "step":
        TypeAdapter(defs.Step).validate_python(data)
    elif kind == "trigger":
        TypeAdapter(defs.Trigger).validate_python(data)
    else:
        integrations.validate_condition(data)
