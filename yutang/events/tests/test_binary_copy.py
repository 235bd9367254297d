"""Ingestion stages its rows by binary COPY on PostgreSQL (`bulk.insert_numbered` /
`insert_rows` / `upsert_combining` with `binary=True`): the rows stored must be exactly those
the text COPY stores — times to the microsecond whatever their offset, JSON, text choices,
NULLs, integers of every column width."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.factories import make_brand
from yutang.core import bulk
from yutang.customers.models import Customer, IdentityKind
from yutang.events import aggregates
from yutang.events.models import CustomerAggregate, Event
from yutang.events.services import EVENT_COLUMNS

pytestmark = pytest.mark.django_db

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _event_rows(brand_id: int, customer_id: int, prefix: str) -> list[tuple]:
    at = dt.datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=SHANGHAI)
    return [
        (
            7,
            brand_id,
            customer_id,
            IdentityKind.PHONE,  # a TextChoices member in a text column
            at + dt.timedelta(seconds=n),
            dt.datetime(2026, 3, 2, 1, 2, 3, n, tzinfo=dt.UTC),
            "api" if n % 2 else "导购",
            f"{prefix}-{n:03d}",
            {"n": n, "text": '退订\t\\ "q"\n', "nested": {"a": [1, 2.5, None, True]}},
        )
        for n in range(5)
    ]


def _stored(keys_like: str) -> list[tuple]:
    return [
        (
            e.txid,
            e.type,
            e.occurred_at,
            e.received_at,
            e.source,
            e.idempotency_key[2:],
            e.properties,
        )
        for e in Event.objects.filter(idempotency_key__startswith=keys_like).order_by("id")
    ]


def test_binary_copy_stores_what_the_text_copy_stores():
    brand = make_brand()
    customer = Customer.objects.create(brand=brand, created_at=dt.datetime.now(dt.UTC),
                                       updated_at=dt.datetime.now(dt.UTC))  # fmt: skip
    for prefix, binary in (("t", False), ("b", True)):
        ids = bulk.insert_numbered(
            Event._meta.db_table,
            EVENT_COLUMNS,
            _event_rows(brand.pk, customer.pk, prefix),
            unique="idempotency_key",
            skip_conflicts=("brand_id", "idempotency_key"),
            binary=binary,
        )
        assert all(pk is not None for pk in ids)
    text, binary_rows = _stored("t-"), _stored("b-")
    assert len(text) == 5
    assert text == binary_rows
    assert binary_rows[0][2] == dt.datetime(2026, 3, 1, 15, 59, 59, 999_999, tzinfo=dt.UTC)


def test_binary_upsert_of_aggregates_combines_as_the_text_one():
    brand = make_brand()
    now = dt.datetime.now(dt.UTC)
    pair = [Customer.objects.create(brand=brand, created_at=now, updated_at=now) for _ in range(2)]
    paid = dt.datetime(2026, 5, 4, 10, 0, 0, 123_456, tzinfo=dt.UTC)
    facts: list[tuple[str, dt.datetime, dict[str, Any]]] = [("order.paid", paid, {"order_id": "o1", "amount_fen": 9_900_000_000}),
             ("link.clicked", paid + dt.timedelta(days=1), {"link": "x"}),
             ("order.refunded", paid + dt.timedelta(days=2), {"order_id": "o1",
                                                              "refund_id": "r1",
                                                              "amount_fen": 100})]  # fmt: skip
    for customer, binary in zip(pair, (False, True), strict=True):
        for kind, at, props in facts:  # one upsert per fact: the second and third combine
            agg = aggregates._blank(customer.pk, brand.pk)
            aggregates._fold(agg, kind, at, props, brand.tz)
            bulk.upsert_combining(
                CustomerAggregate._meta.db_table,
                aggregates.COLUMNS,
                [aggregates._row(agg)],
                conflict="customer_id",
                combine=aggregates.COMBINE,
                staged=True,
                binary=binary,
            )
    fields = [
        f.attname for f in CustomerAggregate._meta.concrete_fields if f.attname != "customer_id"
    ]
    text, binary_row = (
        CustomerAggregate.objects.filter(customer=c).values(*fields).get() for c in pair
    )
    assert text == binary_row
    assert binary_row["paid_fen"] == 9_900_000_000
    assert binary_row["first_order_at"] == paid


def test_cascades_without_database_constraints():
    """The log, aggregates and identities carry no database foreign key to the brand (nor the
    log to the customer): Django's cascades still remove them with their brand or customer."""
    from yutang.core.models import Brand
    from yutang.customers.models import Identity
    from yutang.events.services import ingest_events

    at = dt.datetime(2026, 5, 1, tzinfo=dt.UTC).isoformat()
    brands = [make_brand(), make_brand()]
    for brand in brands:
        results = ingest_events(
            brand=brand,
            items=[
                {
                    "type": "link.clicked",
                    "occurred_at": at,
                    "idempotency_key": f"k{n}",
                    "identities": [{"kind": "external", "value": f"c{n}"}],
                    "properties": {"link": "https://x.example/"},
                }
                for n in range(3)
            ],
        )
        assert [r.status for r in results] == ["stored"] * 3
    first, second = brands
    gone = Customer.objects.filter(brand=first).order_by("id").first()
    assert gone is not None
    gone.delete()
    for model in (Event, CustomerAggregate, Identity):
        assert not model.objects.filter(customer_id=gone.pk).exists()
        assert model.objects.filter(brand=first).count() == 2
    Brand.objects.filter(pk=first.pk).delete()
    for remaining in (Event, CustomerAggregate, Identity, Customer):
        assert not remaining.objects.filter(brand_id=first.pk).exists()
        assert remaining.objects.filter(brand=second).count() == 3


@pytest.mark.django_db(transaction=True)
def test_staging_tables_live_with_the_session(monkeypatch):
    """A staging table is created once per session (again after the transaction that created
    it rolled back), empty after every statement that moves its rows on, and truncated before
    every STAGE_REUSES-th use: batch after batch stores exactly its own rows."""
    from django.db import connection, transaction

    monkeypatch.setattr(bulk, "STAGE_REUSES", 3)
    brand = make_brand()
    now = dt.datetime.now(dt.UTC)
    customer = Customer.objects.create(brand=brand, created_at=now, updated_at=now)

    def stage(prefix: str) -> None:
        rows = _event_rows(brand.pk, customer.pk, prefix)
        bulk.insert_rows(
            Event._meta.db_table, EVENT_COLUMNS, rows, staged_by="idempotency_key", binary=True
        )

    with pytest.raises(RuntimeError), transaction.atomic():
        stage("r-")  # creates the table, which rolls back with it
        raise RuntimeError
    assert not Event.objects.filter(idempotency_key__startswith="r-").exists()
    for n in range(8):
        with transaction.atomic():
            stage(f"b{n}-")
    for n in range(8):
        keys = Event.objects.filter(idempotency_key__startswith=f"b{n}-").order_by("id")
        assert list(keys.values_list("idempotency_key", flat=True)) == [
            f"b{n}--{i:03d}" for i in range(5)
        ]
    assert Event.objects.filter(brand_id=brand.pk).count() == 8 * 5
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
                "AND relkind = 'r' AND relname LIKE 'stage_events_event_%%'"
            )
            (name,) = [name for (name,) in cursor.fetchall()]
            cursor.execute(f'SELECT count(*), pg_relation_size(\'"{name}"\') FROM "{name}"')
            count, size = cursor.fetchone()
        assert count == 0
        assert size <= 3 * 8192  # truncated before every 3rd use: a few batches' pages
