"""Importing customers and orders from CSV/XLSX files.

The runner reads the file as a stream (yutang.core.tabular), maps columns with a detected
preset or the user's mapping file, and hands each row to the importer registered for the
file's kind: customers here, orders by the commerce app. Every bad row is reported with its
row number, column and reason in a downloadable error file; valid rows are applied, or — with
all-or-nothing — none are when any row is bad. Re-importing the same file changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from django.conf import settings
from django.db import transaction

from yutang.core import audit, clock
from yutang.core.crypto import mask_identifier
from yutang.core.db import lock_brand
from yutang.core.errors import N_, NotFound, ValidationFailed, YutangError
from yutang.core.models import Brand, CarrierAccount, Staff, Store
from yutang.core.permissions import Action, require_brand_wide
from yutang.core.services import is_valid_id
from yutang.core.tabular import (
    ErrorReport,
    FieldError,
    Mapping,
    Row,
    TabularError,
    detect_mapping,
    load_mapping_file,
    open_table,
    parse_date,
    parse_datetime,
    parse_gender,
)
from yutang.customers import services
from yutang.customers.identities import NormalizedIdentity, normalize_identity
from yutang.customers.models import Customer, CustomerTag, ImportJob, Tag

logger = logging.getLogger("yutang.imports")

KINDS = ("customers", "orders")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


PROGRESS_EVERY = 500
#: Rows applied per transaction; progress is saved after each chunk.
CHUNK_ROWS = 1000


@dataclass
class ImportContext:
    """State shared by the rows of one import: the job and caches of what the rows name
    (stores, staff, tags: bounded by the brand's, not by the file's size). Nothing per row
    is kept: duplicates across chunks are found in the database (see commerce.imports)."""

    brand: Brand
    actor: Staff | None
    job_id: int | None = None
    stores: dict[str, Store | None] = field(default_factory=dict)
    staff: dict[str, Staff | None] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)

    def store(self, code: str, column: str = "store_code") -> Store:
        if code not in self.stores:
            self.stores[code] = Store.objects.filter(brand=self.brand, code=code).first()
        found = self.stores[code]
        if found is None:
            raise FieldError(column, f"unknown store code {code!r}")
        return found


#: kind -> row importer returning "created", "updated", "unchanged" or "skipped".
RowImporter = Callable[[ImportContext, dict[str, str], Row], str]
_IMPORTERS: dict[str, RowImporter] = {}


def register_importer(kind: str, importer: RowImporter) -> None:
    _IMPORTERS[kind] = importer


class ChunkFallback(Exception):
    """Raised by a chunk importer when this chunk must be imported row by row instead."""


#: kind -> chunk importer: applies a chunk of (row, mapped values) at once with the outcome
#: the row importer would give row by row — a list of outcomes, or of the YutangError /
#: FieldError a row is refused with, in row order — or raises ChunkFallback (after which the
#: runner rolls the chunk back and imports it row by row).
ChunkImporter = Callable[
    [ImportContext, list[tuple[Row, dict[str, str]]]], list["str | YutangError | FieldError"]
]
_CHUNK_IMPORTERS: dict[str, ChunkImporter] = {}


def register_chunk_importer(kind: str, importer: ChunkImporter) -> None:
    _CHUNK_IMPORTERS[kind] = importer


# --- Jobs -----------------------------------------------------------------------------------


def _storage_dir(brand: Brand) -> Path:
    path = Path(settings.VAR_DIR) / "imports" / str(brand.pk)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_mapping(kind: str, mapping_json: bytes | str | None) -> dict[str, Any] | None:
    if not mapping_json:
        return None
    scratch = Path(settings.VAR_DIR) / "imports" / f"mapping-{uuid.uuid4().hex}.json"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    try:
        scratch.write_bytes(
            mapping_json if isinstance(mapping_json, bytes) else mapping_json.encode()
        )
        mapping = load_mapping_file(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    if mapping.kind != kind:
        raise ValidationFailed(
            N_("The mapping file is for {kind}, not {kind2}."),
            params={"kind": mapping.kind, "kind2": kind},
            field="mapping",
        )
    return {
        "kind": mapping.kind,
        "columns": dict(mapping.columns),
        "constants": dict(mapping.constants),
    }


def create_import(
    *,
    actor: Staff | None,
    brand: Brand,
    kind: str,
    upload: Readable,
    filename: str,
    mapping_json: bytes | str | None = None,
    all_or_nothing: bool = False,
    encoding: str = "",
    run_now: bool = False,
    start: bool = True,
) -> ImportJob:
    """Store the uploaded file and queue its import (run_now: import in this process;
    start=False: keep it as a draft to preview, then `start_import`)."""
    if actor is not None:
        require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    if kind not in KINDS:
        raise ValidationFailed(N_("kind must be customers or orders."), field="kind")
    mapping = _load_mapping(kind, mapping_json)
    suffix = Path(filename).suffix.lower()[:8] if Path(filename).suffix else ".csv"
    target = _storage_dir(brand) / f"{uuid.uuid4().hex}{suffix}"
    with target.open("wb") as out:
        for chunk in iter(lambda: upload.read(1024 * 1024), b""):
            out.write(chunk)
    with transaction.atomic():
        job = ImportJob.objects.create(
            brand=brand,
            kind=kind,
            filename=Path(filename).name[:255],
            path=str(target),
            mapping=mapping,
            all_or_nothing=all_or_nothing,
            encoding=encoding,
            created_by=actor,
            created_at=clock.now(),
            status=ImportJob.Status.PENDING if start or run_now else ImportJob.Status.DRAFT,
        )
        audit.record(
            brand=brand,
            actor=actor,
            action="import.create",
            target=job,
            changes={"kind": {"after": kind}, "filename": {"after": job.filename}},
        )
        if start and not run_now:
            _enqueue(job)
    if run_now:
        run_import(job.pk)
        job.refresh_from_db()
    return job


def _enqueue(job: ImportJob) -> None:
    from yutang.customers.tasks import run_import_task

    transaction.on_commit(lambda: run_import_task.enqueue(job.pk))


def start_import(*, actor: Staff, job_id: int) -> ImportJob:
    """Queue a previewed (draft) import."""
    with transaction.atomic():
        job = get_import(actor=actor, job_id=job_id)
        updated = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.DRAFT).update(
            status=ImportJob.Status.PENDING
        )
        if updated:
            _enqueue(job)
        job.refresh_from_db()
    return job


def preview_job(*, actor: Staff, job_id: int, rows: int = 10) -> dict[str, Any]:
    """The preview of a stored import: detected layout and its first rows, with identities
    masked for roles that may not see them."""
    job = get_import(actor=actor, job_id=job_id)
    mapping = json.dumps(job.mapping) if job.mapping else None
    shown = preview(
        kind=job.kind,
        path=job.path,
        filename=job.filename,
        encoding=job.encoding or None,
        mapping_json=mapping,
        rows=rows,
    )
    if not actor.can(Action.IDENTIFIERS_VIEW):
        sensitive = {*IDENTITY_COLUMNS, "external_customer_id", "staff_wecom_userid"}
        for row in shown["rows"]:
            for name, value in row["values"].items():
                # Without a recognised layout any column may hold a phone number.
                if value and (shown["mapping"] is None or name in sensitive):
                    row["values"][name] = mask_identifier(IDENTITY_COLUMNS.get(name, "text"), value)
    return shown


def preview(
    *,
    kind: str,
    path: str | Path,
    filename: str | None = None,
    encoding: str | None = None,
    mapping_json: bytes | str | None = None,
    rows: int = 10,
) -> dict[str, Any]:
    """Headers, the mapping that would be used, what it lacks, and the first rows mapped."""
    mapping_dict = _load_mapping(kind, mapping_json)
    with open_table(path, filename=filename, encoding=encoding or None) as table:
        mapping = _mapping_from(kind, mapping_dict, table.headers)
        sample = table.preview(rows)
        return {
            "headers": table.headers,
            "encoding": table.encoding,
            "format": table.format,
            "mapping": None
            if mapping is None
            else {
                "name": mapping.name,
                "columns": dict(mapping.columns),
                "constants": dict(mapping.constants),
            },
            "missing": [] if mapping is None else mapping.missing(table.headers),
            "rows": [
                {"number": r.number, "values": mapping.apply(r) if mapping else r.values}
                for r in sample
            ],
        }


def _mapping_from(kind: str, mapping: dict[str, Any] | None, headers: list[str]) -> Mapping | None:
    if mapping is not None:
        return Mapping(
            kind=mapping["kind"],
            columns=mapping["columns"],
            constants=mapping.get("constants", {}),
            name="file",
        )
    return detect_mapping(kind, headers)  # type: ignore[arg-type]


def get_import(*, actor: Staff, job_id: int) -> ImportJob:
    require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    job = (
        ImportJob.objects.filter(brand=actor.brand, pk=job_id).first()
        if is_valid_id(job_id)
        else None
    )
    if job is None:
        raise NotFound(N_("No such import."), field="import_id")
    return job


def list_imports(*, actor: Staff) -> list[ImportJob]:
    require_brand_wide(actor, Action.CUSTOMER_MANAGE)
    return list(ImportJob.objects.filter(brand=actor.brand)[:100])


def run_import(job_id: int, *, on_progress: Callable[[ImportJob], None] | None = None) -> ImportJob:
    """Import a stored file. Safe to run twice: a finished job is left alone, and rows that
    were applied already come out `unchanged`."""
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.PENDING, ImportJob.Status.DRAFT]
    ).update(status=ImportJob.Status.RUNNING)
    job = ImportJob.objects.select_related("brand", "created_by").get(pk=job_id)
    if not claimed:  # finished, or another worker is on it
        return job
    job.created = job.updated = job.unchanged = job.skipped = job.rejected = job.rows_done = 0
    job.rows_total = None
    job.save()
    with ErrorReport() as errors:
        try:
            return _run(job, errors, on_progress)
        except Exception as exc:
            logger.exception("import %s failed", job.pk)
            return _fail(
                job,
                f"The import stopped on an unexpected error ({type(exc).__name__}); "
                "rows before it were applied. Please report this.",
            )


def _run(
    job: ImportJob, errors: ErrorReport, on_progress: Callable[[ImportJob], None] | None
) -> ImportJob:
    """Apply the file in chunks of CHUNK_ROWS rows, each chunk one transaction, with the
    progress saved after each (the console polls it). All-or-nothing first checks every row
    in one transaction that is rolled back, and applies nothing when any row is bad."""
    context = ImportContext(brand=job.brand, actor=job.created_by, job_id=job.pk)
    importer = _IMPORTERS[job.kind]
    try:
        if job.all_or_nothing:
            _set_status(job, ImportJob.Status.CHECKING)
            with _open(job) as (table, mapping):
                if mapping is None:
                    return job  # failed, with the reason
                with transaction.atomic():
                    _rows(job, table, mapping, importer, context, errors, on_progress, chunk=0)
                    transaction.set_rollback(True)  # a check: nothing is kept
            if len(errors):
                return _finish(
                    job,
                    errors,
                    "Nothing was applied: all-or-nothing and some rows are bad.",
                    applied=False,
                )
            job.rows_total = job.rows_done
            job.created = job.updated = job.unchanged = job.skipped = job.rows_done = 0
            _set_status(job, ImportJob.Status.RUNNING)
        with _open(job) as (table, mapping):
            if mapping is None:
                return job
            _rows(job, table, mapping, importer, context, errors, on_progress, chunk=CHUNK_ROWS)
    except TabularError as exc:
        return _fail(job, exc.message)
    message = ""
    if job.all_or_nothing and len(errors):
        # Only possible when the data changed between the check and the apply.
        message = (
            "Some rows became invalid after the check (the data changed meanwhile); "
            "the other rows were applied."
        )
    return _finish(job, errors, message, applied=True)


@contextlib.contextmanager
def _open(job: ImportJob) -> Iterator[tuple[Any, Mapping | None]]:
    """The job's table and column mapping; the mapping is None (and the job failed, with
    the reason) when the columns match no layout or miss a required one."""
    with open_table(job.path, filename=job.filename, encoding=job.encoding or None) as table:
        mapping = _mapping_from(job.kind, job.mapping, table.headers)
        if mapping is None:
            _fail(
                job,
                "The columns match no known layout; upload a mapping file (see docs/import.md).",
            )
            yield table, None
            return
        missing = mapping.missing(table.headers)
        if missing:
            _fail(job, "Missing column for: " + ", ".join(missing) + ".")
            yield table, None
            return
        job.mapping_name = mapping.name[:64]
        yield table, mapping


def _set_status(job: ImportJob, status: str) -> None:
    job.status = status
    job.save()


def _finish(job: ImportJob, errors: ErrorReport, message: str, *, applied: bool) -> ImportJob:
    if not applied:
        job.created = job.updated = job.unchanged = job.skipped = 0
    if message:
        job.message = message
    if len(errors):
        error_path = Path(job.path).with_name(Path(job.path).stem + "-errors.csv")
        errors.write_csv(error_path)
        job.error_path = str(error_path)
    job.rejected = len(errors)
    job.status = ImportJob.Status.DONE
    job.progress = 1.0
    job.finished_at = clock.now()
    job.save()
    return job


def _fail(job: ImportJob, message: str) -> ImportJob:
    job.status = ImportJob.Status.FAILED
    job.message = message
    job.finished_at = clock.now()
    job.save()
    return job


def _rows(
    job: ImportJob,
    table: Any,
    mapping: Mapping,
    importer: RowImporter,
    context: ImportContext,
    errors: ErrorReport,
    on_progress: Callable[[ImportJob], None] | None,
    *,
    chunk: int,
) -> None:
    """Import every row; a bad row leaves nothing behind. With `chunk`, every `chunk` rows
    are committed and the progress saved; with 0 the caller's transaction holds them all
    (the all-or-nothing check). Kinds with a chunk importer apply CHUNK_ROWS rows at a
    time; the others, and a chunk its importer declines, go row by row, each row in a
    savepoint."""
    rows = iter(table.rows(errors=errors))
    batch = _CHUNK_IMPORTERS.get(job.kind)
    size = chunk or (CHUNK_ROWS if batch else PROGRESS_EVERY)
    while True:
        with transaction.atomic():
            block = list(itertools.islice(rows, size))
            if batch is not None and block:
                _apply_chunk(job, block, mapping, importer, batch, context, errors)
            else:
                for row in block:
                    _row(job, row, mapping, importer, context, errors)
        if not block:
            break
        _progress(job, table, errors, on_progress, save=bool(chunk))


def _apply_chunk(
    job: ImportJob,
    block: list[Row],
    mapping: Mapping,
    importer: RowImporter,
    batch: ChunkImporter,
    context: ImportContext,
    errors: ErrorReport,
) -> None:
    """Apply a chunk with the kind's chunk importer, in a savepoint; if it declines (or a
    row fails after the chunk's writes began), roll the chunk back and go row by row."""
    caches = (dict(context.stores), dict(context.staff), dict(context.tags))
    pairs = [(row, mapping.apply(row)) for row in block]
    try:
        with transaction.atomic():
            outcomes = batch(context, pairs)
    except ChunkFallback:
        # Whatever the chunk created (tags, say) was rolled back: forget it in the caches too.
        context.stores, context.staff, context.tags = caches
        for row in block:
            _row(job, row, mapping, importer, context, errors)
        return
    for (row, _values), outcome in zip(pairs, outcomes, strict=True):
        if isinstance(outcome, str):
            setattr(job, outcome, getattr(job, outcome) + 1)
        else:
            _report(errors, row, mapping, outcome)
        job.rows_done += 1


def _report(errors: ErrorReport, row: Row, mapping: Mapping, exc: Exception) -> None:
    """A bad row in the error file: its number, the file's column and the reason."""
    if isinstance(exc, FieldError):
        errors.add_field_error(row.number, exc, mapping)
    else:
        assert isinstance(exc, YutangError)
        column = mapping.column_for(exc.field) if exc.field else ""
        errors.add(row.number, column, exc.message)


def _row(
    job: ImportJob,
    row: Row,
    mapping: Mapping,
    importer: RowImporter,
    context: ImportContext,
    errors: ErrorReport,
) -> None:
    values = mapping.apply(row)
    try:
        with transaction.atomic():
            outcome = importer(context, values, row)
    except (FieldError, YutangError) as exc:
        _report(errors, row, mapping, exc)
    else:
        setattr(job, outcome, getattr(job, outcome) + 1)
    job.rows_done += 1


def _progress(
    job: ImportJob,
    table: Any,
    errors: ErrorReport,
    on_progress: Callable[[ImportJob], None] | None,
    *,
    save: bool,
) -> None:
    if job.rows_total:
        job.progress = min(1.0, job.rows_done / job.rows_total)
    else:
        job.progress = table.progress() or 0.0
    job.rejected = len(errors)
    if save:  # committed on its own, so the console sees it while the import runs
        ImportJob.objects.filter(pk=job.pk).update(
            rows_done=job.rows_done,
            rows_total=job.rows_total,
            progress=job.progress,
            rejected=job.rejected,
            created=job.created,
            updated=job.updated,
            unchanged=job.unchanged,
            skipped=job.skipped,
        )
    if on_progress:
        on_progress(job)


# --- The customers importer -----------------------------------------------------------------

IDENTITY_COLUMNS = {
    "external_id": "external",
    "phone": "phone",
    "email": "email",
    "wechat_unionid": "wechat_unionid",
    "wecom_external_userid": "wecom_external_userid",
    "taobao_buyer": "taobao_buyer",
    "jd_buyer": "jd_buyer",
    "pdd_buyer": "pdd_buyer",
    "douyin_user": "douyin_user",
    "xiaohongshu_user": "xiaohongshu_user",
    "weibo_user": "weibo_user",
    "app_user": "app_user",
}
TAG_SPLIT = re.compile(r"[,，;；|、\s]+")
DEFAULT_TAG_GROUP = "导入"


def row_identities(values: dict[str, str], columns: dict[str, str]) -> list[NormalizedIdentity]:
    found = []
    for column, kind in columns.items():
        raw = values.get(column, "")
        if raw:
            try:
                found.append(normalize_identity(kind, raw))
            except ValidationFailed as exc:
                raise FieldError(column, exc.message) from None
    if not found:
        raise FieldError(next(iter(columns)), "the row has no identity (phone, id …)")
    return found


@dataclass
class _CustomerRow:
    """A customer row, parsed and checked (nothing written yet)."""

    identities: list[NormalizedIdentity]
    profile: dict[str, Any]
    added_at: dt.datetime | None
    tag_names: list[str]


def _parse_customer_row(context: ImportContext, values: dict[str, str]) -> _CustomerRow:
    identities = row_identities(values, IDENTITY_COLUMNS)
    profile: dict[str, Any] = {}
    if values.get("name"):
        profile["display_name"] = values["name"][:120]
    if values.get("gender"):
        profile["gender"] = parse_gender(values["gender"], field="gender")
    if values.get("birthday"):
        profile["birthday"] = parse_date(values["birthday"], field="birthday")
    if values.get("province"):
        profile["province"] = values["province"][:32]
    if values.get("city"):
        profile["city"] = values["city"][:64]
    if values.get("channel"):
        profile["source_channel"] = values["channel"][:64]
    if values.get("store_code"):
        profile["owner_store_id"] = context.store(values["store_code"]).pk
    for column in ("staff_username", "staff_wecom_userid"):
        if values.get(column):
            profile["owner_staff_id"] = _staff(context, column, values[column]).pk
    added_at = (
        parse_datetime(values["added_at"], context.brand.tz, field="added_at")
        if values.get("added_at")
        else None
    )
    tag_names = [t for t in TAG_SPLIT.split(values.get("tags", "")) if t]
    return _CustomerRow(identities, profile, added_at, tag_names)


def import_customer_row(context: ImportContext, values: dict[str, str], row: Row) -> str:
    parsed = _parse_customer_row(context, values)
    result = services.resolve_customer(
        brand=context.brand,
        identities=parsed.identities,
        source="import",
        actor=context.actor,
        profile=parsed.profile,
    )
    customer = result.customer
    outcome = "created" if result.created else _update_profile(customer, parsed.profile)
    if parsed.tag_names:
        tag_ids = [_tag(context, name).pk for name in parsed.tag_names]
        have = set(customer.customer_tags.values_list("tag_id", flat=True))
        if set(tag_ids) - have:
            services.set_tags(actor=None, customer=customer, add=tag_ids, source="import")
            outcome = "updated" if outcome == "unchanged" else outcome
    if parsed.added_at is not None:
        _record_added(context, customer, values, parsed.added_at)
    return outcome


def _update_profile(customer: Customer, profile: dict[str, Any]) -> str:
    """A found customer takes the row's profile values that differ: `updated` or
    `unchanged`."""
    changed = {k: v for k, v in profile.items() if getattr(customer, k) != v}
    if not changed:
        return "unchanged"
    before = services.owner_of(customer)
    for name, value in changed.items():
        setattr(customer, name, value)
    customer.updated_at = clock.now()
    customer.save()
    services.record_owner(customer, before, reason="import")
    return "updated"


def import_customer_chunk(
    context: ImportContext, pairs: list[tuple[Row, dict[str, str]]]
) -> list[str | YutangError]:
    """A chunk of customer rows with the outcome of `import_customer_row` row by row, in
    far fewer statements: every row is parsed first; the good ones are resolved together
    by a BatchResolver (one lookup for all identities, new customers and identities written
    in bulk), then profiles, tags and contact facts are applied in row order. A chunk in
    which a row links two customers (a merge or a review) goes row by row
    (ChunkFallback), as does one in which a row fails after writes began."""
    outcomes: list[str | YutangError] = []
    parsed: list[tuple[int, dict[str, str], _CustomerRow]] = []
    for n, (_line, values) in enumerate(pairs):
        try:
            parsed.append((n, values, _parse_customer_row(context, values)))
            outcomes.append("pending")
        except YutangError as exc:
            outcomes.append(exc.with_traceback(None))
    if not parsed:
        return outcomes
    now = clock.now()
    lock_brand(context.brand.pk)  # what BatchResolver needs, as resolve_customer takes it
    resolver = services.BatchResolver(
        brand=context.brand, identities=[i for _, _, p in parsed for i in p.identities], now=now
    )
    refs = [
        resolver.resolve(p.identities, source="import", profile=p.profile) for _, _, p in parsed
    ]
    if resolver.used_slow_path:
        raise ChunkFallback
    resolver.flush()
    ids = [resolver.customer_id(ref) for ref in refs]
    found = Customer.objects.in_bulk(set(ids))
    tags_of: dict[int, set[int]] = {}
    if any(p.tag_names for _, _, p in parsed):
        for customer_id, tag_id in CustomerTag.objects.filter(
            customer_id__in=[c for c, (_, _, p) in zip(ids, parsed, strict=True) if p.tag_names]
        ).values_list("customer_id", "tag_id"):
            tags_of.setdefault(customer_id, set()).add(tag_id)
    first_seen: set[int] = set()
    tagging: list[tuple[Customer, list[int]]] = []
    try:
        for (n, values, p), ref, customer_id in zip(parsed, refs, ids, strict=True):
            customer = found[customer_id]
            if ref in resolver.created and customer_id not in first_seen:
                outcome = "created"
            else:
                outcome = _update_profile(customer, p.profile)
            first_seen.add(customer_id)
            if p.tag_names:
                tag_ids = [_tag(context, name).pk for name in p.tag_names]
                have = tags_of.setdefault(customer_id, set())
                if set(tag_ids) - have:
                    tagging.append((customer, tag_ids))  # as set_tags would, in one go below
                    have.update(tag_ids)
                    outcome = "updated" if outcome == "unchanged" else outcome
            if p.added_at is not None:
                _record_added(context, customer, values, p.added_at)
            outcomes[n] = outcome
        services.add_tags(items=tagging, source="import")
    except YutangError:
        raise ChunkFallback from None
    return outcomes


def _staff(context: ImportContext, column: str, value: str) -> Staff:
    """The owner named by a Yutang username or by the WeCom account (添加人账号) they operate."""
    key = f"{column}\x1f{value}"
    if key not in context.staff:
        if column == "staff_username":
            found = Staff.objects.filter(brand=context.brand, user__username=value).first()
        else:
            account = (
                CarrierAccount.objects.filter(
                    brand=context.brand,
                    kind=CarrierAccount.Kind.WECOM,
                    external_id=value,
                    staff__isnull=False,
                )
                .select_related("staff")
                .first()
            )
            found = account.staff if account else None
        context.staff[key] = found
    owner = context.staff[key]
    if owner is None:
        if column == "staff_username":
            raise FieldError(column, f"unknown staff username {value!r}")
        raise FieldError(column, f"no carrier account has the WeCom id {value!r}")
    return owner


def _tag(context: ImportContext, text: str) -> Tag:
    group, _, name = text.rpartition(":") if ":" in text else (DEFAULT_TAG_GROUP, "", text)
    key = f"{group}\x1f{name}"
    if key not in context.tags:
        context.tags[key] = services.create_tag(
            actor=None, brand=context.brand, group=group or DEFAULT_TAG_GROUP, name=name
        )
    return context.tags[key]


ContactRecorder = Callable[[Brand, Customer, dict[str, str], dt.datetime], None]
_contact_recorders: list[ContactRecorder] = []


def register_contact_recorder(recorder: ContactRecorder) -> None:
    """The events app records a `contact.added` fact for imported rows that say when the
    contact was added (WeCom exports do); this floor cannot import the event log itself."""
    _contact_recorders.append(recorder)


def _record_added(
    context: ImportContext, customer: Customer, values: dict[str, str], at: dt.datetime
) -> None:
    for recorder in _contact_recorders:
        try:
            recorder(context.brand, customer, values, at)
        except ValidationFailed as exc:
            # The log refused the contact.added fact: the row is bad (and rolled back).
            raise FieldError(
                "added_at", f"the contact.added event was refused: {exc.message}"
            ) from None


register_importer("customers", import_customer_row)
register_chunk_importer("customers", import_customer_chunk)


def read_mapping_argument(value: str | None) -> bytes | None:
    """A mapping given on the command line: a path to a JSON mapping file."""
    if not value:
        return None
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ValidationFailed(
            N_("Cannot read the mapping file: {strerror}."),
            params={"strerror": exc.strerror},
            field="mapping",
        ) from None


def job_summary(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "filename": job.filename,
        "status": job.status,
        "message": job.message,
        "mapping": job.mapping_name,
        "rows_done": job.rows_done,
        "created": job.created,
        "updated": job.updated,
        "unchanged": job.unchanged,
        "skipped": job.skipped,
        "rejected": job.rejected,
        "progress": job.progress,
        "all_or_nothing": job.all_or_nothing,
        "has_error_file": bool(job.error_path),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def open_error_file(job: ImportJob) -> IO[bytes]:
    if not job.error_path or not Path(job.error_path).is_file():
        raise NotFound(N_("This import has no error file."), field="import_id")
    return Path(job.error_path).open("rb")
