"""Customer imports resolve a chunk of rows at once (BatchResolver) with exactly the outcome
of importing the rows one by one: same customers, identities, profiles, owners, tags,
contact facts, counts and error file — merges and bad rows included."""

from __future__ import annotations

import json

import pytest

from tests.factories import make_account, make_brand, make_staff, make_store
from yutang.core.models import AuditLog, Brand
from yutang.core.permissions import Role
from yutang.customers import imports
from yutang.customers.models import Customer, CustomerMerge, Identity, OwnerChange
from yutang.customers.tests.test_imports import csv_bytes, errors_of, run
from yutang.events.models import Event

pytestmark = pytest.mark.django_db

HEADER = ["会员号", "电话", "昵称", "性别", "生日", "门店", "导购", "企微账号", "添加时间", "标签"]
MAPPING = json.dumps(
    {
        "kind": "customers",
        "columns": {
            "external_id": "会员号",
            "phone": "电话",
            "name": "昵称",
            "gender": "性别",
            "birthday": "生日",
            "store_code": "门店",
            "staff_username": "导购",
            "staff_wecom_userid": "企微账号",
            "added_at": "添加时间",
            "tags": "标签",
        },
    }
)


def rows_without_links() -> list[list[str]]:
    rows = [HEADER]
    for n in range(40):
        rows.append(
            [f"M{n:03d}", f"138{n:08d}", f"客户{n}", "女" if n % 2 else "男", "1990-01-02",
             "S1" if n % 5 == 0 else "", "guide1" if n % 7 == 0 else "",
             "ZhangSan" if n % 9 == 0 else "",
             "2026-01-05 10:30:00" if n % 4 == 0 else "", "护肤,彩妆" if n % 3 == 0 else ""]
        )  # fmt: skip
    rows += [
        # The same people again: a new name (updated), the same (unchanged), a new tag.
        ["M001", "", "新名字", "", "", "", "", "", "", ""],
        ["", "13800000002", "客户2", "", "", "", "", "", "", ""],
        ["M003", "", "", "", "", "", "", "", "", "新客"],
        # Bad rows: an impossible date, a bad phone, an unknown store, no identity, a WeCom
        # id nobody operates, an added time the log refuses (in the future).
        ["M100", "", "", "", "1990-02-30", "", "", "", "", ""],
        ["M101", "12", "", "", "", "", "", "", "", ""],
        ["M102", "", "", "", "", "S404", "", "", "", ""],
        ["", "", "无名", "", "", "", "", "", "", ""],
        ["M103", "", "", "", "", "", "", "LiSi", "", ""],
        ["M104", "", "", "", "", "", "", "", "2999-01-01 00:00:00", ""],
        # A row mentioned twice in one chunk, created by the first.
        ["M200", "", "甲", "", "", "", "", "", "", ""],
        ["M200", "13900000200", "乙", "", "", "", "", "", "", ""],
    ]
    return rows


def with_a_merge() -> list[list[str]]:
    # Phone of one customer and member id of another: a merge (auto policy) in the chunk.
    return [*rows_without_links(), ["M010", "13800000011", "", "", "", "", "", "", "", ""]]


def setup(brand: Brand) -> None:
    store = make_store(brand, code="S1")
    guide = make_staff(brand, Role.ADVISOR, stores=[store], username=f"guide1-{brand.pk}")
    make_account(brand, staff=guide, store=store, external_id="ZhangSan")


def state(brand: Brand) -> dict[str, object]:
    """Everything an import can change, in terms that do not depend on ids."""

    def person(c: Customer) -> tuple[object, ...]:
        hashes = tuple(sorted(c.identities.values_list("value_hash", flat=True)))
        return (
            hashes,
            c.display_name,
            c.gender,
            str(c.birthday),
            c.owner_store.code if c.owner_store else None,
            c.owner_staff.user.username.split("-")[0] if c.owner_staff else None,
            tuple(sorted(t.tag.name for t in c.customer_tags.all())),
            tuple(OwnerChange.objects.filter(customer=c).values_list("reason", flat=True)),
            # (Contact-fact keys hash the customer's id, which differs between the brands.)
            tuple(Event.objects.filter(customer=c).values_list("type", "occurred_at")),
            c.merged_into_id is not None,
        )

    customers = Customer.objects.filter(brand=brand).select_related(
        "owner_store", "owner_staff__user"
    )
    return {
        "people": sorted(person(c) for c in customers),
        "identities": Identity.objects.filter(brand=brand).count(),
        "merges": CustomerMerge.objects.filter(kept__brand=brand).count(),
        "tag_audits": AuditLog.objects.filter(brand=brand, action="customer.tags").count(),
    }


def outcome(job: imports.ImportJob) -> tuple[object, ...]:
    counts = (job.created, job.updated, job.unchanged, job.skipped, job.rejected, job.rows_done)
    return (job.status, counts, errors_of(job) if job.error_path else [])


@pytest.mark.parametrize("rows", [rows_without_links, with_a_merge])
def test_a_chunk_imports_exactly_like_row_by_row(rows, monkeypatch):
    data = csv_bytes(rows())
    chunked, one_by_one = make_brand(), make_brand()
    setup(chunked)
    setup(one_by_one)
    # Staff usernames are global: each brand's guide has its own, named in its own file.
    files = {b: data.replace(b"guide1", f"guide1-{b.pk}".encode()) for b in (chunked, one_by_one)}
    first = run(chunked, "customers", files[chunked], mapping_json=MAPPING)
    second_chunked = run(chunked, "customers", files[chunked], mapping_json=MAPPING)
    monkeypatch.delitem(imports._CHUNK_IMPORTERS, "customers")
    reference = run(one_by_one, "customers", files[one_by_one], mapping_json=MAPPING)
    second_reference = run(one_by_one, "customers", files[one_by_one], mapping_json=MAPPING)

    assert outcome(first) == outcome(reference)
    assert outcome(second_chunked) == outcome(second_reference)
    assert state(chunked) == state(one_by_one)
    # The reference itself is what the file says: 6 bad rows named, the rest applied; a
    # re-import creates nobody (rows that rename one person twice rename them again).
    assert [e[0] for e in errors_of(reference)] == ["45", "46", "47", "48", "49", "50"]
    assert first.created >= 40
    assert (second_reference.created, second_reference.rejected) == (0, 6)


def test_fast_chunks_are_used_when_no_row_links_two_customers(monkeypatch):
    used: list[int] = []
    original = imports.import_customer_chunk

    def spy(context, pairs):
        try:
            return original(context, pairs)
        finally:
            used.append(len(pairs))

    monkeypatch.setitem(imports._CHUNK_IMPORTERS, "customers", spy)
    fallbacks: list[int] = []
    row_importer = imports._IMPORTERS["customers"]

    def counting(context, values, row):
        fallbacks.append(row.number)
        return row_importer(context, values, row)

    monkeypatch.setitem(imports._IMPORTERS, "customers", counting)
    brand = make_brand()
    rows = [["会员号", "昵称"], *[[f"M{n}", f"客户{n}"] for n in range(1500)]]
    mapping = json.dumps(
        {"kind": "customers", "columns": {"external_id": "会员号", "name": "昵称"}}
    )
    job = run(brand, "customers", csv_bytes(rows), mapping_json=mapping)
    assert (job.created, job.rejected) == (1500, 0)
    assert used == [1000, 500]
    assert fallbacks == []  # no chunk went row by row
