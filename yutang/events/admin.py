"""Read-only admin views; parked consumer failures are visible here and in `yutang consumers`."""

from django.contrib import admin

from yutang.core.admin import ReadOnlyAdmin
from yutang.events.models import ConsumerFailure, ConsumerOffset, Event


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "brand", "customer", "type", "occurred_at", "source"]
    list_filter = ["brand", "type"]


@admin.register(ConsumerOffset)
class ConsumerOffsetAdmin(ReadOnlyAdmin):
    list_display = ["name", "position", "updated_at"]


@admin.register(ConsumerFailure)
class ConsumerFailureAdmin(ReadOnlyAdmin):
    list_display = ["consumer", "event", "attempts", "parked", "next_attempt_at", "updated_at"]
    list_filter = ["consumer", "parked"]
