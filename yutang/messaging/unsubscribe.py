"""One-click unsubscribe (RFC 8058) from the link in a marketing email: the token names the
carrier account and the customer (`yutang.carriers.unsubscribe`); unsubscribing withdraws the
customer's marketing consent on that carrier as a `consent.changed` event, once."""

from __future__ import annotations

from dataclasses import dataclass

from yutang.carriers import unsubscribe as links
from yutang.core import clock
from yutang.core.errors import N_, NotFound
from yutang.core.models import CarrierAccount
from yutang.customers import services as customers
from yutang.customers.models import Consent, Customer
from yutang.events.services import ingest_one


@dataclass(frozen=True)
class Subscription:
    account: CarrierAccount
    customer: Customer
    withdrawn: bool


def subscription(token: str) -> Subscription:
    """Who a link is for and whether they already unsubscribed; NotFound for a link that is
    forged, altered, expired, or whose account or customer is gone."""
    try:
        account_id, customer_id = links.read_token(token)
    except links.InvalidToken:
        raise NotFound(
            N_("This unsubscribe link is invalid or has expired."), field="token"
        ) from None
    account = CarrierAccount.objects.select_related("brand").filter(pk=account_id).first()
    customer = Customer.objects.filter(
        pk=customer_id, brand_id=getattr(account, "brand_id", 0)
    ).first()
    if account is None or customer is None:
        raise NotFound(N_("This unsubscribe link is invalid or has expired."), field="token")
    customer = customers.survivor(customer)
    withdrawn = Consent.objects.filter(
        customer=customer, purpose="marketing", carrier=account.kind, status="withdrawn"
    ).exists()
    return Subscription(account=account, customer=customer, withdrawn=withdrawn)


def unsubscribe(token: str) -> bool:
    """Withdraw marketing consent on the link's carrier. True when this withdrew it, False
    when it was withdrawn already (a second click changes nothing)."""
    found = subscription(token)
    if found.withdrawn:
        return False
    current = Consent.objects.filter(
        customer=found.customer, purpose="marketing", carrier=found.account.kind
    ).first()
    # One event per consent state: clicks repeated (or raced) in this state store one event;
    # after the customer opts in again, a click withdraws again.
    state = int(current.changed_at.timestamp()) if current else 0
    result = ingest_one(
        brand=found.account.brand,
        item={
            "type": "consent.changed",
            "occurred_at": clock.now(),
            "source": "carrier",
            "customer_id": found.customer.pk,
            "idempotency_key": f"unsubscribe-link:{found.account.pk}:{found.customer.pk}:{state}",
            "properties": {
                "purpose": "marketing",
                "status": "withdrawn",
                "carrier": found.account.kind,
                "proof": "one-click unsubscribe link (RFC 8058)",
            },
        },
    )
    return result.status == "stored"
