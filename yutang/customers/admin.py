"""Read-only admin views (changes go through the services, which audit them)."""

from django.contrib import admin

from yutang.core.admin import ReadOnlyAdmin
from yutang.customers.models import Customer, CustomerMerge, ImportJob, MergeCandidate, Tag


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ["id", "brand", "display_name", "owner_store", "source_channel", "merged_into"]
    list_filter = ["brand"]


@admin.register(CustomerMerge)
class CustomerMergeAdmin(ReadOnlyAdmin):
    list_display = ["id", "brand", "kept", "absorbed", "reason", "created_at", "undone_at"]
    exclude = ["moved"]


@admin.register(MergeCandidate)
class MergeCandidateAdmin(ReadOnlyAdmin):
    list_display = ["id", "brand", "first", "second", "status", "created_at"]


@admin.register(Tag)
class TagAdmin(ReadOnlyAdmin):
    list_display = ["id", "brand", "group", "name"]


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "brand",
        "kind",
        "filename",
        "status",
        "created",
        "rejected",
        "created_at",
    ]
    exclude = ["path", "error_path", "mapping"]
