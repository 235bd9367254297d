from django.contrib import admin

from yutang.core.models import ApiToken, AuditLog, Brand, CarrierAccount, Staff, Store


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "time_zone", "is_sample", "created_at"]


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "brand", "kind", "city", "is_active"]
    list_filter = ["brand", "kind", "is_active"]


@admin.register(Staff)
class StaffAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "brand", "role", "is_active"]
    list_filter = ["brand", "role"]
    exclude = ["phone_encrypted", "phone_hash"]


@admin.register(CarrierAccount)
class CarrierAccountAdmin(admin.ModelAdmin):
    list_display = ["display_name", "kind", "brand", "staff", "store", "is_active"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "staff", "created_at", "last_used_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "brand", "actor_label", "action", "target_type", "target_id"]
    list_filter = ["brand", "action"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
