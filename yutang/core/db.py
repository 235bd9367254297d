"""Database-specific SQL lives here, behind functions with a SQLite branch (CONVENTIONS §10)."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator

from django.db import OperationalError, connection

#: Advisory-lock namespaces (the first key of a two-key PostgreSQL advisory lock).
IDENTITY_WRITES = 1
#: Merges and unmerges of a brand take this exclusively; writers that attach rows to
#: customers they resolved in an earlier, committed transaction (event batches) take it
#: shared, so no merge commits between their check of the customers and their commit.
CUSTOMER_MERGES = 2
#: Event batches fold into a brand's per-customer aggregates one at a time.
AGGREGATE_WRITES = 3


#: How to forget what this process keeps about the database's rows (see `forget_on_flush`).
_ROW_STATE: list[Callable[[], None]] = []


def forget_on_flush(forget: Callable[[], None]) -> None:
    """Register how to forget per-process state that is only true of the rows it was read
    from: a parsed definition cached by id, where the last claim of a backlog stopped.

    Ids are never reused while the rows live, so such state is safe for a process's life,
    except across an emptied database: `flush` (`yutang demo --fresh`, a transactional test's
    teardown) deletes every row and restarts every id, and afterwards the same id names a
    different row. Flushing sends `post_migrate`, on which the core app forgets it all
    (`forget_row_state`)."""
    _ROW_STATE.append(forget)


def forget_row_state(**_: object) -> None:
    """Forget every registered piece of per-process row state (a `post_migrate` receiver;
    also called where a run must not depend on what the process did before it)."""
    for forget in _ROW_STATE:
        forget()


def lock_brand(brand_id: int, namespace: int = IDENTITY_WRITES, *, shared: bool = False) -> None:
    """Serialise one kind of write per brand until the transaction ends.

    Identity resolution creates and merges customers; two concurrent batches that mention the
    same new people would otherwise lock identity index entries in different orders and
    deadlock on PostgreSQL. SQLite has a single writer already (IMMEDIATE transactions), so
    there it is a no-op. Re-entrant within a transaction. `shared` takes the lock in shared
    mode: shared holders run together and exclude an exclusive holder."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [namespace, brand_id])


@contextlib.contextmanager
def pipeline() -> Iterator[None]:
    """Send the statements made inside without waiting for each one's answer (psycopg's
    pipeline mode; SQLite: nothing changes). A statement whose rows are read waits for the
    answers of everything sent before it, so `lock_brand` and then a read are one round trip
    with the transaction's `BEGIN`, instead of three; errors are raised at that read, or at
    the end of the block. No `COPY` inside (psycopg refuses it in a pipeline)."""
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


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
