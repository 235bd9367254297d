"""Consent changes applied as a batch (`apply_consents`) give the same rows as applying them
one by one (`apply_consent`), directly and through event ingestion; a late, older statement
never overrides a newer one; a concurrent first statement for the same row is settled."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.factories import make_brand
from yutang.core import clock
from yutang.customers import services as customers
from yutang.customers.models import Consent, Customer
from yutang.events.services import ingest_events

T0 = dt.datetime(2026, 3, 1, 4, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=2)

#: (customer number, purpose, carrier, status, hours after T0, proof)
changes = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["marketing", "service"]),
        st.sampled_from(["", "wecom"]),
        st.sampled_from(["granted", "withdrawn"]),
        st.integers(0, 3),  # few distinct times: ties and late, older statements
        st.sampled_from(["", "退订", "form"]),
    ),
    min_size=1,
    max_size=14,
)


def _people(brand) -> list[Customer]:
    return [Customer.objects.create(brand=brand, created_at=T0, updated_at=T0) for _ in range(3)]


def _rows(people: list[Customer]) -> list[tuple]:
    """Every consent row of these people, named by their position instead of their id."""
    index = {c.pk: n for n, c in enumerate(people)}
    return sorted(
        (index[c.customer_id], *fields)
        for c, *fields in (
            (c, c.purpose, c.carrier, c.status, c.source, c.proof, c.changed_at, c.recorded_at)
            for c in Consent.objects.filter(customer__in=people)
        )
    )


def _change(people, n, purpose, carrier, status, hours, proof) -> customers.ConsentChange:
    return customers.ConsentChange(
        customer_id=people[n].pk,
        purpose=purpose,
        carrier=carrier,
        status=status,
        source="test",
        proof=proof,
        at=T0 + dt.timedelta(hours=hours),
    )


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
@given(before=changes, batch=changes)
def test_a_batch_gives_the_same_rows_as_one_change_at_a_time(before, batch):
    together, one_by_one = _people(make_brand()), _people(make_brand())
    with clock.use_clock(clock.FrozenClock(NOW)):
        for people in (together, one_by_one):  # rows stored already, some newer than the batch
            customers.apply_consents([_change(people, *c) for c in before])
        returned = customers.apply_consents([_change(together, *c) for c in batch])
        for n, purpose, carrier, status, hours, proof in batch:
            customers.apply_consent(
                customer=one_by_one[n],
                purpose=purpose,
                carrier=carrier,
                status=status,
                source="test",
                proof=proof,
                at=T0 + dt.timedelta(hours=hours),
            )
    assert _rows(together) == _rows(one_by_one)
    stored = {(c.customer_id, c.purpose, c.carrier): c.pk for c in Consent.objects.all()}
    assert [c.pk for c in returned] == [
        stored[(together[n].pk, purpose, carrier)] for n, purpose, carrier, *_ in batch
    ]


@pytest.mark.django_db
def test_an_older_statement_arriving_late_does_not_override_and_a_tie_does():
    people = _people(make_brand())
    with clock.use_clock(clock.FrozenClock(NOW)):
        customers.apply_consents(
            [
                _change(people, 0, "marketing", "", "withdrawn", 2, "later"),
                _change(people, 0, "marketing", "", "granted", 1, "earlier, arriving late"),
                _change(people, 1, "marketing", "", "granted", 1, "first"),
                _change(people, 1, "marketing", "", "withdrawn", 1, "same time, sent after"),
            ]
        )
    assert _rows(people) == [
        (0, "marketing", "", "withdrawn", "test", "later", T0 + dt.timedelta(hours=2), NOW),
        (
            1,
            "marketing",
            "",
            "withdrawn",
            "test",
            "same time, sent after",
            T0 + dt.timedelta(hours=1),
            NOW,
        ),
    ]


@pytest.mark.django_db
def test_the_batch_costs_the_same_statements_for_one_change_and_for_many():
    brand = make_brand()
    few, many = _people(brand), _people(brand)
    with clock.use_clock(clock.FrozenClock(NOW)):
        # Each person has a stored row to update and gets a new one.
        customers.apply_consents([_change(few, 0, "service", "", "granted", 0, "")])
        customers.apply_consents(
            [_change(many, n, "service", "", "granted", 0, "") for n in range(3)]
        )
        with CaptureQueriesContext(connection) as one:
            customers.apply_consents(
                [
                    _change(few, 0, "service", "", "withdrawn", 1, ""),
                    _change(few, 0, "marketing", "", "granted", 1, ""),
                ]
            )
        with CaptureQueriesContext(connection) as all_of_them:
            customers.apply_consents(
                [_change(many, n, "service", "", "withdrawn", 1, "") for n in range(3)]
                + [
                    _change(many, n, "marketing", c, "granted", 1, "")
                    for n in range(3)
                    for c in ("", "wecom")
                ]
            )
    assert len(all_of_them) == len(one)


def _consent_event(customer_id, n, purpose, carrier, status, hours, proof) -> dict:
    return {
        "type": "consent.changed",
        "occurred_at": (T0 + dt.timedelta(hours=hours)).isoformat(),
        "idempotency_key": f"c{n}",
        "customer_id": customer_id,
        "source": "test",
        "properties": {"purpose": purpose, "status": status, "carrier": carrier, "proof": proof},
    }


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
@given(batch=changes)
def test_an_event_batch_sets_the_same_consents_as_its_events_one_by_one(batch):
    a, b = make_brand(), make_brand()
    together, one_by_one = _people(a), _people(b)
    with clock.use_clock(clock.FrozenClock(NOW)):
        items = [_consent_event(together[c[0]].pk, n, *c[1:]) for n, c in enumerate(batch)]
        results = ingest_events(brand=a, items=items + items[:1])  # and a replayed key
        for n, c in enumerate(batch):
            ingest_events(brand=b, items=[_consent_event(one_by_one[c[0]].pk, n, *c[1:])])
    assert [r.status for r in results] == ["stored"] * len(batch) + ["duplicate"]
    assert _rows(together) == _rows(one_by_one)


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_statements_for_the_same_row_are_settled_by_time():
    """Two transactions create the same person's first marketing consent at once: the one
    that loses the insert applies its change to the winner's row (the later statement wins,
    whichever committed first)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    brand = make_brand()
    (person, *_) = _people(brand)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(status: str, hours: int) -> None:
        try:
            barrier.wait(timeout=30)
            customers.apply_consents([_change([person], 0, "marketing", "", status, hours, status)])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(5):
        Consent.objects.filter(customer=person).delete()
        threads = [
            threading.Thread(target=run, args=("withdrawn", 2)),
            threading.Thread(target=run, args=("granted", 1)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert list(Consent.objects.filter(customer=person).values_list("status", flat=True)) == [
            "withdrawn"
        ]
