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
    """Recency, frequency and monetary scores 1–5 and the class, per customer."""

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="rfm"
    )
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    recency = models.PositiveSmallIntegerField()
    frequency = models.PositiveSmallIntegerField()
    monetary = models.PositiveSmallIntegerField()
    rfm_class = models.CharField(max_length=32)
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["brand", "rfm_class"], name="rfm_brand_class")]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.recency}{self.frequency}{self.monetary}"
