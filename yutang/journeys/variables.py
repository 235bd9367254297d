"""Template variables of journey messages and tasks beyond the profile ones (``{name}``,
``{brand}``, ``{city}``, rendered by the engine), read only when a text uses them, for a whole
batch at once:

- ``{channel}``, ``{hook}``, ``{hook_coupon}``, ``{live_code}`` — the customer's first touch:
  the channel (and live code) of their first add (acquisition's first-touch `ContactAdd`),
  else the channel named by their `source_channel`; ``{hook}`` is the channel's hook
  (`hook_description`, else `hook_gift`), ``{hook_coupon}`` its `hook_coupon_code`;
- ``{product}`` — the product of the customer's last order that sets its repurchase time: the
  one with the longest `usage_cycle_days`, else the first item that is a known product, else
  the first item's own ``name``.

A value Yutang does not know renders as an empty string. Variables are read when the step
runs (the last order at that moment)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

FIRST_TOUCH = ("channel", "hook", "hook_coupon", "live_code")
LAZY = (*FIRST_TOUCH, "product")


def needed(texts: Iterable[str]) -> set[str]:
    """The lazy variables these texts use."""
    found: set[str] = set()
    for text in texts:
        if "{" in text:
            found.update(name for name in LAZY if "{" + name + "}" in text)
    return found


def values_for(
    brand_id: int, customer_ids: Sequence[int], names: set[str]
) -> dict[int, dict[str, str]]:
    """{customer id: {variable: value}} for the named lazy variables (a few queries for the
    whole list, none when no name is wanted)."""
    out: dict[int, dict[str, str]] = {cid: {} for cid in customer_ids}
    if not customer_ids or not names:
        return out
    if names & set(FIRST_TOUCH):
        for cid, found in _first_touch(brand_id, customer_ids).items():
            out[cid].update(found)
    if "product" in names:
        for cid, product in last_order_products(brand_id, customer_ids).items():
            out[cid]["product"] = product["name"]
    for values in out.values():
        for name in names:
            values.setdefault(name, "")
    return out


def _first_touch(brand_id: int, customer_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    from yutang.acquisition.models import Channel, ContactAdd, LiveCode
    from yutang.customers.models import Customer

    found: dict[int, dict[str, str]] = {}
    # Each customer's first first-touch add with a channel, as ids; then its channels and
    # live codes (a handful for many customers), one query each.
    first: dict[int, tuple[int, int | None]] = {}
    adds = (
        ContactAdd.objects.filter(
            brand_id=brand_id, customer_id__in=list(customer_ids), is_first_touch=True
        )
        .order_by("added_at", "id")
        .values_list("customer_id", "channel_id", "live_code_id")
    )
    for cid, channel_id, code_id in adds:
        if cid not in first and channel_id is not None:
            first[cid] = (channel_id, code_id)
    if first:
        chosen = Channel.objects.in_bulk(sorted({ch for ch, _code in first.values()}))
        codes = LiveCode.objects.in_bulk(
            sorted({code for _ch, code in first.values() if code is not None})
        )
        for cid, (channel, live_code) in first.items():
            code = codes.get(live_code) if live_code is not None else None
            found[cid] = _channel_values(chosen[channel], code)
    rest = [cid for cid in customer_ids if cid not in found]
    if rest:
        codes = dict(
            Customer.objects.filter(pk__in=rest)
            .exclude(source_channel="")
            .values_list("pk", "source_channel")
        )
        channels = {
            c.code: c for c in Channel.objects.filter(brand_id=brand_id, code__in=codes.values())
        }
        for cid, code in codes.items():
            if code in channels:
                found[cid] = _channel_values(channels[code], None)
    return found


def _channel_values(channel: Any, live_code: Any) -> dict[str, str]:
    return {
        "channel": channel.name,
        "hook": channel.hook_description or channel.hook_gift,
        "hook_coupon": channel.hook_coupon_code,
        "live_code": live_code.name if live_code is not None else "",
    }


def last_order_products(brand_id: int, customer_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """{customer id: {"sku", "name", "cycle_days"}} of the product in each customer's last
    order (latest `paid_at`, then id) that sets the repurchase time (see the module doc)."""
    from yutang.commerce.models import Order, Product

    latest: dict[int, list[Any]] = {}
    orders = (
        Order.objects.filter(brand_id=brand_id, customer_id__in=list(customer_ids))
        .order_by("customer_id", "paid_at", "id")
        .values_list("customer_id", "items")
    )
    for cid, items in orders:
        latest[cid] = [i for i in items or [] if isinstance(i, dict)]
    skus = {str(i.get("sku")) for items in latest.values() for i in items if i.get("sku")}
    products = {p.sku: p for p in Product.objects.filter(brand_id=brand_id, sku__in=sorted(skus))}
    out: dict[int, dict[str, Any]] = {}
    for cid, items in latest.items():
        known = [products[str(i.get("sku"))] for i in items if str(i.get("sku")) in products]
        cycled = [p for p in known if p.usage_cycle_days]
        if cycled:
            best = max(cycled, key=lambda p: p.usage_cycle_days or 0)
            out[cid] = {"sku": best.sku, "name": best.name, "cycle_days": best.usage_cycle_days}
        elif known:
            out[cid] = {"sku": known[0].sku, "name": known[0].name, "cycle_days": None}
        elif items and isinstance(items[0].get("name"), str):
            out[cid] = {"sku": str(items[0].get("sku") or ""), "name": items[0]["name"],
                        "cycle_days": None}  # fmt: skip
    return out
