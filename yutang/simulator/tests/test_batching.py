"""The driven simulator's speed comes from batched paths (a callback's facts handled
set-based, consumers handling a window at once). They must not change what happens: the same
seed driven through the one-by-one paths gives the same outcome, row for row, and two
batched runs of the same seed are identical."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Count

from yutang.acquisition.models import ContactAdd
from yutang.carriers import inbound
from yutang.core.models import Brand
from yutang.customers.models import CustomerTag
from yutang.events import consumers
from yutang.events.models import Event
from yutang.journeys.models import Enrollment
from yutang.messaging.models import Message
from yutang.simulator.scenario import load_scenario
from yutang.simulator.services import SimulationResult, simulate

pytestmark = pytest.mark.django_db


def scenario() -> Any:
    return load_scenario("fashion-300k").with_overrides(days=10, scale=0.01, seed=7)


def rows(result: SimulationResult) -> dict[str, Any]:
    assert result.brand_id is not None
    brand = Brand.objects.get(pk=result.brand_id)

    def tally(qs: Any, *fields: str) -> list[tuple[Any, ...]]:
        return sorted(
            tuple(r[f] for f in (*fields, "n")) for r in qs.values(*fields).annotate(n=Count("pk"))
        )

    return {
        "series": result.series,
        "outcome": result.outcome,
        "events": tally(Event.objects.filter(brand=brand), "type"),
        "enrollments": tally(
            Enrollment.objects.filter(brand=brand), "journey__name", "state", "current_step"
        ),
        "messages": tally(Message.objects.filter(brand=brand), "cause", "kind", "status"),
        "adds": tally(ContactAdd.objects.filter(brand=brand), "channel__code", "is_first_touch"),
        "tags": tally(CustomerTag.objects.filter(customer__brand=brand), "tag__name", "source"),
    }


def test_batched_paths_give_the_one_by_one_outcome(monkeypatch) -> None:
    batched = rows(simulate(scenario=scenario()))
    monkeypatch.setattr(inbound, "_BATCH_SINKS", {})
    monkeypatch.setattr(inbound, "_CONTACT_ADDED_BATCHES", {})
    for name in ("journeys.events", "segments.auto_tags"):
        one = consumers._CONSUMERS[name]
        monkeypatch.setitem(
            consumers._CONSUMERS, name, consumers.Consumer(one.name, one.handler, one.types)
        )
    one_by_one = rows(simulate(scenario=scenario()))
    assert batched == one_by_one
    assert batched["outcome"].adds > 0 and batched["enrollments"] and batched["tags"]


def test_same_seed_driven_twice_gives_identical_outputs() -> None:
    a, b = rows(simulate(scenario=scenario())), rows(simulate(scenario=scenario()))
    assert a == b
    assert a["outcome"].adds > 0
