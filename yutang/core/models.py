"""Tenancy and people: Brand (the tenant), Store, Staff, CarrierAccount, ApiToken, AuditLog,
and the worker heartbeat. Every brand-owned row carries ``brand_id``; every queryset offers
``for_actor(actor, action)`` which applies the permission matrix's scope in the query."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core import crypto
from yutang.core.permissions import ROLE_LABELS, STORE_ROLES, Action, Role, Scope, require


class Brand(models.Model):
    name = models.CharField(max_length=120)
    time_zone = models.CharField(max_length=64, default="Asia/Shanghai")
    currency = models.CharField(max_length=3, default="CNY", editable=False)
    # Validated by yutang.core.schemas.BrandSettings; read it through `brand.policy`.
    settings = models.JSONField(default=dict, blank=True)
    is_sample = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def policy(self) -> Any:
        from yutang.core.schemas import BrandSettings

        return BrandSettings.model_validate(self.settings or {})


class ScopedQuerySet(models.QuerySet):
    """Base for brand-owned rows. Subclasses say how a store scope and a self scope apply."""

    def _store_q(self, actor: Staff) -> Q:
        raise NotImplementedError

    def _self_q(self, actor: Staff) -> Q:
        raise NotImplementedError

    def for_actor(self, actor: Staff, action: Action) -> ScopedQuerySet:
        scope = require(actor, action)
        qs = self.filter(brand_id=actor.brand_id)
        if scope is Scope.BRAND:
            return qs
        if scope is Scope.STORE:
            return qs.filter(self._store_q(actor)).distinct()
        return qs.filter(self._self_q(actor))


class StoreQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(pk__in=actor.store_ids)

    def _self_q(self, actor: Staff) -> Q:
        return Q(pk__in=actor.store_ids)

    def with_customer_access(self, actor: Staff) -> StoreQuerySet:
        """Stores whose individual customer records the actor may read.

        Franchise stores own their customers' data: HQ roles see those customers only in
        aggregate unless the brand's settings grant access. Store roles see exactly their
        own stores, direct or franchise.
        """
        scope = require(actor, Action.CUSTOMER_VIEW)
        qs = self.filter(brand_id=actor.brand_id)
        if scope is not Scope.BRAND:
            return qs.filter(pk__in=actor.store_ids)
        if actor.brand.policy.hq_can_view_franchise_customers:
            return qs
        return qs.filter(kind=Store.Kind.DIRECT)


class Store(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct", _("Direct")
        FRANCHISE = "franchise", _("Franchise")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="stores")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DIRECT)
    city = models.CharField(max_length=64, blank=True)
    address = models.CharField(max_length=255, blank=True)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StoreQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "code"], name="store_code_unique_per_brand"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class StaffQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(stores__in=actor.store_ids) | Q(pk=actor.pk)

    def _self_q(self, actor: Staff) -> Q:
        return Q(pk=actor.pk)


class Staff(models.Model):
    """A person who logs in, with one role in one brand. One Django user may be staff of
    several brands (one row each) and switches between them in the console."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="staff")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_roles"
    )
    display_name = models.CharField(max_length=80)
    role = models.CharField(max_length=32, choices=[(r.value, ROLE_LABELS[r]) for r in Role])
    stores = models.ManyToManyField(Store, blank=True, related_name="staff")
    phone_encrypted = models.TextField(blank=True)
    phone_hash = models.CharField(max_length=64, blank=True, db_index=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StaffQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "staff"
        constraints = [
            models.UniqueConstraint(fields=["brand", "user"], name="staff_one_role_per_brand"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def is_store_role(self) -> bool:
        return self.role in STORE_ROLES

    @property
    def store_ids(self) -> list[int]:
        """Ids of the stores this staff member is bound to (cached per instance)."""
        cached: list[int] | None = getattr(self, "_store_ids", None)
        if cached is None:
            cached = sorted(self.stores.values_list("pk", flat=True))
            self._store_ids = cached
        return cached

    @property
    def phone(self) -> str:
        return crypto.decrypt_pii(self.phone_encrypted) if self.phone_encrypted else ""

    @property
    def masked_phone(self) -> str:
        return crypto.mask_phone(self.phone) if self.phone_encrypted else ""

    def can(self, action: Action) -> bool:
        from yutang.core.permissions import is_allowed

        return is_allowed(self, action)


class CarrierAccountQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(store_id__in=actor.store_ids) | Q(staff_id=actor.pk)

    def _self_q(self, actor: Staff) -> Q:
        return Q(staff_id=actor.pk)


class CarrierAccount(models.Model):
    """An account a staff member operates on a carrier, with its public persona (人设)."""

    class Kind(models.TextChoices):
        WECOM = "wecom", _("WeCom")
        OFFICIAL_ACCOUNT = "official_account", _("Official account")
        SMS = "sms", _("SMS")
        EMAIL = "email", _("Email")
        WEBHOOK = "webhook", _("Webhook")
        SANDBOX = "sandbox", _("Sandbox")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="carrier_accounts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    external_id = models.CharField(max_length=128)
    display_name = models.CharField(max_length=80)
    staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="carrier_accounts"
    )
    store = models.ForeignKey(
        Store, on_delete=models.PROTECT, null=True, blank=True, related_name="carrier_accounts"
    )
    avatar_url = models.URLField(max_length=500, blank=True)
    signature = models.CharField(max_length=120, blank=True)
    cover_url = models.URLField(max_length=500, blank=True)
    persona = models.TextField(
        blank=True, help_text="The persona's story, for staff who write as it"
    )
    daily_add_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most new contacts per day; empty means no cap"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CarrierAccountQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "kind", "external_id"], name="carrier_account_unique_external_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.kind})"


class ApiTokenQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(staff_id=actor.pk)

    def _self_q(self, actor: Staff) -> Q:
        return Q(staff_id=actor.pk)


class ApiToken(models.Model):
    """A per-staff API token. Only its SHA-256 is stored; the token is shown once."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="api_tokens")
    staff = models.ForeignKey(Staff, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, help_text="Shown so people can tell tokens apart")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditLogQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(store_id__in=actor.store_ids)

    def _self_q(self, actor: Staff) -> Q:
        return Q(actor_id=actor.pk)


class AuditLog(models.Model):
    """One row per state-changing service call. Identifiers in `changes` are masked."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="audit_log")
    actor = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=120)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    target_label = models.CharField(max_length=200, blank=True)
    store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["brand", "-created_at"], name="audit_brand_time")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"


class WorkerHeartbeat(models.Model):
    """A running `yutang worker` writes here every few seconds; `yutang check` reads it."""

    worker_id = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


class Lease(models.Model):
    """A named, expiring lock held by one worker: on SQLite only the holder runs the claim
    loops, and periodic jobs take one so each runs once."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"
