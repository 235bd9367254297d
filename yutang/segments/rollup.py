# ruff: noqa: S608  (trigger DDL built from code constants in TEXTS / NUMBERS, never from input)
"""Two typed projections of well-known event properties, kept by triggers on events_event.

- EventPropertyCount: per customer, how many events of a type have a text property equal to a
  value ("order.paid with category 护肤 more than once" reads one index range instead of the
  JSON of every paid order: 10,000,000 at the benchmark's size, 3.1 s on PostgreSQL).
- EventNumber: one row per event with a numeric property (brand, type, key, occurred_at,
  customer, value), indexed so "sum of order.paid amount_fen in the last 30 days" is an
  index-only scan of typed values instead of parsing the JSON of every order in the window.

Database triggers on events_event — after every INSERT, DELETE and UPDATE of brand_id,
customer_id, type, occurred_at or properties — change both tables in the same statement and
transaction as the log: there is no consumer lag, and what a rule reads from them equals what
it would read from the log at every moment, on SQLite and PostgreSQL. The in-memory evaluator
keeps reading the events; the agreement test proves the two still match.

Only the (type, key) pairs in TEXTS and NUMBERS are kept. Texts: only JSON text values of
1–200 characters (a rule's text value is 1–200 characters, so a longer or non-text value can
never match an `eq` / `in` filter anyway). Numbers: only JSON numbers (not true/false), as a
double, the type the SQL of a `sum` has always added up. Changing TEXTS or NUMBERS needs a
migration that calls install() with the new pairs (it replaces the triggers) and rebuild().

Raw bulk loads that bypass triggers (PostgreSQL COPY with session_replication_role = replica,
as bench/segments.py does) must call rebuild() afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection

TABLE = "segments_eventpropertycount"
NUMBER_TABLE = "segments_eventnumber"
MAX_VALUE = 200
#: event type -> text properties counted per customer and value.
TEXTS: dict[str, tuple[str, ...]] = {"order.paid": ("category",)}
#: event type -> numeric properties kept per event.
NUMBERS: dict[str, tuple[str, ...]] = {"order.paid": ("amount_fen",)}

Pairs = Mapping[str, Sequence[str]]


def counts_text(event_type: str, key: str) -> bool:
    return key in TEXTS.get(event_type, ())


def keeps_number(event_type: str, key: str) -> bool:
    return key in NUMBERS.get(event_type, ())


def _quote(text: str) -> str:
    # Types and keys come from TEXTS / NUMBERS (code, not input): word characters, dots, hyphens.
    assert all(ch.isalnum() or ch in "._-" for ch in text), text
    return f"'{text}'"


def _type_list(texts: Pairs, numbers: Pairs) -> str:
    return ", ".join(_quote(t) for t in sorted({*texts, *numbers}))


def _pg_case(pairs: Pairs) -> str:
    """The keys kept for an event type, as a text[] expression of `t`."""
    arms = " ".join(
        f"WHEN {_quote(t)} THEN ARRAY[{', '.join(_quote(k) for k in keys)}]::text[]"
        for t, keys in sorted(pairs.items())
    )
    return f"CASE t {arms} ELSE ARRAY[]::text[] END" if arms else "ARRAY[]::text[]"


def _postgresql_install(texts: Pairs, numbers: Pairs) -> list[str]:
    types = _type_list(texts, numbers)
    apply = f"""
CREATE OR REPLACE FUNCTION segments_rollup_apply(
  e bigint, b bigint, c bigint, t text, at timestamptz, props jsonb, delta integer
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE k text; v jsonb; s text;
BEGIN
  IF delta < 0 THEN
    DELETE FROM {NUMBER_TABLE} WHERE event_id = e;
  END IF;
  IF c IS NULL OR props IS NULL OR jsonb_typeof(props) <> 'object' THEN RETURN; END IF;
  FOREACH k IN ARRAY ({_pg_case(texts)}) LOOP
    v := props -> k;
    CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'string';
    s := v #>> '{{}}';
    CONTINUE WHEN length(s) < 1 OR length(s) > {MAX_VALUE};
    IF delta > 0 THEN
      INSERT INTO {TABLE} AS r (brand_id, customer_id, type, key, value, events)
      VALUES (b, c, t, k, s, 1)
      ON CONFLICT (brand_id, type, key, value, customer_id)
      DO UPDATE SET events = r.events + 1;
    ELSE
      DELETE FROM {TABLE} WHERE brand_id = b AND type = t AND key = k AND value = s
        AND customer_id = c AND events <= 1;
      IF NOT FOUND THEN
        UPDATE {TABLE} SET events = events - 1 WHERE brand_id = b AND type = t AND key = k
          AND value = s AND customer_id = c;
      END IF;
    END IF;
  END LOOP;
  IF delta > 0 THEN
    FOREACH k IN ARRAY ({_pg_case(numbers)}) LOOP
      v := props -> k;
      CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'number';
      INSERT INTO {NUMBER_TABLE} (event_id, brand_id, type, key, occurred_at, customer_id, value)
      VALUES (e, b, t, k, at, c, (v #>> '{{}}')::double precision);
    END LOOP;
  END IF;
END $$"""
    trigger = """
CREATE OR REPLACE FUNCTION segments_rollup_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM segments_rollup_apply(
      OLD.id, OLD.brand_id, OLD.customer_id, OLD.type, OLD.occurred_at, OLD.properties, -1);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM segments_rollup_apply(
      NEW.id, NEW.brand_id, NEW.customer_id, NEW.type, NEW.occurred_at, NEW.properties, 1);
  END IF;
  RETURN NULL;
END $$"""
    return [
        *_postgresql_uninstall(),
        apply,
        trigger,
        # WHEN keeps the trigger function from running for the other event types.
        "CREATE TRIGGER segments_rollup_insert AFTER INSERT ON events_event FOR EACH ROW"
        f" WHEN (NEW.type IN ({types})) EXECUTE FUNCTION segments_rollup_event()",
        "CREATE TRIGGER segments_rollup_delete AFTER DELETE ON events_event FOR EACH ROW"
        f" WHEN (OLD.type IN ({types})) EXECUTE FUNCTION segments_rollup_event()",
        "CREATE TRIGGER segments_rollup_update AFTER UPDATE OF brand_id, customer_id, type,"
        " occurred_at, properties ON events_event FOR EACH ROW"
        f" WHEN (OLD.type IN ({types}) OR NEW.type IN ({types}))"
        " EXECUTE FUNCTION segments_rollup_event()",
    ]


def _postgresql_uninstall() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS segments_rollup_insert ON events_event",
        "DROP TRIGGER IF EXISTS segments_rollup_delete ON events_event",
        "DROP TRIGGER IF EXISTS segments_rollup_update ON events_event",
        "DROP FUNCTION IF EXISTS segments_rollup_event()",
        "DROP FUNCTION IF EXISTS segments_rollup_apply("
        "bigint, bigint, bigint, text, timestamptz, jsonb, integer)",
    ]


def _sqlite_path(key: str) -> str:
    return f"'$.\"{key}\"'"


def _sqlite_text(row: str, key: str) -> tuple[str, str]:
    """(condition, value) for a counted text value of `key` in row.properties."""
    path = _sqlite_path(key)
    cond = (
        f"{row}.customer_id IS NOT NULL AND json_valid({row}.properties)"
        f" AND json_type({row}.properties, {path}) = 'text'"
        f" AND length(json_extract({row}.properties, {path})) BETWEEN 1 AND {MAX_VALUE}"
    )
    return cond, f"json_extract({row}.properties, {path})"


def _sqlite_number(row: str, key: str) -> tuple[str, str]:
    path = _sqlite_path(key)
    cond = (
        f"{row}.customer_id IS NOT NULL AND json_valid({row}.properties)"
        f" AND json_type({row}.properties, {path}) IN ('integer', 'real')"
    )
    return cond, f"CAST(json_extract({row}.properties, {path}) AS REAL)"


def _sqlite_add(row: str, texts: Pairs, numbers: Pairs) -> str:
    out = []
    for event_type, keys in sorted(texts.items()):
        for key in keys:
            cond, value = _sqlite_text(row, key)
            out.append(
                f"INSERT INTO {TABLE} (brand_id, customer_id, type, key, value, events)"
                f" SELECT {row}.brand_id, {row}.customer_id, {row}.type, {_quote(key)}, {value}, 1"
                f" WHERE {row}.type = {_quote(event_type)} AND {cond}"
                " ON CONFLICT (brand_id, type, key, value, customer_id)"
                " DO UPDATE SET events = events + 1;"
            )
    for event_type, keys in sorted(numbers.items()):
        for key in keys:
            cond, value = _sqlite_number(row, key)
            out.append(
                f"INSERT INTO {NUMBER_TABLE}"
                " (event_id, brand_id, type, key, occurred_at, customer_id, value)"
                f" SELECT {row}.id, {row}.brand_id, {row}.type, {_quote(key)},"
                f" {row}.occurred_at, {row}.customer_id, {value}"
                f" WHERE {row}.type = {_quote(event_type)} AND {cond};"
            )
    return " ".join(out)


def _sqlite_remove(row: str, texts: Pairs) -> str:
    out = [f"DELETE FROM {NUMBER_TABLE} WHERE event_id = {row}.id;"]
    for event_type, keys in sorted(texts.items()):
        for key in keys:
            cond, value = _sqlite_text(row, key)
            match = (
                f"brand_id = {row}.brand_id AND type = {row}.type AND key = {_quote(key)}"
                f" AND value = {value} AND customer_id = {row}.customer_id"
                f" AND {row}.type = {_quote(event_type)} AND {cond}"
            )
            out.append(
                f"UPDATE {TABLE} SET events = events - 1 WHERE {match};"
                f" DELETE FROM {TABLE} WHERE events <= 0 AND {match};"
            )
    return " ".join(out)


def _sqlite_install(texts: Pairs, numbers: Pairs) -> list[str]:
    types = _type_list(texts, numbers)
    add_new = _sqlite_add("NEW", texts, numbers)
    remove_old = _sqlite_remove("OLD", texts)
    return [
        *_sqlite_uninstall(),
        f"CREATE TRIGGER segments_rollup_insert AFTER INSERT ON events_event"
        f" WHEN NEW.type IN ({types}) BEGIN {add_new} END",
        f"CREATE TRIGGER segments_rollup_delete AFTER DELETE ON events_event"
        f" WHEN OLD.type IN ({types}) BEGIN {remove_old} END",
        "CREATE TRIGGER segments_rollup_update AFTER UPDATE OF brand_id, customer_id, type,"
        f" occurred_at, properties ON events_event WHEN OLD.type IN ({types})"
        f" OR NEW.type IN ({types}) BEGIN {remove_old} {add_new} END",
    ]


def _sqlite_uninstall() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS segments_rollup_insert",
        "DROP TRIGGER IF EXISTS segments_rollup_delete",
        "DROP TRIGGER IF EXISTS segments_rollup_update",
    ]


def install_statements(vendor: str, texts: Pairs, numbers: Pairs) -> list[str]:
    if vendor == "postgresql":
        return _postgresql_install(texts, numbers)
    if vendor == "sqlite":
        return _sqlite_install(texts, numbers)
    raise NotImplementedError(f"{vendor} is not supported")


def uninstall_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return _postgresql_uninstall()
    if vendor == "sqlite":
        return _sqlite_uninstall()
    raise NotImplementedError(f"{vendor} is not supported")


def rebuild_statements(vendor: str, texts: Pairs, numbers: Pairs) -> list[str]:
    """Refill both tables from the log (one grouped INSERT per kept key)."""
    out = [f"DELETE FROM {TABLE}", f"DELETE FROM {NUMBER_TABLE}"]
    for event_type, keys in sorted(texts.items()):
        for key in keys:
            if vendor == "postgresql":
                value = f"(e.properties ->> {_quote(key)})"
                cond = (
                    f"jsonb_typeof(e.properties -> {_quote(key)}) = 'string'"
                    f" AND length({value}) BETWEEN 1 AND {MAX_VALUE}"
                )
            else:
                cond, value = _sqlite_text("e", key)
            out.append(
                f"INSERT INTO {TABLE} (brand_id, customer_id, type, key, value, events)"
                f" SELECT e.brand_id, e.customer_id, e.type, {_quote(key)}, {value}, count(*)"
                f" FROM events_event e WHERE e.type = {_quote(event_type)}"
                f" AND e.customer_id IS NOT NULL AND {cond}"
                f" GROUP BY e.brand_id, e.customer_id, e.type, {value}"
            )
    for event_type, keys in sorted(numbers.items()):
        for key in keys:
            if vendor == "postgresql":
                value = f"(e.properties ->> {_quote(key)})::double precision"
                cond = f"jsonb_typeof(e.properties -> {_quote(key)}) = 'number'"
            else:
                cond, value = _sqlite_number("e", key)
            out.append(
                f"INSERT INTO {NUMBER_TABLE}"
                " (event_id, brand_id, type, key, occurred_at, customer_id, value)"
                f" SELECT e.id, e.brand_id, e.type, {_quote(key)}, e.occurred_at, e.customer_id,"
                f" {value} FROM events_event e WHERE e.type = {_quote(event_type)}"
                f" AND e.customer_id IS NOT NULL AND {cond}"
            )
    return out


def _run(schema_editor: Any, build: Any, texts: Pairs | None, numbers: Pairs | None) -> None:
    conn = schema_editor.connection if schema_editor is not None else connection
    statements = build(
        conn.vendor, TEXTS if texts is None else texts, NUMBERS if numbers is None else numbers
    )
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(
    schema_editor: Any = None, texts: Pairs | None = None, numbers: Pairs | None = None
) -> None:
    """Create (or replace) the triggers (default: TEXTS and NUMBERS)."""
    _run(schema_editor, install_statements, texts, numbers)


def rebuild(
    schema_editor: Any = None, texts: Pairs | None = None, numbers: Pairs | None = None
) -> None:
    """Refill both tables from the event log (after a load that bypassed the triggers)."""
    _run(schema_editor, rebuild_statements, texts, numbers)
