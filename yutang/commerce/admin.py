"""Read-only admin views (orders are written by the services, which also log them)."""

from django.contrib import admin

from yutang.commerce.models import Order, Product, Refund
from yutang.core.admin import ReadOnlyAdmin


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ["sku", "name", "brand", "price_fen", "usage_cycle_days"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "source",
        "external_id",
        "brand",
        "customer",
        "paid_at",
        "amount_fen",
        "refunded_fen",
    ]
    list_filter = ["brand", "source"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "order", "amount_fen", "refunded_at"]
