"""The permission matrix as a table: the code, this test and docs/permissions.md agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.core.models import Store
from yutang.core.permissions import MATRIX, Action, Role, can_assign_role

DOC = Path(__file__).resolve().parents[3] / "docs" / "permissions.md"

ROLES = [
    "brand_admin",
    "operations_lead",
    "community_operator",
    "store_manager",
    "advisor",
    "analyst",
]
# action: scope per role in ROLES order ("-" = denied)
EXPECTED = {
    "brand.view":             "brand brand brand brand brand brand",
    "brand.manage":           "brand -     -     -     -     -",
    "store.view":             "brand brand brand store store brand",
    "store.create":           "brand brand -     -     -     -",
    "store.update":           "brand brand -     store -     -",
    "store.delete":           "brand -     -     -     -     -",
    "staff.view":             "brand brand brand store self  brand",
    "staff.manage":           "brand -     -     store -     -",
    "carrier_account.view":   "brand brand brand store self  brand",
    "carrier_account.manage": "brand brand -     store self  -",
    "audit.view":             "brand -     -     -     -     -",
    "token.manage":           "brand self  self  self  self  self",
    "identifiers.view":       "brand brand -     store store -",
    "customer.view":          "brand brand brand store store brand",
    "customer.manage":        "brand brand brand store store -",
    "segment.view":           "brand brand brand store store brand",
    "segment.manage":         "brand brand brand -     -     -",
    "segment.export":         "brand brand brand store -     brand",
    "message.view":           "brand brand brand store self  brand",
    "message.send":           "brand brand brand store self  -",
    "message.broadcast":      "brand brand brand store -     -",
    "messaging_policy.manage": "brand brand -     -     -     -",
    "simulation.run":         "brand brand -     -     -     -",
    "channel.view":           "brand brand brand store -     brand",
    "channel.manage":         "brand brand -     -     -     -",
    "live_code.manage":       "brand brand -     store -     -",
    "partner.view":           "brand brand -     -     -     brand",
    "partner.manage":         "brand brand -     -     -     -",
    "analytics.view":         "brand brand brand store store brand",
    "analytics.export":       "brand brand -     store -     brand",
    "journey.view":           "brand brand brand -     -     brand",
    "journey.manage":         "brand brand -     -     -     -",
    "task.view":              "brand brand brand store store brand",
    "task.manage":            "brand brand brand store store -",
}  # fmt: skip


def _code_table() -> dict[str, list[str]]:
    return {
        action.value: [
            scope.value if (scope := MATRIX[Role(role)].get(action)) else "-" for role in ROLES
        ]
        for action in Action
    }


def test_matrix_matches_the_table():
    assert _code_table() == {action: cells.split() for action, cells in EXPECTED.items()}


def test_docs_show_the_same_matrix():
    text = DOC.read_text()
    block = text.split("<!-- matrix:start -->")[1].split("<!-- matrix:end -->")[0]
    rows = [line for line in block.strip().splitlines() if line.startswith("| `")]
    header = block.strip().splitlines()[0]
    assert re.findall(r"`(\w+)`", header) == ROLES
    documented = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        documented[cells[0].strip("`")] = ["-" if c == "—" else c for c in cells[1:]]
    assert documented == _code_table()


def test_analysts_never_see_identifiers_or_change_anything():
    analyst = MATRIX[Role.ANALYST]
    assert Action.IDENTIFIERS_VIEW not in analyst
    changing = [
        a for a in analyst if a.value.endswith((".manage", ".create", ".update", ".delete"))
    ]
    assert changing == [Action.TOKEN_MANAGE]


@pytest.mark.parametrize(
    ("granter", "role", "allowed"),
    [
        (Role.BRAND_ADMIN, Role.BRAND_ADMIN, True),
        (Role.BRAND_ADMIN, Role.ADVISOR, True),
        (Role.STORE_MANAGER, Role.ADVISOR, True),
        (Role.STORE_MANAGER, Role.STORE_MANAGER, False),
        (Role.STORE_MANAGER, Role.BRAND_ADMIN, False),
        (Role.OPERATIONS_LEAD, Role.ADVISOR, False),
        (Role.ADVISOR, Role.ADVISOR, False),
    ],
)
@pytest.mark.django_db
def test_who_may_grant_which_role(granter, role, allowed):
    brand = make_brand()
    store = make_store(brand)
    staff = make_staff(
        brand, granter, stores=[store] if granter in (Role.STORE_MANAGER, Role.ADVISOR) else []
    )
    assert can_assign_role(staff, role) is allowed


@pytest.mark.django_db
class TestFranchiseCustomerAccess:
    """Franchise stores own their customers' data (each rule of docs/permissions.md)."""

    def setup_stores(self, **settings):
        brand = make_brand(**settings)
        direct = make_store(brand, kind="direct")
        franchise = make_store(brand, kind="franchise")
        return brand, direct, franchise

    @pytest.mark.parametrize(
        "role", [Role.BRAND_ADMIN, Role.OPERATIONS_LEAD, Role.COMMUNITY_OPERATOR, Role.ANALYST]
    )
    def test_hq_roles_see_only_direct_stores_customers_by_default(self, role):
        brand, direct, franchise = self.setup_stores()
        hq = make_staff(brand, role)
        assert list(Store.objects.with_customer_access(hq)) == [direct]

    @pytest.mark.parametrize("role", [Role.BRAND_ADMIN, Role.OPERATIONS_LEAD, Role.ANALYST])
    def test_brand_setting_grants_hq_franchise_access(self, role):
        brand, direct, franchise = self.setup_stores(hq_can_view_franchise_customers=True)
        hq = make_staff(brand, role)
        assert set(Store.objects.with_customer_access(hq)) == {direct, franchise}

    @pytest.mark.parametrize("role", [Role.STORE_MANAGER, Role.ADVISOR])
    def test_franchise_store_staff_see_their_own_store(self, role):
        brand, direct, franchise = self.setup_stores()
        member = make_staff(brand, role, stores=[franchise])
        assert list(Store.objects.with_customer_access(member)) == [franchise]

    def test_direct_store_staff_never_see_the_franchise_even_when_hq_may(self):
        brand, direct, franchise = self.setup_stores(hq_can_view_franchise_customers=True)
        member = make_staff(brand, Role.ADVISOR, stores=[direct])
        assert list(Store.objects.with_customer_access(member)) == [direct]

    def test_other_brands_stores_never_appear(self):
        brand, direct, franchise = self.setup_stores(hq_can_view_franchise_customers=True)
        other, _, _ = self.setup_stores(hq_can_view_franchise_customers=True)
        hq = make_staff(other, Role.BRAND_ADMIN)
        assert not set(Store.objects.with_customer_access(hq)) & {direct, franchise}
