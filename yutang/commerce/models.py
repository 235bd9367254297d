"""Products, orders and refunds. Money is integer fen."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from yutang.core.models import Brand, Staff, Store
from yutang.customers.models import Customer


class OrderSource(models.TextChoices):
    TMALL = "tmall", _("Tmall")
    TAOBAO = "taobao", _("Taobao")
    JD = "jd", _("JD")
    PDD = "pdd", _("Pinduoduo")
    DOUYIN = "douyin", _("Douyin")
    YOUZAN = "youzan", _("Youzan")
    MINI_PROGRAM = "mini_program", _("Mini-program")
    STORE_POS = "store_pos", _("Store POS")
    OTHER = "other", _("Other")


class Product(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=64, blank=True)
    price_fen = models.BigIntegerField()
    # The expected repurchase interval: repurchase reminders and at-risk detection use it.
    usage_cycle_days = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sku"]
        constraints = [models.UniqueConstraint(fields=["brand", "sku"], name="product_sku_unique")]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Order(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="orders")
    source = models.CharField(max_length=16, choices=OrderSource.choices)
    external_id = models.CharField(max_length=100)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    paid_at = models.DateTimeField()
    amount_fen = models.BigIntegerField(help_text="What the customer paid")
    discount_fen = models.BigIntegerField(default=0)
    shipping_fen = models.BigIntegerField(default=0)
    refunded_fen = models.BigIntegerField(default=0)
    items = models.JSONField(default=list, blank=True)
    store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    # Attribution at paid time: the customer's owner staff and store, and first-touch channel.
    staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    attributed_store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="attributed_orders"
    )
    channel = models.CharField(max_length=64, blank=True)
    coupon_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    # The import job and file row that last recorded or met this order: a file that names the
    # same order twice is told so (row numbers) without holding every order id in memory.
    import_job = models.BigIntegerField(null=True, blank=True)
    import_row = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-paid_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "source", "external_id"], name="order_external_id_unique"
            )
        ]
        indexes = [models.Index(fields=["customer", "paid_at"], name="order_customer_time")]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class Refund(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds")
    external_id = models.CharField(max_length=100)
    amount_fen = models.BigIntegerField()
    refunded_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["refunded_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "external_id"], name="refund_external_id_unique"
            )
        ]

    def __str__(self) -> str:
        return f"refund {self.external_id} of {self.order}"
