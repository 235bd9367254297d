"""What the demo brand does besides what its simulated customers do, so that every console
page of `yutang demo` shows something real: an import, an API token and a merge to review.

Everything goes through the services a real brand's staff and integrations use:

- **An import at the start.** On day one the operations lead imports the brand's Tmall member
  list (`customers.imports.create_import`, run in this process): a few past buyers with their
  name, phone and Taobao buyer name, and one row with a mistyped phone number, which the
  import rejects and reports in its error file.
- **An API token.** The operations lead creates the token the brand's ERP uses for its order
  sync (`core.services.create_api_token`); the console shows only its first characters.
- **A merge to review.** One of the simulated people who added the brand through the parcel
  card (包裹卡) claims the card's cashback with the Taobao buyer name of an imported member: a
  `custom.parcel_card_claimed` event carrying both identities, the contact's WeCom
  external_userid and the Taobao buyer name (`events.services.ingest_events`). The two match
  two different customers. Both kinds are weak identities (shared, reused, mistyped), which
  the merge policy never merges on its own: the pair waits in the merge review queue.

Idempotent: a second run finds the import, the token and the claim (by its idempotency key)
and creates nothing again."""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

from yutang.acquisition.models import ContactAdd
from yutang.core import clock
from yutang.core import services as core
from yutang.core.models import ApiToken, Brand, Staff
from yutang.customers import imports
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Identity, ImportJob, MergeCandidate
from yutang.customers.services import find_by_identity
from yutang.events import services as events

#: The imported file (customers, the Yutang column layout), as the brand exported it.
IMPORT_FILENAME = "天猫会员-2025.csv"
IMPORT_ROWS = (
    ("name", "phone", "taobao_buyer", "city", "channel", "tags"),
    ("林晓雯（示例）", "13900001001", "tb_xiaowen_lin", "上海", "tmall", "天猫会员"),
    ("陈雨桐（示例）", "13900001002", "tb_yutong88", "杭州", "tmall", "天猫会员"),
    ("王佳怡（示例）", "13900001003", "tb_jiayi_w", "南京", "tmall", "天猫会员"),
    ("赵思琪（示例）", "1390000100", "tb_siqi_zhao", "苏州", "tmall", "天猫会员"),  # a digit short
    ("刘梦瑶（示例）", "13900001005", "tb_mengyao_l", "上海", "tmall", "天猫会员"),
)
#: The row (1-based data row numbering of the import: the header is row 1) that is rejected.
BAD_ROW = 5
#: The imported member whose Taobao buyer name the simulated person gives.
CLAIMED_BUYER = "tb_xiaowen_lin"
TOKEN_NAME = "ERP 订单同步 ERP order sync"
#: The staff member (from the sample data set) who imports and owns the ERP's token.
LEAD_USERNAME = "sample.lead"
CLAIM_SOURCE = "parcel_card_form"
CLAIM_CHANNEL = "package_card"
IDENTITY_KIND = "wecom_external_userid"


def import_csv() -> bytes:
    return ("\n".join(",".join(row) for row in IMPORT_ROWS) + "\n").encode("utf-8")


def lead_of(brand: Brand) -> Staff:
    lead = Staff.objects.filter(brand=brand, user__username=LEAD_USERNAME).first()
    if lead is None:  # a brand without the sample set: its first operations lead or admin
        lead = (
            Staff.objects.filter(brand=brand, role__in=["operations_lead", "brand_admin"])
            .order_by("role", "pk")
            .first()
        )
    if lead is None:
        raise LookupError(f"{brand.name} has no operations lead or admin to act as.")
    return lead


def at_start(*, brand: Brand, start: dt.date) -> tuple[ImportJob, ApiToken]:
    """Day one, 09:30 local: the lead imports the Tmall member list and creates the ERP's
    token. Returns the import job and the token (found, when an earlier run made them)."""
    lead = lead_of(brand)
    local = dt.datetime.combine(start, dt.time(9, 30), tzinfo=zoneinfo.ZoneInfo(brand.time_zone))
    with clock.use_clock(clock.FrozenClock(local.astimezone(dt.UTC))):
        job = ImportJob.objects.filter(brand=brand, filename=IMPORT_FILENAME).first()
        if job is None:
            job = imports.create_import(
                actor=lead, brand=brand, kind="customers", upload=io.BytesIO(import_csv()),
                filename=IMPORT_FILENAME, run_now=True,
            )  # fmt: skip
        token = ApiToken.objects.filter(brand=brand, name=TOKEN_NAME).first()
        if token is None:
            token, _secret = core.create_api_token(actor=lead, staff=lead, name=TOKEN_NAME)
    return job, token


def claim_cashback(*, brand: Brand) -> MergeCandidate | None:
    """The first simulated person who added through the parcel card claims its cashback with
    the imported member's Taobao buyer name, ten minutes after adding. None when no one
    added through the parcel card (or the member was not imported)."""
    first = (
        ContactAdd.objects.filter(brand=brand, channel__code=CLAIM_CHANNEL, is_first_touch=True)
        .order_by("added_at", "pk")
        .first()
    )
    member = find_by_identity(
        brand=brand, identity=normalize_identity("taobao_buyer", CLAIMED_BUYER)
    )
    if first is None or member is None:
        return None
    contact = Identity.objects.filter(customer_id=first.customer_id, kind=IDENTITY_KIND).first()
    if contact is None:
        return None
    claimed_at = first.added_at + dt.timedelta(minutes=10)
    with clock.use_clock(clock.FrozenClock(claimed_at)):
        events.ingest_events(
            brand=brand,
            items=[
                {
                    "type": "custom.parcel_card_claimed",
                    "occurred_at": claimed_at,
                    "idempotency_key": f"demo:parcel-card-claim:{first.customer_id}",
                    "source": CLAIM_SOURCE,
                    "identities": [
                        {"kind": IDENTITY_KIND, "value": contact.value},
                        {"kind": "taobao_buyer", "value": CLAIMED_BUYER},
                    ],
                    "properties": {"reward": "cashback 5 yuan", "card": "2026 spring"},
                }
            ],
        )
    return MergeCandidate.objects.filter(
        brand=brand,
        first_id__in=[first.customer_id, member.pk],
        second_id__in=[first.customer_id, member.pk],
    ).first()
