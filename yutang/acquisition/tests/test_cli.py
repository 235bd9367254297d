"""`yutang channels report` over the real command line parser."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from openpyxl import load_workbook

from tests.factories import make_brand
from yutang.acquisition.tests.helpers import make_channel

pytestmark = pytest.mark.django_db


def test_channels_report_as_csv_and_xlsx(tmp_path):
    brand = make_brand()
    make_channel(brand, code="store-counter", name="门店台卡", type="store")
    out = io.StringIO()
    call_command("channels", "report", "--from", "2026-10-01", "--to", "2026-10-31", stdout=out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0][:5] == ["channel", "name", "cohort", "reached", "added"]
    assert rows[1][:5] == ["store-counter", "门店台卡", "all", "0", "0"]
    target = tmp_path / "channels.xlsx"
    call_command(
        "channels", "report", "--from", "2026-10-01", "--to", "2026-10-31", "--format", "xlsx",
        "--output", str(target), stderr=io.StringIO(),
    )  # fmt: skip
    assert load_workbook(target).active["A2"].value == "store-counter"


def test_channels_report_refuses_bad_input_naming_it():
    make_brand()
    with pytest.raises(CommandError, match="not a date"):
        call_command("channels", "report", "--from", "2026-13-01", "--to", "2026-10-31")
    with pytest.raises(CommandError, match="date_to"):
        call_command("channels", "report", "--from", "2026-10-31", "--to", "2026-10-01")
    with pytest.raises(CommandError, match="--output"):
        call_command("channels", "report", "--from", "2026-10-01", "--to", "2026-10-31",
                     "--format", "xlsx")  # fmt: skip
