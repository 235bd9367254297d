"""Segments (static lists and dynamic rules), their materialised members, and RFM scores."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core.models import Brand, ScopedQuerySet, Staff
from yutang.customers.models import Customer


class SegmentQuerySet(ScopedQuerySet):
    # A segment's definition is brand-wide; store roles see every definition, while the
    # members they can list are limited to their stores by Customer.objects.for_actor.
    def _store_q(self, actor: Staff) -> Q:
        return Q()

    def _self_q(self, actor: Staff) -> Q:
        return Q()


class Segment(models.Model):
    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", _("Dynamic (rule)")
        STATIC = "static", _("Static (fixed list)")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=500, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    rule = models.JSONField(null=True, blank=True)
    # Dynamic segments with a refresh interval are materialised by the worker; their changes
    # emit segment.entered / segment.exited events.
    refresh_minutes = models.PositiveIntegerField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_count = models.PositiveIntegerField(default=0)
    member_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="segment_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    """A customer in a static segment, or in a dynamic segment as of its last refresh."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="members")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    added_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "customer"], name="segment_member_unique")
        ]
        indexes = [models.Index(fields=["customer"], name="segment_member_customer")]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.customer_id}"


class CustomerRfm(models.Model):
    """Recency, frequency and monetary scores 1–5 and the class, per customer.

    Written only by scoring.recompute_rfm, one statement for the whole brand. No database
    foreign-key constraints (session 7): PostgreSQL checks a deferred foreign key with one
    query per inserted row at commit, which for a first computation of a million rows cost
    more than computing and writing the scores. Deleting a customer or brand through the ORM
    still deletes its row (on_delete is Django's), a merged customer's row goes at the next
    recompute, and a row whose customer is gone can match nothing (every read joins the
    customer). brand_id has no index of its own: rfm_brand_class starts with it."""

    customer = models.OneToOneField(
        Customer,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="rfm",
        db_constraint=False,
    )
    brand = models.ForeignKey(
        Brand, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    recency = models.PositiveSmallIntegerField()
    frequency = models.PositiveSmallIntegerField()
    monetary = models.PositiveSmallIntegerField()
    rfm_class = models.CharField(max_length=32)
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["brand", "rfm_class"], name="rfm_brand_class")]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.recency}{self.frequency}{self.monetary}"


class SegmentSettings(models.Model):
    """A brand's RFM and lifecycle parameters (defaults documented in docs/segments.md)."""

    class RfmMethod(models.TextChoices):
        QUINTILE = "quintile", _("Quintiles")
        THRESHOLDS = "thresholds", _("Brand thresholds")

    brand = models.OneToOneField(
        Brand, on_delete=models.CASCADE, primary_key=True, related_name="segment_settings"
    )
    rfm_method = models.CharField(max_length=16, choices=RfmMethod.choices, default="quintile")
    # Four ascending cut points per dimension for score 2..5 (thresholds method).
    recency_days = models.JSONField(default=list, blank=True)
    frequency_orders = models.JSONField(default=list, blank=True)
    monetary_fen = models.JSONField(default=list, blank=True)
    repeat_min_orders = models.PositiveIntegerField(default=2)
    loyal_min_orders = models.PositiveIntegerField(default=5)
    default_cycle_days = models.PositiveIntegerField(null=True, blank=True, default=60)
    at_risk_slack_days = models.PositiveIntegerField(default=15)
    lost_inactive_days = models.PositiveIntegerField(default=180)
    rfm_computed_at = models.DateTimeField(null=True, blank=True)
    lifecycle_computed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"segment settings of {self.brand_id}"


class AutoTagRule(models.Model):
    """Tag customers while they match a rule; untag them when they stop matching."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="auto_tag_rules")
    name = models.CharField(max_length=80)
    rule = models.JSONField()
    tag = models.ForeignKey("customers.Tag", on_delete=models.CASCADE, related_name="+")
    is_active = models.BooleanField(default=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="auto_tag_rule_name_unique")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def source(self) -> str:
        """CustomerTag.source of the tags this rule added (manual tags are never removed)."""
        return f"auto:{self.pk}"


class EventPropertyCount(models.Model):
    """How many events of `type` a customer has whose property `key` holds the JSON text
    `value`, for the few (type, key) pairs in segments.rollup.TEXTS (an order's
    category…). Database triggers on events_event keep it in step with the log inside the
    same statement (insert, update, delete), on SQLite and PostgreSQL, so a count read from
    here always equals a count of the log; rule conditions like "order.paid with category 护肤
    more than once" read it instead of every order's JSON. Written only by those triggers and
    by segments.rollup.rebuild() (after a raw bulk load that bypassed them)."""

    brand_id = models.BigIntegerField()
    customer_id = models.BigIntegerField()
    type = models.CharField(max_length=64)
    key = models.CharField(max_length=64)
    value = models.CharField(max_length=200)
    events = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["brand_id", "type", "key", "value", "customer_id"],
                name="event_property_count_unique",
            )
        ]
        indexes = [
            # "more than once" / "at least N times" read one range of this index alone
            # (index-only), not every row of every value (session 7: a full scan of the
            # table was most of skincare_repeat's time). It makes each count update a
            # non-HOT one: about 23 µs more database CPU per order.paid event (measured).
            models.Index(
                fields=["brand_id", "type", "key", "value", "events", "customer_id"],
                name="event_property_count_events",
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.type}.{self.key}={self.value}: {self.events}"


class EventNumber(models.Model):
    """One row per event of a type in segments.rollup.NUMBERS whose property `key` is a JSON
    number (an order's amount_fen…), typed: sums over a window read an index instead of the
    JSON of every event. Kept by the same triggers as EventPropertyCount."""

    event_id = models.BigIntegerField()
    brand_id = models.BigIntegerField()
    type = models.CharField(max_length=64)
    key = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    customer_id = models.BigIntegerField()
    value = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id", "key"], name="event_number_unique")
        ]
        indexes = [
            # Every column a windowed sum reads: index-only scans.
            models.Index(
                fields=["brand_id", "type", "key", "occurred_at", "customer_id", "value"],
                name="event_number_window",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.key}={self.value}"
