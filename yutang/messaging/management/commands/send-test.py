"""`yutang send-test`: send a test message through the whole pipeline (outbox, gate,
adapter) and print what happened."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from yutang.core.errors import YutangError
from yutang.core.models import CarrierAccount
from yutang.customers.models import Customer
from yutang.messaging import services


class Command(BaseCommand):
    help = "Send a test (service) message to one customer through one carrier account, now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, required=True, help="Carrier account id")
        parser.add_argument("--customer", type=int, required=True, help="Customer id")
        parser.add_argument("--text", default="这是一条来自鱼塘的测试消息 / Yutang test message")

    def handle(self, *args: Any, **opts: Any) -> None:
        account = CarrierAccount.objects.filter(pk=opts["account"]).first()
        if account is None:
            raise CommandError(f"--account: no carrier account {opts['account']}")
        customer = Customer.objects.filter(pk=opts["customer"], brand_id=account.brand_id).first()
        if customer is None:
            raise CommandError(f"--customer: no customer {opts['customer']} in that brand")
        try:
            message = services.send_test(account=account, customer=customer, text=opts["text"])
        except YutangError as exc:
            raise CommandError(f"{exc.field or 'error'}: {exc.message}") from None
        detail = message.rule or message.reason
        self.stdout.write(
            f"message {message.pk}: {message.status}" + (f" ({detail})" if detail else "")
        )
        if message.status not in ("sent", "pending_confirmation"):
            raise CommandError(f"not sent: {message.status}")
