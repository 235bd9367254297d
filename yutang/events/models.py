"""The event log: every fact about a customer, append-only, idempotent per brand."""

from __future__ import annotations

from django.db import models

from yutang.core.models import Brand
from yutang.customers.models import Customer


class Event(models.Model):
    # No single-column indexes of their own: the unique (brand, idempotency_key) and
    # (customer, occurred_at) indexes below lead with these columns and serve every lookup by
    # them (and the foreign keys' cascades); each index more costs every ingested event.
    #
    # No database foreign-key constraints either (`db_constraint=False`): PostgreSQL checks a
    # constraint per inserted row at commit (Django makes them DEFERRABLE INITIALLY DEFERRED),
    # two `SELECT … FOR KEY SHARE` per event, about a tenth of the database's CPU per ingested
    # event. Only ingestion writes the log, with the brand of the authenticated caller and a
    # customer it has just read or created under the brand's locks; customers are never
    # deleted (merges keep both rows), and deleting a brand or a customer through Django still
    # cascades to the log (`on_delete` is Django's, not the database's).
    brand = models.ForeignKey(
        Brand, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    source = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=200)
    properties = models.JSONField(default=dict, blank=True)
    # The writing transaction's id on PostgreSQL (0 on SQLite, whose writers are serialised):
    # consumers read in (txid, id) order up to the oldest transaction still running, so an
    # event committed late with a low id is never skipped (see events/consumers.py).
    txid = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "idempotency_key"], name="event_idempotency_key_unique"
            )
        ]
        indexes = [
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time"),
            # customer_id last: windowed event conditions of segments read only this index.
            models.Index(
                fields=["brand", "type", "occurred_at", "customer"],
                name="event_brand_type_time_cust",
            ),
            models.Index(fields=["txid", "id"], name="event_commit_order"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class CustomerAggregate(models.Model):
    """Per-customer figures kept up to date as events arrive; segments and dashboards read
    these instead of re-aggregating the log. `yutang rebuild-aggregates` recomputes them."""

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="aggregate"
    )
    # Indexed as the first column of the two indexes below, not on its own; no database
    # constraint, as the log's (see Event). `customer` keeps its constraint.
    brand = models.ForeignKey(
        Brand, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    first_order_at = models.DateTimeField(null=True)
    last_order_at = models.DateTimeField(null=True)
    order_count = models.PositiveIntegerField(default=0)
    paid_fen = models.BigIntegerField(default=0)
    refunded_fen = models.BigIntegerField(default=0)
    last_contact_added_at = models.DateTimeField(null=True)
    last_contact_deleted_at = models.DateTimeField(null=True)
    last_inbound_at = models.DateTimeField(null=True)
    last_click_at = models.DateTimeField(null=True)
    last_touch_at = models.DateTimeField(null=True)
    touch_count = models.PositiveIntegerField(default=0)
    # Touches per day in the brand's time zone, {"YYYY-MM-DD": n}, for the 30 days up to the
    # latest touch: enough for "touches in the last 1/7/30 days" and a pure function of the log.
    touches_by_day = models.JSONField(default=dict)
    event_count = models.PositiveIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["brand", "last_order_at"], name="aggregate_brand_last_order"),
            models.Index(fields=["brand", "paid_fen"], name="aggregate_brand_paid"),
        ]

    def __str__(self) -> str:
        return f"aggregate of #{self.customer_id}"


class ConsumerOffset(models.Model):
    """How far a consumer has read the log (the id of the last event it handled)."""

    name = models.CharField(max_length=64, unique=True)
    # The last event handled: its transaction id and its id (the log is read in that order).
    txid = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}@{self.position}"


class ConsumerFailure(models.Model):
    """An event a consumer failed on: retried with backoff, then parked with its error."""

    consumer = models.CharField(max_length=64)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    attempts = models.PositiveIntegerField(default=1)
    error = models.TextField()
    next_attempt_at = models.DateTimeField(null=True)
    parked = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event"], name="consumer_failure_unique")
        ]
        indexes = [
            models.Index(fields=["consumer", "parked", "next_attempt_at"], name="failure_due")
        ]

    def __str__(self) -> str:
        return f"{self.consumer} failed on event {self.event_id}"
