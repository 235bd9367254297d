"""Acquisition (引流): channels and their costs and reach, live codes (活码) that route each new
contact to a staff carrier account, the adds they bring, short links, package-card batches,
KOL/KOC partners and their settlements. Money is integer fen; rates are basis points."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core import crypto
from yutang.core.models import Brand, CarrierAccount, ScopedQuerySet, Staff, Store
from yutang.customers.models import Customer


class ChannelType(models.TextChoices):
    PACKAGE_CARD = "package_card", _("Package card")
    SMS = "sms", _("SMS")
    STORE = "store", _("Store")
    FEED_AD = "feed_ad", _("Feed ad")
    KOL_POST = "kol_post", _("KOL post")
    KOC_POST = "koc_post", _("KOC post")
    PLATFORM_FOLLOWERS = "platform_followers", _("Platform followers")
    LIVESTREAM = "livestream", _("Livestream")
    REFERRAL = "referral", _("Referral")
    EVENT = "event", _("Event")
    OTHER = "other", _("Other")


class Platform(models.TextChoices):
    TAOBAO = "taobao", _("Taobao / Tmall")
    JD = "jd", _("JD")
    PDD = "pdd", _("Pinduoduo")
    DOUYIN = "douyin", _("Douyin")
    XIAOHONGSHU = "xiaohongshu", _("Xiaohongshu")
    WEIBO = "weibo", _("Weibo")
    BILIBILI = "bilibili", _("Bilibili")


class CpaEvent(models.TextChoices):
    ADDED = "added", _("Added contact")
    ACTIVATED = "activated", _("Activated customer (first order)")


class PartnerQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(pk__in=[])

    def _self_q(self, actor: Staff) -> Q:
        return Q(pk__in=[])


class Partner(models.Model):
    """A KOL or KOC paid for the contacts and sales their channels bring."""

    class Kind(models.TextChoices):
        KOL = "kol", _("KOL")
        KOC = "koc", _("KOC")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.KOL)
    phone_encrypted = models.TextField(blank=True)
    phone_hash = models.CharField(max_length=64, blank=True, db_index=True)
    contact_note = models.CharField(max_length=200, blank=True)
    cps_bp = models.PositiveIntegerField(default=0, help_text="CPS in basis points (1% = 100)")
    cpa_fen = models.BigIntegerField(default=0)
    cpa_event = models.CharField(max_length=16, choices=CpaEvent.choices, default=CpaEvent.ADDED)
    fixed_fee_fen = models.BigIntegerField(default=0, help_text="Per settlement period")
    attribution_window_days = models.PositiveIntegerField(default=30)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    objects = PartnerQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def phone(self) -> str:
        return crypto.decrypt_pii(self.phone_encrypted) if self.phone_encrypted else ""

    @property
    def masked_phone(self) -> str:
        return crypto.mask_phone(self.phone) if self.phone_encrypted else ""


class ChannelQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(live_codes__store_id__in=actor.store_ids)

    def _self_q(self, actor: Staff) -> Q:
        return Q(owner_id=actor.pk)


class Channel(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    code = models.SlugField(max_length=64, help_text="Stored as the customer's source channel")
    name = models.CharField(max_length=120)
    type = models.CharField(max_length=24, choices=ChannelType.choices)
    platform = models.CharField(max_length=16, choices=Platform.choices, blank=True)
    owner = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, blank=True)
    partner = models.ForeignKey(
        Partner, on_delete=models.PROTECT, null=True, blank=True, related_name="channels"
    )
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)
    hook_description = models.CharField(max_length=200, blank=True)
    hook_coupon_code = models.CharField(max_length=64, blank=True)
    hook_gift = models.CharField(max_length=120, blank=True)
    tags = models.JSONField(default=list, blank=True, help_text='["group/name", …]')
    cost_per_reach_fen = models.BigIntegerField(default=0)
    cost_per_add_fen = models.BigIntegerField(default=0)
    cpa_fen = models.BigIntegerField(default=0)
    cpa_event = models.CharField(max_length=16, choices=CpaEvent.choices, default=CpaEvent.ADDED)
    cps_bp = models.PositiveIntegerField(default=0)
    attribution_window_days = models.PositiveIntegerField(default=30)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    objects = ChannelQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "code"], name="channel_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ChannelCost(models.Model):
    """A fixed amount spent on a channel on a date (placement fee, printing, a KOL post)."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="costs")
    date = models.DateField()
    amount_fen = models.BigIntegerField()
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["date", "id"]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.date} {self.amount_fen}"


class PackageCardBatch(models.Model):
    """A batch of printed package cards (包裹卡); parcels shipped with it count as reach."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="batches")
    code = models.SlugField(max_length=32)
    name = models.CharField(max_length=120)
    cards_printed = models.PositiveIntegerField(default=0)
    live_code = models.OneToOneField(
        "LiveCode", on_delete=models.PROTECT, related_name="batch", null=True, blank=True
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "code"], name="card_batch_code_unique"),
        ]

    def __str__(self) -> str:
        return self.code


class ReachRecord(models.Model):
    """How many people a channel (or a card batch) reached on a date."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="reach")
    batch = models.ForeignKey(
        PackageCardBatch, on_delete=models.CASCADE, null=True, blank=True, related_name="reach"
    )
    date = models.DateField()
    count = models.PositiveIntegerField()

    class Meta:
        ordering = ["date", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "date"],
                condition=Q(batch__isnull=True),
                name="reach_channel_date_unique",
            ),
            models.UniqueConstraint(
                fields=["channel", "batch", "date"],
                condition=Q(batch__isnull=False),
                name="reach_batch_date_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.date} {self.count}"


class RoutingRule(models.TextChoices):
    ROUND_ROBIN = "round_robin", _("Round-robin")
    WEIGHTED = "weighted", _("Weighted")
    TIME_SLOT = "time_slot", _("By time slot")
    NEAREST_STORE = "nearest_store", _("Nearest store")
    EXCLUSIVE = "exclusive", _("Exclusive (back to the owner)")


class LiveCodeQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(store_id__in=actor.store_ids)

    def _self_q(self, actor: Staff) -> Q:
        return Q(members__account__staff_id=actor.pk)


class LiveCode(models.Model):
    """One stable QR code or link that routes each new contact to a staff account by rule."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="live_codes")
    name = models.CharField(max_length=120)
    store = models.ForeignKey(Store, on_delete=models.PROTECT, null=True, blank=True)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, null=True, blank=True)
    rule = models.CharField(max_length=16, choices=RoutingRule.choices)
    # {"weekly": {"mon": [{"start": "09:00", "end": "18:00", "accounts": [id, …]}], …},
    #  "special": {"2026-12-24": [slots…]}} — times in the brand's time zone, end exclusive.
    schedule = models.JSONField(default=dict, blank=True)
    welcome_text = models.TextField(blank=True)
    welcome_attachments = models.JSONField(default=list, blank=True)
    # The unguessable part of the public landing URL (/c/<token>/).
    public_token = models.CharField(max_length=32, unique=True)
    # The carrier's own QR link (WeCom contact way qr_code), once the carrier sync sets it.
    carrier_qr_url = models.URLField(max_length=500, blank=True)
    # The WeCom multi-person contact way behind this code (sync_live_code_carrier): its
    # config_id, the member userids last written to it, when, and the last sync error.
    carrier_config_id = models.CharField(max_length=64, blank=True)
    carrier_members = models.JSONField(default=list, blank=True)
    carrier_synced_at = models.DateTimeField(null=True, blank=True)
    carrier_sync_error = models.CharField(max_length=300, blank=True)
    # A ticket counter: round-robin and weighted rotation read their next position from it.
    rotation = models.BigIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = LiveCodeQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def state(self) -> str:
        return f"lc{self.pk}"


class LiveCodeMember(models.Model):
    live_code = models.ForeignKey(LiveCode, on_delete=models.CASCADE, related_name="members")
    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="+")
    weight = models.PositiveIntegerField(default=1)
    is_backup = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["is_backup", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["live_code", "account"], name="live_code_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.live_code_id}:{self.account_id}"


class AccountDay(models.Model):
    """Adds per carrier account per day (in the brand's time zone). `assigned` counts routing
    decisions made here, `added` counts adds reported by the carrier; the cap holds while both
    stay below it. Both change only by conditional UPDATE."""

    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    assigned = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day"], name="account_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day}"


class Alert(models.Model):
    """Shown in the console to a live code's owner: e.g. no capacity left today."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    live_code = models.ForeignKey(LiveCode, on_delete=models.CASCADE, related_name="alerts")
    owner = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, blank=True)
    kind = models.CharField(max_length=32)
    day = models.DateField()
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["live_code", "kind", "day"], name="alert_once_per_code_kind_day"
            )
        ]

    def __str__(self) -> str:
        return self.message


class ContactAdd(models.Model):
    """One add of a customer by a carrier account, with what brought it. The first add of a
    customer through any channel is their first touch (`is_first_touch`)."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(CarrierAccount, on_delete=models.CASCADE, related_name="+")
    live_code = models.ForeignKey(LiveCode, on_delete=models.SET_NULL, null=True, blank=True)
    channel = models.ForeignKey(
        Channel, on_delete=models.SET_NULL, null=True, blank=True, related_name="adds"
    )
    partner = models.ForeignKey(Partner, on_delete=models.SET_NULL, null=True, blank=True)
    batch = models.ForeignKey(PackageCardBatch, on_delete=models.SET_NULL, null=True, blank=True)
    state = models.CharField(max_length=30, blank=True)
    added_at = models.DateTimeField()
    is_first_touch = models.BooleanField(default=False)

    class Meta:
        ordering = ["added_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "customer", "added_at"], name="contact_add_once"
            )
        ]
        indexes = [
            models.Index(fields=["brand", "channel", "added_at"], name="add_brand_channel_time"),
            models.Index(fields=["brand", "partner", "added_at"], name="add_brand_partner_time"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} via {self.channel_id}"


class ShortLink(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=32, unique=True)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, null=True, blank=True)
    live_code = models.ForeignKey(LiveCode, on_delete=models.CASCADE, null=True, blank=True)
    batch = models.ForeignKey(PackageCardBatch, on_delete=models.CASCADE, null=True, blank=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    target_url = models.URLField(max_length=1000, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.code


class LinkClick(models.Model):
    """A click on a short link. The IP is kept only as a truncated keyed hash."""

    link = models.ForeignKey(ShortLink, on_delete=models.CASCADE, related_name="clicks")
    clicked_at = models.DateTimeField()
    agent_class = models.CharField(max_length=16)
    ip_hash = models.CharField(max_length=16)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["link", "clicked_at"], name="click_link_time")]

    def __str__(self) -> str:
        return f"click {self.link_id}"


class Settlement(models.Model):
    """A partner's settlement for a period (inclusive dates in the brand's time zone)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        LOCKED = "locked", _("Settled (locked)")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="settlements")
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    figures = models.JSONField(default=dict)
    amount_owed_fen = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField()
    locked_at = models.DateTimeField(null=True, blank=True)
    locked_by = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "period_start", "period_end"], name="settlement_period_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.partner_id} {self.period_start}–{self.period_end}"


class AcquisitionSettings(models.Model):
    """Per-brand defaults: the fallback welcome sent when an add has no live code."""

    brand = models.OneToOneField(Brand, on_delete=models.CASCADE, related_name="+")
    default_welcome_text = models.TextField(blank=True)
    logo_png = models.BinaryField(blank=True, default=b"", help_text="Centred in QR codes")

    def __str__(self) -> str:
        return f"acquisition settings of {self.brand_id}"
