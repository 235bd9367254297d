"""Acquisition's answers to the carrier layer (registered in AcquisitionConfig.ready).

- `welcome_provider(fact)`: a contact added through a live code (`fact.state`) gets the live
  code's welcome, else the brand's acquisition default welcome; called FIRST on an add, inside
  WeCom's 20-second window. The channel's hook coupon is appended to the text.
  `welcomes_provider(facts)` is its batch form for a run of adds.
- `contact_added_handler(fact, customer_id)`: after messaging stored `contact.added`, counts
  the add and attributes it (`services.record_contact_added`), then re-syncs the live code's
  WeCom contact way in case the add filled the account.

Carriers sit below acquisition: they only see these two functions through their registries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import override

from yutang.acquisition import services
from yutang.carriers.inbound import ContactAdded, WelcomeContent
from yutang.core.models import CarrierAccount
from yutang.customers.models import Customer

#: How many attachments a welcome may carry on each carrier (WeCom: 9 besides the text).
ATTACHMENT_LIMITS = {"wecom": 9}
DEFAULT_ATTACHMENT_LIMIT = 9


def carrier_attachment(item: dict[str, Any]) -> dict[str, str]:
    """A live code's welcome attachment (docs/acquisition.md) in the carrier message format
    (as the adapters read it: image_url, url/title/text, appid/pagepath)."""
    kind = str(item.get("type", ""))
    if kind == "image":
        return {"type": "image", "image_url": str(item.get("url", ""))}
    if kind == "link":
        return {
            "type": "link",
            "url": str(item.get("url", "")),
            "title": str(item.get("title", "")),
            "text": str(item.get("description", "")),
        }
    return {
        "type": "miniprogram",
        "appid": str(item.get("appid", "")),
        "pagepath": str(item.get("page", "")),
        "title": str(item.get("title", "")),
    }


def coupon_line(code: str) -> str:
    with override("zh-hans"):  # what the customer reads: the brand's language
        return _("Your coupon code: %(code)s") % {"code": code}


def _account(fact: ContactAdded) -> CarrierAccount | None:
    return (
        CarrierAccount.objects.select_related("brand", "store")
        .filter(pk=fact.account_id, brand_id=fact.brand_id)
        .first()
    )


def welcome_provider(fact: ContactAdded) -> WelcomeContent | None:
    (content,) = welcomes_provider([fact])
    return content


def welcomes_provider(facts: Sequence[ContactAdded]) -> list[WelcomeContent | None]:
    """The batch form of `welcome_provider` (one answer per add, in order): the adds'
    accounts and live codes are read once per run."""
    accounts = {
        (pk, brand_id): (kind, name, store)
        for pk, brand_id, kind, name, store in CarrierAccount.objects.filter(
            pk__in={f.account_id for f in facts}
        ).values_list("pk", "brand_id", "kind", "display_name", "store__name")
    }
    answers: list[WelcomeContent | None] = [None] * len(facts)
    by_brand: dict[int, list[int]] = {}
    for i, fact in enumerate(facts):
        if (fact.account_id, fact.brand_id) in accounts:
            by_brand.setdefault(fact.brand_id, []).append(i)
    for brand_id, indexes in by_brand.items():
        asks = []
        for i in indexes:
            fact = facts[i]
            kind, staff_name, store_name = accounts[(fact.account_id, fact.brand_id)]
            asks.append(
                services.WelcomeAsk(
                    state=fact.state,
                    customer_name=fact.display_name,
                    staff_name=staff_name,
                    account_store_name=store_name or "",
                    attachment_limit=ATTACHMENT_LIMITS.get(kind, DEFAULT_ATTACHMENT_LIMIT),
                )
            )
        for i, welcome in zip(
            indexes, services.welcomes_for(brand_id=brand_id, asks=asks), strict=True
        ):
            answers[i] = _content(welcome)
    return answers


def _content(welcome: services.Welcome | None) -> WelcomeContent | None:
    if welcome is None:
        return None
    text = welcome.text
    if welcome.coupon_code and welcome.coupon_code not in text:
        text = f"{text}\n{coupon_line(welcome.coupon_code)}"
    return WelcomeContent(
        text=text, attachments=tuple(carrier_attachment(a) for a in welcome.attachments)
    )


def contact_added_handler(fact: ContactAdded, customer_id: int) -> None:
    account = _account(fact)
    customer = Customer.objects.filter(pk=customer_id, brand_id=fact.brand_id).first()
    if account is None or customer is None:
        return
    add = services.record_contact_added(
        brand=account.brand,
        account=account,
        customer=customer,
        state=fact.state,
        occurred_at=fact.occurred_at,
    )
    if add.live_code is not None and account.kind == "wecom":
        # The add may have filled the account: take it off the contact way now rather than at
        # the worker's next round (WeCom is called only if the member list changed).
        services.sync_live_code_carrier(live_code=add.live_code, at=fact.occurred_at)


def contacts_added_handler(adds: Sequence[tuple[ContactAdded, int]]) -> None:
    """The batch form of `contact_added_handler` for a run of adds on one account (as
    messaging hands them over); mixed accounts go one by one."""
    if not adds or len({fact.account_id for fact, _ in adds}) > 1:
        for fact, customer_id in adds:
            contact_added_handler(fact, customer_id)
        return
    account = _account(adds[0][0])
    if account is None:
        return
    found = Customer.objects.filter(
        pk__in=[c for _, c in adds], brand_id=account.brand_id
    ).in_bulk()
    chosen = [(fact, found[c]) for fact, c in adds if c in found]
    services.record_contacts_added(
        brand=account.brand,
        account=account,
        adds=[(customer, fact.state, fact.occurred_at) for fact, customer in chosen],
    )
    if account.kind == "wecom":
        for fact, _customer in chosen:
            code = services.live_code_for_state(brand=account.brand, state=fact.state)
            if code is not None:
                services.sync_live_code_carrier(live_code=code, at=fact.occurred_at)


def register() -> None:
    from yutang.carriers import inbound

    inbound.register_welcome_provider(welcome_provider, batch=welcomes_provider)
    inbound.register_contact_added_handler(contact_added_handler, batch=contacts_added_handler)
