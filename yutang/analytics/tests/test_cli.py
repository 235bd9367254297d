"""`yutang analytics overview`: the same numbers as the service, as a table, CSV or XLSX."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from openpyxl import load_workbook

from tests.factories import make_staff
from yutang.analytics.tests.fixtures import NOW, World, build_world
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.permissions import Role

pytestmark = pytest.mark.django_db

MARCH = ["--from", "2026-03-01", "--to", "2026-03-31"]


@pytest.fixture
def world() -> World:
    return build_world()


def _run(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with use_clock(FrozenClock(NOW)):
        call_command("analytics", "overview", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_table_csv_and_xlsx(world, tmp_path):
    text = _run(*MARCH)
    assert "2026-03-01 .. 2026-03-31 (Asia/Shanghai)" in text
    assert "¥379.00" in text and "(1/7)" in text and "(2/3)" in text
    rows = {
        r["metric"]: r
        for r in csv.DictReader(io.StringIO(_run(*MARCH, "--format", "csv").lstrip("\ufeff")))
    }
    assert rows["contacts_held"]["value"] == "5" and rows["gmv_fen"]["value"] == "37900"
    target = tmp_path / "march.xlsx"
    _run(*MARCH, "--format", "xlsx", "--output", str(target))
    book = load_workbook(target, read_only=True)
    assert [r[0] for r in book["kpis"].iter_rows(values_only=True)][1] == "contacts_held"
    book.close()


def test_store_and_as_a_store_manager(world):
    assert "¥200.00" in _run(*MARCH, "--store", "B")
    manager = make_staff(world.brand, Role.STORE_MANAGER, stores=[world.store_a])
    assert "¥179.00" in _run(*MARCH, "--as", manager.user.username)
    with pytest.raises(CommandError, match="--store: No such store"):
        _run(*MARCH, "--as", manager.user.username, "--store", "B")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-03-31", "--to", "2026-03-01"], "--to: The period ends before it starts"),
        (["--from", "March", "--to", "2026-03-01"], "not a date"),
        ([*MARCH, "--format", "xlsx"], "--output"),
        ([*MARCH, "--format", "csv", "--table", "nope"], "--table: table must be one of"),
        ([*MARCH, "--as", "nobody"], "--as"),
    ],
)
def test_bad_arguments_say_which(world, args, message):
    with pytest.raises(CommandError, match=message):
        _run(*args)
