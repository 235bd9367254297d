"""Shared helpers for the benchmarks in bench/: machine facts, timing, tables, free ports and
throw-away databases (PostgreSQL and SQLite) so a benchmark never touches a real database.

Benchmarks run as plain scripts (`.venv/bin/python bench/<name>.py`), so this module imports
nothing from Django at import time; `django_setup()` configures Django for one database URL and
must run before any `yutang` model is imported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: Where throw-away PostgreSQL databases are created (any database the role can connect to).
PG_ADMIN_URL = os.environ.get(
    "YUTANG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: Benchmarks only ever create and drop databases with this prefix.
BENCH_DB_PREFIX = "bench_"
_PROTECTED = {"postgres", "template0", "template1", "test", "test_test", "test_postgres"}


# --- Ports, timing, tables ---------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; never 8000)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port != 8000:
            return port


@dataclass
class Timer:
    started: float = 0.0
    seconds: float = 0.0


@contextlib.contextmanager
def timer() -> Iterator[Timer]:
    """`with timer() as t: ...` then `t.seconds` (wall clock, perf_counter)."""
    t = Timer(started=time.perf_counter())
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t.started


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False) -> str:
    """A plain-text (or GitHub markdown) table; numbers right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        bool(rows) and all(re.fullmatch(r"[-+]?[\d,.]+[%x]?|n/a|—", r[i] or "—") for r in cells[1:])
        for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        parts = [
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    out = [line(cells[0])]
    if markdown:
        out.append(
            "|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else "-" * (w + 2)
                           for i, w in enumerate(widths)) + "|"
        )  # fmt: skip
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], **kw: Any) -> None:
    print(table(headers, rows, **kw), flush=True)


class CpuMonitor:
    """Who used the CPUs during a measurement: this benchmark (its process tree, plus
    PostgreSQL processes whose title names a `bench_` database, plus PostgreSQL's WAL writer,
    checkpointer and background writer) versus every other process on the machine.

    On a small shared machine another process's test run can take a whole core; a result
    should say so. Linux only (reads /proc); elsewhere it reports nothing."""

    _SHARED = ("walwriter", "checkpointer", "background writer", "autovacuum")

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._ours: set[int] = set()
        self._started = 0.0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _sample(self, initial: bool = False) -> None:
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
                fields = raw[raw.rindex(")") + 2 :].split()
                parents[pid] = int(fields[1])
                cpu[pid] = (int(fields[11]) + int(fields[12])) / self._tick
                if pid not in self._ours and pid not in self._first:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    if b"bench_" in title or (
                        title.startswith(b"postgres: ")
                        and any(s.encode() in title for s in self._SHARED)
                    ):
                        self._ours.add(pid)
            except (OSError, ValueError, IndexError):
                continue
        me = os.getpid()
        for pid in cpu:
            p, hops = pid, 0
            while p and p != me and hops < 50:
                p, hops = parents.get(p, 0), hops + 1
            if p == me:
                self._ours.add(pid)
        for pid, value in cpu.items():
            self._first.setdefault(pid, value if initial else 0.0)
            self._last[pid] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuMonitor:
        if Path("/proc/stat").exists():
            self._sample(initial=True)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def usage(self) -> dict[str, float]:
        """CPU-seconds used by this benchmark and by other processes, and the share of the
        machine's capacity (seconds x cores) each took."""
        ours = other = 0.0
        for pid, last in self._last.items():
            used = max(0.0, last - self._first.get(pid, 0.0))
            if pid in self._ours:
                ours += used
            else:
                other += used
        capacity = max(self.seconds, 1e-9) * (os.cpu_count() or 1)
        return {
            "ours_cpu_s": ours,
            "other_cpu_s": other,
            "ours_share": ours / capacity,
            "other_share": other / capacity,
        }


# --- The machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def postgres_version(url: str = PG_ADMIN_URL) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:
        return None


def machine_info() -> dict[str, str]:
    """The facts a RESULTS.md entry needs to be comparable with another."""
    ram = _ram_gib()
    try:
        import django

        django_version = django.get_version()
    except ImportError:
        django_version = "n/a"
    return {
        "date": dt.date.today().isoformat(),
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "ram": f"{ram:.1f} GiB" if ram else "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django_version,
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version() or "not reachable",
    }


def print_machine_info(info: dict[str, str] | None = None) -> None:
    info = info or machine_info()
    for key, value in info.items():
        print(f"  {key:<11} {value}")


# --- Throw-away databases ------------------------------------------------------------------------


def _check_bench_name(name: str) -> None:
    if not re.fullmatch(r"[a-z0-9_]{1,60}", name) or not name.startswith(BENCH_DB_PREFIX):
        raise ValueError(f"benchmark databases are named {BENCH_DB_PREFIX}<a-z0-9_>, not {name!r}")
    if name in _PROTECTED:
        raise ValueError(f"refusing to touch database {name!r}")


def pg_url(name: str, admin_url: str = PG_ADMIN_URL) -> str:
    """The admin URL with its database name replaced."""
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def create_pg_database(name: str, admin_url: str = PG_ADMIN_URL) -> str:
    """(Re)create an empty PostgreSQL database called `name` (must start with bench_)."""
    import psycopg

    _check_bench_name(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name, admin_url)


def drop_pg_database(name: str, admin_url: str = PG_ADMIN_URL) -> None:
    import psycopg

    _check_bench_name(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def drop_sqlite_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


@contextlib.contextmanager
def temp_database(backend: str, name: str, workdir: Path, *, keep: bool = False) -> Iterator[str]:
    """A fresh, empty database for one benchmark step; yields its YUTANG_DATABASE_URL and drops
    it afterwards. `backend` is `sqlite` (a file under `workdir`, a `tempfile.mkdtemp()`
    directory) or `postgresql` (a database `name`_<pid> on PG_ADMIN_URL's server)."""
    if backend == "sqlite":
        path = Path(workdir) / f"{name}.sqlite3"
        drop_sqlite_database(path)
        try:
            yield sqlite_url(path)
        finally:
            if not keep:
                drop_sqlite_database(path)
    elif backend == "postgresql":
        # The process id keeps two benchmarks running at once (or the same one twice) from
        # dropping each other's database.
        name = f"{name}_{os.getpid()}"
        url = create_pg_database(name)
        try:
            yield url
        finally:
            if not keep:
                drop_pg_database(name)
    else:
        raise ValueError(f"unknown backend {backend!r} (sqlite or postgresql)")


def django_setup(database_url: str, var_dir: Path | str) -> None:
    """Point Yutang's settings at `database_url` (and a private var dir) and set Django up.
    Must run before anything imports a Yutang model."""
    os.environ["YUTANG_DATABASE_URL"] = database_url
    os.environ["YUTANG_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("YUTANG_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yutang.settings")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def server_command() -> list[str]:
    """How to start `yutang` with this interpreter's environment."""
    script = Path(sys.executable).with_name("yutang")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "yutang.cli"]


if __name__ == "__main__":
    # `make bench` runs every bench/*.py; for this helper module that means: show the machine.
    print_machine_info()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process on this machine, 0 if unknown (e.g. the
    PostgreSQL backend serving a worker's connection, `SELECT pg_backend_pid()`)."""
    if not pid:
        return 0.0
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pid() -> int:
    """The PostgreSQL backend process serving Django's default connection (0 on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])
