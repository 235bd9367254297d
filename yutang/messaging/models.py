"""The outbox (`Message`), broadcasts, the brand's touch policy and the per-customer lock row
the gate takes so that caps hold under concurrency."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core.models import Brand, CarrierAccount, ScopedQuerySet, Staff
from yutang.customers.models import Customer


class MessageQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return (
            Q(customer__owner_store_id__in=actor.store_ids)
            | Q(account__store_id__in=actor.store_ids)
            | Q(staff_id=actor.pk)
        )

    def _self_q(self, actor: Staff) -> Q:
        return Q(staff_id=actor.pk) | Q(account__staff_id=actor.pk)


class Broadcast(models.Model):
    """A 群发 to a list of customers (segments add segment targets later)."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(CarrierAccount, on_delete=models.PROTECT, related_name="+")
    staff = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, related_name="+")
    name = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=16)
    content = models.JSONField(default=dict)
    target = models.JSONField(default=dict, help_text='{"customer_ids": [...]} or later a segment')
    total = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    objects = MessageQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name or f"broadcast #{self.pk}"


class Message(models.Model):
    class Kind(models.TextChoices):
        SERVICE = "service", _("Service")
        MARKETING = "marketing", _("Marketing")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        DEFERRED = "deferred", _("Deferred")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")
        BLOCKED = "blocked", _("Blocked")
        EXPIRED = "expired", _("Expired")
        PENDING_CONFIRMATION = "pending_confirmation", _("Waiting for staff confirmation")
        CANCELLED = "cancelled", _("Cancelled")

    class Cause(models.TextChoices):
        JOURNEY = "journey", _("Journey step")
        BROADCAST = "broadcast", _("Broadcast")
        CAMPAIGN = "campaign", _("Campaign")
        MANUAL = "manual", _("Manual")
        WELCOME = "welcome", _("Welcome message")
        REPLY = "reply", _("Automatic reply")
        TEST = "test", _("Test")

    # No index of their own: (brand, idempotency_key), (customer, passed_at) and
    # (account, passed_at, kind) lead with them, and each index costs every outbox update.
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    account = models.ForeignKey(
        CarrierAccount, on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    carrier = models.CharField(max_length=32, help_text="The account's kind, kept for the gate")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    content = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=64)
    cause = models.CharField(max_length=16, choices=Cause.choices)
    cause_ref = models.CharField(max_length=120, blank=True)
    # Their indexes are partial (Meta.indexes): most messages (journeys, campaigns without
    # a broadcast or a sending staff member) have neither, and a full index would take an
    # entry per message for nothing.
    broadcast = models.ForeignKey(
        Broadcast,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        db_index=False,
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.QUEUED)
    rule = models.CharField(max_length=24, blank=True, help_text="The rule that stopped it")
    reason = models.CharField(max_length=500, blank=True)
    idempotency_key = models.CharField(max_length=200)
    attempts = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField(help_text="When it may next be tried")
    not_after = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    passed_at = models.DateTimeField(null=True, blank=True, help_text="When the gate let it pass")
    carrier_message_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "idempotency_key"], name="message_unique_idempotency_key"
            )
        ]
        # Every change of status rewrites the row outside HOT and adds an entry to each index
        # whose condition the new row meets: the partial indexes hold only the rows their
        # readers look for, so a blocked message adds 5 index entries and a queued one 6
        # (broadcast and staff only when set); delivery decides most messages once and
        # blocks many; journeys insert them.
        indexes = [
            # The claim reads queued and deferred rows in (due_at, id) order from this index.
            models.Index(
                fields=["status", "due_at", "id"],
                name="message_due_waiting",
                condition=Q(status__in=["queued", "deferred"]),
            ),
            # Leases (sending, pending confirmation) that run out.
            models.Index(
                fields=["status", "claimed_until"],
                name="message_lease",
                condition=Q(claimed_until__isnull=False),
            ),
            # Every message of a customer (merges, deletions, the customer's messages).
            models.Index(fields=["customer", "passed_at"], name="message_customer_touch"),
            # Covers the gate's read of a customer's touch history: an index-only range per
            # customer of the messages that passed the gate, with every column the rules read
            # (no visit to the outbox rows, which lie scattered over the table). Blocked,
            # deferred and queued messages add no entry to it.
            models.Index(
                fields=["customer", "passed_at", "kind", "carrier", "content_hash", "cause"],
                name="message_customer_passed",
                condition=Q(passed_at__isnull=False),
            ),
            # Covers the marketing-share count: an index-only range per (account, cause) of
            # the messages that passed the gate (the count names the causes it counts), so it
            # reads the account's posts in the window and nothing else. Account-only reads
            # use message_carrier_id.
            models.Index(
                fields=["account", "cause", "passed_at", "kind"],
                name="message_passed_posts",
                condition=Q(passed_at__isnull=False),
            ),
            models.Index(fields=["account", "carrier_message_id"], name="message_carrier_id"),
            models.Index(fields=["brand", "status", "rule"], name="message_brand_status"),
            models.Index(
                fields=["broadcast"],
                name="message_broadcast",
                condition=Q(broadcast__isnull=False),
            ),
            models.Index(fields=["staff"], name="message_staff", condition=Q(staff__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"message #{self.pk} ({self.status})"

    @property
    def summary(self) -> str:
        """A one-line description of the content for lists."""
        c = self.content or {}
        return str(c.get("text") or c.get("title") or c.get("url") or c.get("image_url") or "")


class TouchLock(models.Model):
    """One row per customer; the gate locks the rows of a batch's customers (in id order) so
    that two workers and an API send cannot both spend the same cap."""

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"touch lock {self.customer_id}"


class AccountTouchLock(models.Model):
    """One row per carrier account; a pass that may let marketing through an account locks its
    row (after the customers' rows, in id order) so that two workers cannot both count the
    same marketing-share headroom of that account."""

    account = models.OneToOneField(
        CarrierAccount, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    # Running tallies of the account's posts (causes in `gate.POST_CAUSES`) that passed the
    # gate: every delivery pass adds those it lets through, under this row's lock and in the
    # transaction that sets their `passed_at`. Only their changes are read (`PostCounts`
    # counts what passed since its settled part ends as a difference of two tallies instead
    # of reading each recent post), so the values need no backfill. Database defaults: the
    # lock rows are inserted by id alone (`delivery._lock_rows`).
    posts = models.BigIntegerField(default=0, db_default=0)
    marketing_posts = models.BigIntegerField(default=0, db_default=0)

    def __str__(self) -> str:
        return f"account touch lock {self.account_id}"


class MessagingPolicy(models.Model):
    """The brand's touch policy (validated by yutang.messaging.policy.PolicySettings)."""

    brand = models.OneToOneField(
        Brand, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    settings = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"messaging policy of brand {self.brand_id}"
