# ruff: noqa: S608  (trigger DDL built from code constants in ROLLED_UP, never from input)
"""Per-customer counts of events by a well-known text property (segments.EventPropertyCount).

"order.paid with category 护肤 more than once" over the raw log reads the JSON of every paid
order of the brand (10,000,000 at the benchmark's size: 3.1 s on PostgreSQL). The same
question over this table reads one index range. The table is kept by database triggers on
events_event — after every INSERT, DELETE and UPDATE of brand_id, customer_id, type or
properties — so it changes in the same statement and transaction as the log: there is no
consumer lag, and a count read from it equals the count of the log at every moment, on both
databases. The in-memory evaluator keeps reading the events; the agreement test proves the two
still match.

Only the (type, key) pairs in ROLLED_UP are counted, and only values that are JSON text of
1–200 characters (a rule's text value is 1–200 characters, so a longer or non-text value can
never match an `eq` / `in` filter anyway). Changing ROLLED_UP needs a migration that calls
install() with the new pairs (it replaces the triggers) and then rebuild().

Raw bulk loads that bypass triggers (PostgreSQL COPY with session_replication_role = replica,
as bench/segments.py does) must call rebuild() afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection

TABLE = "segments_eventpropertycount"
MAX_VALUE = 200
#: event type -> the text properties counted per customer and value.
ROLLED_UP: dict[str, tuple[str, ...]] = {"order.paid": ("category",)}

Pairs = Mapping[str, Sequence[str]]


def covers(event_type: str, key: str) -> bool:
    return key in ROLLED_UP.get(event_type, ())


def _quote(text: str) -> str:
    # Types and keys come from ROLLED_UP (code, not input): word characters, dots, hyphens.
    assert all(ch.isalnum() or ch in "._-" for ch in text), text
    return f"'{text}'"


def _type_list(pairs: Pairs) -> str:
    return ", ".join(_quote(t) for t in sorted(pairs))


def _pg_case(pairs: Pairs) -> str:
    """The keys to count for an event type, as a text[] expression of `t`."""
    arms = " ".join(
        f"WHEN {_quote(t)} THEN ARRAY[{', '.join(_quote(k) for k in keys)}]::text[]"
        for t, keys in sorted(pairs.items())
    )
    return f"CASE t {arms} ELSE ARRAY[]::text[] END"


def _postgresql_install(pairs: Pairs) -> list[str]:
    types = _type_list(pairs)
    apply = f"""
CREATE OR REPLACE FUNCTION segments_rollup_apply(
  b bigint, c bigint, t text, props jsonb, delta integer
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE k text; v jsonb; s text;
BEGIN
  IF c IS NULL OR props IS NULL OR jsonb_typeof(props) <> 'object' THEN RETURN; END IF;
  FOREACH k IN ARRAY ({_pg_case(pairs)}) LOOP
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
END $$"""
    trigger = """
CREATE OR REPLACE FUNCTION segments_rollup_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM segments_rollup_apply(OLD.brand_id, OLD.customer_id, OLD.type, OLD.properties, -1);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM segments_rollup_apply(NEW.brand_id, NEW.customer_id, NEW.type, NEW.properties, 1);
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
        " properties ON events_event FOR EACH ROW"
        f" WHEN (OLD.type IN ({types}) OR NEW.type IN ({types}))"
        " EXECUTE FUNCTION segments_rollup_event()",
    ]


def _postgresql_uninstall() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS segments_rollup_insert ON events_event",
        "DROP TRIGGER IF EXISTS segments_rollup_delete ON events_event",
        "DROP TRIGGER IF EXISTS segments_rollup_update ON events_event",
        "DROP FUNCTION IF EXISTS segments_rollup_event()",
        "DROP FUNCTION IF EXISTS segments_rollup_apply(bigint, bigint, text, jsonb, integer)",
    ]


def _sqlite_value(row: str, key: str) -> tuple[str, str]:
    """(condition, value) for a counted text value of `key` in row.properties."""
    path = f"'$.\"{key}\"'"
    cond = (
        f"{row}.customer_id IS NOT NULL AND json_valid({row}.properties)"
        f" AND json_type({row}.properties, {path}) = 'text'"
        f" AND length(json_extract({row}.properties, {path})) BETWEEN 1 AND {MAX_VALUE}"
    )
    return cond, f"json_extract({row}.properties, {path})"


def _sqlite_add(row: str, event_type: str, key: str) -> str:
    cond, value = _sqlite_value(row, key)
    return (
        f"INSERT INTO {TABLE} (brand_id, customer_id, type, key, value, events)"
        f" SELECT {row}.brand_id, {row}.customer_id, {row}.type, {_quote(key)}, {value}, 1"
        f" WHERE {row}.type = {_quote(event_type)} AND {cond}"
        " ON CONFLICT (brand_id, type, key, value, customer_id)"
        " DO UPDATE SET events = events + 1;"
    )


def _sqlite_remove(row: str, event_type: str, key: str) -> str:
    cond, value = _sqlite_value(row, key)
    match = (
        f"brand_id = {row}.brand_id AND type = {row}.type AND key = {_quote(key)}"
        f" AND value = {value} AND customer_id = {row}.customer_id"
        f" AND {row}.type = {_quote(event_type)} AND {cond}"
    )
    return (
        f"UPDATE {TABLE} SET events = events - 1 WHERE {match};"
        f" DELETE FROM {TABLE} WHERE events <= 0 AND {match};"
    )


def _sqlite_install(pairs: Pairs) -> list[str]:
    types = _type_list(pairs)
    add_new = " ".join(_sqlite_add("NEW", t, k) for t, keys in sorted(pairs.items()) for k in keys)
    remove_old = " ".join(
        _sqlite_remove("OLD", t, k) for t, keys in sorted(pairs.items()) for k in keys
    )
    return [
        *_sqlite_uninstall(),
        f"CREATE TRIGGER segments_rollup_insert AFTER INSERT ON events_event"
        f" WHEN NEW.type IN ({types}) BEGIN {add_new} END",
        f"CREATE TRIGGER segments_rollup_delete AFTER DELETE ON events_event"
        f" WHEN OLD.type IN ({types}) BEGIN {remove_old} END",
        "CREATE TRIGGER segments_rollup_update AFTER UPDATE OF brand_id, customer_id, type,"
        f" properties ON events_event WHEN OLD.type IN ({types}) OR NEW.type IN ({types})"
        f" BEGIN {remove_old} {add_new} END",
    ]


def _sqlite_uninstall() -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS segments_rollup_insert",
        "DROP TRIGGER IF EXISTS segments_rollup_delete",
        "DROP TRIGGER IF EXISTS segments_rollup_update",
    ]


def install_statements(vendor: str, pairs: Pairs) -> list[str]:
    if vendor == "postgresql":
        return _postgresql_install(pairs)
    if vendor == "sqlite":
        return _sqlite_install(pairs)
    raise NotImplementedError(f"{vendor} is not supported")


def uninstall_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return _postgresql_uninstall()
    if vendor == "sqlite":
        return _sqlite_uninstall()
    raise NotImplementedError(f"{vendor} is not supported")


def rebuild_statements(vendor: str, pairs: Pairs) -> list[str]:
    """Recount the whole table from the log (one grouped INSERT per counted key)."""
    out = [f"DELETE FROM {TABLE}"]
    for event_type, keys in sorted(pairs.items()):
        for key in keys:
            if vendor == "postgresql":
                value = f"(e.properties ->> {_quote(key)})"
                cond = (
                    f"jsonb_typeof(e.properties -> {_quote(key)}) = 'string'"
                    f" AND length({value}) BETWEEN 1 AND {MAX_VALUE}"
                )
            else:
                cond, value = _sqlite_value("e", key)
            out.append(
                f"INSERT INTO {TABLE} (brand_id, customer_id, type, key, value, events)"
                f" SELECT e.brand_id, e.customer_id, e.type, {_quote(key)}, {value}, count(*)"
                f" FROM events_event e WHERE e.type = {_quote(event_type)}"
                f" AND e.customer_id IS NOT NULL AND {cond}"
                f" GROUP BY e.brand_id, e.customer_id, e.type, {value}"
            )
    return out


def install(schema_editor: Any = None, pairs: Pairs | None = None) -> None:
    """Create (or replace) the triggers for `pairs` (default ROLLED_UP)."""
    conn = schema_editor.connection if schema_editor is not None else connection
    with conn.cursor() as cursor:
        for statement in install_statements(conn.vendor, pairs or ROLLED_UP):
            cursor.execute(statement)


def rebuild(schema_editor: Any = None, pairs: Pairs | None = None) -> None:
    """Recount every row from the event log (after a load that bypassed the triggers)."""
    conn = schema_editor.connection if schema_editor is not None else connection
    with conn.cursor() as cursor:
        for statement in rebuild_statements(conn.vendor, pairs or ROLLED_UP):
            cursor.execute(statement)
