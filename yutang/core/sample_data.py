"""A small, clearly labelled sample data set for `yutang init --sample-data` (the demo until
the simulator lands). Every name is invented and marked 示例 / Sample. Created through the
services, like any other data."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from yutang.core import services
from yutang.core.models import Brand, CarrierAccount, Staff, Store
from yutang.core.permissions import Role

BRAND_NAME = "示例品牌 Sample Brand"

STORES = [
    (
        "SH001",
        "示例 上海静安店",
        "direct",
        "上海",
        "静安区南京西路 1 号（示例）",
        "31.228611",
        "121.454722",
    ),
    (
        "SH002",
        "示例 上海徐汇店",
        "direct",
        "上海",
        "徐汇区衡山路 2 号（示例）",
        "31.204722",
        "121.445000",
    ),
    (
        "HZ001",
        "示例 杭州加盟店",
        "franchise",
        "杭州",
        "西湖区文三路 3 号（示例）",
        "30.277500",
        "120.131667",
    ),
]

# username, display name, role, store codes, phone
STAFF = [
    ("sample.lead", "示例 操盘手 林", Role.OPERATIONS_LEAD, [], "13800000001"),
    ("sample.community", "示例 社群运营 周", Role.COMMUNITY_OPERATOR, [], "13800000002"),
    ("sample.manager.sh", "示例 店长 王", Role.STORE_MANAGER, ["SH001", "SH002"], "13800000003"),
    ("sample.advisor.sh1", "示例 导购 小陈", Role.ADVISOR, ["SH001"], "13800000004"),
    ("sample.advisor.hz1", "示例 导购 小李", Role.ADVISOR, ["HZ001"], "13800000005"),
    ("sample.analyst", "示例 分析师 赵", Role.ANALYST, [], ""),
]

# display name, external id, staff username, store code, signature, daily cap
ACCOUNTS = [
    (
        "小鱼 · 穿搭顾问（示例）",
        "sample-wecom-chen",
        "sample.advisor.sh1",
        "SH001",
        "每天一套通勤穿搭",
        200,
    ),
    (
        "小鲤 · 杭州店（示例）",
        "sample-wecom-li",
        "sample.advisor.hz1",
        "HZ001",
        "门店新品第一时间告诉你",
        150,
    ),
    ("鱼塘福利官（示例）", "sample-wecom-lead", "sample.lead", None, "会员福利与活动", None),
]


def ensure(*, brand: Brand) -> dict[str, int]:
    """Create whatever part of the sample set is missing; return what was created."""
    made = {"stores": 0, "staff": 0, "carrier accounts": 0}
    stores: dict[str, Store] = {s.code: s for s in Store.objects.filter(brand=brand)}
    for code, name, kind, city, address, lat, lng in STORES:
        if code not in stores:
            stores[code] = services.create_store(
                actor=None, brand=brand, code=code, name=name, kind=kind, city=city,
                address=address, latitude=Decimal(lat), longitude=Decimal(lng), is_active=True,
            )  # fmt: skip
            made["stores"] += 1
    staff: dict[str, Staff] = {
        s.user.get_username(): s for s in Staff.objects.filter(brand=brand).select_related("user")
    }
    for username, display_name, role, codes, phone in STAFF:
        if username not in staff:
            staff[username] = services.create_staff(
                actor=None, brand=brand, username=username, display_name=display_name, role=role,
                store_ids=[stores[c].pk for c in codes], phone=phone,
            ).staff  # fmt: skip
            made["staff"] += 1
    existing = set(CarrierAccount.objects.filter(brand=brand).values_list("external_id", flat=True))
    for display_name, external_id, username, store_code, signature, cap in ACCOUNTS:
        if external_id not in existing:
            services.create_carrier_account(
                actor=None, brand=brand, kind=CarrierAccount.Kind.SANDBOX,
                external_id=external_id, display_name=display_name,
                staff_id=staff[username].pk, store_id=stores[store_code].pk if store_code else None,
                signature=signature, daily_add_cap=cap,
            )  # fmt: skip
            made["carrier accounts"] += 1
    for extend in _EXTENSIONS:
        made.update(extend(brand))
    return {k: v for k, v in made.items() if v}


#: Higher floors add their part of the sample (customers, orders, events) here, so this
#: floor does not import them. Each returns counts of what it created.
_EXTENSIONS: list[Callable[[Brand], dict[str, int]]] = []


def register_extension(extend: Callable[[Brand], dict[str, int]]) -> None:
    _EXTENSIONS.append(extend)
