"""Database-specific SQL lives here, behind functions with a SQLite branch (CONVENTIONS §10)."""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import OperationalError, connection
from django.db.models import Field, Model

#: Advisory-lock namespaces (the first key of a two-key PostgreSQL advisory lock).
IDENTITY_WRITES = 1


def lock_brand(brand_id: int, namespace: int = IDENTITY_WRITES) -> None:
    """Serialise one kind of write per brand until the transaction ends.

    Identity resolution creates and merges customers; two concurrent batches that mention the
    same new people would otherwise lock identity index entries in different orders and
    deadlock on PostgreSQL. SQLite has a single writer already (IMMEDIATE transactions), so
    there it is a no-op. Re-entrant within a transaction."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, brand_id])


def is_transient(exc: BaseException) -> bool:
    """A deadlock or serialization failure (worth retrying the whole transaction)."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    code = getattr(cause, "sqlstate", None) or getattr(
        getattr(cause, "diag", None), "sqlstate", None
    )
    return code in {"40P01", "40001"} or "database is locked" in str(exc)


def stable_key(text: str) -> int:
    """A 31-bit key for advisory locks derived from a name."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


# --- Multi-row writes of model rows (PostgreSQL: server-side binding, one array per column) --

#: (array type the values travel as, cast to the column type) per Django field type on
#: PostgreSQL. Times, dates and JSON travel as text and the server casts them: Django's
#: time-zone-aware datetime dumper costs more than the rest of the row.
_PG_TYPES = {
    "CharField": ("text[]", ""),
    "TextField": ("text[]", ""),
    "SlugField": ("text[]", ""),
    "DateTimeField": ("text[]", "::timestamptz"),
    "DateField": ("text[]", "::date"),
    "JSONField": ("text[]", "::jsonb"),
    "BooleanField": ("boolean[]", ""),
    "FloatField": ("float8[]", ""),
}


def _pg_type(field: Field[Any, Any]) -> tuple[str, str]:
    return _PG_TYPES.get(field.get_internal_type(), ("bigint[]", ""))


def _column(field: Field[Any, Any], values: Sequence[Any], pg: bool) -> list[Any]:
    """One column's values as the statement binds them (column-wise: a million rows of
    journeys or messages make per-value calls count)."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return [None if v is None else json.dumps(v) for v in values]
    if kind == "DateTimeField":
        if pg:
            return [None if v is None else v.isoformat() for v in values]
        adapt = connection.ops.adapt_datetimefield_value
        return [None if v is None else adapt(v) for v in values]
    if kind == "DateField":
        return [None if v is None else v.isoformat() for v in values]
    if _PG_TYPES.get(kind, ("",))[0] == "text[]":
        # A TextChoices member as its plain value.
        return [v if v is None or type(v) is str else str(v) for v in values]
    return list(values)


@contextlib.contextmanager
def _bulk_cursor() -> Iterator[Any]:
    """PostgreSQL: a cursor that sends the arrays apart from the statement in binary
    (server-side binding) — Django's client-side binding quotes every element of every array
    into the statement text, five times the CPU (measured: 10 ms against 2 ms for 500 rows
    of six columns). Errors are Django's (IntegrityError …), as with `connection.cursor()`.
    SQLite: Django's cursor."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def insert_rows(
    model: type[Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert rows (tuples of these fields' values, by attname) in one statement: on
    PostgreSQL `INSERT … SELECT … FROM unnest(…)` with server-side binding, on SQLite a
    multi-row VALUES. Returns the `returning` columns of the new rows (no guaranteed order).
    No model instances, no signals; a unique violation raises IntegrityError."""
    if not rows:
        return []
    qn = connection.ops.quote_name
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    columns = [by_attname[name] for name in fields]
    pg = connection.vendor == "postgresql"
    arrays_of = [
        _column(f, column, pg) for f, column in zip(columns, zip(*rows, strict=True), strict=True)
    ]
    target = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in columns)}) "
    tail = (" RETURNING " + ", ".join(qn(n) for n in returning)) if returning else ""
    out: list[tuple[Any, ...]] = []
    # Table and column names come from the model, never from input; values are parameters.
    with _bulk_cursor() as cursor:
        if pg:
            types = [_pg_type(f) for f in columns]
            aliases = [f"c{n}" for n in range(len(columns))]
            select = ", ".join(f"{a}{cast}" for a, (_, cast) in zip(aliases, types, strict=True))
            arrays = ", ".join(f"%b::{array}" for array, _ in types)
            sql = f"{target}SELECT {select} FROM unnest({arrays}) AS v({', '.join(aliases)}){tail}"  # noqa: S608
            cursor.execute(sql, arrays_of)
            return list(cursor.fetchall()) if returning else out
        # SQLite's limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER, 3.32+).
        per_chunk = max(1, 32_000 // len(columns))
        one = "(" + ", ".join("%s" for _ in columns) + ")"
        values = list(zip(*arrays_of, strict=True))
        for start in range(0, len(values), per_chunk):
            chunk = values[start : start + per_chunk]
            sql = f"{target}VALUES {', '.join(one for _ in chunk)}{tail}"
            cursor.execute(sql, [v for row in chunk for v in row])
            if returning:
                out.extend(cursor.fetchall())
    return out


def update_rows(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write these fields of these model instances (by primary key) in one statement.

    PostgreSQL: one `UPDATE … FROM unnest(…)` with one array per column and server-side
    binding, a short statement whatever the number of rows. SQLite (in-process, no round
    trips): one prepared `UPDATE … WHERE id = %s` run for every row (`executemany`).
    Django's bulk_update builds a CASE per field and row, which cost more than the rest of a
    delivery pass or a journey batch. No signals, no `auto_now`."""
    if not objs:
        return
    qn = connection.ops.quote_name
    by_name = {f.name: f for f in model._meta.concrete_fields}
    columns = [by_name[name] for name in fields]
    pk = model._meta.pk
    assert pk is not None
    pg = connection.vendor == "postgresql"
    arrays_of = [_column(f, [getattr(obj, f.attname) for obj in objs], pg) for f in columns]
    arrays_of.append([obj.pk for obj in objs])
    table = qn(model._meta.db_table)
    # Table, column names and types come from the model, never from input; values are
    # parameters.
    with _bulk_cursor() as cursor:
        if pg:
            types = [_pg_type(f) for f in columns]
            aliases = [f"c{i}" for i in range(len(columns))]
            assignments = ", ".join(
                f"{qn(f.column)} = v.{alias}{cast}"
                for f, alias, (_, cast) in zip(columns, aliases, types, strict=True)
            )
            arrays = ", ".join([f"%b::{array}" for array, _ in types] + ["%b::bigint[]"])
            sql = (
                f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) "  # noqa: S608
                f"AS v({', '.join(aliases)}, id) WHERE t.{qn(pk.column)} = v.id"
            )
            cursor.execute(sql, arrays_of)
            return
        assignments = ", ".join(f"{qn(f.column)} = %s" for f in columns)
        sql = f"UPDATE {table} SET {assignments} WHERE {qn(pk.column)} = %s"  # noqa: S608
        cursor.executemany(sql, list(zip(*arrays_of, strict=True)))
