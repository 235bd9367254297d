"""Read-only admin views (acquisition rows are written by its services, which audit them)."""

from django.contrib import admin

from yutang.acquisition.models import (
    Alert,
    Channel,
    ContactAdd,
    LiveCode,
    Partner,
    Settlement,
    ShortLink,
)
from yutang.core.admin import ReadOnlyAdmin


@admin.register(Channel)
class ChannelAdmin(ReadOnlyAdmin):
    list_display = ["code", "name", "type", "platform", "brand", "is_active"]
    list_filter = ["brand", "type"]


@admin.register(LiveCode)
class LiveCodeAdmin(ReadOnlyAdmin):
    list_display = ["name", "channel", "store", "rule", "is_active"]
    exclude = ["public_token"]


@admin.register(ContactAdd)
class ContactAddAdmin(ReadOnlyAdmin):
    list_display = ["customer", "account", "channel", "added_at", "is_first_touch"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["live_code", "kind", "day", "resolved_at"]


@admin.register(ShortLink)
class ShortLinkAdmin(ReadOnlyAdmin):
    list_display = ["channel", "live_code", "expires_at", "created_at"]
    exclude = ["code"]


@admin.register(Partner)
class PartnerAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "cps_bp", "cpa_fen", "fixed_fee_fen"]
    exclude = ["phone_encrypted", "phone_hash"]


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = ["partner", "period_start", "period_end", "status", "amount_owed_fen"]
