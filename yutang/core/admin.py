"""Django admin pages for core rows: look, never touch.

Every change to a brand, store, staff member, carrier account or token must go through
yutang.core.services, which check permissions, keep the rules (one role per brand, store
roles bound to stores, identifiers encrypted) and write the audit log in the same
transaction. The admin would bypass all of that, so every class here is read-only: no add,
change or delete, and no bulk actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from yutang.core.models import ApiToken, AuditLog, Brand, CarrierAccount, Staff, Store


class ReadOnlyAdmin(admin.ModelAdmin):
    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Brand)
class BrandAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "time_zone", "is_sample", "created_at"]


@admin.register(Store)
class StoreAdmin(ReadOnlyAdmin):
    list_display = ["code", "name", "brand", "kind", "city", "is_active"]
    list_filter = ["brand", "kind", "is_active"]


@admin.register(Staff)
class StaffAdmin(ReadOnlyAdmin):
    list_display = ["display_name", "user", "brand", "role", "is_active"]
    list_filter = ["brand", "role"]
    exclude = ["phone_encrypted", "phone_hash"]


@admin.register(CarrierAccount)
class CarrierAccountAdmin(ReadOnlyAdmin):
    list_display = ["display_name", "kind", "brand", "staff", "store", "is_active"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "prefix", "staff", "created_at", "last_used_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "brand", "actor_label", "action", "target_type", "target_id"]
    list_filter = ["brand", "action"]
