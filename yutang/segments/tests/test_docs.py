"""Every rule example in docs/segments.md validates: the fenced JSON blocks and the inline
`{"kind": …}` / `{"and": …}` / `{"or": …}` / `{"not": …}` code spans that hold JSON (a doc example that the
product refuses is a bug in one of the two)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from yutang.segments import rules

DOC = Path(__file__).resolve().parents[3] / "docs" / "segments.md"
BLOCK = re.compile(r"```json\n(.*?)```", re.S)
INLINE = re.compile(r'`(\{"(?:kind|and|or|not)"[^`…]*\})`')  # "…" marks a shape, not an example


def _examples() -> list[tuple[int, Any]]:
    text = DOC.read_text()
    found = []
    for pattern in (BLOCK, INLINE):
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((line, json.loads(match.group(1))))
    return sorted(found, key=lambda example: example[0])


def test_the_doc_has_fifteen_and_more_rule_examples_of_every_builtin_kind():
    examples = _examples()
    assert len(examples) >= 15
    kinds = {c.kind for _, data in examples for c in rules.walk(rules.parse_rule(data))}
    builtin = {"profile", "attribute", "tag", "identity", "carrier", "group", "consent", "owner",
               "channel", "lifecycle", "rfm", "aggregate", "event", "touches"}  # fmt: skip
    assert builtin <= kinds
    carrier = [data for _, data in examples if "carrier" in json.dumps(data)]
    assert len(carrier) >= 5


@pytest.mark.parametrize(("line", "data"), _examples(), ids=lambda v: str(v)[:40])
def test_each_example_validates(line, data):
    node = rules.parse_rule(data)
    assert rules.to_json(rules.parse_rule(rules.to_json(node))) == rules.to_json(node), line
