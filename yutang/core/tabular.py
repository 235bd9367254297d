"""Streaming reader for customer and order import files (CSV and XLSX).

Brands bring their customers and orders from spreadsheets: Excel and WPS exports, Youzan,
WeCom and Tmall downloads, often saved by Chinese Excel in GBK. This module turns such a file
into rows of stripped strings keyed by header, without loading the file into memory, so a
million-row file imports in bounded memory and a progress bar can follow it.

It deliberately knows nothing about Django models: importers (`yutang import …`, the console
import pages) map rows to fields with a `Mapping`, parse values with the `parse_*` helpers
(which raise `FieldError` naming the field) and collect problems in an `ErrorReport` that the
user downloads as a CSV next to their file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import decimal
import io
import json
import os
import re
import shutil
import tempfile
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, TypeAlias, cast

from yutang.core.errors import N_, ValidationFailed

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook

__all__ = [
    "CUSTOMER_FIELDS",
    "ORDER_FIELDS",
    "PRESETS",
    "ErrorEntry",
    "ErrorReport",
    "FieldError",
    "Kind",
    "Mapping",
    "Preset",
    "Row",
    "RowError",
    "Table",
    "TabularError",
    "column_label",
    "detect_mapping",
    "known_fields",
    "load_mapping_file",
    "open_table",
    "parse_date",
    "parse_datetime",
    "parse_gender",
    "parse_int",
    "parse_yuan_to_fen",
    "required_fields",
]

Kind: TypeAlias = Literal["customers", "orders"]
Format: TypeAlias = Literal["csv", "xlsx"]
Source: TypeAlias = "str | os.PathLike[str] | IO[bytes]"

#: How much of a CSV file is read up front to guess its encoding and delimiter.
SAMPLE_BYTES = 64 * 1024
#: Lines of the sample handed to csv.Sniffer; more only slows it down.
SNIFF_LINES = 20
#: A non-seekable upload is copied to a temporary file that stays in memory up to this size.
SPOOL_BYTES = 8 * 1024 * 1024

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls (and .et) workbooks
_CSV_EXTENSIONS = frozenset({".csv", ".txt", ".tsv", ""})
_XLSX_EXTENSIONS = frozenset({".xlsx", ".xlsm"})
_DELIMITERS = ",\t;"


# --------------------------------------------------------------------------------------------
# Errors


class TabularError(ValidationFailed):
    """The file as a whole cannot be read: unknown format or encoding, bad header row, bad
    mapping file. Raised, never collected, because no row of such a file can be trusted."""

    code = "invalid_file"


class RowError(TabularError):
    """One row cannot be turned into values (it has more cells than the header has columns).

    `Table.rows()` raises it, or records it in the `ErrorReport` passed as `errors=` and goes
    on with the next row, so an import can report every bad row instead of stopping at the
    first."""

    code = "invalid_row"

    def __init__(self, number: int, column: str, reason: str):
        super().__init__(f"row {number}, {column}: {reason}", field=column)
        self.number = number
        self.column = column
        self.reason = reason


class FieldError(ValidationFailed):
    """One value cannot be parsed. `field` is the Yutang field name (an importer turns it into
    the user's column header with `Mapping.column_for`) and `message` says why, including the
    offending value, so the error file is actionable on its own."""

    code = "invalid_value"

    def __init__(self, field: str, message: str):
        super().__init__(message, field=field)
        self.field: str = field


# --------------------------------------------------------------------------------------------
# Rows and tables


@dataclass(frozen=True, slots=True)
class Row:
    """One data row. `number` is the row number a spreadsheet user sees (the header is row 1,
    so error reports can be matched against the opened file)."""

    number: int
    values: dict[str, str]


def column_label(index: int) -> str:
    """`column 3 (C)`: the 1-based position and the spreadsheet letter, because a CSV user
    counts columns and an Excel user reads letters."""
    letters = ""
    n = index
    while n > 0:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return f"column {index} ({letters})"


class _ByteSource:
    """A re-openable binary input, so `preview()` and `rows()` can each read from the start.

    A path is opened anew each time. A caller's file object is shared: each use seeks to where
    the table started and restores the previous position afterwards, so a preview taken while
    `rows()` is suspended does not disturb it (a text wrapper resumes from the binary position).
    Non-seekable streams are first copied to a spooled temporary file."""

    def __init__(self, source: Source, filename: str | None):
        self._path: str | None = None
        self._file: IO[bytes] | None = None
        self._owned: IO[bytes] | None = None
        if isinstance(source, str | os.PathLike):
            self._path = os.fspath(source)
            self.name = filename or self._path
            self.size: int | None = os.path.getsize(self._path)
            self._start = 0
            return
        self.name = filename or str(getattr(source, "name", "") or "")
        seekable = getattr(source, "seekable", None)
        if seekable is not None and seekable():
            self._file = source
        else:
            # Owned by the table and closed by Table.close(), hence no `with`.
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")  # noqa: SIM115
            shutil.copyfileobj(source, spool)
            spool.seek(0)
            self._file = self._owned = cast(IO[bytes], spool)
        self._start = self._file.tell()
        self._file.seek(0, io.SEEK_END)
        self.size = self._file.tell() - self._start
        self._file.seek(self._start)

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        if self._path is not None:
            with open(self._path, "rb") as handle:
                yield handle
            return
        assert self._file is not None
        previous = self._file.tell()
        self._file.seek(self._start)
        try:
            yield self._file
        finally:
            if not self._file.closed:
                self._file.seek(previous)

    def offset(self, stream: IO[bytes]) -> int:
        """Bytes consumed so far from `stream`, relative to where the table starts."""
        return stream.tell() - self._start

    def head(self, n: int) -> bytes:
        with self.open() as stream:
            return stream.read(n)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


Records: TypeAlias = Generator[tuple[int, list[str]], None, None]


class Table:
    """A header row plus lazily read data rows of one CSV file or first XLSX worksheet.

    Nothing beyond the header and a small sample is read until `rows()` or `preview()` is
    iterated, and each of those reads from the start of the file independently.

    Progress: for CSV, `bytes_read` of `bytes_total`; for XLSX, `rows_read` of `rows_total`
    (both are row numbers on the `Row.number` scale, header included; `rows_total` comes from
    the sheet's recorded dimension and is None when the sheet has none). `progress()` turns
    whichever applies into a fraction for a progress bar.
    """

    def __init__(
        self,
        *,
        source: _ByteSource,
        format: Format,
        headers: list[str],
        header_number: int,
        encoding: str | None = None,
        delimiter: str | None = None,
        rows_total: int | None = None,
    ):
        self._source = source
        self.name = source.name
        self.format: Format = format
        self.headers = headers
        self.header_number = header_number
        self.encoding = encoding
        self.delimiter = delimiter
        self.bytes_total = source.size
        self.rows_total = rows_total
        self.rows_read = 0
        self._bytes_done: int | None = None
        self._active: IO[bytes] | None = None

    # -- reading ---------------------------------------------------------------------------

    def rows(self, *, errors: ErrorReport | None = None) -> Iterator[Row]:
        """Yield data rows in file order, skipping completely empty rows.

        A row with more non-empty cells than there are headers raises `RowError`, or, when
        `errors` is given, is recorded there and skipped. Progress attributes follow this
        iteration (not `preview()`)."""
        with self._source.open() as stream:
            # XLSX members are read out of file order, so only CSV reports bytes.
            self._active = stream if self.format == "csv" else None
            self._bytes_done = None
            self.rows_read = self.header_number
            records = self._records(stream)
            try:
                for number, cells in records:
                    if number <= self.header_number:
                        continue
                    self.rows_read = number
                    row = self._row(number, cells, errors)
                    if row is not None:
                        yield row
                self._bytes_done = self.bytes_total
            finally:
                records.close()
                if self._active is stream:
                    self._bytes_done = self._bytes_done or self._offset(stream)
                    self._active = None

    def preview(self, n: int = 10, *, errors: ErrorReport | None = None) -> list[Row]:
        """The first `n` data rows, read independently of (and without disturbing) `rows()`,
        for the console's "check your columns" step and the CLI's dry run."""
        result: list[Row] = []
        if n <= 0:
            return result
        with self._source.open() as stream:
            records = self._records(stream)
            try:
                for number, cells in records:
                    if number <= self.header_number:
                        continue
                    row = self._row(number, cells, errors)
                    if row is None:
                        continue
                    result.append(row)
                    if len(result) >= n:
                        break
            finally:
                records.close()
        return result

    def _records(self, stream: IO[bytes]) -> Records:
        if self.format == "xlsx":
            return _xlsx_records(stream)
        assert self.encoding is not None and self.delimiter is not None
        return _csv_records(self._source, stream, self.encoding, self.delimiter)

    def _row(self, number: int, cells: list[str], errors: ErrorReport | None) -> Row | None:
        if not any(cells):
            return None
        width = len(self.headers)
        if len(cells) > width:
            extra = next((i for i in range(width, len(cells)) if cells[i]), None)
            if extra is not None:
                error = RowError(
                    number,
                    column_label(extra + 1),
                    f"the row has a value beyond the last header ({width} columns); "
                    "add a header for it or remove the value",
                )
                if errors is None:
                    raise error
                errors.add(number, error.column, error.reason)
                return None
        elif len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        return Row(number, dict(zip(self.headers, cells, strict=False)))

    # -- progress --------------------------------------------------------------------------

    @property
    def bytes_read(self) -> int:
        """Bytes of the file consumed by the current or last `rows()` iteration (CSV; for
        XLSX the compressed workbook is not read in order, so use `rows_read`)."""
        if self._active is not None:
            return self._offset(self._active)
        return self._bytes_done or 0

    def _offset(self, stream: IO[bytes]) -> int:
        if stream.closed:
            return self._bytes_done or 0
        offset = self._source.offset(stream)
        return min(offset, self.bytes_total) if self.bytes_total is not None else offset

    def progress(self) -> float | None:
        """Fraction in [0, 1] of the current `rows()` iteration, or None when unknown."""
        if self.format == "csv":
            if not self.bytes_total:
                return None
            return min(1.0, self.bytes_read / self.bytes_total)
        if not self.rows_total:
            return None
        return min(1.0, self.rows_read / self.rows_total)

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the temporary copy made of a non-seekable stream (if any)."""
        self._source.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Table {self.format} {self.name!r} {len(self.headers)} columns>"


def open_table(
    source: Source, *, filename: str | None = None, encoding: str | None = None
) -> Table:
    """Open a CSV or XLSX file (a path or a binary file object such as an upload) and read
    its header row.

    The format comes from the content (an XLSX file is a ZIP archive) and the file name
    (`filename` overrides the path's or file object's own name). For CSV, the encoding is
    UTF-8 (with or without BOM), UTF-16 with BOM (Excel's "Unicode text"), or else GB18030,
    which covers GBK and GB2312 from Chinese Excel; `encoding` overrides the guess."""
    byte_source = _ByteSource(source, filename)
    try:
        head = byte_source.head(SAMPLE_BYTES)
        if _detect_format(byte_source.name, head) == "xlsx":
            return _open_xlsx(byte_source)
        return _open_csv(byte_source, head, encoding)
    except BaseException:
        byte_source.close()
        raise


def _detect_format(name: str, head: bytes) -> Format:
    extension = os.path.splitext(name)[1].lower()
    if not head:
        raise TabularError(N_("the file is empty"))
    if head.startswith(_ZIP_MAGIC):
        return "xlsx"
    if head.startswith(_OLE_MAGIC) or extension in {".xls", ".et"}:
        raise TabularError(
            N_(
                "old Excel .xls files are not supported; open the file in Excel or WPS and save it "
                "as .xlsx or CSV"
            )
        )
    if extension in _XLSX_EXTENSIONS:
        raise TabularError(
            N_("{basename} is not a valid .xlsx workbook"),
            params={"basename": os.path.basename(name)},
        )
    if extension in _CSV_EXTENSIONS:
        return "csv"
    raise TabularError(
        N_("unsupported file type {extension}; use .csv, .txt or .xlsx"),
        params={"extension": extension},
    )


def _read_header(records: Records) -> tuple[int, list[str]]:
    """The first non-empty record is the header (blank lines above it are tolerated)."""
    for number, cells in records:
        if any(cells):
            return number, _validate_headers(cells)
    raise TabularError(N_("the file has no header row"))


def _validate_headers(cells: list[str]) -> list[str]:
    """Reject blank and repeated headers, which would silently lose or mix up a column.
    Trailing blank cells are dropped: spreadsheets often carry empty columns at the end."""
    headers = [cell.lstrip("\ufeff").strip() for cell in cells]
    while headers and not headers[-1]:
        headers.pop()
    seen: dict[str, int] = {}
    for index, header in enumerate(headers, start=1):
        if not header:
            raise TabularError(
                N_("header row: {column_label} has no name; give it one or delete the column"),
                params={"column_label": column_label(index)},
                field="headers",
            )
        key = header.casefold()
        if key in seen:
            raise TabularError(
                N_(
                    'header row: {column_label} repeats the header "{header}" of {column_label2}; '
                    "rename one of them"
                ),
                params={
                    "column_label": column_label(index),
                    "header": header,
                    "column_label2": column_label(seen[key]),
                },
                field="headers",
            )
        seen[key] = index
    return headers


# --------------------------------------------------------------------------------------------
# CSV


def _open_csv(source: _ByteSource, head: bytes, encoding: str | None) -> Table:
    truncated = source.size is not None and source.size > len(head)
    chosen = _explicit_encoding(encoding, head) if encoding else _detect_encoding(head, truncated)
    try:
        sample = _decode_sample(head, chosen, truncated)
    except UnicodeDecodeError as exc:
        raise TabularError(
            N_("the file is not valid {chosen} text ({reason} at byte {start})"),
            params={"chosen": chosen, "reason": exc.reason, "start": exc.start},
            field="encoding",
        ) from None
    delimiter = _sniff_delimiter(sample, truncated)
    with source.open() as stream:
        records = _csv_records(source, stream, chosen, delimiter)
        try:
            header_number, headers = _read_header(records)
        finally:
            records.close()
    return Table(
        source=source,
        format="csv",
        headers=headers,
        header_number=header_number,
        encoding=chosen,
        delimiter=delimiter,
    )


def _explicit_encoding(encoding: str, head: bytes) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise TabularError(
            N_('unknown text encoding "{encoding}"'),
            params={"encoding": encoding},
            field="encoding",
        ) from None
    if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    return name


def _detect_encoding(head: bytes, truncated: bool) -> str:
    """UTF-8 when the sample decodes strictly as UTF-8 (GBK text practically never does),
    otherwise GB18030, the superset of GBK/GB2312 that Chinese Excel writes."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for candidate in ("utf-8", "gb18030"):
        try:
            _decode_sample(head, candidate, truncated)
        except UnicodeDecodeError:
            continue
        return candidate
    raise TabularError(
        N_(
            "cannot tell the file's text encoding (it is neither UTF-8 nor GBK/GB18030); save it "
            "as UTF-8 CSV or name the encoding explicitly"
        ),
        field="encoding",
    )


def _decode_sample(head: bytes, encoding: str, truncated: bool) -> str:
    """Decode the sample; when the file goes on, a character cut at the end is not an error."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    return decoder.decode(head, final=not truncated)


def _sniff_delimiter(sample: str, truncated: bool) -> str:
    """Comma, tab or semicolon, by csv.Sniffer on the first lines; the guess must occur in
    the header line, else the most frequent candidate there wins, else comma."""
    lines = sample.split("\n")
    if truncated and len(lines) > 1:
        lines.pop()  # cut short by the sample size
    lines = lines[:SNIFF_LINES]
    header = lines[0] if lines else ""
    try:
        guess: str | None = csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        guess = None
    if guess and guess in header:
        return guess
    counts = {delimiter: header.count(delimiter) for delimiter in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _csv_records(source: _ByteSource, stream: IO[bytes], encoding: str, delimiter: str) -> Records:
    """Records of a CSV file; text that does not decode is a file-level error naming the
    first row it spoils."""
    try:
        yield from _decoded_records(stream, encoding, delimiter, "strict")
    except UnicodeDecodeError as exc:
        number = _first_undecodable_row(source, encoding, delimiter)
        where = f"row {number}: " if number is not None else ""
        raise TabularError(
            N_(
                "{where}the text is not valid {encoding} ({reason}); save the file as UTF-8 CSV "
                "or name its encoding explicitly"
            ),
            params={"where": where, "encoding": encoding, "reason": exc.reason},
            field="encoding",
        ) from None


def _first_undecodable_row(source: _ByteSource, encoding: str, delimiter: str) -> int | None:
    """The text wrapper decodes ahead in chunks, so a decoding error does not say which row
    it is in. Only on that error path, re-read with undecodable bytes smuggled through as
    lone surrogates and find the first row holding one."""
    with source.open() as stream:
        records = _decoded_records(stream, encoding, delimiter, "surrogateescape")
        try:
            for number, cells in records:
                if any(_ESCAPED_BYTE.search(cell) for cell in cells):
                    return number
        except (TabularError, UnicodeDecodeError):
            return None
        finally:
            records.close()
    return None


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _decoded_records(stream: IO[bytes], encoding: str, delimiter: str, errors: str) -> Records:
    """Records numbered as a spreadsheet shows them: one per CSV record, blank lines
    included, so a quoted value spanning lines still counts as one row."""
    text = io.TextIOWrapper(cast(Any, stream), encoding=encoding, errors=errors, newline="")
    try:
        reader = csv.reader(text, delimiter=delimiter)
        number = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TabularError(
                    N_("row {value}: {exc}"), params={"value": number + 1, "exc": exc}
                ) from None
            number += 1
            yield number, [_csv_cell(cell) for cell in cells]
    finally:
        # Detach so the caller's file object is left open for the next reader.
        text.detach()


def _csv_cell(cell: str) -> str:
    """Strip, and unwrap the `="000123"` guard that Taobao and other exports put around
    long numbers so Excel shows them as text: the user sees 000123, so do we."""
    cell = cell.strip()
    if cell.startswith('="') and cell.endswith('"') and len(cell) >= 3:
        cell = cell[2:-1].strip()
    return cell


# --------------------------------------------------------------------------------------------
# XLSX


def _open_xlsx(source: _ByteSource) -> Table:
    with source.open() as stream:
        workbook = _load_workbook(stream)
        try:
            rows_total: int | None = workbook.worksheets[0].max_row
            records = _sheet_records(workbook)
            try:
                header_number, headers = _read_header(records)
            finally:
                records.close()
        finally:
            workbook.close()
    if rows_total is not None and rows_total <= header_number:
        rows_total = None  # a missing or bogus "A1" dimension; progress is then unknown
    return Table(
        source=source,
        format="xlsx",
        headers=headers,
        header_number=header_number,
        rows_total=rows_total,
    )


def _load_workbook(stream: IO[bytes]) -> Workbook:
    # Imported here so reading CSV never pays for openpyxl's import time.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it drops; irrelevant for values.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")
            workbook = load_workbook(stream, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, zlib.error, KeyError, SyntaxError) as exc:
        raise TabularError(N_("not a valid .xlsx workbook ({exc})"), params={"exc": exc}) from None
    if not workbook.worksheets:
        workbook.close()
        raise TabularError(N_("the workbook has no worksheet"))
    return workbook


def _xlsx_records(stream: IO[bytes]) -> Records:
    workbook = _load_workbook(stream)
    try:
        yield from _sheet_records(workbook)
    finally:
        workbook.close()


def _sheet_records(workbook: Workbook) -> Records:
    """Rows of the first worksheet, streamed (read-only mode parses the sheet XML as it
    goes). The recorded dimension is ignored for reading because some generators write a
    wrong one, which would cut rows off."""
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()
    number = 0
    values_iter = sheet.iter_rows(min_row=1, values_only=True)
    while True:
        try:
            values = next(values_iter)
        except StopIteration:
            return
        except (zipfile.BadZipFile, zlib.error, SyntaxError, ValueError) as exc:
            raise TabularError(
                N_("row {value}: the workbook is damaged ({exc})"),
                params={"value": number + 1, "exc": exc},
            ) from None
        number += 1
        yield number, [_xlsx_cell(value) for value in values]


def _xlsx_cell(value: object) -> str:
    """The text a spreadsheet user sees for a typed cell: 13800138000 not 13800138000.0,
    dates as ISO so `parse_date` and `parse_datetime` accept them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return format(value, ".15g")  # Excel keeps 15 significant digits
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S")
    return str(value).strip()


# --------------------------------------------------------------------------------------------
# Column mappings

_IDENTITY_FIELDS = (
    "external_id",
    "phone",
    "email",
    "wechat_unionid",
    "wechat_openid",
    "wecom_external_userid",
    "taobao_buyer",
    "jd_buyer",
    "pdd_buyer",
    "douyin_user",
    "xiaohongshu_user",
    "weibo_user",
    "app_user",
)

#: Yutang fields a customer import understands.
CUSTOMER_FIELDS: tuple[str, ...] = (
    *_IDENTITY_FIELDS,
    "name",
    "gender",
    "birthday",
    "province",
    "city",
    "store_code",
    "staff_username",
    "staff_wecom_userid",
    "channel",
    "source",
    "tags",
    "added_at",
)

_ORDER_BUYER_FIELDS = (
    "phone",
    "external_customer_id",
    "taobao_buyer",
    "jd_buyer",
    "pdd_buyer",
    "douyin_user",
)

#: Yutang fields an order import understands.
ORDER_FIELDS: tuple[str, ...] = (
    "source",
    "external_id",
    "status",
    *_ORDER_BUYER_FIELDS,
    "paid_at",
    "amount_fen",
    "amount_yuan",
    "discount_fen",
    "discount_yuan",
    "shipping_fen",
    "shipping_yuan",
    "store_code",
    "sku",
    "quantity",
    "coupon_code",
    "refunded_fen",
    "refunded_yuan",
    "refunded_at",
)

#: Each inner tuple is satisfied by any one of its fields (a column or a constant).
_REQUIRED: dict[Kind, tuple[tuple[str, ...], ...]] = {
    "customers": (_IDENTITY_FIELDS,),
    "orders": (
        ("source",),
        ("external_id",),
        ("paid_at",),
        ("amount_fen", "amount_yuan"),
        _ORDER_BUYER_FIELDS,
    ),
}
_FIELDS: dict[Kind, tuple[str, ...]] = {"customers": CUSTOMER_FIELDS, "orders": ORDER_FIELDS}


def known_fields(kind: Kind) -> tuple[str, ...]:
    """The Yutang field names a mapping of this kind may use (for mapping editors)."""
    return _FIELDS[kind]


def required_fields(kind: Kind) -> tuple[tuple[str, ...], ...]:
    """Required field groups; each group needs any one of its fields."""
    return _REQUIRED[kind]


@dataclass(frozen=True)
class Mapping:
    """Which source column feeds each Yutang field, plus fixed values (`constants`) for
    fields the file lacks, such as the order `source` of a Tmall export."""

    kind: Kind
    columns: dict[str, str]
    constants: dict[str, str] = field(default_factory=dict)
    name: str = "custom"

    def __post_init__(self) -> None:
        problems = _mapping_problems(self.kind, self.columns, self.constants)
        if problems:
            key = problems[0][0]
            raise TabularError("; ".join(f"{k}: {m}" for k, m in problems), field=key)

    def apply(self, row: Row | AbcMapping[str, str]) -> dict[str, str]:
        """Field → value for one row. Fields whose column the row lacks are left out (so an
        importer can tell "not in this file" from "empty"); constants always apply."""
        values = row.values if isinstance(row, Row) else row
        result = {
            target: values[header] for target, header in self.columns.items() if header in values
        }
        result.update(self.constants)
        return result

    def missing(self, headers: Iterable[str]) -> list[str]:
        """Required fields this file cannot supply, e.g. `["paid_at"]`; a group of
        alternatives is reported as `"amount_fen or amount_yuan"`."""
        present = set(headers)
        supplied = {target for target, header in self.columns.items() if header in present} | set(
            self.constants
        )
        return [
            " or ".join(group) for group in _REQUIRED[self.kind] if not supplied.intersection(group)
        ]

    def unmapped(self, headers: Iterable[str]) -> list[str]:
        """Headers no field reads, so the console can say which columns will be ignored."""
        used = set(self.columns.values())
        return [header for header in headers if header not in used]

    def column_for(self, target: str) -> str:
        """The user's header for a field (for error reports), or the field name itself."""
        return self.columns.get(target, target)


def _mapping_problems(kind: object, columns: object, constants: object) -> list[tuple[str, str]]:
    """(key, message) for every problem, keys spelled as in the JSON mapping file."""
    if not isinstance(kind, str) or kind not in _FIELDS:
        return [("kind", f'must be "customers" or "orders", not {json.dumps(kind)}')]
    known = _FIELDS[cast(Kind, kind)]
    problems: list[tuple[str, str]] = []
    for section, value in (("columns", columns), ("constants", constants)):
        if not isinstance(value, dict):
            problems.append((section, "must be an object of field names to text"))
            continue
        for target, text in value.items():
            key = f"{section}.{target}"
            if target not in known:
                problems.append((key, f"unknown {kind} field; known fields: {', '.join(known)}"))
            elif not isinstance(text, str) or (section == "columns" and not text.strip()):
                what = "a column header" if section == "columns" else "text"
                problems.append((key, f"must be {what}, not {json.dumps(text)}"))
            elif section == "constants" and isinstance(columns, dict) and target in columns:
                problems.append((key, "is also mapped to a column; keep only one of them"))
    if isinstance(columns, dict) and isinstance(constants, dict) and not columns and not constants:
        problems.append(("columns", "maps no field"))
    return problems


def load_mapping_file(path: str | os.PathLike[str]) -> Mapping:
    """Read a JSON mapping file (see docs/import.md). Every problem is reported at once,
    each naming its key (`columns.phon: unknown customers field…`)."""
    name = os.path.basename(os.fspath(path))
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise TabularError(
            N_("cannot read mapping file {name}: {strerror}"),
            params={"name": name, "strerror": exc.strerror},
        ) from None
    except UnicodeDecodeError:
        raise TabularError(
            N_("mapping file {name} is not UTF-8 text"), params={"name": name}
        ) from None
    except json.JSONDecodeError as exc:
        raise TabularError(
            N_("mapping file {name} is not valid JSON: line {lineno} column {colno}: {msg}"),
            params={"name": name, "lineno": exc.lineno, "colno": exc.colno, "msg": exc.msg},
        ) from None
    if not isinstance(data, dict):
        raise TabularError(N_("mapping file {name} must hold a JSON object"), params={"name": name})
    problems = [
        (key, "unknown key; expected kind, columns, constants")
        for key in data
        if key not in {"kind", "columns", "constants"}
    ]
    if "kind" not in data:
        problems.append(("kind", 'is required: "customers" or "orders"'))
    else:
        columns = data.get("columns", {})
        constants = data.get("constants", {})
        problems += _mapping_problems(data["kind"], columns, constants)
    if problems:
        details = "; ".join(f"{key}: {message}" for key, message in problems)
        raise TabularError(
            N_("mapping file {name}: {details}"),
            params={"name": name, "details": details},
            field=problems[0][0],
        )
    return Mapping(
        kind=data["kind"],
        columns={target: header.strip() for target, header in data.get("columns", {}).items()},
        constants=dict(data.get("constants", {})),
        name=name,
    )


@dataclass(frozen=True)
class Preset:
    """A known export layout. `columns` lists header spellings per field (first present one
    wins); `signature` headers (any one) make the preset a candidate, `known` unmapped
    headers add to its score, and at least `min_score` of its headers must be present."""

    name: str
    kind: Kind
    columns: dict[str, tuple[str, ...]]
    signature: tuple[str, ...]
    known: tuple[str, ...] = ()
    constants: dict[str, str] = field(default_factory=dict)
    min_score: int = 1

    def score(self, present: AbcMapping[str, str]) -> int:
        """How many of this preset's headers the file has (0 when it is no candidate)."""
        if not any(header.casefold() in present for header in self.signature):
            return 0
        headers = {a.casefold() for aliases in self.columns.values() for a in aliases}
        headers.update(h.casefold() for h in self.known)
        score = len(headers.intersection(present))
        return score if score >= self.min_score else 0

    def bind(self, present: AbcMapping[str, str]) -> Mapping:
        """A mapping using the file's own header spellings; fields whose column is absent
        keep the preset's first spelling, so `missing()` names what the export should have."""
        columns = {
            target: next(
                (present[a.casefold()] for a in aliases if a.casefold() in present), aliases[0]
            )
            for target, aliases in self.columns.items()
        }
        return Mapping(self.kind, columns, dict(self.constants), self.name)


def _same_name(fields: Iterable[str]) -> dict[str, tuple[str, ...]]:
    return {name: (name,) for name in fields}


#: Detection order breaks ties: platform exports before the generic Yutang layout.
PRESETS: tuple[Preset, ...] = (
    Preset(
        name="youzan_customers",
        kind="customers",
        columns={
            "name": ("客户姓名",),
            "phone": ("手机号", "手机号码"),
            "gender": ("性别",),
            "birthday": ("生日",),
            "province": ("所在地区", "省份", "所在地区/省份"),
            "city": ("城市",),
            "tags": ("标签",),
            "channel": ("来源渠道",),
        },
        signature=("手机号", "手机号码"),
        known=("会员等级", "积分", "累计消费金额", "最近消费时间", "微信昵称"),
        min_score=3,
    ),
    Preset(
        name="wecom_customers",
        kind="customers",
        columns={
            "name": ("客户名称",),
            "wecom_external_userid": ("external_userid",),
            "staff_wecom_userid": ("添加人账号",),
            "added_at": ("添加时间",),
            "channel": ("添加渠道",),
            "tags": ("企业标签", "标签"),
            "gender": ("性别",),
        },
        signature=("external_userid",),
        known=("客户类型", "添加人", "备注", "描述"),
        min_score=2,
    ),
    Preset(
        name="yutang_customers",
        kind="customers",
        columns=_same_name(CUSTOMER_FIELDS),
        signature=_IDENTITY_FIELDS,
    ),
    Preset(
        name="tmall_orders",
        kind="orders",
        columns={
            "external_id": ("订单编号",),
            "taobao_buyer": ("买家会员名",),
            "amount_yuan": ("买家实际支付金额",),
            "shipping_yuan": ("邮费",),
            "paid_at": ("订单付款时间",),
            "phone": ("联系手机",),
            "sku": ("商家编码",),
            "quantity": ("宝贝总数量",),
            "status": ("订单状态",),
            "refunded_yuan": ("退款金额",),
        },
        signature=("订单编号",),
        known=("买家应付货款", "订单创建时间", "收货人姓名", "宝贝标题", "宝贝种类", "店铺名称"),
        constants={"source": "tmall"},
        min_score=3,
    ),
    Preset(
        name="yutang_orders",
        kind="orders",
        columns=_same_name(ORDER_FIELDS),
        signature=("external_id",),
        min_score=2,
    ),
)


def detect_mapping(kind: Kind, headers: Iterable[str]) -> Mapping | None:
    """The preset of this kind that best matches the headers (most of its headers present),
    bound to the file's spellings; None when no preset fits and a mapping file is needed."""
    present: dict[str, str] = {}
    for header in headers:
        present.setdefault(header.strip().casefold(), header)
    best: Preset | None = None
    best_score = 0
    for preset in PRESETS:
        if preset.kind != kind:
            continue
        score = preset.score(present)
        if score > best_score:
            best, best_score = preset, score
    return best.bind(present) if best is not None else None


# --------------------------------------------------------------------------------------------
# Value parsing helpers

_MAX_FEN = 2**63 - 1  # fits a BigIntegerField
_AMOUNT_RE = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d*))?|\.(\d+)", re.ASCII)
_INT_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)", re.ASCII)
_TIME = (
    r"(?:(?:\s*T\s*|\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,6}))?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?)?"
)
_DATE_PATTERNS = (
    re.compile(r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})" + _TIME, re.ASCII),
    re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日" + _TIME, re.ASCII),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})" + _TIME, re.ASCII),
)
_DATE_EXAMPLES = "2024-03-01, 2024/3/1 or 2024年3月1日"
_GENDERS = {
    "男": "male",
    "男性": "male",
    "先生": "male",
    "m": "male",
    "male": "male",
    "女": "female",
    "女性": "female",
    "女士": "female",
    "f": "female",
    "female": "female",
    "未知": "unknown",
    "保密": "unknown",
    "其他": "unknown",
    "unknown": "unknown",
}


def _text(value: str, target: str) -> str:
    """NFKC folds full-width digits and punctuation (１２．３０, ￥) that Chinese input
    methods produce into ASCII; empty values are the importer's call, not ours."""
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise FieldError(target, "is empty")
    return text


def parse_yuan_to_fen(value: str, *, field: str = "amount") -> int:
    """`"¥1,234.50元"` → 123450. Money is integer fen everywhere in Yutang; going through
    Decimal avoids float rounding, and more than two decimals is rejected rather than
    rounded because it usually means the wrong column."""
    text = _text(value, field)
    text = text.removeprefix("¥").removesuffix("元").strip()
    if text.upper().startswith("RMB"):
        text = text[3:].strip()
    if text.startswith(("-", "−")):
        raise FieldError(field, f"must not be negative (got {value.strip()!r})")
    text = text.removeprefix("+")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise FieldError(field, f"is not an amount in yuan like 12.30 (got {value.strip()!r})")
    decimals = match.group(1) or match.group(2) or ""
    if len(decimals) > 2:
        raise FieldError(field, f"has more than 2 decimal places (got {value.strip()!r})")
    fen = int(decimal.Decimal(text.replace(",", "")) * 100)
    if fen > _MAX_FEN:
        raise FieldError(field, f"is too large (got {value.strip()!r})")
    return fen


def parse_int(value: str, *, field: str = "value", minimum: int | None = None) -> int:
    """A whole number such as a quantity or points; thousands separators allowed."""
    text = _text(value, field)
    if _INT_RE.fullmatch(text) is None:
        raise FieldError(field, f"is not a whole number (got {value.strip()!r})")
    number = int(text.replace(",", ""))
    if minimum is not None and number < minimum:
        raise FieldError(field, f"must be at least {minimum} (got {value.strip()!r})")
    return number


def _match_date(value: str, target: str) -> re.Match[str]:
    text = _text(value, target)
    for pattern in _DATE_PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            return match
    raise FieldError(target, f"is not a date like {_DATE_EXAMPLES} (got {value.strip()!r})")


def _calendar_date(match: re.Match[str], value: str, target: str) -> dt.date:
    try:
        return dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        raise FieldError(target, f"is not a real calendar date (got {value.strip()!r})") from None


def parse_date(value: str, *, field: str = "date") -> dt.date:
    """A calendar date in the spellings Chinese spreadsheets use; a time part, as XLSX
    date-time cells carry, is ignored."""
    match = _match_date(value, field)
    return _calendar_date(match, value, field)


def parse_datetime(value: str, tz: dt.tzinfo, *, field: str = "time") -> dt.datetime:
    """An aware datetime. Exports write local wall-clock times without an offset, so they
    are read in `tz` (the brand's time zone); an explicit offset or Z is honoured and the
    result converted to `tz`. A bare date means midnight."""
    match = _match_date(value, field)
    day = _calendar_date(match, value, field)
    try:
        clock = dt.time(
            int(match["H"] or 0),
            int(match["M"] or 0),
            int(match["S"] or 0),
            int((match["f"] or "0").ljust(6, "0")),
        )
    except ValueError:
        raise FieldError(field, f"is not a real time of day (got {value.strip()!r})") from None
    offset = match["tz"]
    if not offset:
        return dt.datetime.combine(day, clock, tzinfo=tz)
    if offset == "Z":
        zone: dt.tzinfo = dt.UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        zone = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return dt.datetime.combine(day, clock, tzinfo=zone).astimezone(tz)


def parse_gender(value: str, *, field: str = "gender") -> str:
    """`"male"`, `"female"` or `"unknown"` from the Chinese and English spellings exports
    use (Youzan and WeCom write 男/女/未知)."""
    text = _text(value, field)
    gender = _GENDERS.get(text.casefold())
    if gender is None:
        raise FieldError(field, f"expected 男/女/未知 or male/female/unknown (got {text!r})")
    return gender


# --------------------------------------------------------------------------------------------
# Error report

ERROR_FILE_HEADER = ("行号/row", "列/column", "原因/reason")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    row: int
    column: str
    reason: str


class ErrorReport:
    """Problems found while importing, written as a CSV the user downloads beside their file.

    Entries are encoded into a spooled temporary file as they arrive (memory up to
    `spool_bytes`, then disk), so a file where every one of a million rows fails does not
    exhaust memory; only the first `keep` entries stay in `entries` for on-screen display.
    The CSV is UTF-8 with BOM because Excel misreads BOM-less UTF-8 as GBK."""

    def __init__(self, *, keep: int = 1000, spool_bytes: int = 1024 * 1024):
        self.keep = keep
        self.entries: list[ErrorEntry] = []
        self.count = 0
        # Lives as long as the report and is closed by close(), hence no `with`.
        spool = tempfile.SpooledTemporaryFile(max_size=spool_bytes, mode="w+b")  # noqa: SIM115
        self._spool = cast(IO[bytes], spool)
        self._line = io.StringIO()
        self._writer = csv.writer(self._line)
        self._spool.write(codecs.BOM_UTF8)
        self._write(ERROR_FILE_HEADER)

    def add(self, row: int, column: str, reason: str) -> None:
        """Record one problem; `column` is the user's header (or a `column N (X)` label)."""
        self.count += 1
        if len(self.entries) < self.keep:
            self.entries.append(ErrorEntry(row, column, reason))
        self._write((str(row), _defuse(column), _defuse(reason)))

    def add_field_error(self, row: int, error: FieldError, mapping: Mapping | None = None) -> None:
        """Record a parsing failure under the user's column header when the mapping knows it."""
        column = mapping.column_for(error.field) if mapping is not None else error.field
        self.add(row, column, error.message)

    def _write(self, cells: Iterable[str]) -> None:
        self._writer.writerow(cells)
        self._spool.write(self._line.getvalue().encode("utf-8"))
        self._line.seek(0)
        self._line.truncate()

    def chunks(self, size: int = 64 * 1024) -> Iterator[bytes]:
        """The CSV file in pieces, for a streaming HTTP response."""
        end = self._spool.tell()
        self._spool.seek(0)
        try:
            while self._spool.tell() < end:
                yield self._spool.read(min(size, end - self._spool.tell()))
        finally:
            self._spool.seek(end)

    def write_csv(self, target: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write the CSV to a path or a binary file object."""
        if isinstance(target, str | os.PathLike):
            with open(target, "wb") as handle:
                self.write_csv(handle)
            return
        for chunk in self.chunks():
            target.write(chunk)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[ErrorEntry]:
        return iter(self.entries)

    @property
    def truncated(self) -> bool:
        """True when `entries` holds only the first `keep` of `count` problems."""
        return self.count > len(self.entries)

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> ErrorReport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _defuse(text: str) -> str:
    """Values from the user's file end up in a spreadsheet; a leading = + - @ would run as a
    formula there (CSV injection), so quote it as text the way Excel does."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
