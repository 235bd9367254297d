"""Segments: define (static lists, dynamic rules), preview, list and export members,
materialise on a schedule with segment.entered / segment.exited events."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from yutang.core import audit, clock
from yutang.core.errors import N_, Conflict, NotFound, ValidationFailed
from yutang.core.models import Brand, Staff
from yutang.core.pagination import page_by_id_desc
from yutang.core.permissions import Action, require
from yutang.core.services import is_valid_id, reject_unknown_fields
from yutang.core.tabular import TabularError, open_table
from yutang.customers import services as customers
from yutang.customers.identities import normalize_identity
from yutang.customers.models import Customer, Identity
from yutang.events import services as events
from yutang.segments import rules
from yutang.segments.models import Segment, SegmentMember

logger = logging.getLogger("yutang.segments")

SAMPLE_SIZE = 20
MAX_STATIC_ROWS = 1_000_000
EVENT_BATCH = 500


# --- Rules --------------------------------------------------------------------------------


#: Memory for each hash or sort step of a rule query on PostgreSQL. A rule's subqueries hash up
#: to a whole brand's customer ids (~50 MB per million); with the server default (4 MB) a
#: subquery under OR or NOT no longer fits and the planner falls back to per-customer lookups,
#: seconds instead of a quarter second at a million customers (bench/segments.py).
RULE_WORK_MEM = "128MB"
#: Other settings of a rule query on PostgreSQL. JIT off: a rule with OR over subqueries gets
#: a huge cost estimate (the planner prices the per-row alternative of each hashed subplan),
#: which switches on JIT compilation with inlining and optimisation; compiling took longer
#: than the query (10% bench: nested_channels 730 -> 180 ms, engaged_recently 1,100 -> 310 ms).
#: Hash aggregation off: a rule's grouped event conditions ("touches in 30 days >= 3", "clicked
#: twice in 14 days", "spent >= 500 in 30 days") group a window's index entries into one small
#: group per customer, and on PostgreSQL 15 sorting the customer ids and grouping them in order
#: takes about half the CPU of hashing them (30% bench, backend CPU: touches grouping 150 -> 80
#: ms; engaged_recently 500 -> 320-430 ms). The planner still hashes when it has no other way.
RULE_SETTINGS = {"work_mem": RULE_WORK_MEM, "jit": "off", "enable_hashagg": "off"}


@contextlib.contextmanager
def rule_query() -> Iterator[None]:
    """Run rule queries (counts, member lists, exports, refreshes) inside this: one
    transaction, with RULE_SETTINGS on PostgreSQL for its duration only."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One round trip for all of them (a count of a small segment takes a few ms).
            calls = ", ".join(["set_config(%s, %s, true)"] * len(RULE_SETTINGS))
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT {calls}",  # only placeholders are formatted in
                    [x for item in RULE_SETTINGS.items() for x in item],
                )
        yield


def context_for(brand: Brand) -> rules.Context:
    return rules.Context(brand_id=brand.pk, tz=brand.tz, now=clock.now())


def parse_rule(rule: Any) -> rules.Node:
    """Validate a rule; the error's field is the JSON path under `rule`."""
    try:
        return rules.parse_rule(rule)
    except ValidationFailed as exc:
        field = "rule" + (exc.field or "$")[1:]
        raise ValidationFailed(exc.message, field=field) from None


def customers_matching(
    *, brand: Brand, node: rules.Node, actor: Staff | None = None
) -> QuerySet[Customer]:
    """One parameterised query: the customers of the brand (within the actor's scope when
    given) that match the rule."""
    base = (
        Customer.objects.for_actor(actor)
        if actor is not None
        else Customer.objects.filter(brand=brand, merged_into__isnull=True)
    )
    return base.filter(rules.compile_rule(node, context_for(brand)))


def customer_matches(*, customer: Customer, node: rules.Node) -> bool:
    """Evaluate a rule for one customer in memory (journeys use this per step)."""
    brand = customer.brand
    return rules.evaluate(node, rules.load_facts(customer, node), context_for(brand))


def carrier_account_choices(*, actor: Staff) -> list[dict[str, Any]]:
    """The carrier accounts the actor may see, for the builder's `carrier` condition."""
    from yutang.core.models import CarrierAccount

    if not actor.can(Action.CARRIER_ACCOUNT_VIEW):
        return []
    return [
        {"id": a.pk, "label": f"{a.display_name} ({a.kind})"}
        for a in CarrierAccount.objects.for_actor(actor, Action.CARRIER_ACCOUNT_VIEW).order_by("pk")
    ]


@dataclass
class Preview:
    count: int
    sample: list[dict[str, Any]]
    elapsed_ms: float


def preview_rule(*, actor: Staff, rule: Any, sample: int = SAMPLE_SIZE) -> Preview:
    """Count and a sample of the matching customers the actor may see, with the time the
    two queries took."""
    require(actor, Action.SEGMENT_VIEW)
    node = parse_rule(rule)
    started = time.perf_counter()
    qs = customers_matching(brand=actor.brand, node=node, actor=actor)
    with rule_query():
        count = qs.count()
        rows = list(
            qs.order_by("-pk").prefetch_related("identities", "customer_tags__tag__group")[:sample]
        )
    elapsed = (time.perf_counter() - started) * 1000
    return Preview(
        count=count,
        sample=[customers.present_customer(actor, c) for c in rows],
        elapsed_ms=round(elapsed, 1),
    )


# --- Segments -----------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise ValidationFailed(N_("A segment needs a name of at most 80 characters."), field="name")
    return name


def _check_refresh(kind: str, minutes: int | None) -> None:
    if minutes is None:
        return
    if kind != Segment.Kind.DYNAMIC:
        raise ValidationFailed(
            N_("Only dynamic segments refresh on a schedule."), field="refresh_minutes"
        )
    if not 5 <= minutes <= 7 * 24 * 60:
        raise ValidationFailed(
            N_("refresh_minutes must be between 5 and 10080."), field="refresh_minutes"
        )


def create_segment(
    *,
    actor: Staff,
    name: str,
    kind: str,
    rule: Any = None,
    description: str = "",
    refresh_minutes: int | None = None,
) -> Segment:
    require(actor, Action.SEGMENT_MANAGE)
    name = _clean_name(name)
    if kind not in Segment.Kind.values:
        raise ValidationFailed(N_("kind must be dynamic or static."), field="kind")
    if kind == Segment.Kind.DYNAMIC:
        rule = rules.to_json(parse_rule(rule))
    elif rule is not None:
        raise ValidationFailed(N_("A static segment has no rule."), field="rule")
    if len(description) > 500:
        raise ValidationFailed(N_("description: at most 500 characters."), field="description")
    _check_refresh(kind, refresh_minutes)
    now = clock.now()
    try:
        with transaction.atomic():
            segment = Segment.objects.create(
                brand=actor.brand,
                name=name,
                kind=kind,
                rule=rule,
                description=description,
                refresh_minutes=refresh_minutes,
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            audit.record(brand=actor.brand, actor=actor, action="segment.create", target=segment)
    except IntegrityError:
        raise Conflict(
            N_("A segment named {name!r} exists already."), params={"name": name}, field="name"
        ) from None
    return segment


def get_segment(*, actor: Staff, segment_id: int, action: Action = Action.SEGMENT_VIEW) -> Segment:
    if not is_valid_id(segment_id):
        raise NotFound(N_("No such segment."), field="segment_id")
    segment = Segment.objects.for_actor(actor, action).filter(pk=segment_id).first()
    if segment is None:
        raise NotFound(N_("No such segment."), field="segment_id")
    return segment


def list_segments(*, actor: Staff) -> list[Segment]:
    return list(Segment.objects.for_actor(actor, Action.SEGMENT_VIEW))


UPDATABLE = ("name", "rule", "description", "refresh_minutes")


def update_segment(*, actor: Staff, segment_id: int, **changes: Any) -> Segment:
    segment = get_segment(actor=actor, segment_id=segment_id, action=Action.SEGMENT_MANAGE)
    reject_unknown_fields(changes, UPDATABLE)
    if "name" in changes:
        segment.name = _clean_name(changes["name"])
    if "rule" in changes:
        if segment.kind != Segment.Kind.DYNAMIC:
            raise ValidationFailed(N_("A static segment has no rule."), field="rule")
        segment.rule = rules.to_json(parse_rule(changes["rule"]))
    if "description" in changes:
        if len(changes["description"] or "") > 500:
            raise ValidationFailed(N_("description: at most 500 characters."), field="description")
        segment.description = changes["description"] or ""
    if "refresh_minutes" in changes:
        _check_refresh(segment.kind, changes["refresh_minutes"])
        segment.refresh_minutes = changes["refresh_minutes"]
    segment.updated_at = clock.now()
    try:
        with transaction.atomic():
            segment.save()
            audit.record(brand=actor.brand, actor=actor, action="segment.update", target=segment)
    except IntegrityError:
        raise Conflict(
            N_("A segment named {name!r} exists already."),
            params={"name": segment.name},
            field="name",
        ) from None
    return segment


def delete_segment(*, actor: Staff, segment_id: int) -> None:
    segment = get_segment(actor=actor, segment_id=segment_id, action=Action.SEGMENT_MANAGE)
    with transaction.atomic():
        audit.record(brand=actor.brand, actor=actor, action="segment.delete", target=segment)
        segment.delete()


def members_queryset(*, actor: Staff, segment: Segment) -> QuerySet[Customer]:
    """The segment's customers the actor may see: live for a dynamic segment (always the
    rule's current answer), the stored list for a static one."""
    if segment.kind == Segment.Kind.DYNAMIC:
        return customers_matching(
            brand=segment.brand, node=rules.parse_rule(segment.rule), actor=actor
        )
    return Customer.objects.for_actor(actor).filter(
        pk__in=SegmentMember.objects.filter(segment=segment).values("customer_id")
    )


def list_members(
    *, actor: Staff, segment_id: int, cursor: str | None = None, limit: int = 50
) -> tuple[list[Customer], str | None]:
    segment = get_segment(actor=actor, segment_id=segment_id)
    qs = members_queryset(actor=actor, segment=segment).prefetch_related(
        "identities", "customer_tags__tag__group"
    )
    with rule_query():
        return page_by_id_desc(qs, cursor=cursor, limit=limit)


def preview_segment(*, actor: Staff, segment_id: int) -> Preview:
    segment = get_segment(actor=actor, segment_id=segment_id)
    started = time.perf_counter()
    qs = members_queryset(actor=actor, segment=segment)
    with rule_query():
        count = qs.count()
        rows = list(
            qs.order_by("-pk").prefetch_related("identities", "customer_tags__tag__group")[
                :SAMPLE_SIZE
            ]
        )
    return Preview(
        count=count,
        sample=[customers.present_customer(actor, c) for c in rows],
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
    )


# --- Export -------------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "id", "display_name", "phone", "gender", "province", "city", "source_channel",
    "lifecycle_stage", "tags",
]  # fmt: skip


def _export_rows(qs: QuerySet[Customer], *, clear: bool) -> Iterator[list[str]]:
    rows = qs.order_by("pk").prefetch_related("identities", "customer_tags__tag__group")
    for c in rows.iterator(chunk_size=2000):
        phones = [i for i in c.identities.all() if i.kind == "phone"]
        phone = (phones[0].value if clear else phones[0].masked) if phones else ""
        yield [
            str(c.pk), c.display_name, phone, c.gender, c.province, c.city, c.source_channel,
            c.lifecycle_stage,
            " ".join(f"{t.tag.group.name}/{t.tag.name}" for t in c.customer_tags.all()),
        ]  # fmt: skip


def _defuse(cell: str) -> str:
    # A cell starting with = + - @ would run as a formula in Excel (CSV injection).
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


#: Columns holding free text from people or integrations; ids and normalised phones are ours.
FREE_TEXT = {
    EXPORT_COLUMNS.index(c) for c in ("display_name", "province", "city", "source_channel", "tags")
}


def _defuse_row(row: list[str]) -> list[str]:
    return [_defuse(cell) if n in FREE_TEXT else cell for n, cell in enumerate(row)]


EXPORT_CHUNK_ROWS = 2000


def write_export_to(rows: Iterator[list[str]], format: str, out: IO[bytes]) -> None:
    """Write the export columns and rows to `out` as they are read: CSV (UTF-8 with BOM, for
    Excel) in chunks of EXPORT_CHUNK_ROWS rows, XLSX through openpyxl's write-only mode (rows
    go to a temporary file, never a workbook in memory)."""
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(EXPORT_COLUMNS)
        for n, row in enumerate(rows, start=1):
            writer.writerow(_defuse_row(row))
            if n % EXPORT_CHUNK_ROWS == 0:
                out.write(buffer.getvalue().encode("utf-8"))
                buffer.seek(0)
                buffer.truncate()
        out.write(buffer.getvalue().encode("utf-8"))
        return
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("members")
    sheet.append(EXPORT_COLUMNS)
    for row in rows:
        sheet.append(_defuse_row(row))
    workbook.save(out)


def write_export(rows: Iterator[list[str]], format: str) -> bytes:
    """The export as bytes (small exports; see write_export_to for files and responses)."""
    out = io.BytesIO()
    write_export_to(rows, format, out)
    return out.getvalue()


#: Exports above this size spill from memory to a temporary file.
EXPORT_SPOOL_BYTES = 8 * 1024 * 1024


def _check_format(format: str) -> None:
    if format not in ("csv", "xlsx"):
        raise ValidationFailed(N_("format must be csv or xlsx."), field="format")


def export_members_file(
    *, actor: Staff, segment_id: int, format: str = "csv"
) -> tuple[IO[bytes], str]:
    """The members the actor may see as CSV or XLSX, identifiers masked unless the role may
    see them, written in chunks to a spooled temporary file (memory up to
    EXPORT_SPOOL_BYTES, then disk). Returns the file, at its start, and the file name."""
    require(actor, Action.SEGMENT_EXPORT)
    _check_format(format)
    segment = get_segment(actor=actor, segment_id=segment_id)
    rows = _export_rows(
        members_queryset(actor=actor, segment=segment),
        clear=actor.can(Action.IDENTIFIERS_VIEW),
    )
    stamp = clock.now().astimezone(actor.brand.tz).strftime("%Y%m%d-%H%M")
    audit.record(
        brand=actor.brand, actor=actor, action="segment.export", target=segment,
        changes={"format": {"after": format}},
    )  # fmt: skip
    out = tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES)  # noqa: SIM115
    with rule_query():
        write_export_to(rows, format, out)
    out.seek(0)
    return out, f"segment-{segment.pk}-{stamp}.{format}"


def export_members(*, actor: Staff, segment_id: int, format: str = "csv") -> tuple[bytes, str]:
    """export_members_file as bytes (the console's small downloads)."""
    out, filename = export_members_file(actor=actor, segment_id=segment_id, format=format)
    with out:
        return out.read(), filename


# --- Without a staff member: the CLI and the worker act for the whole brand ---------------


def brand_segment(*, brand: Brand, segment_id: int) -> Segment:
    segment = Segment.objects.filter(brand=brand, pk=segment_id).first()
    if segment is None:
        raise NotFound(N_("No such segment."), field="segment_id")
    return segment


def brand_members(segment: Segment) -> QuerySet[Customer]:
    if segment.kind == Segment.Kind.DYNAMIC:
        return customers_matching(brand=segment.brand, node=rules.parse_rule(segment.rule))
    return Customer.objects.filter(
        brand=segment.brand, merged_into__isnull=True,
        pk__in=SegmentMember.objects.filter(segment=segment).values("customer_id"),
    )  # fmt: skip


def count_for_brand(*, brand: Brand, rule: Any) -> tuple[int, float]:
    """Count a rule's customers across the brand; returns (count, milliseconds)."""
    node = parse_rule(rule)
    started = time.perf_counter()
    with rule_query():
        count = customers_matching(brand=brand, node=node).count()
    return count, round((time.perf_counter() - started) * 1000, 1)


def export_for_brand(*, segment: Segment, format: str, out: IO[bytes], clear: bool = False) -> None:
    """Write the segment's members to `out` in chunks (the CLI writes straight to its file)."""
    _check_format(format)
    with rule_query():
        write_export_to(_export_rows(brand_members(segment), clear=clear), format, out)


# --- Static segments ----------------------------------------------------------------------

PHONE_HEADERS = ("phone", "mobile", "手机", "手机号", "手机号码", "电话")
ID_HEADERS = ("customer_id", "id", "客户id", "客户ID")


def upload_static_members(
    *, actor: Staff, segment_id: int, upload: IO[bytes], filename: str
) -> int:
    """Replace a static segment's members with the customers a CSV/XLSX lists by phone or
    customer id. Every row must name a customer the actor may see; otherwise nothing changes
    and the error names the first bad row. Returns the member count."""
    segment = get_segment(actor=actor, segment_id=segment_id, action=Action.SEGMENT_MANAGE)
    if segment.kind != Segment.Kind.STATIC:
        raise ValidationFailed(N_("Only static segments take a member list."), field="file")
    try:
        table = open_table(upload, filename=filename)
    except TabularError as exc:
        raise ValidationFailed(exc.message, field="file") from None
    with table:
        headers = {h.strip().lower(): h for h in table.headers}
        phone_col = next((headers[h.lower()] for h in PHONE_HEADERS if h.lower() in headers), None)
        id_col = next((headers[h.lower()] for h in ID_HEADERS if h.lower() in headers), None)
        if phone_col is None and id_col is None:
            raise ValidationFailed(
                N_("The file needs a column named phone (手机号) or customer_id."), field="file"
            )
        wanted_ids: dict[int, int] = {}
        wanted_hashes: dict[str, int] = {}
        for row in table.rows():
            if row.number > MAX_STATIC_ROWS + 1:
                raise ValidationFailed(
                    N_("At most {MAX_STATIC_ROWS} rows."),
                    params={"MAX_STATIC_ROWS": MAX_STATIC_ROWS},
                    field="file",
                )
            if id_col is not None and row.values.get(id_col, "").strip():
                raw = row.values[id_col].strip()
                if not raw.isdigit() or not is_valid_id(int(raw)):
                    raise ValidationFailed(
                        N_("Row {number}: {id_col} {raw!r} is not a customer id."),
                        params={"number": row.number, "id_col": id_col, "raw": raw},
                        field="file",
                    )
                wanted_ids.setdefault(int(raw), row.number)
            elif phone_col is not None and row.values.get(phone_col, "").strip():
                try:
                    ident = normalize_identity("phone", row.values[phone_col], field="phone")
                except ValidationFailed as exc:
                    raise ValidationFailed(
                        N_("Row {number}: {message}"),
                        params={"number": row.number, "message": exc.message},
                        field="file",
                    ) from None
                wanted_hashes.setdefault(ident.hash, row.number)
            else:
                raise ValidationFailed(
                    N_("Row {number}: no phone or id."), params={"number": row.number}, field="file"
                )
    visible = Customer.objects.for_actor(actor)
    found: set[int] = set(visible.filter(pk__in=list(wanted_ids)).values_list("pk", flat=True))
    for missing, number in sorted(wanted_ids.items(), key=lambda kv: kv[1]):
        if missing not in found:
            raise ValidationFailed(
                N_("Row {number}: no customer #{missing}."),
                params={"number": number, "missing": missing},
                field="file",
            )
    by_hash = dict(
        Identity.objects.filter(
            brand=actor.brand, kind="phone", value_hash__in=list(wanted_hashes),
            customer__in=visible.values("pk"),
        ).values_list("value_hash", "customer_id")
    )  # fmt: skip
    for h, number in sorted(wanted_hashes.items(), key=lambda kv: kv[1]):
        if h not in by_hash:
            raise ValidationFailed(
                N_("Row {number}: no customer has this phone."),
                params={"number": number},
                field="file",
            )
    members = found | set(by_hash.values())
    _replace_members(segment, members)
    return len(members)


def _replace_members(segment: Segment, members: set[int]) -> None:
    now = clock.now()
    with transaction.atomic():
        SegmentMember.objects.filter(segment=segment).delete()
        SegmentMember.objects.bulk_create(
            (SegmentMember(segment=segment, customer_id=c, added_at=now) for c in sorted(members)),
            batch_size=5000,
        )
        segment.member_count = len(members)
        segment.refreshed_at = now
        segment.save(update_fields=["member_count", "refreshed_at"])


def snapshot_segment(*, actor: Staff, segment_id: int, name: str) -> Segment:
    """A static copy of a segment's current members (the actor's view of them)."""
    source = get_segment(actor=actor, segment_id=segment_id)
    with transaction.atomic():
        copy = create_segment(
            actor=actor, name=name, kind=Segment.Kind.STATIC,
            description=f"Snapshot of {source.name}",
        )  # fmt: skip
        ids = set(members_queryset(actor=actor, segment=source).values_list("pk", flat=True))
        _replace_members(copy, ids)
    return copy


# --- Materialisation ----------------------------------------------------------------------


@dataclass
class RefreshResult:
    segment_id: int
    entered: int
    exited: int
    members: int


def refresh_segment(*, segment: Segment) -> RefreshResult:
    """Bring a dynamic segment's stored members up to the rule's current answer (time moves
    too: "no order in 60 days" gains people as days pass) and record each change as a
    segment.entered / segment.exited event, in one transaction."""
    if segment.kind != Segment.Kind.DYNAMIC:
        raise ValidationFailed(N_("Only dynamic segments are refreshed."), field="segment_id")
    brand = segment.brand
    node = rules.parse_rule(segment.rule)
    now = clock.now()
    with rule_query():
        locked = Segment.objects.select_for_update().get(pk=segment.pk)
        current = set(customers_matching(brand=brand, node=node).values_list("pk", flat=True))
        stored = set(
            SegmentMember.objects.filter(segment=locked).values_list("customer_id", flat=True)
        )
        entered, exited = sorted(current - stored), sorted(stored - current)
        SegmentMember.objects.filter(segment=locked, customer_id__in=exited).delete()
        SegmentMember.objects.bulk_create(
            (SegmentMember(segment=locked, customer_id=c, added_at=now) for c in entered),
            batch_size=5000,
        )
        run = locked.refresh_count + 1
        changes = [("segment.entered", c) for c in entered] + [
            ("segment.exited", c) for c in exited
        ]
        for start in range(0, len(changes), EVENT_BATCH):
            items = [
                {
                    "type": kind,
                    "occurred_at": now,
                    "customer_id": customer_id,
                    "source": "segments",
                    "idempotency_key": f"segment:{locked.pk}:{run}:{kind}:{customer_id}",
                    "properties": {"segment_id": locked.pk, "segment": locked.name},
                }
                for kind, customer_id in changes[start : start + EVENT_BATCH]
            ]
            for result in events.ingest_events(brand=brand, items=items):
                if result.status == "rejected":
                    raise ValidationFailed(
                        N_("A membership event was refused: {error}"),
                        params={"error": result.error},
                        field="segment_id",
                    )
        locked.refresh_count = run
        locked.refreshed_at = now
        locked.member_count = len(current)
        locked.save(update_fields=["refresh_count", "refreshed_at", "member_count"])
    return RefreshResult(
        segment_id=segment.pk, entered=len(entered), exited=len(exited), members=len(current)
    )


def refresh_now(*, actor: Staff, segment_id: int) -> RefreshResult:
    segment = get_segment(actor=actor, segment_id=segment_id, action=Action.SEGMENT_MANAGE)
    return refresh_segment(segment=segment)


def due_segments(now: dt.datetime) -> list[Segment]:
    due = []
    for segment in Segment.objects.filter(
        kind=Segment.Kind.DYNAMIC, refresh_minutes__isnull=False
    ).select_related("brand"):
        assert segment.refresh_minutes is not None
        interval = dt.timedelta(minutes=segment.refresh_minutes)
        if segment.refreshed_at is None or segment.refreshed_at + interval <= now:
            due.append(segment)
    return due


def lease_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]


def refresh_due_segments() -> int:
    """The worker loop: refresh every dynamic segment whose interval has passed. A lease per
    segment makes each refresh run in one worker even with many on PostgreSQL."""
    from yutang.core.worker import acquire_lease, release_lease

    now = clock.now()
    done = 0
    holder = lease_holder()
    for segment in due_segments(now):
        lease = f"segment-refresh:{segment.pk}"
        if not acquire_lease(lease, holder, dt.timedelta(minutes=10)):
            continue
        try:
            refresh_segment(segment=segment)
            done += 1
        except Exception:
            logger.exception("refresh of segment %s failed", segment.pk)
        finally:
            release_lease(lease, holder)
    return done


# --- The customer portrait's additions ----------------------------------------------------


#: Dynamic segments asked about in one query by `dynamic_segments_matching`: one CASE column
#: each, well below SQLite's 2,000 result columns and PostgreSQL's 1,664 target entries.
SEGMENTS_PER_QUERY = 100


def dynamic_segments_matching(*, customer: Customer, segments: list[Segment]) -> set[int]:
    """The ids of the dynamic segments whose rule matches the customer now, in one query per
    SEGMENTS_PER_QUERY segments rather than one per segment: a single row for the customer
    with a ``CASE WHEN <compiled rule> THEN true ELSE false END`` column per segment. The
    conditions are the segments' own compiled SQL, so the answer is their members' answer."""
    from django.db.models import BooleanField, Case, Value, When

    if not segments:
        return set()
    ctx = context_for(customer.brand)
    found: set[int] = set()
    with rule_query():
        for start in range(0, len(segments), SEGMENTS_PER_QUERY):
            part = segments[start : start + SEGMENTS_PER_QUERY]
            columns = {
                f"segment_{segment.pk}": Case(
                    When(rules.compile_rule(rules.parse_rule(segment.rule), ctx), then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                )
                for segment in part
            }
            row = (
                Customer.objects.filter(pk=customer.pk, merged_into__isnull=True)
                .values(**columns)
                .first()
            )
            if row is not None:
                found |= {s.pk for s in part if row[f"segment_{s.pk}"]}
    return found


@dataclass
class PortraitExtras:
    rfm: dict[str, Any] | None
    lifecycle_stage: str
    lifecycle_changed_at: dt.datetime | None
    segments: list[dict[str, Any]]
    auto_tags: list[dict[str, Any]]
    predicted_next_purchase: dt.date | None


def portrait_extras(*, actor: Staff, customer_id: int) -> PortraitExtras:
    """RFM, stage, the segments the customer is in now, auto-tags and the predicted next
    purchase date, for the portrait page and API."""
    from yutang.customers.models import CustomerTag
    from yutang.segments import scoring
    from yutang.segments.models import AutoTagRule, CustomerRfm

    customer = customers.get_customer(actor=actor, customer_id=customer_id)
    rfm = CustomerRfm.objects.filter(customer=customer).first()
    matching: list[dict[str, Any]] = []
    if actor.can(Action.SEGMENT_VIEW):
        static_ids = set(
            SegmentMember.objects.filter(customer=customer).values_list("segment_id", flat=True)
        )
        segments = list(Segment.objects.filter(brand=actor.brand).order_by("pk"))
        dynamic_ids = dynamic_segments_matching(
            customer=customer, segments=[s for s in segments if s.kind == Segment.Kind.DYNAMIC]
        )
        matching = [
            {"id": s.pk, "name": s.name, "kind": s.kind}
            for s in segments
            if s.pk in (dynamic_ids if s.kind == Segment.Kind.DYNAMIC else static_ids)
        ]
    sources = dict(
        CustomerTag.objects.filter(customer=customer, source__startswith="auto:").values_list(
            "source", "tag_id"
        )
    )
    auto = [
        {"rule_id": r.pk, "rule": r.name, "tag_id": r.tag_id, "tag": r.tag.name}
        for r in AutoTagRule.objects.filter(brand=actor.brand).select_related("tag")
        if r.source in sources
    ]
    rfm_out = None
    if rfm is not None:
        rfm_out = {
            "recency": rfm.recency,
            "frequency": rfm.frequency,
            "monetary": rfm.monetary,
            "rfm_class": rfm.rfm_class,
            "name": scoring.RFM_NAMES[rfm.rfm_class],
            "computed_at": rfm.computed_at,
        }
    return PortraitExtras(
        rfm=rfm_out,
        lifecycle_stage=customer.lifecycle_stage,
        lifecycle_changed_at=customer.lifecycle_changed_at,
        segments=matching,
        auto_tags=auto,
        predicted_next_purchase=scoring.predicted_next_purchase(customer),
    )
