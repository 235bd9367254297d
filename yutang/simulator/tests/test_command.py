from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from yutang.core.models import Brand
from yutang.events.models import Event

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("simulate", *args, stdout=out)
    return out.getvalue()


def test_simulate_drives_a_brand_and_writes_an_offline_report(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    out = run("steady", "--days", "8", "--scale", "0.05", "--report", str(report))
    brand = Brand.objects.get(name="steady (simulated, seed 7)")
    adds = Event.objects.filter(brand=brand, type="contact.added").count()
    assert adds > 0
    assert re.search(rf"^adds\s+{adds:,}$", out, re.MULTILINE)  # the table's row
    assert "monthly deletion rate" in out and "cost per kept contact" in out
    assert "2026-01-08 day 8/8" in out
    page = report.read_text(encoding="utf-8")
    assert "<script src" not in page and "echarts.init" in page
    assert len(page) > 500_000  # ECharts itself is inlined


def test_compare_runs_both_on_one_seed_without_the_database() -> None:
    out = run("spam.yaml", "--compare", "steady.yaml", "--days", "40", "--scale", "0.1",
              "--model-only", "--seed", "11")  # fmt: skip
    assert "Difference (first minus second):" in out
    assert out.count("seed 11") == 2
    assert not Brand.objects.exists()


def test_bad_arguments_and_files_are_named() -> None:
    with pytest.raises(CommandError, match="--days: must be ≥ 1"):
        run("steady", "--days", "0")
    with pytest.raises(CommandError, match="--scale"):
        run("steady", "--scale", "-1")
    with pytest.raises(CommandError, match="No scenario file"):
        run("nowhere.yaml")
