"""Imports of customers and orders: presets, encodings, every error case, idempotency."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command

from tests.factories import Api, make_account, make_brand, make_staff, make_store
from yutang.commerce.models import Order
from yutang.core.permissions import Role
from yutang.customers.imports import create_import
from yutang.customers.models import Customer, Identity, ImportJob
from yutang.events.models import Event

pytestmark = pytest.mark.django_db


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def run(brand, kind, data: bytes, name="file.csv", **kw) -> ImportJob:
    return create_import(
        actor=None,
        brand=brand,
        kind=kind,
        upload=io.BytesIO(data),
        filename=name,
        run_now=True,
        **kw,
    )


def errors_of(job: ImportJob) -> list[list[str]]:
    with open(job.error_path, encoding="utf-8-sig") as handle:
        return list(csv.reader(handle))[1:]


YOUZAN = [
    ["客户姓名", "手机号", "性别", "生日", "省份", "城市", "标签", "来源渠道"],
    ["林小姐", "13800000001", "女", "1995-03-08", "上海", "上海", "护肤,彩妆", "小红书"],
    ["王先生", "13800000002", "男", "", "浙江", "杭州", "", "包裹卡"],
]


def test_youzan_export_in_gbk_imports_and_reimport_changes_nothing():
    brand = make_brand()
    data = csv_bytes(YOUZAN, "gbk")
    job = run(brand, "customers", data)
    assert (job.status, job.mapping_name, job.created, job.rejected) == (
        "done",
        "youzan_customers",
        2,
        0,
    )
    lin = Customer.objects.get(brand=brand, display_name="林小姐")
    assert (lin.gender, str(lin.birthday), lin.city, lin.source_channel) == (
        "female",
        "1995-03-08",
        "上海",
        "小红书",
    )
    assert sorted(t.tag.name for t in lin.customer_tags.all()) == ["彩妆", "护肤"]
    snapshot = (Customer.objects.count(), Identity.objects.count(), Event.objects.count())
    again = run(brand, "customers", data)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert (Customer.objects.count(), Identity.objects.count(), Event.objects.count()) == snapshot


def test_wecom_export_sets_owner_from_the_staff_account_and_records_the_add():
    brand = make_brand()
    store = make_store(brand)
    advisor = make_staff(brand, Role.ADVISOR, stores=[store])
    make_account(brand, staff=advisor, store=store, external_id="ZhangSan")
    rows = [
        ["客户名称", "external_userid", "添加人", "添加人账号", "添加时间", "添加渠道", "标签"],
        ["小美", "wmAAA001", "张三", "ZhangSan", "2026-01-05 10:30:00", "门店活码", "新客"],
        ["小丽", "wmAAA002", "李四", "LiSi", "2026-01-06 11:00:00", "门店活码", ""],
    ]
    job = run(brand, "customers", csv_bytes(rows))
    assert job.mapping_name == "wecom_customers"
    assert (job.created, job.rejected) == (1, 1)
    customer = Customer.objects.get(brand=brand)
    assert customer.owner_staff_id == advisor.pk
    added = Event.objects.get(type="contact.added")
    assert added.properties["carrier"] == "wecom"
    assert errors_of(job) == [["3", "添加人账号", "no carrier account has the WeCom id 'LiSi'"]]
    assert run(brand, "customers", csv_bytes(rows)).created == 0
    assert Event.objects.filter(type="contact.added").count() == 1


TMALL_HEADER = [
    "订单编号",
    "买家会员名",
    "买家应付货款",
    "买家实际支付金额",
    "邮费",
    "订单状态",
    "订单创建时间",
    "订单付款时间",
    "收货人姓名",
    "联系手机",
    "宝贝标题",
    "商家编码",
    "宝贝总数量",
]


def tmall_row(
    no, amount="199.00", paid="2026-04-01 10:00:00", status="交易成功", phone="13800000001"
):
    return [
        no,
        "tb_lin",
        amount,
        amount,
        "0.00",
        status,
        "2026-04-01 09:58:00",
        paid,
        "林",
        phone,
        "精华",
        "SKU-1",
        "1",
    ]


def test_tmall_orders_every_error_case_and_idempotency():
    brand = make_brand()
    rows = [
        TMALL_HEADER,
        tmall_row("T1"),
        tmall_row("T2", amount="-5.00"),
        tmall_row("T3", paid="2026-02-30 10:00:00"),
        tmall_row("T1"),
        tmall_row("T4", status="交易关闭", paid=""),
        tmall_row("T5", phone="12"),
        tmall_row("T6", amount="88.50"),
    ]
    job = run(brand, "orders", csv_bytes(rows, "gb18030"))
    assert (job.created, job.skipped, job.rejected) == (2, 1, 4)
    got = {(r[0], r[1]) for r in errors_of(job)}
    assert got == {
        ("3", "买家实际支付金额"),
        ("4", "订单付款时间"),
        ("5", "订单编号"),
        ("7", "联系手机"),
    }
    reasons = {r[0]: r[2] for r in errors_of(job)}
    assert "negative" in reasons["3"] and "row 2" in reasons["5"]
    orders = Order.objects.filter(brand=brand).order_by("external_id")
    assert [(o.external_id, o.amount_fen, o.source) for o in orders] == [
        ("T1", 19900, "tmall"),
        ("T6", 8850, "tmall"),
    ]
    assert orders[0].items == [{"sku": "SKU-1", "quantity": 1}]
    again = run(brand, "orders", csv_bytes(rows, "gb18030"))
    assert (again.created, again.unchanged) == (0, 2)
    assert Order.objects.filter(brand=brand).count() == 2
    assert Event.objects.filter(brand=brand, type="order.paid").count() == 2


def test_all_or_nothing_applies_no_row_when_any_is_bad():
    brand = make_brand()
    rows = [TMALL_HEADER, tmall_row("A1"), tmall_row("A2", amount="-1")]
    job = run(brand, "orders", csv_bytes(rows), all_or_nothing=True)
    assert (job.status, job.rejected, job.created) == ("done", 1, 0)
    assert "Nothing was applied" in job.message
    assert (
        not Order.objects.filter(brand=brand).exists()
        and not Customer.objects.filter(brand=brand).exists()
    )


def test_unknown_store_and_missing_column_and_unknown_layout():
    brand = make_brand()
    make_store(brand, code="SH1")
    rows = [
        ["source", "external_id", "phone", "paid_at", "amount_fen", "store_code"],
        ["store_pos", "P1", "13800000001", "2026-04-01 10:00", "1000", "SH1"],
        ["store_pos", "P2", "13800000001", "2026-04-01 10:00", "1000", "BJ9"],
    ]
    job = run(brand, "orders", csv_bytes(rows))
    assert errors_of(job) == [["3", "store_code", "unknown store code 'BJ9'"]]
    store = Order.objects.get(brand=brand).store
    assert store is not None and store.code == "SH1"
    missing = run(
        brand,
        "orders",
        csv_bytes([["source", "external_id", "phone", "amount_fen"], ["x", "1", "1", "1"]]),
    )
    assert missing.status == "failed" and "paid_at" in missing.message
    unknown = run(brand, "customers", csv_bytes([["颜色", "尺码"], ["红", "M"]]))
    assert unknown.status == "failed" and "mapping file" in unknown.message


def test_mapping_file_for_another_layout():
    brand = make_brand()
    rows = [["会员号", "电话", "昵称"], ["M001", "13800000009", "阿花"]]
    mapping = json.dumps(
        {"kind": "customers", "columns": {"external_id": "会员号", "phone": "电话", "name": "昵称"}}
    )
    job = run(brand, "customers", csv_bytes(rows), mapping_json=mapping)
    assert (job.created, job.mapping_name) == (1, "file")
    assert Customer.objects.get(brand=brand).identities.count() == 2


def test_xlsx_upload_through_the_api_then_status_and_error_file(django_capture_on_commit_callbacks):
    from openpyxl import Workbook

    brand = make_brand()
    api = Api(make_staff(brand, Role.OPERATIONS_LEAD))
    book = Workbook()
    sheet = book.active
    sheet.append(["external_id", "phone", "name", "birthday"])
    sheet.append(["E1", "13800000001", "一号", "1990-01-01"])
    sheet.append(["E2", "13800000002", "二号", "not a date"])
    buffer = io.BytesIO()
    book.save(buffer)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("客户.xlsx", buffer.getvalue())
    with django_capture_on_commit_callbacks(execute=True):
        response = api.client.post(
            "/api/v1/imports", {"kind": "customers", "file": upload}, headers=api.headers
        )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    from django_tasks_db.models import DBTaskResult

    assert DBTaskResult.objects.count() == 1
    from yutang.customers.imports import run_import

    run_import(job_id)
    status = api.get(f"/imports/{job_id}").json()
    assert (status["status"], status["created"], status["rejected"], status["has_error_file"]) == (
        "done",
        1,
        1,
        True,
    )
    errors = api.client.get(f"/api/v1/imports/{job_id}/errors", headers=api.headers)
    text = b"".join(errors.streaming_content).decode("utf-8-sig")  # type: ignore[attr-defined]
    assert text.splitlines()[1].startswith("3,birthday,")
    other = Api(make_staff(make_brand(), Role.BRAND_ADMIN))
    assert other.get(f"/imports/{job_id}").status_code == 404


def test_cli_import_with_progress_and_error_copy(tmp_path, capsys):
    brand = make_brand()
    source = tmp_path / "customers.csv"
    source.write_bytes(
        csv_bytes(
            [
                ["phone", "name", "gender"],
                ["13800000001", "甲", "女"],
                ["13800000002", "乙", "火星"],
            ]
        )
    )
    errors = tmp_path / "errors.csv"
    call_command(
        "import", "customers", str(source), "--brand", str(brand.pk), "--errors", str(errors)
    )
    out = capsys.readouterr().out
    assert "2 rows: 1 created, 0 updated, 0 unchanged, 0 skipped, 1 rejected" in out
    assert "gender" in errors.read_text(encoding="utf-8-sig")


def test_wecom_row_whose_added_event_the_log_refuses_is_a_row_error():
    brand = make_brand()
    rows = [
        ["客户名称", "external_userid", "添加人", "添加人账号", "添加时间", "添加渠道", "标签"],
        ["小美", "wmAAA001", "张三", "", "2099-01-05 10:30:00", "门店活码", ""],
        ["小丽", "wmAAA002", "李四", "", "2026-01-06 11:00:00", "门店活码", ""],
    ]
    job = run(brand, "customers", csv_bytes(rows))
    assert (job.created, job.rejected) == (1, 1)
    ((row, column, reason),) = errors_of(job)
    assert (row, column) == ("2", "添加时间")
    assert reason.startswith("the contact.added event was refused: occurred_at is in the future")
    # the refused row left nothing behind: neither the customer nor a half-recorded fact
    assert Customer.objects.filter(brand=brand).count() == 1
    assert Event.objects.filter(brand=brand, type="contact.added").count() == 1


def _many(n: int, bad_at: int | None = None) -> bytes:
    rows = [["客户姓名", "手机号", "性别", "生日", "省份", "城市", "标签", "来源渠道"]]
    for i in range(n):
        birthday = "1990-13-45" if i == bad_at else ""
        rows.append([f"客{i}", f"139{i:08d}", "女", birthday, "", "", "", ""])
    return csv_bytes(rows)


def _run_watching(brand, data: bytes, **kw) -> tuple[ImportJob, list[tuple[str, int, int]]]:
    from yutang.customers.imports import run_import

    job = create_import(
        actor=None, brand=brand, kind="customers", upload=io.BytesIO(data), filename="m.csv", **kw
    )
    seen: list[tuple[str, int, int]] = []

    def watch(progress: ImportJob) -> None:
        stored = ImportJob.objects.get(pk=progress.pk)
        seen.append((stored.status, stored.rows_done, stored.rejected))

    return run_import(job.pk, on_progress=watch), seen


def test_large_import_commits_in_chunks_and_saves_progress_after_each():
    brand = make_brand()
    job, seen = _run_watching(brand, _many(2100, bad_at=1500))
    assert (job.status, job.created, job.rejected, job.rows_done) == ("done", 2099, 1, 2100)
    # what the console polls: rows and errors so far, saved after every chunk of 1,000
    assert seen == [("running", 1000, 0), ("running", 2000, 1), ("running", 2100, 1)]
    assert errors_of(job) == [["1502", "生日", "is not a real calendar date (got '1990-13-45')"]]


def test_all_or_nothing_checks_every_row_first_then_applies_in_chunks():
    brand = make_brand()
    bad, bad_seen = _run_watching(brand, _many(1200, bad_at=1100), all_or_nothing=True)
    assert (bad.status, bad.created, bad.rejected) == ("done", 0, 1)
    assert not Customer.objects.filter(brand=brand).exists()
    assert all(status == "checking" for status, _, _ in bad_seen)
    good, good_seen = _run_watching(brand, _many(1200), all_or_nothing=True)
    assert (good.status, good.created, good.rejected, good.rows_total) == ("done", 1200, 0, 1200)
    assert good_seen[-2:] == [("running", 1000, 0), ("running", 1200, 0)]
    assert Customer.objects.filter(brand=brand).count() == 1200
