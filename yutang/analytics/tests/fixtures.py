"""A hand-made brand whose March 2026 figures are worked out by hand in docs/metrics.md's
terms (see test_services.py for the expected numbers and why).

Brand time zone Asia/Shanghai (UTC+8). Stores: A (direct), B (franchise).

| customer | store | channel      | what happens (Shanghai time)                                            |
|----------|-------|--------------|--------------------------------------------------------------------------|
| c1       | A     | package_card | added w1 Feb 10; paid ¥100 Feb 11; deleted Mar 5; re-added Mar 20; paid ¥50 Mar 21 (mini-program) |
| c2       | A     | package_card | added w1 Mar 1 00:30 (Feb 28 in UTC); paid ¥99 Mar 2 (tmall), ¥30 Mar 10 (mini-program); ¥10 refunded Mar 11 |
| c3       | B     | xhs          | added w2 Mar 3 10:00, official account Mar 3 11:00, w2 again Mar 4 (already held); paid ¥200 Mar 8 (store POS); removed from w2 Mar 25 |
| c4       | —     | xhs          | added w1 Mar 31 23:00; paid ¥60 Apr 2 10:00 (inside its 72 hours, after the period) |
| c5       | A     | package_card | deleted w1 Mar 6 without any add in the log; 2 marketing + 1 service messages in March |
| c6       | A     | —            | added w3 Jan 5; deleted Apr 2 (after the period)                         |
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from tests.factories import make_brand, make_staff, make_store
from yutang.commerce import services as commerce
from yutang.core.clock import FrozenClock, use_clock
from yutang.core.models import Brand, Staff, Store
from yutang.core.permissions import Role
from yutang.customers import services as customers
from yutang.customers.models import Customer
from yutang.events.services import ingest_events

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
#: When the fixture is written and, unless a test says otherwise, read.
NOW = dt.datetime(2026, 4, 15, tzinfo=dt.UTC)
MARCH = (dt.date(2026, 3, 1), dt.date(2026, 3, 31))


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


@dataclass
class World:
    brand: Brand
    admin: Staff
    store_a: Store
    store_b: Store
    customers: dict[str, Customer]


def _customer(admin: Staff, name: str, store: Store | None, channel: str) -> Customer:
    profile: dict[str, Any] = {"display_name": name}
    if store is not None:
        profile["owner_store_id"] = store.pk
    if channel:
        profile["source_channel"] = channel
    return customers.create_customer(
        actor=admin, identities=[{"kind": "external", "value": f"ext-{name}"}], profile=profile
    ).customer


def _event(customer: Customer, event_type: str, when: dt.datetime, key: str, **props: Any) -> dict:
    return {
        "type": event_type,
        "occurred_at": when,
        "customer_id": customer.pk,
        "idempotency_key": key,
        "properties": props,
    }


def build_world() -> World:
    with use_clock(FrozenClock(NOW)):
        brand = make_brand("分析测试品牌")
        store_a = make_store(brand, code="A", name="直营店 A")
        store_b = make_store(brand, code="B", name="加盟店 B", kind="franchise")
        admin = make_staff(brand, Role.BRAND_ADMIN)
        c = {
            "c1": _customer(admin, "c1", store_a, "package_card"),
            "c2": _customer(admin, "c2", store_a, "package_card"),
            "c3": _customer(admin, "c3", store_b, "xhs"),
            "c4": _customer(admin, "c4", None, "xhs"),
            "c5": _customer(admin, "c5", store_a, "package_card"),
            "c6": _customer(admin, "c6", store_a, ""),
        }
        wecom = {"carrier": "wecom"}
        events = [
            _event(c["c1"], "contact.added", at(2, 10), "c1-add-1", account_id="w1", **wecom),
            _event(c["c1"], "contact.deleted", at(3, 5), "c1-del", account_id="w1", **wecom),
            _event(c["c1"], "contact.added", at(3, 20), "c1-add-2", account_id="w1", **wecom),
            _event(c["c2"], "contact.added", at(3, 1, 0, 30), "c2-add", account_id="w1", **wecom),
            _event(c["c3"], "contact.added", at(3, 3, 10), "c3-add-w2", account_id="w2", **wecom),
            _event(c["c3"], "contact.added", at(3, 3, 11), "c3-add-oa", carrier="official_account"),
            _event(c["c3"], "contact.added", at(3, 4), "c3-add-w2-again", account_id="w2", **wecom),
            _event(c["c3"], "contact.removed", at(3, 25), "c3-rm", account_id="w2", **wecom),
            _event(c["c4"], "contact.added", at(3, 31, 23), "c4-add", account_id="w1", **wecom),
            _event(c["c5"], "contact.deleted", at(3, 6), "c5-del", account_id="w1", **wecom),
            _event(c["c6"], "contact.added", at(1, 5), "c6-add", account_id="w3", **wecom),
            _event(c["c6"], "contact.deleted", at(4, 2), "c6-del", account_id="w3", **wecom),
        ]
        for n, kind in enumerate(["marketing", "marketing", "service"]):
            events.append(
                _event(
                    c["c5"],
                    "message.sent",
                    at(3, 7 + n),
                    f"c5-msg-{n}",
                    message_id=f"m5-{n}",
                    kind=kind,
                    **wecom,
                )
            )
        events.append(
            _event(
                c["c1"],
                "message.sent",
                at(3, 21),
                "c1-msg",
                message_id="m1",
                kind="marketing",
                **wecom,
            )
        )
        results = ingest_events(brand=brand, items=events)
        assert all(r.status == "stored" for r in results), results
        for customer, source, order_id, when, fen in [
            ("c1", "mini_program", "O-1", at(2, 11), 10000),
            ("c1", "mini_program", "O-2", at(3, 21), 5000),
            ("c2", "tmall", "O-3", at(3, 2), 9900),
            ("c2", "mini_program", "O-4", at(3, 10), 3000),
            ("c3", "store_pos", "O-5", at(3, 8), 20000),
            ("c4", "mini_program", "O-6", at(4, 2, 10), 6000),
        ]:
            commerce.post_order(
                brand=brand, actor=admin, source=source, external_id=order_id, paid_at=when,
                amount_fen=fen, customer_id=c[customer].pk,
            )  # fmt: skip
        commerce.post_refund(
            brand=brand, actor=admin, source="mini_program", order_external_id="O-4",
            external_id="R-1", amount_fen=1000, refunded_at=at(3, 11),
        )  # fmt: skip
    return World(brand=brand, admin=admin, store_a=store_a, store_b=store_b, customers=c)
