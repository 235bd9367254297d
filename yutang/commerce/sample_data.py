"""The customer part of the demo's sample data set: invented customers (示例顾客), tags, a
year of events and orders, created through the same services as real data. Deterministic."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from yutang.commerce.services import post_order, post_refund, upsert_product
from yutang.core import clock
from yutang.core.models import Brand, Staff, Store
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Customer
from yutang.events.services import ingest_events

CUSTOMERS = 40
PRODUCTS = [
    ("SK-ESS-30", "示例 修护精华 30ml", "护肤", 26900, 45),
    ("SK-CRM-50", "示例 保湿面霜 50g", "护肤", 19900, 60),
    ("MU-LIP-01", "示例 丝绒口红", "彩妆", 12900, 90),
]
CHANNELS = ["package_card", "xiaohongshu_koc", "store_qr", "sms"]
TAGS = [("兴趣", "护肤"), ("兴趣", "彩妆"), ("肤质", "干皮"), ("肤质", "油皮")]


def ensure_customers(brand: Brand) -> dict[str, int]:
    if Customer.objects.filter(brand=brand).exists():
        return {}
    rng = random.Random(20261125)  # noqa: S311 - deterministic sample data, not secrets
    for sku, name, category, price, cycle in PRODUCTS:
        upsert_product(
            actor=None,
            brand=brand,
            sku=sku,
            name=name,
            category=category,
            price_fen=price,
            usage_cycle_days=cycle,
        )
    tags = [customers.create_tag(actor=None, brand=brand, group=g, name=n) for g, n in TAGS]
    stores = list(Store.objects.filter(brand=brand).order_by("code"))
    advisors = {
        s.pk: list(Staff.objects.filter(brand=brand, stores=s, role="advisor")) for s in stores
    }
    start = clock.now() - dt.timedelta(days=365)
    orders = 0
    for n in range(CUSTOMERS):
        store = stores[n % len(stores)] if stores else None
        owner = (advisors.get(store.pk) or [None])[0] if store else None
        added = start + dt.timedelta(days=rng.randint(0, 300), hours=rng.randint(9, 20))
        channel = CHANNELS[n % len(CHANNELS)]
        customer = customers.resolve_customer(
            brand=brand,
            source="sample",
            identities=[
                normalize_identity("phone", f"1990000{n:04d}"),
                normalize_identity("wecom_external_userid", f"wmSample{n:04d}"),
            ],
            profile={
                "display_name": f"示例顾客{n + 1:02d}",
                "gender": rng.choice(["female", "female", "male"]),
                "city": store.city if store else "上海",
                "source_channel": channel,
                "owner_store_id": store.pk if store else None,
                "owner_staff_id": owner.pk if owner else None,
            },
        ).customer
        customers.set_tags(
            actor=None, customer=customer, add=[rng.choice(tags).pk], source="sample"
        )
        items: list[dict[str, Any]] = [
            {
                "type": "contact.added",
                "occurred_at": added,
                "customer_id": customer.pk,
                "idempotency_key": f"sample:add:{n}",
                "source": "sample",
                "properties": {"carrier": "sandbox", "channel": channel},
            }
        ]
        for k in range(rng.randint(0, 6)):
            at = added + dt.timedelta(days=rng.randint(1, 60), hours=rng.randint(0, 8))
            kind = rng.choice(["message.sent", "message.received", "link.clicked"])
            props = {
                "message.sent": {
                    "carrier": "sandbox",
                    "message_id": f"s{n}-{k}",
                    "kind": "service",
                },
                "message.received": {"carrier": "sandbox", "text": "请问有小样吗？"},
                "link.clicked": {"link": "sample-link"},
            }[kind]
            items.append(
                {
                    "type": kind,
                    "occurred_at": at,
                    "customer_id": customer.pk,
                    "idempotency_key": f"sample:{kind}:{n}:{k}",
                    "source": "sample",
                    "properties": props,
                }
            )
        now = clock.now()
        ingest_events(brand=brand, items=[i for i in items if i["occurred_at"] < now])
        if rng.random() < 0.6:
            sku, _name, _category, price, cycle = rng.choice(PRODUCTS)
            paid = added + dt.timedelta(days=rng.randint(0, 3), hours=2)
            for r in range(rng.randint(1, 3)):
                if paid >= clock.now():
                    break
                post_order(
                    brand=brand,
                    actor=None,
                    source=rng.choice(["tmall", "mini_program", "store_pos"]),
                    external_id=f"SAMPLE-{n:03d}-{r}",
                    paid_at=paid,
                    amount_fen=price,
                    customer_id=customer.pk,
                    items=[{"sku": sku, "quantity": 1}],
                )
                orders += 1
                paid += dt.timedelta(days=cycle + rng.randint(-5, 15))
    first = Customer.objects.filter(brand=brand, orders__isnull=False).order_by("pk").first()
    if first is not None:
        order = first.orders.order_by("pk").first()
        assert order is not None
        post_refund(
            brand=brand,
            actor=None,
            source=order.source,
            order_external_id=order.external_id,
            external_id="SAMPLE-REFUND-1",
            amount_fen=order.amount_fen // 2,
            refunded_at=order.paid_at + dt.timedelta(days=2),
            reason="示例 部分退款",
        )
    return {"customers": CUSTOMERS, "orders": orders}
