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
from yutang.customers.models import Customer


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

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="+")
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
