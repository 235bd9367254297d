"""Order imports record a chunk of rows with one `post_orders` call, with exactly the outcome
of importing the rows one by one: same orders, buyers, attribution, events, aggregates,
counts and error file — merges, duplicates across chunks and bad rows included."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from tests.factories import make_brand, make_staff, make_store
from yutang.commerce import imports as order_imports
from yutang.commerce.models import Order, OrderSource, Refund
from yutang.commerce.services import (
    NewOrder,
    OrderResult,
    post_order,
    post_orders,
    refund_to_total,
)
from yutang.core import clock, tabular
from yutang.core.errors import Conflict, NotFound, ValidationFailed
from yutang.core.models import Brand
from yutang.core.permissions import Role
from yutang.customers import imports
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Customer, CustomerMerge
from yutang.customers.tests.test_imports import csv_bytes, errors_of, run
from yutang.events.models import CustomerAggregate, Event

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 4, 1, 2, 0, tzinfo=dt.UTC)
HEADER = ["source", "external_id", "phone", "external_customer_id", "paid_at", "amount_yuan",
          "store_code", "sku", "quantity", "status"]  # fmt: skip


def setup(brand: Brand) -> None:
    """Two stores, two advisors, and known buyers whose owner changed on 2026-04-11 (orders
    paid before count for the first owner, after for the second)."""
    admin = make_staff(brand)
    first, second = make_store(brand, code="S1"), make_store(brand, code="S2")
    alice = make_staff(brand, Role.ADVISOR, stores=[first], username=f"alice-{brand.pk}")
    bob = make_staff(brand, Role.ADVISOR, stores=[second], username=f"bob-{brand.pk}")
    with clock.use_clock(clock.FrozenClock(T0)):
        for n in range(4):
            customers.create_customer(
                actor=admin,
                identities=[{"kind": "phone", "value": f"1390000000{n}"}],
                profile={
                    "owner_store_id": first.pk,
                    "owner_staff_id": alice.pk,
                    "source_channel": "kol",
                },
            )
        customers.create_customer(
            actor=admin, identities=[{"kind": "external", "value": "VIP-9"}], profile={}
        )
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=10))):
        for n in range(2):
            customer = customers.find_by_identity(
                brand=brand,
                identity=normalize_identity("phone", f"1390000000{n}"),
            )
            assert customer is not None
            customers.update_customer(
                actor=admin,
                customer_id=customer.pk,
                owner_store_id=second.pk,
                owner_staff_id=bob.pk,
            )
    # An order the brand posted over the API before the import (the file repeats it).
    post_order(
        brand=brand,
        actor=None,
        source="jd",
        external_id="API-1",
        paid_at=T0,
        amount_fen=5000,
        identities=[{"kind": "phone", "value": "13900000003"}],
    )


def order_rows(with_merge: bool) -> list[list[str]]:
    rows = [HEADER]
    for n in range(30):
        day = 2 + n % 20  # both sides of the owner change on the 11th
        rows.append(
            ["tmall" if n % 3 else "天猫", f"T{n:03d}", f"1390000000{n % 4}" if n % 2 else
             f"1370000{n % 9:04d}", "", f"2026-04-{day:02d} 10:00", f"{10 + n}.50",
             "S1" if n % 5 == 0 else "", f"SKU-{n % 3}" if n % 2 else "", "2" if n % 4 == 1 else "",
             ""]
        )  # fmt: skip
    rows += [
        # The same order again: in the same chunk, and far later (another chunk).
        ["tmall", "T001", "13900000001", "", "2026-04-03 10:00", "11.50", "", "", "", ""],
        # Skipped: never paid.
        ["tmall", "T900", "13900000001", "", "", "9.00", "", "", "", "等待买家付款"],
        # Bad rows: negative amount, impossible date, a payment in the future, unknown store,
        # bad phone, unknown source, no buyer, the API's order with another amount.
        ["tmall", "B1", "13900000001", "", "2026-04-03 10:00", "-5", "", "", "", ""],
        ["tmall", "B2", "13900000001", "", "2026-02-30 10:00", "5", "", "", "", ""],
        ["tmall", "B3", "13900000001", "", "2999-01-01 10:00", "5", "", "", "", ""],
        ["tmall", "B4", "13900000001", "", "2026-04-03 10:00", "5", "S404", "", "", ""],
        ["tmall", "B5", "12", "", "2026-04-03 10:00", "5", "", "", "", ""],
        ["store", "B6", "13900000001", "", "2026-04-03 10:00", "5", "", "", "", ""],
        ["tmall", "B7", "", "", "2026-04-03 10:00", "5", "", "", "", ""],
        ["jd", "API-1", "13900000003", "", "2026-04-01 10:00", "60", "", "", "", ""],
        # The API's order with its own amount: unchanged.
        ["jd", "API-1", "13900000003", "", "2026-04-01 10:00", "50", "", "", "", ""],
        # A new buyer twice in one chunk, and a store order.
        ["门店", "P1", "13600000001", "", "2026-04-05 10:00", "8", "S2", "", "", ""],
        ["store_pos", "P2", "13600000001", "", "2026-04-06 10:00", "9", "S2", "", "", ""],
    ]
    if with_merge:
        # A buyer's phone and another customer's member id: a merge inside a chunk.
        rows.append(
            ["tmall", "M1", "13900000002", "VIP-9", "2026-04-20 10:00", "7", "", "", "", ""]
        )
    rows.append(["tmall", "T002", "13700000002", "", "2026-04-04 10:00", "12.50", "", "", "", ""])
    return rows


def state(brand: Brand) -> dict[str, object]:
    """Everything an order import can change, in terms that do not depend on ids."""

    def who(customer: Customer) -> tuple[str, ...]:
        return tuple(sorted(customer.identities.values_list("value_hash", flat=True)))

    orders = sorted(
        (
            o.source,
            o.external_id,
            o.amount_fen,
            who(o.customer),
            o.staff.user.username.split("-")[0] if o.staff else None,
            o.attributed_store.code if o.attributed_store else None,
            o.store.code if o.store else None,
            o.channel,
            tuple(tuple(sorted(i.items())) for i in o.items),
            o.import_row,
        )
        for o in Order.objects.filter(brand=brand).select_related(
            "customer", "staff__user", "attributed_store", "store"
        )
    )
    events = sorted(
        (e.type, e.idempotency_key, e.occurred_at, who(e.customer), str(e.properties))
        for e in Event.objects.filter(brand=brand).select_related("customer")
    )
    aggregates = sorted(
        (who(a.customer), a.order_count, a.paid_fen, a.first_order_at, a.last_order_at)
        for a in CustomerAggregate.objects.filter(brand=brand).select_related("customer")
    )
    return {
        "orders": orders,
        "events": events,
        "aggregates": aggregates,
        "customers": Customer.objects.filter(brand=brand, merged_into__isnull=True).count(),
        "merges": CustomerMerge.objects.filter(kept__brand=brand).count(),
    }


def outcome(job: imports.ImportJob) -> tuple[object, ...]:
    counts = (job.created, job.updated, job.unchanged, job.skipped, job.rejected, job.rows_done)
    return (job.status, counts, errors_of(job) if job.error_path else [])


@pytest.mark.parametrize("with_merge", [False, True])
def test_chunks_import_orders_exactly_like_row_by_row(with_merge, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 7)  # duplicates fall across chunks
    data = csv_bytes(order_rows(with_merge))
    chunked, one_by_one = make_brand(), make_brand()
    setup(chunked)
    setup(one_by_one)
    first = run(chunked, "orders", data)
    again = run(chunked, "orders", data)
    monkeypatch.delitem(imports._CHUNK_IMPORTERS, "orders")
    reference = run(one_by_one, "orders", data)
    reference_again = run(one_by_one, "orders", data)

    assert outcome(first) == outcome(reference)
    assert outcome(again) == outcome(reference_again)
    assert state(chunked) == state(one_by_one)
    # The reference is what the file says: every bad row named with its column and reason.
    errors = {row: (column, reason) for row, column, reason in errors_of(reference)}
    assert errors["32"][0] == "external_id" and "also on row 3" in errors["32"][1]
    assert errors["34"][0] == "amount_yuan" and "negative" in errors["34"][1]
    assert errors["35"][0] == "paid_at"
    assert errors["36"] == ("paid_at", "paid_at is in the future.")
    assert errors["37"] == ("store_code", "unknown store code 'S404'")
    assert errors["38"][0] == "phone"
    assert errors["39"][0] == "source" and "store_pos" in errors["39"][1]
    assert errors["40"][0] == "phone"
    assert errors["41"][0] == "external_id" and "different amount" in errors["41"][1]
    last = str(len(order_rows(with_merge)))
    assert errors[last][0] == "external_id" and "also on row 4" in errors[last][1]
    assert len(errors) == 10
    assert (reference.created, reference.unchanged, reference.skipped) == (
        32 + with_merge,
        1,
        1,
    )
    # Re-importing records nothing twice and still names the file's own duplicates.
    assert (reference_again.created, reference_again.unchanged) == (0, 33 + with_merge)
    assert reference_again.rejected == 10
    assert Order.objects.filter(brand=one_by_one).count() == 33 + with_merge
    assert Event.objects.filter(brand=one_by_one, type="order.paid").count() == 33 + with_merge
    if with_merge:
        assert CustomerMerge.objects.filter(kept__brand=chunked).count() == 1


def test_attribution_and_aggregates_of_an_imported_chunk():
    brand = make_brand()
    setup(brand)
    rows = [
        HEADER,
        ["tmall", "A1", "13900000000", "", "2026-04-05 10:00", "10", "", "", "", ""],
        ["tmall", "A2", "13900000000", "", "2026-04-15 10:00", "20", "", "", "", ""],
        ["tmall", "A3", "13900000003", "", "2026-04-15 10:00", "30", "", "", "", ""],
    ]
    job = run(brand, "orders", csv_bytes(rows))
    assert (job.created, job.rejected) == (3, 0)
    staff = dict(
        Order.objects.filter(brand=brand).values_list("external_id", "staff__user__username")
    )
    assert {k: v.split("-")[0] for k, v in staff.items() if k != "API-1"} == {
        "A1": "alice",  # paid before the owner changed on the 11th
        "A2": "bob",
        "A3": "alice",
    }
    buyer = customers.find_by_identity(
        brand=brand, identity=normalize_identity("phone", "13900000000")
    )
    aggregate = CustomerAggregate.objects.get(customer=buyer)
    assert (aggregate.order_count, aggregate.paid_fen) == (2, 3000)


def test_post_orders_reports_each_order_and_records_the_good_ones():
    brand = make_brand()
    buyer = [{"kind": "phone", "value": "13800000001"}]

    def order(
        external_id: str,
        amount: int,
        identities: list[dict[str, str]] = buyer,
        customer_id: int | None = None,
    ) -> NewOrder:
        return NewOrder(
            source="youzan",
            external_id=external_id,
            paid_at=T0,
            amount_fen=amount,
            identities=identities,
            customer_id=customer_id,
        )

    results = post_orders(
        brand=brand,
        actor=None,
        orders=[
            order("Y1", 100),
            order("Y1", 100),  # the same order again: found, not recorded twice
            order("Y1", 200),  # another amount: a conflict
            order("Y2", -1),
            order("Y3", 300, identities=[{"kind": "phone", "value": "1"}]),
            order("Y4", 400, customer_id=10**9, identities=[]),
            order("Y5", 500),
        ],
    )
    first, second, third, fourth, fifth, sixth, seventh = results
    assert isinstance(first, OrderResult) and isinstance(second, OrderResult)
    assert first.created and not second.created and second.order.pk == first.order.pk
    assert isinstance(third, Conflict) and third.field == "external_id"
    assert isinstance(fourth, ValidationFailed) and fourth.field == "amount_fen"
    assert isinstance(fifth, ValidationFailed) and fifth.field == "identities.0.value"
    assert isinstance(sixth, NotFound) and sixth.field == "customer_id"
    assert isinstance(seventh, OrderResult) and seventh.created
    assert seventh.order.customer_id == first.order.customer_id
    assert Order.objects.filter(brand=brand).count() == 2
    aggregate = CustomerAggregate.objects.get(customer_id=first.order.customer_id)
    assert (aggregate.order_count, aggregate.paid_fen) == (2, 600)


def test_owners_at_agrees_with_owner_at():
    brand = make_brand()
    setup(brand)
    moments = [T0 - dt.timedelta(days=1), T0, T0 + dt.timedelta(days=10, hours=1)]
    people = list(Customer.objects.filter(brand=brand))
    pairs = [(c, at) for c in people for at in moments]
    assert customers.owners_at(pairs) == [customers.owner_at(customer=c, at=at) for c, at in pairs]


DOCS = Path(__file__).resolve().parents[3] / "docs" / "import.md"


def test_documented_order_columns_and_sources_are_the_accepted_ones():
    text = DOCS.read_text(encoding="utf-8")
    fields_row = next(line for line in text.splitlines() if line.startswith("| orders |"))
    documented = re.findall(r"`([a-z_]+)`", fields_row)
    assert documented == list(tabular.ORDER_FIELDS)
    header = text.split("### Yutang orders (`yutang_orders`)")[1].split("```text\n")[1]
    assert set(header.split("\n")[0].split(",")) <= set(tabular.ORDER_FIELDS)
    sources_row = next(line for line in text.splitlines() if line.startswith("| `source` |"))
    named = set(re.findall(r"`([a-z_]+)`", sources_row)) - {"source", "external_id"}
    assert named == set(OrderSource.values)
    aliases = set(re.findall(r"(\S+) → `[a-z_]+`", sources_row))
    assert aliases == set(order_imports.SOURCE_ALIASES)


def test_api_and_cli_order_imports_go_through_chunks_and_report_bad_rows(
    tmp_path, capsys, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from tests.factories import Api

    chunks: list[int] = []
    chunk_importer = imports._CHUNK_IMPORTERS["orders"]

    def counting(context: imports.ImportContext, pairs: list) -> list:
        chunks.append(len(pairs))
        return chunk_importer(context, pairs)

    monkeypatch.setitem(imports._CHUNK_IMPORTERS, "orders", counting)
    brand = make_brand()
    rows = [
        HEADER,
        ["tmall", "C1", "13900000001", "", "2026-04-03 10:00", "10", "", "", "", ""],
        ["jd", "C2", "13900000002", "", "2026-04-03 10:00", "-1", "", "", "", ""],
    ]
    api = Api(make_staff(brand, Role.OPERATIONS_LEAD))
    upload = SimpleUploadedFile("orders.csv", csv_bytes(rows))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.client.post(
            "/api/v1/imports", {"kind": "orders", "file": upload}, headers=api.headers
        )
    assert response.status_code == 202, response.content
    imports.run_import(response.json()["id"])
    status = api.get(f"/imports/{response.json()['id']}").json()
    assert (status["status"], status["created"], status["rejected"]) == ("done", 1, 1)
    errors = api.client.get(f"/api/v1/imports/{status['id']}/errors", headers=api.headers)
    text = b"".join(errors.streaming_content).decode("utf-8-sig")  # type: ignore[attr-defined]
    assert text.splitlines()[1].startswith("3,amount_yuan,must not be negative")

    path = tmp_path / "orders.csv"
    rows[1][1], rows[2][1] = "C3", "C4"
    path.write_bytes(csv_bytes(rows))
    out = tmp_path / "errors.csv"
    call_command("import", "orders", str(path), "--brand", str(brand.pk), "--errors", str(out))
    assert "2 rows: 1 created, 0 updated, 0 unchanged, 0 skipped, 1 rejected" in (
        capsys.readouterr().out
    )
    assert "3,amount_yuan,must not be negative" in out.read_text(encoding="utf-8-sig")
    assert chunks == [2, 2]
    assert Order.objects.filter(brand=brand).count() == 2


REFUND_HEADER = ["source", "external_id", "phone", "paid_at", "amount_yuan", "refunded_yuan",
                 "refunded_at"]  # fmt: skip


def _refund_state(brand: Brand) -> tuple[list, list, list]:
    orders = list(
        Order.objects.filter(brand=brand)
        .order_by("external_id")
        .values_list("external_id", "refunded_fen")
    )
    refunds = list(
        Refund.objects.filter(brand=brand)
        .order_by("id")
        .values_list("order__external_id", "external_id", "amount_fen")
    )
    events = list(
        Event.objects.filter(brand=brand, type="order.refunded")
        .order_by("id")
        .values_list("properties", "occurred_at")
    )
    return orders, refunds, events


@pytest.fixture(params=["chunks", "row by row"])
def import_path(request, monkeypatch) -> str:
    """Each refund test runs through the chunk importer and with it turned off (row by row)."""
    if request.param == "row by row":
        monkeypatch.delitem(imports._CHUNK_IMPORTERS, "orders")
    return request.param


def test_refunded_totals_import_once_and_follow_later_exports(import_path):
    """An export's 退款金额 is the order's refunded total: imported as one refund with its
    order.refunded event and aggregate; the same file again changes nothing; a later export
    with a larger total refunds the difference; a smaller one is refused naming the column."""
    brand = make_brand()
    rows = [
        REFUND_HEADER,
        ["tmall", "R1", "13900000001", "2026-04-03 10:00", "100", "30", "2026-04-05 09:00"],
        ["tmall", "R2", "13900000002", "2026-04-03 10:00", "50", "", ""],
        ["tmall", "R3", "13900000003", "2026-04-03 10:00", "80", "0", ""],
    ]
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=10))):
        job = run(brand, "orders", csv_bytes(rows))
        assert (job.created, job.updated, job.unchanged, job.rejected) == (3, 0, 0, 0)
        orders, refunds, events = _refund_state(brand)
        assert orders == [("R1", 3000), ("R2", 0), ("R3", 0)]
        assert refunds == [("R1", "total-3000", 3000)]
        assert [e[0]["amount_fen"] for e in events] == [3000]
        assert events[0][1] == dt.datetime(2026, 4, 5, 1, 0, tzinfo=dt.UTC)  # Asia/Shanghai
        buyer = Order.objects.get(brand=brand, external_id="R1").customer_id
        assert CustomerAggregate.objects.get(customer_id=buyer).refunded_fen == 3000

        again = run(brand, "orders", csv_bytes(rows))
        assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
        assert _refund_state(brand) == (orders, refunds, events)

        later = [row[:] for row in rows]
        later[1][5], later[1][6] = "100", ""  # the rest refunded; no time: dated now
        later[2][5] = "50"
        third = run(brand, "orders", csv_bytes(later))
        assert (third.created, third.updated, third.unchanged) == (0, 2, 1)
        orders, refunds, events = _refund_state(brand)
        assert orders == [("R1", 10000), ("R2", 5000), ("R3", 0)]
        assert refunds[1:] == [("R1", "total-10000", 7000), ("R2", "total-5000", 5000)]
        assert events[-1][1] == T0 + dt.timedelta(days=10)
        assert CustomerAggregate.objects.get(customer_id=buyer).refunded_fen == 10000

        smaller = [REFUND_HEADER, rows[1]]
        fourth = run(brand, "orders", csv_bytes(smaller))
        assert (fourth.unchanged, fourth.rejected) == (0, 1)
        ((row, column, reason),) = errors_of(fourth)
        assert (row, column) == ("2", "refunded_yuan")
        assert "less than the 10000 fen already recorded" in reason
        assert _refund_state(brand) == (orders, refunds, events)


def test_a_bad_refund_keeps_nothing_of_its_row(import_path):
    """A refund larger than the order, or dated before the payment, refuses the whole row
    (its order is not recorded either); the file's other rows are applied."""
    brand = make_brand()
    rows = [
        REFUND_HEADER,
        ["tmall", "B1", "13900000001", "2026-04-03 10:00", "100", "100.01", ""],
        ["tmall", "B2", "13900000002", "2026-04-03 10:00", "100", "10", "2026-04-02 10:00"],
        ["tmall", "B3", "13900000003", "2026-04-03 10:00", "100", "10", "2026-04-04 10:00"],
        ["tmall", "B4", "13900000004", "2026-04-03 10:00", "100", "-1", ""],
    ]
    with clock.use_clock(clock.FrozenClock(T0 + dt.timedelta(days=10))):
        job = run(brand, "orders", csv_bytes(rows))
    assert (job.created, job.rejected) == (1, 3)
    assert errors_of(job) == [
        ["2", "refunded_yuan", "the refunded total is more than the amount paid"],
        ["3", "refunded_at", "the refund time is before the payment time"],
        ["5", "refunded_yuan", "must not be negative (got '-1')"],
    ]
    orders, refunds, _events = _refund_state(brand)
    assert orders == [("B3", 1000)]
    assert refunds == [("B3", "total-1000", 1000)]


def test_refund_to_total_refuses_a_total_above_the_order_and_an_unknown_order():
    """The service behind the import checks the order itself too (an order already in
    Yutang whose amount differs from the file is the import's other error)."""
    brand = make_brand()
    with clock.use_clock(clock.FrozenClock(T0)):
        post_order(brand=brand, actor=None, source="jd", external_id="J1", paid_at=T0,
                   amount_fen=500, identities=[{"kind": "phone", "value": "13900000001"}])  # fmt: skip
        with pytest.raises(ValidationFailed) as too_much:
            refund_to_total(brand=brand, actor=None, source="jd", order_external_id="J1",
                            refunded_fen=501, refunded_at=T0)  # fmt: skip
        assert too_much.value.field == "refunded_fen"
        with pytest.raises(NotFound):
            refund_to_total(brand=brand, actor=None, source="jd", order_external_id="J9",
                            refunded_fen=1, refunded_at=T0)  # fmt: skip
        assert refund_to_total(brand=brand, actor=None, source="jd", order_external_id="J1",
                               refunded_fen=0, refunded_at=T0) is None  # fmt: skip
    assert not Refund.objects.filter(brand=brand).exists()


def test_tmall_export_maps_its_refund_column():
    mapping = tabular.detect_mapping("orders", ["订单编号", "买家会员名", "买家实际支付金额",
                                                "订单付款时间", "退款金额"])  # fmt: skip
    assert mapping is not None and mapping.columns["refunded_yuan"] == "退款金额"
