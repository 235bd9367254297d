"""The permission matrix: role × action → scope, in one place.

A scope says which rows of an action's kind a role reaches:

- ``brand``: every row of the caller's brand;
- ``store``: rows of the stores the caller is bound to;
- ``self``: rows that are the caller's own (their staff record, their carrier accounts);
- absent: the action is denied.

Querysets apply the scope (``Model.objects.for_actor(actor, action)``), so code never
fetches first and checks after. ``docs/permissions.md`` shows this table for people; a test
compares the two so they cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from yutang.core.errors import N_, PermissionDenied

if TYPE_CHECKING:
    from yutang.core.models import Staff


class Role(StrEnum):
    BRAND_ADMIN = "brand_admin"
    OPERATIONS_LEAD = "operations_lead"
    COMMUNITY_OPERATOR = "community_operator"
    STORE_MANAGER = "store_manager"
    ADVISOR = "advisor"
    ANALYST = "analyst"


ROLE_LABELS: dict[Role, str | Promise] = {
    Role.BRAND_ADMIN: _("Brand admin"),
    Role.OPERATIONS_LEAD: _("Operations lead"),
    Role.COMMUNITY_OPERATOR: _("Community operator"),
    Role.STORE_MANAGER: _("Store manager"),
    Role.ADVISOR: _("Advisor"),
    Role.ANALYST: _("Analyst"),
}

#: Roles bound to one or more stores; everything they see is limited to those stores.
STORE_ROLES = frozenset({Role.STORE_MANAGER, Role.ADVISOR})


class Scope(StrEnum):
    BRAND = "brand"
    STORE = "store"
    SELF = "self"


class Action(StrEnum):
    BRAND_VIEW = "brand.view"
    BRAND_MANAGE = "brand.manage"
    STORE_VIEW = "store.view"
    STORE_CREATE = "store.create"
    STORE_UPDATE = "store.update"
    STORE_DELETE = "store.delete"
    STAFF_VIEW = "staff.view"
    STAFF_MANAGE = "staff.manage"
    CARRIER_ACCOUNT_VIEW = "carrier_account.view"
    CARRIER_ACCOUNT_MANAGE = "carrier_account.manage"
    AUDIT_VIEW = "audit.view"
    TOKEN_MANAGE = "token.manage"
    IDENTIFIERS_VIEW = "identifiers.view"
    CUSTOMER_VIEW = "customer.view"
    CUSTOMER_MANAGE = "customer.manage"
    SEGMENT_VIEW = "segment.view"
    SEGMENT_MANAGE = "segment.manage"
    SEGMENT_EXPORT = "segment.export"
    MESSAGE_VIEW = "message.view"
    MESSAGE_SEND = "message.send"
    MESSAGE_BROADCAST = "message.broadcast"
    MESSAGING_POLICY_MANAGE = "messaging_policy.manage"
    SIMULATION_RUN = "simulation.run"
    CHANNEL_VIEW = "channel.view"
    CHANNEL_MANAGE = "channel.manage"
    LIVE_CODE_MANAGE = "live_code.manage"
    PARTNER_VIEW = "partner.view"
    PARTNER_MANAGE = "partner.manage"
    ANALYTICS_VIEW = "analytics.view"
    ANALYTICS_EXPORT = "analytics.export"
    JOURNEY_VIEW = "journey.view"
    JOURNEY_MANAGE = "journey.manage"
    TASK_VIEW = "task.view"
    TASK_MANAGE = "task.manage"


B, S, Me = Scope.BRAND, Scope.STORE, Scope.SELF

# fmt: off
MATRIX: dict[Role, dict[Action, Scope]] = {
    Role.BRAND_ADMIN: {a: B for a in Action},
    Role.OPERATIONS_LEAD: {
        Action.BRAND_VIEW: B,
        Action.STORE_VIEW: B, Action.STORE_CREATE: B, Action.STORE_UPDATE: B,
        Action.STAFF_VIEW: B,
        Action.CARRIER_ACCOUNT_VIEW: B, Action.CARRIER_ACCOUNT_MANAGE: B,
        Action.TOKEN_MANAGE: Me,
        Action.IDENTIFIERS_VIEW: B,
        Action.CUSTOMER_VIEW: B, Action.CUSTOMER_MANAGE: B,
        Action.SEGMENT_VIEW: B, Action.SEGMENT_MANAGE: B, Action.SEGMENT_EXPORT: B,
        Action.MESSAGE_VIEW: B, Action.MESSAGE_SEND: B, Action.MESSAGE_BROADCAST: B,
        Action.MESSAGING_POLICY_MANAGE: B,
        Action.SIMULATION_RUN: B,
        Action.CHANNEL_VIEW: B, Action.CHANNEL_MANAGE: B, Action.LIVE_CODE_MANAGE: B,
        Action.PARTNER_VIEW: B, Action.PARTNER_MANAGE: B,
        Action.ANALYTICS_VIEW: B, Action.ANALYTICS_EXPORT: B,
        Action.JOURNEY_VIEW: B, Action.JOURNEY_MANAGE: B,
        Action.TASK_VIEW: B, Action.TASK_MANAGE: B,
    },
    Role.COMMUNITY_OPERATOR: {
        Action.BRAND_VIEW: B,
        Action.STORE_VIEW: B,
        Action.STAFF_VIEW: B,
        Action.CARRIER_ACCOUNT_VIEW: B,
        Action.TOKEN_MANAGE: Me,
        Action.CUSTOMER_VIEW: B, Action.CUSTOMER_MANAGE: B,
        Action.SEGMENT_VIEW: B, Action.SEGMENT_MANAGE: B, Action.SEGMENT_EXPORT: B,
        Action.MESSAGE_VIEW: B, Action.MESSAGE_SEND: B, Action.MESSAGE_BROADCAST: B,
        Action.CHANNEL_VIEW: B,
        Action.ANALYTICS_VIEW: B,
        Action.JOURNEY_VIEW: B,
        Action.TASK_VIEW: B, Action.TASK_MANAGE: B,
    },
    Role.STORE_MANAGER: {
        Action.BRAND_VIEW: B,
        Action.STORE_VIEW: S, Action.STORE_UPDATE: S,
        Action.STAFF_VIEW: S, Action.STAFF_MANAGE: S,
        Action.CARRIER_ACCOUNT_VIEW: S, Action.CARRIER_ACCOUNT_MANAGE: S,
        Action.TOKEN_MANAGE: Me,
        Action.IDENTIFIERS_VIEW: S,
        Action.CUSTOMER_VIEW: S, Action.CUSTOMER_MANAGE: S,
        Action.SEGMENT_VIEW: S, Action.SEGMENT_EXPORT: S,
        Action.MESSAGE_VIEW: S, Action.MESSAGE_SEND: S, Action.MESSAGE_BROADCAST: S,
        Action.CHANNEL_VIEW: S, Action.LIVE_CODE_MANAGE: S,
        Action.ANALYTICS_VIEW: S, Action.ANALYTICS_EXPORT: S,
        Action.TASK_VIEW: S, Action.TASK_MANAGE: S,
    },
    Role.ADVISOR: {
        Action.BRAND_VIEW: B,
        Action.STORE_VIEW: S,
        Action.STAFF_VIEW: Me,
        Action.CARRIER_ACCOUNT_VIEW: Me, Action.CARRIER_ACCOUNT_MANAGE: Me,
        Action.TOKEN_MANAGE: Me,
        Action.IDENTIFIERS_VIEW: S,
        Action.CUSTOMER_VIEW: S, Action.CUSTOMER_MANAGE: S,
        Action.SEGMENT_VIEW: S,
        Action.MESSAGE_VIEW: Me, Action.MESSAGE_SEND: Me,
        Action.ANALYTICS_VIEW: S,
        Action.TASK_VIEW: S, Action.TASK_MANAGE: S,
    },
    Role.ANALYST: {
        Action.BRAND_VIEW: B,
        Action.STORE_VIEW: B,
        Action.STAFF_VIEW: B,
        Action.CARRIER_ACCOUNT_VIEW: B,
        Action.TOKEN_MANAGE: Me,
        Action.CUSTOMER_VIEW: B,
        Action.SEGMENT_VIEW: B, Action.SEGMENT_EXPORT: B,
        Action.MESSAGE_VIEW: B,
        Action.CHANNEL_VIEW: B, Action.PARTNER_VIEW: B,
        Action.ANALYTICS_VIEW: B, Action.ANALYTICS_EXPORT: B,
        Action.JOURNEY_VIEW: B,
        Action.TASK_VIEW: B,
    },
}
# fmt: on

#: Which roles a role may hand out when creating or editing staff. No one can grant a role
#: above their own, so a store manager can only add advisors to their own stores.
ASSIGNABLE_ROLES: dict[Role, frozenset[Role]] = {
    Role.BRAND_ADMIN: frozenset(Role),
    Role.STORE_MANAGER: frozenset({Role.ADVISOR}),
}


def scope_for(role: Role | str, action: Action) -> Scope | None:
    return MATRIX[Role(role)].get(action)


def is_allowed(actor: Staff, action: Action) -> bool:
    return actor.is_active and scope_for(actor.role, action) is not None


def require(actor: Staff, action: Action) -> Scope:
    """Return the actor's scope for the action or raise PermissionDenied."""
    scope = scope_for(actor.role, action) if actor.is_active else None
    if scope is None:
        raise PermissionDenied(
            N_("Your role may not do this ({action})."), params={"action": action}, code="forbidden"
        )
    return scope


def can_assign_role(actor: Staff, role: Role | str) -> bool:
    return Role(role) in ASSIGNABLE_ROLES.get(Role(actor.role), frozenset())


def require_brand_wide(actor: Staff, action: Action) -> None:
    """For writes that resolve people across the whole brand (event ingestion, orders,
    imports): a store-scoped role could otherwise reach other stores' customers through
    identity resolution, so these are for brand-wide roles and integrations only."""
    if require(actor, action) is not Scope.BRAND:
        raise PermissionDenied(
            N_("Only brand-wide roles may do this; it can reach customers of every store."),
            code="forbidden",
        )
