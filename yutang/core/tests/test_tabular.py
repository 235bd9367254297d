"""Tests for yutang.core.tabular: pure Python, no database. Fixture files are written to
tmp_path the way real exports look (GBK from Chinese Excel, tab-separated, XLSX)."""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import tracemalloc
import zoneinfo
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from yutang.core.tabular import (
    ErrorEntry,
    ErrorReport,
    FieldError,
    Mapping,
    Row,
    RowError,
    TabularError,
    column_label,
    detect_mapping,
    load_mapping_file,
    open_table,
    parse_date,
    parse_datetime,
    parse_gender,
    parse_int,
    parse_yuan_to_fen,
    required_fields,
)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_text(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(tmp_path, name, text.encode(encoding))


def write_xlsx(tmp_path: Path, rows: list[list[Any]], name: str = "book.xlsx") -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for values in rows:
        sheet.append(values)
    path = tmp_path / name
    workbook.save(path)
    return path


class NonSeekable(io.RawIOBase):
    """An upload stream that can only be read forward."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# --------------------------------------------------------------------------------------------
# CSV: encodings, delimiters, numbering


def test_utf8_csv_strips_values_numbers_rows_and_skips_empty_rows(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        "customers.csv",
        " phone , name ,city\n13800138000, 张三 ,上海\n\n,,\n13900139000,李四,\n",
    )

    table = open_table(path)

    assert (table.format, table.encoding, table.delimiter) == ("csv", "utf-8", ",")
    assert table.headers == ["phone", "name", "city"]
    assert list(table.rows()) == [
        Row(2, {"phone": "13800138000", "name": "张三", "city": "上海"}),
        Row(5, {"phone": "13900139000", "name": "李四", "city": ""}),
    ]


def test_utf8_bom_is_detected_and_not_part_of_first_header(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "bom.csv", codecs.BOM_UTF8 + "手机号,姓名\n138,王五\n".encode())

    table = open_table(path)

    assert table.encoding == "utf-8-sig"
    assert table.headers == ["手机号", "姓名"]
    assert [row.values for row in table.rows()] == [{"手机号": "138", "姓名": "王五"}]


def test_explicit_utf8_on_a_bom_file_still_drops_the_bom(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, "bom.csv", codecs.BOM_UTF8 + b"phone\n1\n")

    table = open_table(path, encoding="UTF8")

    assert table.encoding == "utf-8-sig"
    assert table.headers == ["phone"]


def test_gbk_csv_with_chinese_headers_is_read_as_gb18030(tmp_path: Path) -> None:
    text = "客户姓名,手机号,性别,所在地区,城市\n张三,13800138000,男,广东省,深圳\n"
    path = write_text(tmp_path, "youzan.csv", text, encoding="gbk")

    table = open_table(path)

    assert table.encoding == "gb18030"
    assert table.headers == ["客户姓名", "手机号", "性别", "所在地区", "城市"]
    assert [row.values for row in table.rows()] == [
        {
            "客户姓名": "张三",
            "手机号": "13800138000",
            "性别": "男",
            "所在地区": "广东省",
            "城市": "深圳",
        }
    ]


def test_explicit_encoding_overrides_detection(tmp_path: Path) -> None:
    # "¥" in Latin-1 is not valid UTF-8 and would otherwise be read as GB18030.
    path = write_text(tmp_path, "latin.csv", "price\n¥5\n", encoding="latin-1")

    table = open_table(path, encoding="latin-1")

    assert table.encoding == "iso8859-1"
    assert [row.values for row in table.rows()] == [{"price": "¥5"}]


def test_unknown_explicit_encoding_is_a_clear_error(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "phone\n1\n")

    with pytest.raises(TabularError, match='unknown text encoding "klingon"') as info:
        open_table(path, encoding="klingon")
    assert info.value.field == "encoding"


def test_explicit_encoding_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    path = write_text(tmp_path, "gbk.csv", "姓名\n张三\n", encoding="gbk")

    with pytest.raises(TabularError, match="not valid utf-8 text"):
        open_table(path, encoding="utf-8")


def test_bad_bytes_after_the_sample_name_the_row(tmp_path: Path) -> None:
    # 70 KiB of ASCII makes the sample look like UTF-8; a GBK name follows.
    lines = ["phone,name"] + [f"{13800000000 + i},a" for i in range(6000)]
    data = ("\n".join(lines) + "\n").encode() + "1,张三\n".encode("gbk")
    path = write_bytes(tmp_path, "mixed.csv", data)
    table = open_table(path)
    assert table.encoding == "utf-8"

    with pytest.raises(TabularError, match=r"row 6002: the text is not valid utf-8"):
        list(table.rows())


def test_tab_delimited_text_file(tmp_path: Path) -> None:
    path = write_text(tmp_path, "export.txt", "phone\tname\tnote\n138\t王五\ta, b; c\n")

    table = open_table(path)

    assert table.delimiter == "\t"
    assert [row.values for row in table.rows()] == [
        {"phone": "138", "name": "王五", "note": "a, b; c"}
    ]


def test_semicolon_delimited_file(tmp_path: Path) -> None:
    path = write_text(tmp_path, "eu.csv", "phone;amount\n138;12,50\n139;3,00\n")

    table = open_table(path)

    assert table.delimiter == ";"
    assert [row.values["amount"] for row in table.rows()] == ["12,50", "3,00"]


def test_single_column_file_defaults_to_comma(tmp_path: Path) -> None:
    path = write_text(tmp_path, "phones.csv", "phone\n138\n139\n")

    table = open_table(path)

    assert table.delimiter == ","
    assert [row.values for row in table.rows()] == [{"phone": "138"}, {"phone": "139"}]


def test_utf16_unicode_text_from_excel(tmp_path: Path) -> None:
    path = write_text(tmp_path, "unicode.txt", "姓名\t手机\r\n张三\t138\r\n", encoding="utf-16")

    table = open_table(path)

    assert (table.encoding, table.delimiter) == ("utf-16", "\t")
    assert [row.values for row in table.rows()] == [{"姓名": "张三", "手机": "138"}]


def test_quoted_value_spanning_lines_is_one_spreadsheet_row(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", 'phone,address\n138,"line 1\nline 2"\n139,x\n')

    rows = list(open_table(path).rows())

    assert [(row.number, row.values["address"]) for row in rows] == [
        (2, "line 1\nline 2"),
        (3, "x"),
    ]


def test_excel_text_guard_around_long_numbers_is_removed(tmp_path: Path) -> None:
    path = write_text(
        tmp_path, "tmall.csv", '订单编号,买家会员名\n="2024030112345678901",tb_buyer\n'
    )

    rows = list(open_table(path).rows())

    assert rows[0].values == {"订单编号": "2024030112345678901", "买家会员名": "tb_buyer"}


def test_blank_lines_above_the_header_keep_spreadsheet_numbering(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "\n\nphone\n138\n")

    table = open_table(path)

    assert table.header_number == 3
    assert list(table.rows()) == [Row(4, {"phone": "138"})]


def test_short_rows_are_filled_with_empty_values(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "phone,name,city\n138\n")

    assert [row.values for row in open_table(path).rows()] == [
        {"phone": "138", "name": "", "city": ""}
    ]


# --------------------------------------------------------------------------------------------
# Header and row errors


def test_blank_header_names_its_column(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "phone,,name\n1,2,3\n")

    with pytest.raises(TabularError) as info:
        open_table(path)

    assert (
        info.value.message
        == "header row: column 2 (B) has no name; give it one or delete the column"
    )
    assert info.value.field == "headers"


def test_duplicate_header_names_both_columns(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "phone,name,Phone\n1,2,3\n")

    with pytest.raises(TabularError) as info:
        open_table(path)

    assert info.value.message == (
        'header row: column 3 (C) repeats the header "Phone" of column 1 (A); rename one of them'
    )


def test_trailing_blank_headers_are_ignored_but_extra_values_are_row_errors(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "phone,name,,\n138,a,,\n139,b,,oops\n140,c\n")
    table = open_table(path)
    assert table.headers == ["phone", "name"]

    with pytest.raises(RowError) as info:
        list(table.rows())
    assert (info.value.number, info.value.column) == (3, "column 4 (D)")
    assert str(info.value).startswith("row 3, column 4 (D): the row has a value beyond")

    with ErrorReport() as report:
        rows = list(table.rows(errors=report))
        assert [row.number for row in rows] == [2, 4]
        assert [(entry.row, entry.column) for entry in report] == [(3, "column 4 (D)")]


def test_column_label_uses_spreadsheet_letters() -> None:
    assert [column_label(i) for i in (1, 26, 27, 52, 703)] == [
        "column 1 (A)",
        "column 26 (Z)",
        "column 27 (AA)",
        "column 52 (AZ)",
        "column 703 (AAA)",
    ]


def test_empty_file_and_file_without_header(tmp_path: Path) -> None:
    with pytest.raises(TabularError, match="the file is empty"):
        open_table(write_bytes(tmp_path, "empty.csv", b""))
    with pytest.raises(TabularError, match="the file has no header row"):
        open_table(write_text(tmp_path, "blank.csv", "\n , \n\n"))


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    table = open_table(write_text(tmp_path, "a.csv", "phone,name\n"))

    assert list(table.rows()) == []
    assert table.preview() == []
    assert table.progress() == 1.0


def test_unsupported_formats_are_refused_with_advice(tmp_path: Path) -> None:
    xls = write_bytes(tmp_path, "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(TabularError, match=r"old Excel \.xls files are not supported"):
        open_table(xls)
    with pytest.raises(TabularError, match=r"not a valid \.xlsx workbook"):
        open_table(write_text(tmp_path, "fake.xlsx", "phone\n1\n"))
    with pytest.raises(TabularError, match=r"unsupported file type \.pdf"):
        open_table(write_text(tmp_path, "doc.pdf", "%PDF-1.4"))
    with pytest.raises(TabularError, match=r"not a valid \.xlsx workbook"):
        open_table(write_bytes(tmp_path, "broken.xlsx", b"PK\x03\x04garbage"))


# --------------------------------------------------------------------------------------------
# Sources, preview and progress


def test_binary_file_object_with_filename_and_position_kept(tmp_path: Path) -> None:
    data = b"prefix|phone\tname\n138\ta\n139\tb\n"
    upload = io.BytesIO(data)
    upload.seek(len(b"prefix|"))

    table = open_table(upload, filename="upload.txt")

    assert table.name == "upload.txt"
    assert table.bytes_total == len(data) - len(b"prefix|")
    assert [row.values["phone"] for row in table.rows()] == ["138", "139"]
    assert [row.values["phone"] for row in table.rows()] == ["138", "139"]
    assert not upload.closed


def test_non_seekable_stream_is_spooled(tmp_path: Path) -> None:
    stream = io.BufferedReader(NonSeekable(b"phone\n138\n"))

    with open_table(stream, filename="x.csv") as table:
        assert [row.values for row in table.preview()] == [{"phone": "138"}]
        assert [row.values for row in table.rows()] == [{"phone": "138"}]


@pytest.mark.parametrize("as_file_object", [False, True])
def test_preview_does_not_disturb_an_ongoing_iteration(
    tmp_path: Path, as_file_object: bool
) -> None:
    lines = ["phone,name"] + [f"{i},name {i}" for i in range(5000)]
    path = write_text(tmp_path, "a.csv", "\n".join(lines) + "\n")
    with path.open("rb") as handle:
        table = open_table(handle if as_file_object else path)
        rows = table.rows()
        first = [next(rows) for _ in range(3000)]

        preview = table.preview(2)

        rest = list(rows)
    assert [row.number for row in preview] == [2, 3]
    assert [row.number for row in first + rest] == list(range(2, 5002))
    assert rest[-1].values == {"phone": "4999", "name": "name 4999"}


def test_preview_returns_first_n_rows(tmp_path: Path) -> None:
    path = write_text(tmp_path, "a.csv", "phone\n" + "".join(f"{i}\n" for i in range(20)))
    table = open_table(path)

    assert [row.values["phone"] for row in table.preview()] == [str(i) for i in range(10)]
    assert [row.number for row in table.preview(3)] == [2, 3, 4]
    assert table.preview(0) == []


def test_csv_progress_follows_bytes(tmp_path: Path) -> None:
    lines = ["phone,name"] + [f"{13800000000 + i},customer {i}" for i in range(20000)]
    path = write_text(tmp_path, "a.csv", "\n".join(lines) + "\n")
    table = open_table(path)
    assert table.progress() == 0.0

    seen: list[float] = []
    for row in table.rows():
        if row.number % 5000 == 0:
            progress = table.progress()
            assert progress is not None
            seen.append(progress)

    assert seen == sorted(seen)
    assert 0 < seen[0] < 0.5 < seen[-1] <= 1
    assert table.progress() == 1.0
    assert table.bytes_read == table.bytes_total == path.stat().st_size


# --------------------------------------------------------------------------------------------
# XLSX


def test_xlsx_values_are_text_as_the_user_sees_them(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["phone", "name", "birthday", "paid_at", "amount", "vip"],
            [
                13800138000,
                " 张三 ",
                dt.date(1990, 5, 17),
                dt.datetime(2024, 3, 1, 9, 30),
                12.5,
                True,
            ],
            [],
            [None, None, None, None, None, None],
            [
                13900139000.0,
                "李四",
                dt.datetime(1988, 1, 2),
                dt.datetime(2024, 3, 2, 0, 0, 5),
                3,
                False,
            ],
            [],
        ],
    )

    table = open_table(path)

    assert (table.format, table.encoding, table.delimiter) == ("xlsx", None, None)
    assert table.headers == ["phone", "name", "birthday", "paid_at", "amount", "vip"]
    assert list(table.rows()) == [
        Row(
            2,
            {
                "phone": "13800138000",
                "name": "张三",
                "birthday": "1990-05-17",
                "paid_at": "2024-03-01 09:30:00",
                "amount": "12.5",
                "vip": "TRUE",
            },
        ),
        Row(
            5,
            {
                "phone": "13900139000",
                "name": "李四",
                "birthday": "1988-01-02",
                "paid_at": "2024-03-02 00:00:05",
                "amount": "3",
                "vip": "FALSE",
            },
        ),
    ]


def test_xlsx_floats_read_like_excel_general_format(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["x"], [0.1 + 0.2], [1e20], [-2.0]])

    assert [row.values["x"] for row in open_table(path).rows()] == ["0.3", "1e+20", "-2"]


def test_xlsx_progress_uses_rows_and_preview_is_independent(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["phone"]] + [[str(i)] for i in range(99)])
    table = open_table(path)
    assert table.rows_total == 100

    rows = table.rows()
    first = next(rows)
    assert first.number == 2
    assert table.progress() == pytest.approx(0.02)
    assert [row.number for row in table.preview(2)] == [2, 3]
    assert len(list(rows)) == 98
    assert table.progress() == 1.0


def test_xlsx_from_file_object_and_row_errors(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["phone", "name"], ["138", "a"], ["139", "b", "extra"]])
    upload = io.BytesIO(path.read_bytes())

    table = open_table(upload, filename="客户.xlsx")

    with ErrorReport() as report:
        assert [row.number for row in table.rows(errors=report)] == [2]
        assert list(report) == [
            ErrorEntry(
                3,
                "column 3 (C)",
                "the row has a value beyond the last header (2 columns); add a header for it or remove the value",
            )
        ]


def test_xlsx_duplicate_header(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["手机号", "姓名", "手机号"], ["1", "2", "3"]])

    with pytest.raises(TabularError, match=r'column 3 \(C\) repeats the header "手机号"'):
        open_table(path)


def test_xlsx_detected_by_magic_despite_csv_name(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path, [["phone"], ["138"]], name="really-a-workbook.csv")

    table = open_table(path)

    assert table.format == "xlsx"
    assert [row.values for row in table.rows()] == [{"phone": "138"}]


# --------------------------------------------------------------------------------------------
# Presets and mappings

YOUZAN = "客户姓名,手机号,性别,生日,所在地区/省份,城市,会员等级,积分,累计消费金额,最近消费时间,来源渠道,标签,微信昵称"
WECOM = "客户名称,客户类型,添加人,添加人账号,添加时间,添加渠道,备注,描述,标签,企业标签,性别,external_userid"
TMALL = (
    "订单编号,买家会员名,买家应付货款,买家实际支付金额,邮费,订单状态,订单创建时间,订单付款时间,"
    "收货人姓名,联系手机,宝贝标题,宝贝种类,商家编码,宝贝总数量,店铺名称"
)


def test_youzan_customers_preset() -> None:
    headers = YOUZAN.replace("所在地区/省份", "省份").split(",")

    mapping = detect_mapping("customers", headers)

    assert mapping is not None
    assert mapping.name == "youzan_customers"
    assert mapping.columns == {
        "name": "客户姓名",
        "phone": "手机号",
        "gender": "性别",
        "birthday": "生日",
        "province": "省份",
        "city": "城市",
        "tags": "标签",
        "channel": "来源渠道",
    }
    assert mapping.missing(headers) == []
    assert mapping.unmapped(headers) == [
        "会员等级",
        "积分",
        "累计消费金额",
        "最近消费时间",
        "微信昵称",
    ]
    literal = detect_mapping("customers", YOUZAN.split(","))
    assert literal is not None
    assert literal.columns["province"] == "所在地区/省份"


def test_wecom_customers_preset() -> None:
    headers = WECOM.split(",")

    mapping = detect_mapping("customers", headers)

    assert mapping is not None
    assert mapping.name == "wecom_customers"
    assert mapping.columns == {
        "name": "客户名称",
        "wecom_external_userid": "external_userid",
        "staff_wecom_userid": "添加人账号",
        "added_at": "添加时间",
        "channel": "添加渠道",
        "tags": "企业标签",
        "gender": "性别",
    }
    assert mapping.missing(headers) == []


def test_yutang_customers_preset_accepts_any_subset_with_an_identity() -> None:
    mapping = detect_mapping("customers", ["Phone", "name", "tags"])

    assert mapping is not None
    assert mapping.name == "yutang_customers"
    assert mapping.apply({"Phone": "138", "name": "a", "tags": "vip"}) == {
        "phone": "138",
        "name": "a",
        "tags": "vip",
    }
    assert mapping.missing(["Phone", "name", "tags"]) == []
    assert mapping.missing(["name"]) == [
        "external_id or phone or email or wechat_unionid or wechat_openid or wecom_external_userid"
        " or taobao_buyer or jd_buyer or pdd_buyer or douyin_user or xiaohongshu_user or weibo_user"
        " or app_user"
    ]


def test_tmall_orders_preset_with_fixed_source() -> None:
    headers = TMALL.split(",")

    mapping = detect_mapping("orders", headers)

    assert mapping is not None
    assert mapping.name == "tmall_orders"
    assert mapping.constants == {"source": "tmall"}
    row = Row(2, dict(zip(headers, [f"v{i}" for i in range(len(headers))], strict=True)))
    assert mapping.apply(row) == {
        "external_id": "v0",
        "taobao_buyer": "v1",
        "amount_yuan": "v3",
        "shipping_yuan": "v4",
        "status": "v5",
        "paid_at": "v7",
        "phone": "v9",
        "sku": "v12",
        "quantity": "v13",
        "source": "tmall",
    }
    assert mapping.missing(headers) == []
    without_paid_at = [h for h in headers if h != "订单付款时间"]
    assert mapping.missing(without_paid_at) == ["paid_at"]
    assert mapping.column_for("paid_at") == "订单付款时间"


def test_yutang_orders_preset() -> None:
    headers = ["source", "external_id", "phone", "paid_at", "amount_yuan", "sku", "quantity"]

    mapping = detect_mapping("orders", headers)

    assert mapping is not None
    assert mapping.name == "yutang_orders"
    assert mapping.missing(headers) == []
    assert mapping.missing(["external_id", "phone", "paid_at"]) == [
        "source",
        "amount_fen or amount_yuan",
    ]


def test_detection_needs_a_signature_and_respects_the_kind() -> None:
    assert detect_mapping("customers", ["foo", "bar"]) is None
    assert detect_mapping("customers", ["订单编号", "买家会员名", "邮费"]) is None
    assert detect_mapping("orders", YOUZAN.split(",")) is None
    # 手机号 alone is too little to call a file a Youzan export.
    assert detect_mapping("customers", ["手机号", "备注"]) is None


def test_mapping_rejects_unknown_fields() -> None:
    with pytest.raises(TabularError, match=r"columns\.phon: unknown customers field") as info:
        Mapping("customers", {"phon": "手机"})
    assert info.value.field == "columns.phon"


def write_mapping(tmp_path: Path, content: object) -> Path:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return write_text(tmp_path, "mapping.json", text)


def test_mapping_file_is_loaded(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        {
            "kind": "customers",
            "columns": {"phone": " 手机 ", "name": "姓名"},
            "constants": {"source": "jd"},
        },
    )

    mapping = load_mapping_file(path)

    assert mapping == Mapping(
        kind="customers",
        columns={"phone": "手机", "name": "姓名"},
        constants={"source": "jd"},
        name="mapping.json",
    )
    assert mapping.apply(Row(2, {"手机": "138", "姓名": "", "其他": "x"})) == {
        "phone": "138",
        "name": "",
        "source": "jd",
    }
    assert mapping.missing(["手机"]) == []
    # A constant source names no person, so a file without the phone column lacks an identity.
    assert mapping.missing(["姓名"]) == [" or ".join(required_fields("customers")[0])]


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ("{not json", None, "is not valid JSON: line 1 column 2"),
        ("[]", None, "must hold a JSON object"),
        ({"columns": {"phone": "手机"}}, "kind", 'kind: is required: "customers" or "orders"'),
        (
            {"kind": "users", "columns": {}},
            "kind",
            'kind: must be "customers" or "orders", not "users"',
        ),
        (
            {"kind": "customers", "colums": {"phone": "x"}},
            "colums",
            "colums: unknown key; expected kind, columns, constants",
        ),
        (
            {"kind": "customers", "columns": {"phon": "手机"}},
            "columns.phon",
            "columns.phon: unknown customers field; known fields: external_id, phone",
        ),
        (
            {"kind": "orders", "columns": {"paid_at": 5}},
            "columns.paid_at",
            "columns.paid_at: must be a column header, not 5",
        ),
        (
            {"kind": "orders", "columns": {"paid_at": " "}},
            "columns.paid_at",
            'columns.paid_at: must be a column header, not " "',
        ),
        (
            {"kind": "orders", "columns": ["a"]},
            "columns",
            "columns: must be an object of field names to text",
        ),
        (
            {"kind": "orders", "columns": {"source": "平台"}, "constants": {"source": "jd"}},
            "constants.source",
            "constants.source: is also mapped to a column",
        ),
        (
            {"kind": "orders", "constants": {"source": 1}},
            "constants.source",
            "constants.source: must be text, not 1",
        ),
        ({"kind": "orders"}, "columns", "columns: maps no field"),
    ],
)
def test_mapping_file_errors_name_the_key(
    tmp_path: Path, content: object, field: str | None, message: str
) -> None:
    path = write_mapping(tmp_path, content)

    with pytest.raises(TabularError) as info:
        load_mapping_file(path)

    assert message in info.value.message
    assert info.value.message.startswith("mapping file mapping.json")
    assert info.value.field == field


def test_mapping_file_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path, {"kind": "customers", "columns": {"phon": "a", "nme": "b"}, "extra": 1}
    )

    with pytest.raises(TabularError) as info:
        load_mapping_file(path)

    for key in ("extra: unknown key", "columns.phon: unknown", "columns.nme: unknown"):
        assert key in info.value.message


def test_missing_mapping_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TabularError, match=r"cannot read mapping file nope\.json"):
        load_mapping_file(tmp_path / "nope.json")


# --------------------------------------------------------------------------------------------
# Parsing helpers


@pytest.mark.parametrize(
    ("value", "fen"),
    [
        ("12.30", 1230),
        ("12.3", 1230),
        ("12", 1200),
        ("0", 0),
        (".5", 50),
        ("¥1,234.56", 123456),
        ("￥ 8", 800),
        ("99.9元", 9990),
        (" 1,000,000 元 ", 100000000),
        ("１２．３０", 1230),
        ("RMB 5.00", 500),
    ],
)
def test_parse_yuan_to_fen(value: str, fen: int) -> None:
    assert parse_yuan_to_fen(value) == fen


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-12.30", "must not be negative (got '-12.30')"),
        ("¥-1", "must not be negative (got '¥-1')"),
        ("1.234", "has more than 2 decimal places (got '1.234')"),
        ("abc", "is not an amount in yuan like 12.30 (got 'abc')"),
        ("1,23", "is not an amount in yuan like 12.30 (got '1,23')"),
        ("1e5", "is not an amount in yuan like 12.30 (got '1e5')"),
        ("  ", "is empty"),
    ],
)
def test_parse_yuan_to_fen_errors(value: str, message: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_yuan_to_fen(value, field="amount_yuan")
    assert (info.value.field, info.value.message) == ("amount_yuan", message)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01", dt.datetime(2024, 3, 1, tzinfo=SHANGHAI)),
        ("2024/3/1", dt.datetime(2024, 3, 1, tzinfo=SHANGHAI)),
        ("2024.03.01", dt.datetime(2024, 3, 1, tzinfo=SHANGHAI)),
        ("20240301", dt.datetime(2024, 3, 1, tzinfo=SHANGHAI)),
        ("2024年3月1日", dt.datetime(2024, 3, 1, tzinfo=SHANGHAI)),
        ("2024年03月01日 08:05", dt.datetime(2024, 3, 1, 8, 5, tzinfo=SHANGHAI)),
        ("2024-03-01 12:34", dt.datetime(2024, 3, 1, 12, 34, tzinfo=SHANGHAI)),
        ("2024/3/1 9:05:07", dt.datetime(2024, 3, 1, 9, 5, 7, tzinfo=SHANGHAI)),
        ("2024-03-01T12:34:56.5", dt.datetime(2024, 3, 1, 12, 34, 56, 500000, tzinfo=SHANGHAI)),
        ("2024-03-01T04:00:00Z", dt.datetime(2024, 3, 1, 12, 0, tzinfo=SHANGHAI)),
        ("2024-03-01 12:00:00+09:00", dt.datetime(2024, 3, 1, 11, 0, tzinfo=SHANGHAI)),
    ],
)
def test_parse_datetime(value: str, expected: dt.datetime) -> None:
    parsed = parse_datetime(value, SHANGHAI)

    assert parsed == expected
    assert parsed.tzinfo is SHANGHAI


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-02-30", "is not a real calendar date (got '2024-02-30')"),
        ("2024-03-01 25:00", "is not a real time of day (got '2024-03-01 25:00')"),
        ("yesterday", "is not a date like 2024-03-01, 2024/3/1 or 2024年3月1日 (got 'yesterday')"),
        ("45352", "is not a date like 2024-03-01, 2024/3/1 or 2024年3月1日 (got '45352')"),
        (
            "2024-03/01",
            "is not a date like 2024-03-01, 2024/3/1 or 2024年3月1日 (got '2024-03/01')",
        ),
        ("", "is empty"),
    ],
)
def test_parse_datetime_errors(value: str, message: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_datetime(value, SHANGHAI, field="paid_at")
    assert (info.value.field, info.value.message) == ("paid_at", message)


def test_parse_date() -> None:
    assert parse_date("1990-05-17") == dt.date(1990, 5, 17)
    assert parse_date("1990/5/7") == dt.date(1990, 5, 7)
    assert parse_date("1990年5月7日") == dt.date(1990, 5, 7)
    assert parse_date("1990-05-17 00:00:00") == dt.date(1990, 5, 17)
    with pytest.raises(FieldError, match="is not a real calendar date") as info:
        parse_date("1990-13-01", field="birthday")
    assert info.value.field == "birthday"


def test_parse_int() -> None:
    assert parse_int("3") == 3
    assert parse_int(" 1,200 ") == 1200
    assert parse_int("-4") == -4
    assert parse_int("２") == 2
    with pytest.raises(FieldError) as info:
        parse_int("1.5", field="quantity")
    assert (info.value.field, info.value.message) == (
        "quantity",
        "is not a whole number (got '1.5')",
    )
    with pytest.raises(FieldError, match=r"must be at least 1 \(got '0'\)"):
        parse_int("0", field="quantity", minimum=1)


@pytest.mark.parametrize(
    ("value", "gender"),
    [
        ("男", "male"),
        ("女", "female"),
        ("M", "male"),
        ("f", "female"),
        ("Male", "male"),
        ("FEMALE", "female"),
        ("未知", "unknown"),
        ("unknown", "unknown"),
        ("保密", "unknown"),
    ],
)
def test_parse_gender(value: str, gender: str) -> None:
    assert parse_gender(value) == gender


def test_parse_gender_error() -> None:
    with pytest.raises(FieldError) as info:
        parse_gender("x")
    assert (info.value.field, info.value.message) == (
        "gender",
        "expected 男/女/未知 or male/female/unknown (got 'x')",
    )


# --------------------------------------------------------------------------------------------
# Error report


def test_error_report_writes_excel_friendly_csv(tmp_path: Path) -> None:
    mapping = Mapping("orders", {"amount_yuan": "实付金额", "paid_at": "付款时间"})
    with ErrorReport() as report:
        report.add(3, "手机", "is not a phone number (got '123')")
        try:
            parse_yuan_to_fen("-5", field="amount_yuan")
        except FieldError as error:
            report.add_field_error(7, error, mapping)
        report.add(9, '=HYPERLINK("x")', 'bad, "quoted"')

        path = tmp_path / "errors.csv"
        report.write_csv(path)
        buffer = io.BytesIO()
        report.write_csv(buffer)

        assert len(report) == 3
        assert not report.truncated

    data = path.read_bytes()
    assert data == buffer.getvalue()
    assert data.startswith(codecs.BOM_UTF8)
    assert data.decode("utf-8-sig").split("\r\n") == [
        "行号/row,列/column,原因/reason",
        "3,手机,is not a phone number (got '123')",
        "7,实付金额,must not be negative (got '-5')",
        '9,"\'=HYPERLINK(""x"")","bad, ""quoted"""',
        "",
    ]


def test_error_report_keeps_only_the_first_entries_in_memory(tmp_path: Path) -> None:
    with ErrorReport(keep=2, spool_bytes=100) as report:
        for number in range(2, 1002):
            report.add(number, "phone", "is empty")

        assert (len(report), len(report.entries), report.truncated) == (1000, 2, True)
        chunks = list(report.chunks(size=1000))
        assert all(len(chunk) <= 1000 for chunk in chunks)
        lines = b"".join(chunks).decode("utf-8-sig").splitlines()
    assert len(lines) == 1001
    assert lines[-1] == "1001,phone,is empty"


# --------------------------------------------------------------------------------------------
# Scale


def test_a_million_rows_stream_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("phone,name,amount_yuan\n")
        handle.writelines(f"{13800000000 + i},客户{i},{i % 1000}.50\n" for i in range(1_000_000))
    size = path.stat().st_size
    assert size > 30_000_000

    tracemalloc.start()
    try:
        table = open_table(path)
        count = 0
        last: Row | None = None
        for row in table.rows():
            count += 1
            last = row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 1_000_000
    assert last == Row(
        1_000_001, {"phone": "13800999999", "name": "客户999999", "amount_yuan": "999.50"}
    )
    assert table.progress() == 1.0
    # Holding the rows would take hundreds of MB; streaming keeps the peak small. Speed is
    # measured in bench/, not asserted here.
    assert peak < 50 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"
