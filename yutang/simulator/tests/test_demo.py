"""`yutang demo`: build the simulated sample brand, reuse it, start it over with --fresh."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from yutang.commerce.models import Order
from yutang.core import sample_data
from yutang.core.models import Brand
from yutang.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

TINY = ("--scale", "0.002", "--days", "20", "--no-serve")


def demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, int, int]:
    brand = Brand.objects.get(name=sample_data.BRAND_NAME)
    events = Event.objects.filter(brand=brand)
    return (
        events.filter(type="contact.added", source="carrier").count(),
        events.count(),
        Order.objects.filter(brand=brand).count(),
    )


def test_demo_builds_reuses_and_starts_fresh(tmp_path: Path) -> None:
    with override_settings(VAR_DIR=tmp_path):
        first = demo(*TINY)
        assert "Simulating fashion-300k into '示例品牌 Sample Brand': 20 days" in first
        assert "2026-01-20 day 20/20: pool " in first  # the last progress line
        assert "username: admin" in first
        password = (tmp_path / "demo-login.txt").read_text().split("\n")[1]
        assert f"password: {password}" in first
        built = counts()
        assert built[0] > 0 and built[1] > built[0]
        assert f"adds {built[0]:,}," in first

        again = demo(*TINY)
        assert "Reusing the simulated fashion-300k" in again
        assert "Simulating" not in again
        assert f"password: {password}" in again  # the saved login still works
        assert counts() == built

        fresh = demo("--fresh", *TINY)
        assert "--fresh: the database was emptied." in fresh
        assert "Simulating fashion-300k" in fresh
        assert counts() == built  # same seed, same scale: the same world
        assert Brand.objects.count() == 1
        new_password = (tmp_path / "demo-login.txt").read_text().split("\n")[1]
        assert new_password != password and f"password: {new_password}" in fresh


def test_demo_arguments_are_checked() -> None:
    with pytest.raises(CommandError, match="--days: must be ≥ 1"):
        demo("--days", "0", "--no-serve")
    with pytest.raises(CommandError, match="--scale: must be > 0"):
        demo("--scale", "0", "--no-serve")
    assert not Brand.objects.exists()
