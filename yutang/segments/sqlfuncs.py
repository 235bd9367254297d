"""Typed reads of JSON keys and a case-sensitive substring test, as ORM expressions.

The SQL differs between PostgreSQL and SQLite, so each function has one branch per backend
(CONVENTIONS §10). Keys and values are always bound parameters. A typed read returns NULL
when the key is missing or holds another JSON type, so "attribute age > 30" never matches the
string "40" on one backend and not on the other: both follow the in-memory evaluator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db.models import (
    BooleanField,
    Expression,
    F,
    FloatField,
    Func,
    IntegerField,
    Subquery,
    TextField,
)
from django.db.models.sql.compiler import SQLCompiler


def _sqlite_path(key: str) -> str:
    # Keys are validated to word characters and hyphens (rules.Key), so quoting is enough.
    return f'$."{key}"'


class _JsonRead(Func):
    """Read `key` of a JSON column (or expression) as one SQL type, NULL unless it has it."""

    pg_type = ""
    pg_cast = ""
    sqlite_types: tuple[str, ...] = ()

    def __init__(self, column: Any, key: str, **extra: Any):
        self.key = key
        super().__init__(column, **extra)

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError(f"{connection.vendor} is not supported")

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"(CASE WHEN jsonb_typeof(({column}) -> %s) = '{self.pg_type}' "
            f"THEN (({column}) ->> %s){self.pg_cast} END)"
        )
        return sql, (*params, self.key, *params, self.key)

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        path = _sqlite_path(self.key)
        types = ", ".join(f"'{t}'" for t in self.sqlite_types)
        sql = self.sqlite_template(column, types)
        return sql, (*params, path, *params, path)

    def sqlite_template(self, column: str, types: str) -> str:
        return (
            f"(CASE WHEN json_type({column}, %s) IN ({types}) THEN json_extract({column}, %s) END)"
        )


class JsonText(_JsonRead):
    output_field = TextField()
    pg_type = "string"
    sqlite_types = ("text",)


class JsonNumber(_JsonRead):
    output_field = FloatField()
    pg_type = "number"
    pg_cast = "::double precision"
    sqlite_types = ("integer", "real")


class JsonBool(_JsonRead):
    output_field = BooleanField()
    pg_type = "boolean"
    pg_cast = "::boolean"

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        sql = f"(CASE json_type({column}, %s) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
        return sql, (*params, _sqlite_path(self.key))


class JsonHas(Func):
    """1 when the key is present (any JSON type, null included), else 0."""

    output_field = IntegerField()

    def __init__(self, column: Any, key: str, **extra: Any):
        self.key = key
        super().__init__(column, **extra)

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        return f"(CASE WHEN (({column}) -> %s) IS NULL THEN 0 ELSE 1 END)", (*params, self.key)

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        sql = f"(CASE WHEN json_type({column}, %s) IS NULL THEN 0 ELSE 1 END)"
        return sql, (*params, _sqlite_path(self.key))


class StrPos(Func):
    """1-based position of `needle` in the text, 0 when absent; case-sensitive on both
    backends (LIKE is case-insensitive on SQLite, and would treat % and _ as wildcards)."""

    output_field = IntegerField()

    def __init__(self, haystack: Expression | Any, needle: Expression | Any, **extra: Any):
        super().__init__(haystack, needle, **extra)

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="STRPOS", **extra)

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="INSTR", **extra)


class JsonStringIs(Func):
    """True when `key` holds exactly this JSON string, else false (never NULL). On PostgreSQL
    a jsonb equality, which is cheaper per row than reading the key as text twice."""

    output_field = BooleanField()

    def __init__(self, column: Any, key: str, value: str, **extra: Any):
        self.key = key
        self.value = value
        super().__init__(column, **extra)

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        sql = f"COALESCE((({column}) -> %s) = %s::jsonb, false)"
        return sql, (*params, self.key, json.dumps(self.value))

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        path = _sqlite_path(self.key)
        sql = f"COALESCE(json_type({column}, %s) = 'text' AND json_extract({column}, %s) = %s, 0)"
        return sql, (*params, path, *params, path, self.value)


class MemberOf(Expression):
    """The row's primary key is among the customer ids a subquery selects (its first
    column): the shape of almost every condition ("has a tag", "an event in the window"…).

    PostgreSQL: ``EXISTS (SELECT 1 FROM (subquery OFFSET 0) m WHERE m.id = pk)``. The planner
    turns it into a semi join and its negation into an anti join (hashing that spills to disk
    when big), even when the subquery groups. ``pk [NOT] IN (subquery)`` becomes a per-row
    subplan once the subquery's rows exceed work_mem, which made "NOT (an order in 60 days)"
    quadratic at 100,000 customers. SQLite: ``pk IN (subquery)``, which it answers with one
    temporary index whatever the size."""

    output_field = BooleanField()

    def __init__(self, rows: Any, column: str = "pk", *, fence: bool = True):
        super().__init__()
        #: False for a subquery that selects a unique key the planner can see (the
        #: aggregate's one row per customer): it is then pulled up into the outer query and
        #: joined with the customers like a table, in parallel where that pays, instead of
        #: being hashed whole first (see as_sql).
        self.fence = fence
        if hasattr(rows, "order_by"):
            rows = rows.order_by()  # a model's default ordering would sort the ids for nothing
        self.rows: Any = rows if isinstance(rows, Subquery | IdSet) else Subquery(rows)
        self.column: Any = F(column)  # resolved to the column when the filter is built

    @property
    def of_customer(self) -> bool:
        """Whether this tests the customer's own primary key (what IdSet may combine)."""
        return isinstance(self.column, F) and self.column.name == "pk"

    def get_source_expressions(self) -> list[Any]:
        return [self.column, self.rows]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.column, self.rows = exprs

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, column_params = compiler.compile(self.column)
        rows, rows_params = compiler.compile(self.rows)
        if connection.vendor == "postgresql":
            assert rows.startswith("(") and rows.endswith(")")
            # OFFSET 0 keeps the subquery whole: the join is then a hash or merge join against
            # its rows, never a loop of per-customer index probes into the event log (which
            # the planner underestimates when the log is in time order: 1.2 s against 0.4 s
            # for "no order in 60 days" at 100,000 customers).
            # Only compiled SQL fragments are formatted in; their values stay parameters.
            # Without the fence (a subquery on a table keyed by customer) the planner may
            # join it as a table: "ordered before AND NOT in 60 days" became a parallel hash
            # join of the aggregates with the customers, 2.2 -> 1.2 s at 1M (loaded).
            inner = f"({rows[1:-1]} OFFSET 0)" if self.fence else rows
            sql = (
                f"EXISTS (SELECT 1 FROM {inner} AS _member (id)"  # noqa: S608
                f" WHERE _member.id = {column})"
            )
            return sql, (*rows_params, *column_params)
        return f"{column} IN {rows}", (*column_params, *rows_params)


class IdSet(Expression):
    """The ids that several MemberOf subqueries select, combined for an OR of memberships
    (their union) or an AND (their intersection), as one subquery for one MemberOf: the
    customers are then probed once against one set of ids rather than once per membership
    (on PostgreSQL each EXISTS is a hashed subplan or a semi join of its own). Parts may be
    IdSets again. Only membership counts, so the set may repeat an id:

    - union: ``(SELECT * FROM (part) AS _part UNION ALL SELECT * FROM (part) AS _part …)``,
      no sort or hash to drop repeats (MemberOf's semi join ignores them);
    - intersection, PostgreSQL: the first part's ids that are in each other part, as semi
      joins (``SELECT _p.* FROM (part) AS _p (id) WHERE _p.id IN (SELECT * FROM (part) AS
      _q) …``), which the planner hashes or merges, where INTERSECT sorts every part's rows
      together (at full size 450,000 for "3 touches in 30 days AND a click in 14");
      SQLite: ``… INTERSECT …`` (it has no column list on a FROM alias), one temporary index.

    SQLite takes no parenthesised SELECT as a compound's member, but one in FROM: the shape
    of every part."""

    output_field = IntegerField()
    OPS = ("UNION", "INTERSECT")

    def __init__(self, op: str, parts: Sequence[Any]):
        super().__init__()
        assert op in self.OPS, op
        self.op = op
        self.parts: list[Any] = list(parts)

    def get_source_expressions(self) -> list[Any]:
        return list(self.parts)

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.parts = list(exprs)

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        compiled = [compiler.compile(part) for part in self.parts]
        params: list[Any] = [p for _, part_params in compiled for p in part_params]
        # Only compiled SQL fragments are formatted in; their values stay parameters.
        if self.op == "INTERSECT" and connection.vendor == "postgresql":
            first, *others = (sql for sql, _ in compiled)
            tests = " AND ".join(f"_p.id IN (SELECT * FROM {sql} AS _q)" for sql in others)  # noqa: S608
            return f"(SELECT _p.* FROM {first} AS _p (id) WHERE {tests})", tuple(params)  # noqa: S608
        joiner = " UNION ALL " if self.op == "UNION" else " INTERSECT "
        pieces = [f"SELECT * FROM {sql} AS _part" for sql, _ in compiled]  # noqa: S608
        return "(" + joiner.join(pieces) + ")", tuple(params)


#: SQL of each comparison a JsonNumberIs makes on SQLite (the value side is one or two
#: parameters).
_NUMBER_OPS = {
    "eq": "= %s",
    "ne": "<> %s",
    "gt": "> %s",
    "gte": ">= %s",
    "lt": "< %s",
    "lte": "<= %s",
    "between": "BETWEEN %s AND %s",
}
#: The same comparisons as SQL/JSON path predicates on PostgreSQL ($k: the key's value).
_PATH_OPS = {
    "eq": "$k == $a",
    "ne": "$k != $a",
    "gt": "$k > $a",
    "gte": "$k >= $a",
    "lt": "$k < $a",
    "lte": "$k <= $a",
    "between": "$k >= $a && $k <= $b",
}


class JsonNumberIs(Func):
    """True when `key` holds a JSON number that compares so with the value, else false (never
    NULL).

    PostgreSQL: one strict SQL/JSON path predicate (``jsonb_path_match``) for the comparisons,
    inside one call, where ``->>`` read the key again as text and parsed it as a double for
    each (the attribute test of "age between 25 and 35" over a million customers: 37% less
    CPU, serial, same minutes). In strict mode a missing key is an error, and a
    string, true / false, null, array or object compared with a number is "unknown": the
    silent match gives NULL for both, hence false, as the in-memory evaluator says for a value
    that is not a number. JSON numbers compare exactly (numeric), as Python's ints and floats
    do. SQLite: the key's type, then its value."""

    output_field = BooleanField()

    def __init__(self, column: Any, key: str, op: str, value: Any, **extra: Any):
        self.key, self.op = key, op
        self.values = list(value) if op == "between" else [value]
        super().__init__(column, **extra)

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        # Keys are word characters and hyphens (rules.Key): quoted, they need no escaping.
        path = "strict " + _PATH_OPS[self.op].replace("$k", f'$."{self.key}"')
        variables = json.dumps(dict(zip("ab", self.values, strict=False)))
        # The leading type test changes no answer; it gives the planner the selectivity of an
        # equality (0.5%) instead of a function's 50%, which priced a parallel scan of the
        # customers out of "age between 25 and 35" (slower on two cores).
        sql = (
            f"(jsonb_typeof(({column}) -> %s) = 'number' "
            f"AND COALESCE(jsonb_path_match(({column}), %s::jsonpath, %s::jsonb, true), false))"
        )
        return sql, (*params, self.key, *params, path, variables)

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        path = _sqlite_path(self.key)
        sql = (
            f"(CASE WHEN json_type({column}, %s) IN ('integer', 'real') "
            f"THEN json_extract({column}, %s) {_NUMBER_OPS[self.op]} ELSE 0 END)"
        )
        return sql, (*params, path, *params, path, *self.values)


class JsonBoolIs(Func):
    """True when `key` holds exactly this JSON true or false, else false (never NULL); one
    read of the key (PostgreSQL: a jsonb equality, as JsonStringIs)."""

    output_field = BooleanField()

    def __init__(self, column: Any, key: str, value: bool, **extra: Any):
        self.key, self.value = key, value
        super().__init__(column, **extra)

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        literal = "true" if self.value else "false"
        return f"COALESCE((({column}) -> %s) = '{literal}'::jsonb, false)", (*params, self.key)

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        literal = "true" if self.value else "false"
        sql = f"COALESCE(json_type({column}, %s) = '{literal}', 0)"
        return sql, (*params, _sqlite_path(self.key))
