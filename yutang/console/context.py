"""Template context for every console page: the current staff, their brands, the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from yutang.core.permissions import Action
from yutang.core.services import staff_brands

# (url name, label, icon, action needed to see the entry)
NAVIGATION: list[tuple[str, Any, str, Action]] = [
    ("console:home", _("Overview"), "speedometer2", Action.BRAND_VIEW),
    ("console:customers", _("Customers"), "person-vcard", Action.CUSTOMER_VIEW),
    ("console:merges", _("Merge review"), "intersect", Action.CUSTOMER_MANAGE),
    ("console:imports", _("Imports"), "upload", Action.CUSTOMER_MANAGE),
    ("console:segments", _("Segments"), "funnel", Action.SEGMENT_VIEW),
    ("console:segments_rfm", _("RFM and stages"), "bar-chart-steps", Action.SEGMENT_VIEW),
    ("console:auto_tags", _("Auto-tags"), "tags", Action.SEGMENT_VIEW),
    ("console:channels", _("Channels"), "broadcast", Action.CHANNEL_VIEW),
    ("console:live_codes", _("Live codes"), "qr-code", Action.CHANNEL_VIEW),
    ("console:channel_report", _("Channel report"), "graph-up", Action.CHANNEL_VIEW),
    ("console:partners", _("Partners"), "person-badge", Action.PARTNER_VIEW),
    ("console:journeys", _("Journeys"), "signpost-split", Action.JOURNEY_VIEW),
    ("console:tasks", _("Task inbox"), "check2-square", Action.TASK_VIEW),
    ("console:stores", _("Stores"), "shop", Action.STORE_VIEW),
    ("console:staff", _("Staff and roles"), "people", Action.STAFF_VIEW),
    ("console:carrier_accounts", _("Carrier accounts"), "chat-dots", Action.CARRIER_ACCOUNT_VIEW),
    ("console:outbox", _("Outbox"), "send", Action.MESSAGE_VIEW),
    ("console:broadcast", _("Broadcast"), "megaphone", Action.MESSAGE_BROADCAST),
    ("console:messaging_policy", _("Touch policy"), "moon-stars", Action.MESSAGE_VIEW),
    ("console:carrier_settings", _("Carrier settings"), "plug", Action.CARRIER_ACCOUNT_VIEW),
    ("console:tokens", _("API tokens"), "key", Action.TOKEN_MANAGE),
    ("console:audit", _("Audit log"), "journal-text", Action.AUDIT_VIEW),
    ("console:brand_settings", _("Brand settings"), "gear", Action.BRAND_MANAGE),
]


def console(request: HttpRequest) -> dict[str, Any]:
    staff = getattr(request, "staff", None)
    if staff is None:
        return {"current_staff": None}
    return {
        "current_staff": staff,
        "current_brand": staff.brand,
        "staff_brands": staff_brands(user=request.user) if request.user.is_authenticated else [],
        "navigation": [
            {"url": url, "label": label, "icon": icon}
            for url, label, icon, action in NAVIGATION
            if staff.can(action)
        ],
    }
