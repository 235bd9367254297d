"""Carrier connections (encrypted credentials, status), the contacts each account holds,
receipts of inbound callbacks (replays are handled once) and the sandbox's own records."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core import crypto
from yutang.core.models import Brand, CarrierAccount, ScopedQuerySet, Staff
from yutang.customers.models import Customer, Tag


class AccountScopedQuerySet(ScopedQuerySet):
    """Rows that belong to a carrier account: scoped like the account."""

    def _store_q(self, actor: Staff) -> Q:
        return Q(account__store_id__in=actor.store_ids) | Q(account__staff_id=actor.pk)

    def _self_q(self, actor: Staff) -> Q:
        return Q(account__staff_id=actor.pk)


class CarrierConnection(models.Model):
    class Status(models.TextChoices):
        UNKNOWN = "unknown", _("Not checked")
        CONNECTED = "connected", _("Connected")
        ERROR = "error", _("Error")

    account = models.OneToOneField(
        CarrierAccount, on_delete=models.CASCADE, primary_key=True, related_name="connection"
    )
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    credentials_encrypted = models.TextField(blank=True)
    settings = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNKNOWN)
    last_error = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    objects = AccountScopedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"connection of account #{self.account_id}"

    @property
    def credentials(self) -> dict[str, Any]:
        if not self.credentials_encrypted:
            return {}
        value = json.loads(crypto.decrypt_pii(self.credentials_encrypted))
        assert isinstance(value, dict)
        return value

    def set_credentials(self, value: dict[str, Any]) -> None:
        self.credentials_encrypted = crypto.encrypt_pii(json.dumps(value, sort_keys=True))


class CarrierContact(models.Model):
    """A customer reachable through one carrier account (a WeCom external contact, a sandbox
    contact). `lost` once the customer deletes the account or staff delete the customer."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        LOST = "lost", _("Lost")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="contacts")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contacts")
    external_hash = models.CharField(max_length=64)
    external_encrypted = models.TextField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    state = models.CharField(max_length=30, blank=True)
    added_at = models.DateTimeField()
    lost_at = models.DateTimeField(null=True, blank=True)
    lost_by = models.CharField(max_length=8, blank=True)
    #: What the member noted on the carrier (WeCom remark and description), from edit events.
    remark = models.CharField(max_length=120, blank=True)
    description = models.CharField(max_length=300, blank=True)

    objects = AccountScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_hash"], name="carrier_contact_unique_external"
            )
        ]
        indexes = [models.Index(fields=["customer", "account"], name="carrier_contact_customer")]

    def __str__(self) -> str:
        return f"contact #{self.pk} ({self.status})"

    @property
    def external_id(self) -> str:
        return crypto.decrypt_pii(self.external_encrypted)


class InboundReceipt(models.Model):
    """One handled inbound fact, by the carrier's dedupe key: a replay finds it and stops."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="+")
    dedupe_key = models.CharField(max_length=200)
    kind = models.CharField(max_length=32)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "dedupe_key"], name="inbound_receipt_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.dedupe_key}"


class SandboxDelivery(models.Model):
    """What the sandbox carrier "delivered": its own records, deduped by idempotency key,
    written in their own transaction like a remote service would."""

    # No foreign-key constraints in the database (Django still cascades deletes): the rows
    # are written by the adapter with the ids of the message it sends, and the per-row
    # checks cost as much as the rest of the insert (20 µs a row, two per sent message). No
    # index of the account's own: the unique (account, idempotency_key) leads with it.
    brand = models.ForeignKey(
        Brand, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    account = models.ForeignKey(
        CarrierAccount,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    idempotency_key = models.CharField(max_length=200)
    recipient = models.CharField(max_length=200)
    kind = models.CharField(max_length=16)
    content = models.JSONField(default=dict)
    delivered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"], name="sandbox_delivery_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"sandbox delivery {self.idempotency_key}"


# --- WeCom corp tags (tag sync) ----------------------------------------------------------------


class CorpTag(models.Model):
    """A WeCom corp tag (企业标签) and the Yutang tag it mirrors: one each way. A customer who
    has the tag has the corp tag marked on every active WeCom contact (`tagsync`)."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    corp_tag_id = models.CharField(max_length=64)
    corp_group_id = models.CharField(max_length=64)
    group_name = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    tag = models.OneToOneField(Tag, on_delete=models.CASCADE, related_name="corp_tag")
    linked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["brand", "corp_tag_id"], name="corp_tag_unique_id")
        ]

    def __str__(self) -> str:
        return f"{self.group_name}/{self.name} ({self.corp_tag_id})"


class ContactCorpTag(models.Model):
    """A corp tag WeCom has (or is to have) on one contact. `synced_at` is set once WeCom
    confirmed it; `retry_at` holds a failed change back until then."""

    contact = models.ForeignKey(CarrierContact, on_delete=models.CASCADE, related_name="corp_tags")
    corp_tag = models.ForeignKey(CorpTag, on_delete=models.CASCADE, related_name="+")
    synced_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "corp_tag"], name="contact_corp_tag_unique")
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}:{self.corp_tag_id}"


# --- Customer handover (在职继承 / 离职继承) -----------------------------------------------------


class HandoverQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(from_account__store_id__in=actor.store_ids) | Q(from_account__staff_id=actor.pk)

    def _self_q(self, actor: Staff) -> Q:
        return Q(from_account__staff_id=actor.pk) | Q(created_by_id=actor.pk)


class Handover(models.Model):
    """A request to move a staff member's WeCom customers to another member."""

    class Kind(models.TextChoices):
        IN_SERVICE = "in_service", _("In-service transfer")
        RESIGNED = "resigned", _("Resigned-staff transfer")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_account = models.ForeignKey(CarrierAccount, on_delete=models.PROTECT, related_name="+")
    to_account = models.ForeignKey(CarrierAccount, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    message = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    objects = HandoverQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"handover #{self.pk}"


class HandoverItem(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        WAITING = "waiting", _("Waiting for takeover")
        TAKEN_OVER = "taken_over", _("Taken over")
        REFUSED = "refused", _("Refused by the customer")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")

    handover = models.ForeignKey(Handover, on_delete=models.CASCADE, related_name="items")
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(CarrierContact, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=200, blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "checked_at"], name="handover_item_due")]

    def __str__(self) -> str:
        return f"handover item #{self.pk} ({self.status})"


# --- Moments (客户朋友圈) -------------------------------------------------------------------


class MomentQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(senders__account__store_id__in=actor.store_ids) | Q(created_by_id=actor.pk)

    def _self_q(self, actor: Staff) -> Q:
        return Q(created_by_id=actor.pk) | Q(senders__account__staff_id=actor.pk)


class MomentPost(models.Model):
    """A moments post task (add_moment_task) for staff to publish from their WeCom app."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        CREATING = "creating", _("Creating on WeCom")
        PUBLISHING = "publishing", _("Waiting for staff to publish")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, default="marketing")
    content = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    jobid = models.CharField(max_length=128, blank=True)
    moment_id = models.CharField(max_length=128, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    checked_at = models.DateTimeField(null=True, blank=True)

    objects = MomentQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "checked_at"], name="moment_post_due")]

    def __str__(self) -> str:
        return f"moment post #{self.pk} ({self.status})"


class MomentSender(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Not published yet")
        PUBLISHED = "published", _("Published")
        INVALID = "invalid", _("Cannot publish")

    post = models.ForeignKey(MomentPost, on_delete=models.CASCADE, related_name="senders")
    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["post", "account"], name="moment_sender_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id} on moment #{self.post_id} ({self.status})"
