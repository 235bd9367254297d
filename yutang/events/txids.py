"""Transaction ids, for reading the log in commit-safe order. PostgreSQL-specific SQL with a
SQLite branch, kept in one place (CONVENTIONS §10).

Event ids come from a sequence when the row is inserted, not when it commits, so a long
transaction can commit an id lower than one a consumer already passed. Each event therefore
records the id of the transaction that wrote it, and a consumer reads in (txid, id) order
only events of transactions older than every transaction still running in this database:
no transaction can later commit an event that sorts before them. On SQLite a single
writer holds the database from its first write to its commit, so ids already follow commit
order and every txid is 0."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL


def current_txid() -> int:
    """The id of the current transaction, assigned now if it had none yet (call it before
    inserting events so that the id is drawn before any event id)."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


#: The oldest transaction running (as of the statement's snapshot) that may write to this
#: database, or the snapshot's xmax when none is: every event with a lower txid is committed
#: or rolled back, and no later transaction can get a lower id. Transactions that sessions of
#: other databases hold (transaction ids are server-wide) are left out, so their long
#: transactions do not hold the log back; the database role must see other sessions'
#: `backend_xid` (the same role, or pg_read_all_stats), else they count, which only delays.
_HORIZON = (
    "SELECT COALESCE(min(x::text::bigint), "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint) "
    "FROM pg_snapshot_xip(pg_current_snapshot()) AS x "
    "WHERE mod(x::text::bigint, 4294967296) NOT IN ("
    "SELECT backend_xid::text::bigint FROM pg_stat_activity "
    "WHERE datname IS DISTINCT FROM current_database() AND backend_xid IS NOT NULL)"
)
_OWN = "SELECT pg_current_xact_id_if_assigned()::text::bigint"


def readable() -> Q:
    """Events a consumer may read now without ever missing one committed later: in one
    statement (one snapshot) with the read itself. Also the reading transaction's own events
    (a test that stores and consumes in one transaction). Everything on SQLite."""
    if connection.vendor != "postgresql":
        return Q()
    # Constant SQL, no input in it.
    return Q(txid__lt=RawSQL(_HORIZON, ())) | Q(txid=RawSQL(_OWN, ()))  # noqa: S611
