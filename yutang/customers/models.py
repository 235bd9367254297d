"""One profile per person per brand, many identities; tags, notes, consent, merges."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core import crypto
from yutang.core.models import Brand, ScopedQuerySet, Staff, Store
from yutang.core.permissions import Action, Scope, require


class IdentityKind(models.TextChoices):
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    WECHAT_UNIONID = "wechat_unionid", _("WeChat unionid")
    WECHAT_OPENID = "wechat_openid", _("WeChat openid")
    WECOM_EXTERNAL_USERID = "wecom_external_userid", _("WeCom external_userid")
    TAOBAO_BUYER = "taobao_buyer", _("Taobao/Tmall buyer")
    JD_BUYER = "jd_buyer", _("JD buyer")
    PDD_BUYER = "pdd_buyer", _("Pinduoduo buyer")
    DOUYIN_USER = "douyin_user", _("Douyin user")
    XIAOHONGSHU_USER = "xiaohongshu_user", _("Xiaohongshu user")
    WEIBO_USER = "weibo_user", _("Weibo user")
    APP_USER = "app_user", _("App user")
    EXTERNAL = "external", _("Brand's own id")


#: Identities that name one person with certainty: a match on two customers merges them
#: automatically under the default policy. Others queue a merge for review.
STRONG_KINDS = frozenset({IdentityKind.PHONE, IdentityKind.WECHAT_UNIONID, IdentityKind.EXTERNAL})


class CustomerQuerySet(ScopedQuerySet):
    """Active customers within the actor's reach. Store roles see their stores' customers;
    HQ roles see every customer except those of franchise stores, unless the brand allows it
    (see Store.objects.with_customer_access)."""

    def for_actor(self, actor: Staff, action: Action = Action.CUSTOMER_VIEW) -> CustomerQuerySet:
        scope = require(actor, action)
        qs = self.filter(brand_id=actor.brand_id, merged_into__isnull=True)
        if scope is Scope.BRAND and actor.brand.policy.hq_can_view_franchise_customers:
            return qs
        visible = Store.objects.with_customer_access(actor).values("pk")
        if scope is Scope.BRAND:
            return qs.filter(Q(owner_store__isnull=True) | Q(owner_store__in=visible))
        return qs.filter(owner_store__in=visible)


class Customer(models.Model):
    class Gender(models.TextChoices):
        UNKNOWN = "unknown", _("Unknown")
        FEMALE = "female", _("Female")
        MALE = "male", _("Male")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="customers")
    display_name = models.CharField(max_length=120, blank=True)
    gender = models.CharField(max_length=8, choices=Gender.choices, default=Gender.UNKNOWN)
    birthday = models.DateField(null=True, blank=True)
    province = models.CharField(max_length=32, blank=True)
    city = models.CharField(max_length=64, blank=True)
    source_channel = models.CharField(
        max_length=64, blank=True, help_text="First-touch channel code"
    )
    owner_store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="customers"
    )
    owner_staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="customers"
    )
    attributes = models.JSONField(default=dict, blank=True)
    # Lifecycle (new_contact → engaged → first_order → repeat → loyal, at_risk, lost) is
    # computed by the segments issue; the fields exist so every floor can read them.
    lifecycle_stage = models.CharField(max_length=16, blank=True, db_index=True)
    lifecycle_changed_at = models.DateTimeField(null=True, blank=True)
    # A customer absorbed by a merge stays as a row (for unmerge) pointing at the survivor.
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="absorbed"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["brand", "owner_store"], name="customer_brand_store"),
            models.Index(fields=["brand", "owner_staff"], name="customer_brand_staff"),
            models.Index(fields=["brand", "source_channel"], name="customer_brand_channel"),
            # Segments: "city = 上海 (and gender = female)" counts from this index alone.
            models.Index(
                fields=["brand", "city", "gender", "id"],
                name="customer_seg_city_gender",
                condition=models.Q(merged_into__isnull=True),
            ),
            # Segments: a rule's members (a set of customer ids from tags, events or
            # aggregates) are checked against the brand's live customers in this small index
            # alone, without reading customer rows.
            models.Index(
                fields=["brand", "id"],
                name="customer_seg_live",
                condition=models.Q(merged_into__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or f"#{self.pk}"


class OwnerChange(models.Model):
    """Who owned a customer from when. Written by every service that changes the owner store
    or staff, so that an order is attributed to the owner as of its paid time even when it is
    posted after the customer changed hands."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="owner_changes")
    owner_store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    owner_staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    valid_from = models.DateTimeField()
    reason = models.CharField(max_length=32)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["valid_from", "id"]
        indexes = [models.Index(fields=["customer", "valid_from"], name="owner_change_by_time")]

    def __str__(self) -> str:
        return f"#{self.customer_id} owned by {self.owner_store_id}/{self.owner_staff_id}"


class Identity(models.Model):
    """An identifier of a person, encrypted at rest and found by keyed hash."""

    # No single-column indexes of their own: the unique (brand, kind, namespace, value_hash),
    # (brand, value_hash) and (customer, kind) indexes below lead with these columns and serve
    # every lookup by them (and the foreign keys' cascades); each index more costs every new
    # identity written by ingestion and imports. No database constraint on `brand`
    # (`db_constraint=False`): the brand of the writer, checked per new identity at commit;
    # Django's cascade still deletes a brand's identities. `customer` keeps its constraint.
    brand = models.ForeignKey(
        Brand, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="identities", db_index=False
    )
    kind = models.CharField(max_length=32, choices=IdentityKind.choices)
    # The app id for wechat_openid (openids are per app); empty for other kinds.
    namespace = models.CharField(max_length=64, blank=True, default="")
    value_encrypted = models.TextField()
    value_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "kind", "namespace", "value_hash"], name="identity_unique_value"
            )
        ]
        indexes = [
            models.Index(fields=["customer", "kind"], name="identity_customer_kind"),
            # Resolution looks identities up by hash alone (the hash covers kind and namespace).
            models.Index(fields=["brand", "value_hash"], name="identity_brand_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.masked}"

    @property
    def value(self) -> str:
        return crypto.decrypt_pii(self.value_encrypted)

    @property
    def masked(self) -> str:
        return crypto.mask_identifier(self.kind, self.value)


class AttributeDefinition(models.Model):
    """The brand's schema for custom attributes."""

    class Type(models.TextChoices):
        STRING = "string", _("Text")
        NUMBER = "number", _("Number")
        BOOLEAN = "boolean", _("Yes/no")
        DATE = "date", _("Date")
        ENUM = "enum", _("Choice")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="attribute_definitions")
    key = models.SlugField(max_length=64)
    label = models.CharField(max_length=80)
    type = models.CharField(max_length=16, choices=Type.choices)
    choices = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "key"], name="attribute_key_unique")
        ]

    def __str__(self) -> str:
        return self.key


class TagGroup(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="tag_groups")
    name = models.CharField(max_length=64)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["brand", "name"], name="tag_group_unique")]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="tags")
    group = models.ForeignKey(TagGroup, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64)

    class Meta:
        ordering = ["group__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["group", "name"], name="tag_unique_in_group")
        ]

    def __str__(self) -> str:
        return f"{self.group.name}/{self.name}"


class CustomerTag(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="customer_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="customer_tags")
    source = models.CharField(max_length=16, default="manual")
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "tag"], name="customer_tag_unique")
        ]
        indexes = [models.Index(fields=["tag", "customer"], name="customer_tag_by_tag")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.tag_id}"


class Note(models.Model):
    """A follow-up note (跟进记录) by a staff member."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"note #{self.pk}"


class Consent(models.Model):
    """The customer's current word on one purpose over one carrier ("" = every carrier)."""

    class Purpose(models.TextChoices):
        MARKETING = "marketing", _("Marketing")
        SERVICE = "service", _("Service")

    class Status(models.TextChoices):
        GRANTED = "granted", _("Granted")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    # Indexed by the two indexes below, which lead with it, not on its own.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="consents", db_index=False
    )
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    carrier = models.CharField(max_length=32, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices)
    source = models.CharField(max_length=64, blank=True)
    proof = models.TextField(blank=True)
    changed_at = models.DateTimeField(help_text="When the person said it")
    recorded_at = models.DateTimeField(help_text="When Yutang learned it")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "purpose", "carrier"], name="consent_unique_per_purpose"
            )
        ]
        indexes = [
            # The delivery gate reads every consent of a batch's customers (customer, purpose,
            # carrier, status): with the status in the index that read is index-only instead of
            # a visit to each consent's heap row. It replaces the foreign key's own index.
            models.Index(
                fields=["customer", "purpose", "carrier", "status"], name="consent_customer_read"
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose}/{self.carrier or '*'}: {self.status}"


class CustomerMerge(models.Model):
    """A merge of `absorbed` into `kept`, recording every row that moved so that `unmerge`
    can restore both customers exactly."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    kept = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_kept")
    absorbed = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_absorbed")
    reason = models.CharField(max_length=200)
    actor = models.ForeignKey(Staff, on_delete=models.SET_NULL, null=True, related_name="+")
    moved = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"merge #{self.pk}: {self.absorbed_id} into {self.kept_id}"


class MergeCandidate(models.Model):
    """Two customers sharing a weak identity: queued for a person to decide."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        MERGED = "merged", _("Merged")
        DISMISSED = "dismissed", _("Dismissed")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    first = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    second = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["first", "second"], name="merge_candidate_unique_pair")
        ]

    def __str__(self) -> str:
        return f"candidate {self.first_id}~{self.second_id}"


class ImportJob(models.Model):
    """One uploaded file of customers or orders, imported by a worker (or the CLI)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Preview")
        PENDING = "pending", _("Waiting")
        CHECKING = "checking", _("Checking every row")
        RUNNING = "running", _("Importing")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="imports")
    kind = models.CharField(max_length=16)
    filename = models.CharField(max_length=255)
    path = models.CharField(max_length=500)
    encoding = models.CharField(max_length=32, blank=True)
    mapping = models.JSONField(null=True, blank=True)
    mapping_name = models.CharField(max_length=64, blank=True)
    all_or_nothing = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    # Known once the all-or-nothing check has counted the rows (else progress is by bytes).
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0)
    error_path = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} import #{self.pk} ({self.filename})"


class SavedView(models.Model):
    """A named set of customer-list filters a staff member saved (私有视图)."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    staff = models.ForeignKey(Staff, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=60)
    query = models.CharField(max_length=500)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["staff", "name"], name="saved_view_unique_name")
        ]

    def __str__(self) -> str:
        return self.name
