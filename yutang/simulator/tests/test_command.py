from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from yutang.commerce.models import Order
from yutang.core.models import Brand
from yutang.events.models import Event
from yutang.messaging.models import Message
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import simulate

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


def tables(out: str) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, ...]]]:
    """The two runs' outcome columns (metric → outcome) and the difference table (metric →
    first, second, difference), read from the command's output."""
    blocks: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] | None = None
    for line in out.splitlines():
        if line.startswith("metric"):
            current = {}
            blocks.append(current)
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if current is None or len(cells) < 2:
            current = None
            continue
        current[cells[0]] = cells[1:]
    first, second, difference = blocks
    return (
        {k: v[-1] for k, v in first.items()},
        {k: v[-1] for k, v in second.items()},
        {k: tuple(v) for k, v in difference.items()},
    )


def number(text: str) -> float:
    """A table cell as a number: counts, ¥ amounts, rates in % and differences in pt."""
    sign = -1 if text.startswith("-") else 1
    digits = re.sub(r"[^0-9.]", "", text)
    return sign * float(digits)


def test_compare_runs_both_on_one_seed_without_the_database() -> None:
    out = run("spam.yaml", "--compare", "steady.yaml", "--days", "40", "--scale", "0.1",
              "--model-only", "--seed", "11")  # fmt: skip
    assert "Simulating spam: 40 days from 2026-01-01, seed 11, scale 0.1 (model only)" in out
    assert "Simulating steady: 40 days from 2026-01-01, seed 11, scale 0.1 (model only)" in out
    assert not Brand.objects.exists()
    spam_table, steady_table, difference = tables(out)
    # The same runs again, in this process: the tables are these outcomes.
    spam, steady = (
        simulate(
            scenario=load_scenario(name).with_overrides(days=40, seed=11, scale=0.1), drive=False
        ).outcome
        for name in ("spam", "steady")
    )
    for outcome, shown in ((spam, spam_table), (steady, steady_table)):
        assert number(shown["pool (contacts held)"]) == outcome.pool
        assert number(shown["deletions"]) == outcome.deletions
        assert number(shown["orders"]) == outcome.orders
        assert number(shown["marketing touches blocked by policy"]) == outcome.blocked_marketing
    # Same seed, same public audience: the adds differ by referred friends only.
    assert spam.adds - spam.referral_adds == steady.adds - steady.referral_adds > 0
    # The plans differ: five marketing touches a day with the stand-in gate off drive
    # deletions up and the pool down; steady's caps block marketing, spam's block none.
    assert spam.deletions > 2 * steady.deletions
    assert spam.monthly_deletion_rate > 3 * steady.monthly_deletion_rate
    assert spam.pool < steady.pool
    assert spam.blocked_marketing == 0 < steady.blocked_marketing
    assert number(difference["deletions"][2]) == spam.deletions - steady.deletions > 0
    assert number(difference["pool (contacts held)"][2]) == spam.pool - steady.pool < 0
    assert number(difference["orders"][2]) == spam.orders - steady.orders
    assert number(difference["monthly deletion rate"][2]) == round(
        (spam.monthly_deletion_rate - steady.monthly_deletion_rate) * 100, 1
    )


def test_compare_drives_both_plans_through_the_gate_on_one_seed() -> None:
    out = run("spam.yaml", "--compare", "steady.yaml", "--days", "5", "--scale", "0.02",
              "--outbox-touches")  # fmt: skip
    # Both runs used spam.yaml's seed (7), each into its own brand.
    assert "Simulating spam: 5 days from 2026-01-01, seed 7, scale 0.02" in out
    assert "Simulating steady: 5 days from 2026-01-01, seed 7, scale 0.02" in out
    spam = Brand.objects.get(name="spam (simulated, seed 7)")
    steady = Brand.objects.get(name="steady (simulated, seed 7)")
    spam_table, steady_table, difference = tables(out)
    held: dict[str, float] = {}
    for brand, shown in ((spam, spam_table), (steady, steady_table)):
        events = Event.objects.filter(brand=brand)
        adds = events.filter(type="contact.added").count()
        deletions = events.filter(type="contact.deleted").count()
        orders = Order.objects.filter(brand=brand)
        blocked = Message.objects.filter(
            brand=brand, status=Message.Status.BLOCKED, kind=Message.Kind.MARKETING
        )
        # The table is what the database holds (the last pass ran on day 5 at noon; nothing
        # is delivered or blocked after it).
        assert number(shown["adds"]) == adds > 0
        assert number(shown["deletions"]) == deletions
        assert number(shown["pool (contacts held)"]) == adds - deletions
        assert number(shown["orders"]) == orders.count()
        assert number(shown["GMV"]) == round(sum(o.amount_fen for o in orders) / 100)
        assert number(shown["marketing touches blocked by policy"]) == blocked.count()
        held[brand.name] = adds - deletions
        for metric, value in shown.items():
            assert difference[metric][0 if brand == spam else 1] == value, metric
    # The difference column is the first run minus the second.
    for metric in ("pool (contacts held)", "adds", "deletions", "orders",
                   "marketing touches blocked by policy"):  # fmt: skip
        a, b, diff = difference[metric]
        assert number(diff) == number(a) - number(b), metric

    # Same seed, same public audience on the same days (the minute each person acts comes
    # from the behaviour stream, which the plans' different touches move on differently).
    def add_days(brand: Brand) -> list[dt.date]:
        added = Event.objects.filter(brand=brand, type="contact.added")
        return sorted(
            t.astimezone(brand.tz).date() for t in added.values_list("occurred_at", flat=True)
        )

    assert add_days(spam) == add_days(steady)
    # Spam's five marketing touches a day went to the gate as campaign messages, and the gate
    # blocked nearly all of them: no contact got more than one marketing message a day.
    campaign = Message.objects.filter(brand=spam, cause="campaign", kind=Message.Kind.MARKETING)
    blocked = campaign.filter(status=Message.Status.BLOCKED)
    assert blocked.count() > 4 * campaign.filter(status=Message.Status.SENT).count()
    assert set(blocked.values_list("rule", flat=True)) <= {"frequency", "marketing_share"}
    assert number(spam_table["marketing touches blocked by policy"]) > number(
        steady_table["marketing touches blocked by policy"]
    )
    sent = Message.objects.filter(brand=spam, status=Message.Status.SENT, kind="marketing")
    per_day = sent.values_list("customer_id", "sent_at").annotate(n=Count("pk"))
    assert max((n for _c, _at, n in per_day), default=0) <= 1


def test_bad_arguments_and_files_are_named() -> None:
    with pytest.raises(CommandError, match="--days: must be ≥ 1"):
        run("steady", "--days", "0")
    with pytest.raises(CommandError, match="--scale"):
        run("steady", "--scale", "-1")
    with pytest.raises(CommandError, match="No scenario file"):
        run("nowhere.yaml")
