"""Event ingestion benchmark (issue 3): the service layer, the HTTP API and the raw database
limit, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest.py [--events N] [--customers M]
                                     [--backends sqlite,postgresql] [--paths service,http,raw]

Defaults: 1,000,000 events for 200,000 customers, both backends, all paths. With --events but
no --customers the customer count scales to keep 5 events per customer, like the full run.

Every step runs in its own child process (`--_child BACKEND:PATH`) against its own fresh
database (a SQLite file under a `tempfile.mkdtemp()` directory, or a PostgreSQL database named
bench_ingest_<path>), created before and dropped after:

- service: `yutang.events.services.ingest_events` in batches of 1,000 (only the calls are
  timed, not generating the events); then a cProfile of a 20,000-event slice (a second brand,
  same events-per-customer ratio) with a breakdown and the SQL statements it issued;
- http:    `yutang serve --workers 2 --threads 1` on a free port (see --server-threads); two
  client threads POST pre-serialised batches of 1,000 to /api/v1/events with a bearer token;
- raw:     the same customers, identities and events (duplicates dropped, identities already
  hashed and encrypted — preparation is timed separately) inserted with SQLite `executemany`
  in one transaction or PostgreSQL `COPY`; no resolution, no aggregates.

On a PostgreSQL server without autovacuum (this project's CI server) the service and http
steps ANALYZE grown tables during the timed part as autovacuum would (see AutoAnalyze;
--no-autoanalyze turns it off): without statistics the per-batch lookups read whole tables.

Rates are input events (duplicates included) per second of the timed part. The goal of issue 3
is >= 20,000 events/s through the API on PostgreSQL.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

GOAL_API_PG = 20_000  # events/s through the API on PostgreSQL (issue 3)
DEFAULT_EVENTS = 1_000_000
DEFAULT_CUSTOMERS = 200_000
BATCH = 1000
PROFILE_EVENTS = 20_000
RETRIES = 5  # HTTP attempts per batch
SEED = 20261125
BACKENDS = ("sqlite", "postgresql")
PATHS = ("service", "http", "raw")

# --- The event stream ----------------------------------------------------------------------------

CST = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2025, 11, 1, tzinfo=CST)
END = dt.datetime(2026, 11, 1, tzinfo=CST)
PHONE_PREFIXES = [
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
    "155", "156", "157", "158", "159", "176", "177", "180", "181", "182", "183", "185",
    "186", "187", "188", "189", "199",
]  # fmt: skip
CHANNELS = ["douyin_live", "xhs_note", "tmall_card", "store_qr", "kol_post", "feed_ad", "weibo"]
ORDER_SOURCES = ["tmall", "taobao", "jd", "pdd", "douyin", "youzan", "mini_program", "store_pos"]
TEXTS = [
    "你好，请问这款还有货吗？", "什么时候发货", "优惠券怎么用", "谢谢", "想了解一下会员权益",
    "可以开发票吗", "尺码偏大还是偏小？", "收到了，很喜欢", "退订", "直播间的链接发我一下",
]  # fmt: skip
CUSTOM = ["custom.page_viewed", "custom.live_watched", "custom.coupon_viewed"]
# Events of customers who already joined (a join is always a contact.added).
MIX = [
    ("message.sent", 0.40),
    ("message.received", 0.15),
    ("link.clicked", 0.15),
    ("order.paid", 0.10),
    ("order.refunded", 0.02),
    ("custom", 0.16),
    ("contact.added", 0.02),
]


class EventStream:
    """A deterministic (seeded) stream of realistic events over a year.

    Customers join steadily over the first 90% of the stream (their first event is a
    contact.added); every other event picks an already-joined customer, recent joiners more
    often. Every customer has an `external` id; ~30% also have a CN mobile number, carried by
    half of their events. ~2% of events are replays of a recent event (same idempotency key).
    """

    def __init__(
        self,
        events: int,
        customers: int,
        *,
        seed: int = SEED,
        key_prefix: str = "ev",
        phone_share: float = 0.30,
        duplicate_share: float = 0.02,
        join_by: float = 0.90,
    ) -> None:
        self.events = events
        self.customers = max(1, customers)
        self.seed = seed
        self.key_prefix = key_prefix
        self.phone_share = phone_share
        self.duplicate_share = duplicate_share
        self.join_by = join_by
        self.duplicates = 0
        self.unique = 0
        total = sum(w for _, w in MIX)
        acc, self._cum = 0.0, []
        for _, w in MIX:
            acc += w / total
            self._cum.append(acc)

    def external_id(self, k: int) -> str:
        return f"C{self.seed % 1000:03d}{k:08d}"

    def phone(self, k: int) -> str | None:
        # A per-customer coin flip that does not depend on the stream's random state.
        if random.Random(self.seed * 1_000_003 + k).random() >= self.phone_share:
            return None
        prefix = PHONE_PREFIXES[k % len(PHONE_PREFIXES)]
        suffix = (k * 7_919_993 + self.seed) % 100_000_000  # distinct for k < 10^8
        return f"{prefix}{suffix:08d}"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        self.duplicates = self.unique = 0
        span = (END - START).total_seconds()
        per_join = self.events * self.join_by / self.customers
        joined = 0
        recent: list[dict[str, Any]] = []
        last_order: dict[int, tuple[str, int]] = {}
        order_seq = 0
        for i in range(self.events):
            if recent and rng.random() < self.duplicate_share:
                self.duplicates += 1
                yield rng.choice(recent)  # a retry: same key, same content
                continue
            at = START + dt.timedelta(seconds=span * i / self.events + rng.uniform(-1800, 1800))
            if joined < self.customers and (joined == 0 or i >= joined * per_join):
                k, kind = joined, "contact.added"
                joined += 1
            else:
                k = joined - 1 - int(joined * rng.random() ** 2)
                kind = MIX[bisect.bisect_left(self._cum, rng.random())][0]
            if kind == "order.refunded" and k not in last_order:
                kind = "order.paid"
            key = f"{self.key_prefix}-{self.seed}-{i:09d}"
            if kind == "contact.added":
                props: dict[str, Any] = {
                    "carrier": "wecom",
                    "account_id": f"staff{k % 40:02d}",
                    "channel": rng.choice(CHANNELS),
                }
            elif kind == "message.sent":
                props = {
                    "carrier": "wecom" if rng.random() < 0.8 else "sms",
                    "message_id": f"m{i}",
                    "kind": "marketing" if rng.random() < 0.7 else "service",
                }
            elif kind == "message.received":
                props = {"carrier": "wecom", "text": rng.choice(TEXTS), "message_id": f"r{i}"}
            elif kind == "link.clicked":
                props = {
                    "link": f"https://s.yutang.example/{rng.randrange(5000):x}",
                    "channel": rng.choice(CHANNELS),
                }
            elif kind == "order.paid":
                order_seq += 1
                amount = rng.randrange(990, 59_900, 10)
                order_id = f"o{self.seed}-{order_seq}"
                last_order[k] = (order_id, amount)
                props = {
                    "order_id": order_id,
                    "source": rng.choice(ORDER_SOURCES),
                    "amount_fen": amount,
                }
            elif kind == "order.refunded":
                order_id, amount = last_order.pop(k)
                props = {
                    "order_id": order_id,
                    "refund_id": f"rf-{order_id}",
                    "amount_fen": amount if rng.random() < 0.7 else max(10, amount // 3),
                }
            else:
                kind = rng.choice(CUSTOM)
                props = {"page": f"/p/{rng.randrange(300)}", "seconds": rng.randrange(1, 600)}
            identities = [{"kind": "external", "value": self.external_id(k)}]
            phone = self.phone(k)
            if phone is not None and rng.random() < 0.5:
                identities.append({"kind": "phone", "value": phone})
            event = {
                "type": kind,
                "occurred_at": at.isoformat(timespec="seconds"),
                "idempotency_key": key,
                "identities": identities,
                "properties": props,
            }
            self.unique += 1
            recent.append(event)
            if len(recent) > 3000:
                del recent[:1000]
            yield event

    def batches(self, size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        for event in self:
            batch.append(event)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


# --- Child steps (one process, one fresh database each) ------------------------------------------


def _progress(label: str, done: int, total: int, seconds: float) -> None:
    print(
        f"    {label}: {done:,}/{total:,} events, {common.rate(done, seconds):,.0f}/s",
        file=sys.stderr,
        flush=True,
    )


def _setup(url: str, workdir: Path) -> None:
    common.django_setup(url, workdir / "var")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


ANALYZE_APP = "bench-autoanalyze"


class Periodic:
    """A daemon thread that calls `tick` every `every` seconds from `start` until `stop` (the
    AutoAnalyze thread and the BackendMonitor sampler)."""

    every = 1.0

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop the thread (after its current tick); False if it was never started."""
        self._stopping.set()
        if self._thread is None:
            return False
        self._thread.join()
        return True

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            self.tick()


class AutoAnalyze(Periodic):
    """What autovacuum's autoanalyze does, for a PostgreSQL server that runs without it (this
    project's CI server sets `autovacuum = off`): a thread that, once a second, ANALYZEs each
    table of the benchmark's database modified by more than 50 rows + 10% of its size since
    its last analyze (the server defaults' rule). Without statistics the planner reads every
    identity of the brand for each batch's identity lookup, so the cost per batch grows with
    the table (bench/RESULTS.md, session 7). Does nothing on SQLite, with --no-autoanalyze,
    or when the server runs autovacuum. `runs` counts the ANALYZE statements made."""

    def __init__(self, url: str, enabled: bool) -> None:
        super().__init__()
        self.url, self.enabled, self.runs = url, enabled and url.startswith("postgres"), 0
        self._pg: Any = None

    def __enter__(self) -> AutoAnalyze:
        if self.enabled:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as pg:
                row = pg.execute("SHOW autovacuum").fetchone()
            self.enabled = row is not None and row[0] == "off"
        if self.enabled:
            import psycopg

            # Named, so the CPU accounting (`BackendMonitor`) leaves this connection out.
            self._pg = psycopg.connect(self.url, autocommit=True, application_name=ANALYZE_APP)
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop():
            self._pg.close()

    def tick(self) -> None:
        due = self._pg.execute(
            "SELECT quote_ident(s.relname) FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid "
            "WHERE c.relpersistence = 'p' "  # not the sessions' staging tables
            "AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)"
        ).fetchall()
        for (table,) in due:
            self._pg.execute(f"ANALYZE {table}")  # a name from the catalogue
            self.runs += 1


def step_service(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    _setup(url, workdir)
    from yutang.core.services import create_brand
    from yutang.events.services import ingest_events

    brand = create_brand(name="Bench service")
    stream = EventStream(args.events, args.customers)
    backend = common.backend_pid()
    ru0, db0 = resource.getrusage(resource.RUSAGE_SELF), common.proc_cpu(backend)
    counts: Counter[str] = Counter()
    spent, done, every = 0.0, 0, max(BATCH, args.events // 10 // BATCH * BATCH)
    with AutoAnalyze(url, not args.no_autoanalyze) as analyze, common.timer() as wall:
        for batch in stream.batches():
            t0 = time.perf_counter()
            results = ingest_events(brand=brand, items=batch)
            spent += time.perf_counter() - t0
            counts.update(r.status for r in results)
            done += len(batch)
            if done % every == 0:
                _progress("service", done, args.events, spent)
    ru1, db1 = resource.getrusage(resource.RUSAGE_SELF), common.proc_cpu(backend)
    out = {
        # Includes generating the events (not timed), a few µs per event.
        "roles_cpu": {
            "service process": ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime,
            "database": db1 - db0,
        },
        "events": args.events,
        "seconds": spent,
        "wall_seconds": wall.seconds,
        "analyze_runs": analyze.runs,
        "stored": counts["stored"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "expected_unique": stream.unique,
    }
    if not args.no_profile:
        out["profile"] = profile_service(args)
    return out


# Functions the breakdown looks for: (label, file suffix, function name, indent).
BREAKDOWN = [
    ("validation (_validate, before any lock)", "events/services.py", "_validate", 0),
    ("  property schemas (fast path, else pydantic)", "events/types.py", "validate_properties",
     1),
    ("  identity normalisation (phonenumbers, memoised)", "customers/identities.py",
     "normalize_identity", 1),
    ("identity hashing (NormalizedIdentity.hash, HMAC)", "customers/identities.py", "hash", 0),
    ("resolving (_resolve_batch: 1st transaction, identity lock)", "events/services.py",
     "_resolve_batch", 0),
    ("  duplicate-key and identity lookups (= ANY)", "core/bulk.py", "lookup", 1),
    ("  resolution (BatchResolver.resolve)", "events/services.py", "_resolve", 1),
    ("  resolve_customer (merges, reviews, by id)", "customers/services.py",
     "resolve_customer", 1),
    ("  new customers and identities (flush)", "customers/services.py", "flush", 1),
    ("    PII encryption (encrypt_pii)", "core/crypto.py", "encrypt_pii", 2),
    ("writing (_write_batch: 2nd transaction, side by side)", "events/services.py",
     "_write_batch", 0),
    ("  event insert (nextval, COPY to staging, INSERT ON CONFLICT)", "core/bulk.py",
     "insert_numbered", 1),
    ("  side effects (_apply_side_effects)", "events/services.py", "_apply_side_effects", 1),
    ("  aggregates (apply_facts)", "events/aggregates.py", "apply_facts", 1),
    ("    fold (in memory)", "events/aggregates.py", "_fold", 2),
    ("    combining upsert (COPY to staging, one upsert)", "core/bulk.py", "upsert_combining",
     2),
    ("advisory locks (lock_brand: identity, merge, aggregates)", "core/db.py", "lock_brand", 0),
    ("commits (two per batch, WAL flush)", "backends/base/base.py", "commit", 0),
    ("waiting for the database (psycopg wait, all statements)", "psycopg/connection.py",
     "wait", 0),
]  # fmt: skip


def _stat(stats: Any, suffix: str, name: str) -> tuple[float, int] | None:
    """(cumulative seconds, calls) of a function; `caller>callee` for one call edge;
    `a|b` sums functions. Cumulative time of recursive functions is counted once."""
    total_ct, total_n, found = 0.0, 0, False
    for part in name.split("|"):
        caller = None
        if ">" in part:
            caller, part = part.split(">", 1)
        for (filename, _line, func), (_cc, nc, _tt, ct, callers) in stats.stats.items():
            if caller is None:
                if func == part and filename.replace("\\", "/").endswith(suffix):
                    total_ct, total_n, found = total_ct + ct, total_n + nc, True
            elif func == part:
                for (cfile, _cl, cfunc), edge in callers.items():
                    if cfunc == caller and cfile.replace("\\", "/").endswith(suffix):
                        total_ct, total_n, found = total_ct + edge[3], total_n + edge[1], True
    return (total_ct, total_n) if found else None


def profile_service(args: argparse.Namespace) -> dict[str, Any]:
    """cProfile of ingest_events on a 20,000-event slice: a second brand whose stream has the
    same events per customer as the timed run (so the same share of new customers)."""
    import cProfile
    import io
    import pstats
    import re

    from django.db import connection

    from yutang.core.services import create_brand
    from yutang.events.services import ingest_events

    n = min(PROFILE_EVENTS, args.events)
    customers = max(1, round(args.customers * n / args.events))
    stream = EventStream(n, customers, seed=SEED + 1, key_prefix="pf")
    batches = list(stream.batches())
    brand = create_brand(name="Bench profile")
    sql: dict[tuple[str, str], list[float]] = {}
    verb_re = re.compile(r"\s*(\w+)")
    table_re = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.I)

    def classify(execute: Any, sql_text: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql_text, params, many, context)
        finally:
            verb = m.group(1).upper() if (m := verb_re.match(sql_text)) else "?"
            table = m.group(1) if (m := table_re.search(sql_text)) else ""
            slot = sql.setdefault((verb, table), [0, 0.0])
            slot[0] += 1
            slot[1] += time.perf_counter() - t0

    profiler = cProfile.Profile()
    with connection.execute_wrapper(classify):
        t0 = time.perf_counter()
        profiler.enable()
        for batch in batches:
            ingest_events(brand=brand, items=batch)
        profiler.disable()
        seconds = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(15)
    top = "\n".join(
        line.replace(str(common.REPO) + "/", "").replace(sys.prefix + "/", "")
        for line in buf.getvalue().splitlines()
        if line.strip()
        and not line.lstrip().startswith(("Ordered by", "List reduced"))
        and "function calls" not in line
    )
    whole = _stat(stats, "events/services.py", "ingest_events")
    total = whole[0] if whole else seconds
    breakdown = []
    for label, suffix, name, _ in BREAKDOWN:
        found = _stat(stats, suffix, name)
        if found is None:
            breakdown.append([label, "n/a", "n/a", "n/a"])
        else:
            breakdown.append(
                [label, f"{found[0]:.2f}", f"{100 * found[0] / total:.0f}%", f"{found[1]:,}"]
            )
    queries = sorted(sql.items(), key=lambda kv: -kv[1][1])
    return {
        "events": n,
        "customers": customers,
        "seconds_profiled": seconds,
        "ingest_seconds": total,
        "top": top,
        "breakdown": breakdown,
        "queries": [
            [f"{verb} {table}".strip(), f"{count:,}", f"{count / n:.2f}", f"{secs:.2f}"]
            for (verb, table), (count, secs) in queries[:14]
        ],
        "query_total": sum(c for c, _ in sql.values()),
        "query_seconds": sum(s for _, s in sql.values()),
    }


def _wait_until_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"yutang serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("yutang serve did not answer within two minutes")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # gunicorn's arbiter stops its workers
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
        proc.wait()


def _descendants(root: int) -> list[int]:
    """The process and every process below it (gunicorn's arbiter and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                raw = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(raw[raw.rindex(")") + 2 :].split()[1]), []).append(
                int(entry.name)
            )
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _role_cpu(server_pids: list[int], url: str) -> dict[str, float]:
    """CPU seconds so far of the HTTP step's parts: this process (the client threads), the
    server (gunicorn arbiter and workers) and the PostgreSQL backends of the benchmark's
    database (0 on SQLite). Differences over the timed part show where the cores went."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "client": ru.ru_utime + ru.ru_stime,
        "server": sum(common.proc_cpu(pid) for pid in server_pids),
        "database": 0.0,
    }
    if os.environ.get("BENCH_PER_PID"):
        print({pid: common.proc_cpu(pid) for pid in server_pids}, file=sys.stderr)
    if url.startswith("postgres"):
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(common.PG_ADMIN_URL, autocommit=True) as pg:
            pids = [
                pid
                for (pid,) in pg.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]
                ).fetchall()
            ]
        out["database"] = sum(common.proc_cpu(pid) for pid in pids)
    return out


class BackendMonitor(Periodic):
    """The PostgreSQL side of the HTTP step, watched from outside every `every` seconds: the
    CPU of every backend of the benchmark's database but the AutoAnalyze thread's (a backend
    that ends — gunicorn recycles its connections after 60 s — counts up to its last
    sample; one born during the step from zero), and what the server's backends were doing
    at each sample: running, waiting for a lock (advisory = the brand locks of ingestion),
    for I/O, or idle (in a transaction: the worker runs Python between statements; outside
    one: the worker is between batches or in its own Python before the first statement)."""

    def __init__(self, url: str, every: float = 1.0) -> None:
        super().__init__()
        self.url, self.every = url, every
        self.name = url.rsplit("/", 1)[1]
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.states: Counter[str] = Counter()
        self._started = False
        self._pg: Any = None

    def __enter__(self) -> BackendMonitor:
        if self.url.startswith("postgres"):
            import psycopg

            self._pg = psycopg.connect(common.PG_ADMIN_URL, autocommit=True)
            self._sample()  # backends alive now count from their CPU at this moment
            self._started = True
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop():
            self._sample()
            self._pg.close()

    def tick(self) -> None:
        self._sample()

    def _sample(self) -> None:
        rows = self._pg.execute(
            "SELECT a.pid, a.state, a.wait_event_type, a.wait_event FROM pg_stat_activity a "
            "WHERE a.datname = %s AND a.application_name <> %s "
            "AND a.backend_type = 'client backend'",
            [self.name, ANALYZE_APP],
        ).fetchall()
        for pid, state, wait_type, wait in rows:
            cpu = common.proc_cpu(pid)
            if pid not in self.first:
                self.first[pid] = cpu if not self._started else 0.0
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))
            if not self._started:
                continue
            if state == "active" and wait_type is None:
                self.states["running"] += 1
            elif state == "active" and wait_type == "Lock":
                self.states[f"waiting for a lock ({wait})"] += 1
            elif state == "active" and wait_type == "Client":
                self.states["reading from the worker (COPY data)"] += 1
            elif state == "active":
                self.states[f"waiting for {wait_type} ({wait})"] += 1
            else:
                self.states[str(state)] += 1

    @property
    def cpu(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)

    def shares(self) -> dict[str, float]:
        """Share of the sampled backend time per state, largest first."""
        total = sum(self.states.values()) or 1
        return {k: v / total for k, v in self.states.most_common()}


def step_http(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    _setup(url, workdir)
    import httpx
    from django.db import connection

    from yutang.core.services import create_api_token, create_brand, create_staff

    brand = create_brand(name="Bench http")
    staff = create_staff(
        actor=None, brand=brand, username="bench-http", display_name="Bench", role="brand_admin"
    )
    _, token = create_api_token(actor=None, staff=staff.staff, name="bench")
    connection.close()

    stream = EventStream(args.events, args.customers)
    payloads = [
        json.dumps({"events": b}, ensure_ascii=False, separators=(",", ":")).encode()
        for b in stream.batches()
    ]
    sizes = [len(json.loads(p)["events"]) for p in payloads[:1]]  # sanity: a real batch
    assert sizes and sizes[0] > 0

    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, YUTANG_DATABASE_URL=url, YUTANG_VAR_DIR=str(workdir / "var"))
    env["YUTANG_LOG_LEVEL"] = "WARNING"
    log = open(workdir / f"serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *common.server_command(),
            *("serve", "--bind", f"127.0.0.1:{port}", "--workers", str(args.server_workers)),
            *("--threads", str(args.server_threads)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=common.REPO,
    )
    counts: Counter[str] = Counter()
    errors: list[str] = []
    failed_attempts = [0]
    lock = threading.Lock()
    next_index = iter(range(len(payloads)))
    done = [0]
    every = max(1, len(payloads) // 10)
    try:
        _wait_until_up(base, proc)

        def client() -> None:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as http:
                while True:
                    with lock:
                        index = next(next_index, None)
                    if index is None:
                        return
                    # A real integration retries a failed batch (idempotency keys make
                    # that safe); failed attempts are counted and their time stays in.
                    for attempt in range(1, RETRIES + 1):
                        try:
                            response = http.post("/api/v1/events", content=payloads[index])
                            status = response.status_code
                        except httpx.HTTPError as exc:
                            status, response = 0, None
                            reason = repr(exc)
                        if status == 200:
                            break
                        with lock:
                            failed_attempts[0] += 1
                        if status and status < 500:
                            break
                        time.sleep(0.1 * attempt)
                    with lock:
                        if status != 200:
                            text = response.text[:200] if response is not None else reason
                            errors.append(f"batch {index}: {status} {text}")
                            continue
                        assert response is not None
                        body = response.json()
                        counts["stored"] += body["stored"]
                        counts["duplicate"] += body["duplicates"]
                        counts["rejected"] += body["rejected"]
                        done[0] += 1
                        if done[0] % every == 0:
                            _progress("http", done[0] * BATCH, args.events,
                                      time.perf_counter() - started)  # fmt: skip

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        server_pids = _descendants(proc.pid)
        with AutoAnalyze(url, not args.no_autoanalyze) as analyze:
            before = _role_cpu(server_pids, url)
            with BackendMonitor(url, args.sample_every) as monitor:
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                seconds = time.perf_counter() - started
            after = _role_cpu(server_pids, url)
        roles = {k: after[k] - before.get(k, 0.0) for k in after}
        if url.startswith("postgres"):
            roles["database"] = monitor.cpu
    finally:
        _stop(proc)
        log.close()
    # What the server logged as the cause of its 500s (exception class and message).
    server_errors: Counter[str] = Counter(
        line.strip()
        for line in (workdir / f"serve-{port}.log").read_text(errors="replace").splitlines()
        if line.startswith(("django.db.utils.", "psycopg.errors.", "sqlite3."))
        or (line.startswith("yutang.") and "Error" in line.split(":", 1)[0])
    )
    return {
        "analyze_runs": analyze.runs,
        "roles_cpu": roles,
        "backend_states": monitor.shares() if url.startswith("postgres") else {},
        "failed_attempts": failed_attempts[0],
        "server_errors": dict(server_errors.most_common(5)),
        "events": args.events,
        "seconds": seconds,
        "stored": counts["stored"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "expected_unique": stream.unique,
        "errors": errors[:5],
        "error_count": len(errors),
    }


def _layout(model: Any, with_id: bool) -> tuple[str, list[str], list[str]]:
    fields = [f for f in model._meta.concrete_fields if with_id or not f.primary_key]
    return model._meta.db_table, [f.column for f in fields], [f.attname for f in fields]


def step_raw(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    _setup(url, workdir)
    from django.db import connection

    from yutang.core import crypto
    from yutang.core.services import create_brand
    from yutang.customers.identities import normalize_identity
    from yutang.customers.models import Customer, Identity
    from yutang.events.models import Event

    brand = create_brand(name="Bench raw")
    vendor = connection.vendor
    now = dt.datetime.now(dt.UTC)

    def conv(value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False)
        if vendor == "sqlite" and isinstance(value, dt.datetime):
            return connection.ops.adapt_datetimefield_value(value)
        return value

    c_table, c_cols, c_attrs = _layout(Customer, with_id=True)
    i_table, i_cols, i_attrs = _layout(Identity, with_id=False)
    e_table, e_cols, e_attrs = _layout(Event, with_id=False)
    c_default = {f.attname: f.get_default() for f in Customer._meta.concrete_fields}
    i_default = {f.attname: f.get_default() for f in Identity._meta.concrete_fields}
    e_default = {f.attname: f.get_default() for f in Event._meta.concrete_fields}

    # Preparation (not the limit): drop duplicates, number customers in order of first
    # appearance, normalise, hash and encrypt identities exactly as the app would.
    stream = EventStream(args.events, args.customers)
    customers: list[tuple[Any, ...]] = []
    identities: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    customer_of: dict[str, int] = {}
    known: set[str] = set()
    seen_keys: set[str] = set()
    with common.timer() as prep:
        for item in stream:
            key = item["idempotency_key"]
            if key in seen_keys:
                continue
            seen_keys.add(key)
            external = item["identities"][0]["value"]
            cid = customer_of.get(external)
            if cid is None:
                cid = customer_of[external] = len(customers) + 1
                row = dict(c_default, id=cid, brand_id=brand.pk, created_at=now, updated_at=now)
                row["attributes"] = {}
                customers.append(tuple(conv(row[a]) for a in c_attrs))
            for raw in item["identities"]:
                ident = normalize_identity(raw["kind"], raw["value"])
                h = ident.hash
                if h in known:
                    continue
                known.add(h)
                row = dict(i_default, brand_id=brand.pk, customer_id=cid, kind=ident.kind,
                           namespace="", value_encrypted=crypto.encrypt_pii(ident.value),
                           value_hash=h, source="api", created_at=now)  # fmt: skip
                identities.append(tuple(conv(row[a]) for a in i_attrs))
            row = dict(
                e_default,
                brand_id=brand.pk,
                customer_id=cid,
                type=item["type"],
                occurred_at=dt.datetime.fromisoformat(item["occurred_at"]).astimezone(dt.UTC),
                received_at=now,
                source="api",
                idempotency_key=key,
                properties=item["properties"],
            )
            events.append(tuple(conv(row[a]) for a in e_attrs))
    connection.close()

    def sql_insert(table: str, cols: list[str]) -> str:
        return f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})'

    if vendor == "sqlite":
        import sqlite3

        path = connection.settings_dict["NAME"]
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;"
        )
        with common.timer() as t:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql_insert(c_table, c_cols), customers)
            db.executemany(sql_insert(i_table, i_cols), identities)
            db.executemany(sql_insert(e_table, e_cols), events)
            db.execute("COMMIT")
        counts = [db.execute(f'SELECT count(*) FROM "{tb}"').fetchone()[0]
                  for tb in (c_table, i_table, e_table)]  # fmt: skip
        db.close()
        method = "executemany, one transaction"
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            backend = pg.info.backend_pid
            ru0, db0 = resource.getrusage(resource.RUSAGE_SELF), common.proc_cpu(backend)
            with common.timer() as t, pg.transaction(), pg.cursor() as cur:
                for table, cols, rows in (
                    (c_table, c_cols, customers),
                    (i_table, i_cols, identities),
                    (e_table, e_cols, events),
                ):
                    with cur.copy(f'COPY "{table}" ({", ".join(cols)}) FROM STDIN') as copy:
                        for r in rows:
                            copy.write_row(r)
            ru1, db1 = resource.getrusage(resource.RUSAGE_SELF), common.proc_cpu(backend)
            roles = {
                "client": ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime,
                "database": db1 - db0,
            }
            pg.execute(
                f"SELECT setval(pg_get_serial_sequence('{c_table}', 'id'), "
                f'(SELECT max(id) FROM "{c_table}"))'
            )
            pg.commit()
            counts = []
            for tb in (c_table, i_table, e_table):
                found = pg.execute(f'SELECT count(*) FROM "{tb}"').fetchone()
                counts.append(found[0] if found else 0)
        method = "COPY (psycopg cursor.copy), one transaction"
    return {
        "roles_cpu": roles if vendor != "sqlite" else {},
        "events": args.events,
        "seconds": t.seconds,
        "prep_seconds": prep.seconds,
        "stored": counts[2],
        "customers": counts[0],
        "identities": counts[1],
        "duplicates": stream.duplicates,
        "rejected": 0,
        "expected_unique": stream.unique,
        "method": method,
    }


STEPS = {"service": step_service, "http": step_http, "raw": step_raw}


# --- The parent: one child per backend and path ------------------------------------------------


def run_step(args: argparse.Namespace, backend: str, path: str, workdir: Path) -> dict[str, Any]:
    out_file = workdir / f"{backend}-{path}.json"
    with common.temp_database(backend, f"bench_ingest_{path}", workdir) as url:
        cmd = [
            sys.executable, str(Path(__file__).resolve()),
            "--_child", f"{backend}:{path}", "--_url", url, "--_workdir", str(workdir),
            "--_out", str(out_file), "--events", str(args.events),
            "--customers", str(args.customers), "--clients", str(args.clients),
            "--server-workers", str(args.server_workers),
            "--server-threads", str(args.server_threads),
            "--sample-every", str(args.sample_every),
        ]  # fmt: skip
        if args.no_profile:
            cmd.append("--no-profile")
        if args.no_autoanalyze:
            cmd.append("--no-autoanalyze")
        env = dict(os.environ, YUTANG_LOG_LEVEL="WARNING")
        with common.CpuMonitor() as cpu:
            proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0 or not out_file.exists():
        return {"failed": f"child exited with {proc.returncode}", "step_seconds": cpu.seconds}
    result: dict[str, Any] = json.loads(out_file.read_text())
    result["step_seconds"] = cpu.seconds
    result["cpu"] = cpu.usage()
    return result


def _rate(r: dict[str, Any]) -> float:
    """Events handled per second: stored + duplicates + rejected (a batch that failed every
    retry does not count; for the raw path, duplicates are those dropped in preparation)."""
    return common.rate(r["stored"] + r["duplicates"] + r["rejected"], r["seconds"])


def report(args: argparse.Namespace, results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Print the figures and return them as markdown for RESULTS.md."""
    headers = ["backend", "path", "events", "seconds", "events/s", "vs raw", "stored",
               "duplicates", "rejected", "other CPU", "check"]  # fmt: skip
    rows = []
    notes: list[str] = []
    for (backend, path), r in results.items():
        if "failed" in r:
            rows.append([backend, path, "—", "—", "—", "—", "—", "—", "—", "—", r["failed"]])
            continue
        rate = _rate(r)
        raw = results.get((backend, "raw"))
        ratio = f"{rate / _rate(raw):.3f}x" if raw and "failed" not in raw else "n/a"
        ok = r["stored"] == r["expected_unique"] and r["rejected"] == 0
        ok = ok and not r.get("error_count")
        check = "ok" if ok else f"MISMATCH (expected {r['expected_unique']:,} stored)"
        if r.get("error_count"):
            check += f"; {r['error_count']} batches failed {RETRIES} times"
        if r.get("failed_attempts"):
            check += f"; {r['failed_attempts']} failed attempts retried"
            for e, n in r.get("server_errors", {}).items():
                notes.append(f"{backend}/{path}: server logged {n} x `{e}`")
        rows.append([backend, path, common.fmt_int(r["events"]), f"{r['seconds']:.1f}",
                     common.fmt_int(rate), ratio, common.fmt_int(r["stored"]),
                     common.fmt_int(r["duplicates"]), common.fmt_int(r["rejected"]),
                     f"{r['cpu']['other_share']:.0%}" if "cpu" in r else "n/a",
                     check])  # fmt: skip
    print()
    common.print_table(headers, rows)
    legend = (
        "events/s = (stored + duplicates + rejected) / timed seconds; vs raw = that rate over "
        "the raw insert rate of the same backend; other CPU = share of the machine's cores "
        "used by processes that are not this benchmark (nor PostgreSQL working for it) "
        "during the step."
    )
    print(legend)
    md = [common.table(headers, rows, markdown=True), "\n" + legend]
    for note in notes:
        print(note)
        md.append("\n" + note)

    api = results.get(("postgresql", "http"))
    if api and "failed" not in api:
        rate = _rate(api)
        verdict = "PASS" if rate >= GOAL_API_PG else "MISS"
        goal = (f"Goal (issue 3): >= {GOAL_API_PG:,} events/s through the API on PostgreSQL: "
                f"{verdict} — measured {rate:,.0f} events/s "
                f"({rate / GOAL_API_PG:.2f}x the goal).")  # fmt: skip
    else:
        goal = "Goal (issue 3): API on PostgreSQL not measured in this run — no verdict."
    print("\n" + goal)
    md.append("\n" + goal)
    for (backend, path), r in results.items():
        roles = r.get("roles_cpu")
        if roles and "failed" not in r:
            handled = r["stored"] + r["duplicates"] + r["rejected"]
            total = sum(roles.values())
            parts = ", ".join(
                f"{name} {secs:.1f} s ({1e6 * secs / max(handled, 1):.0f} µs/event)"
                for name, secs in roles.items()
            )
            line = (f"{path} {backend}, CPU during the timed {r['seconds']:.1f} s: {parts}; "
                    f"together {1e6 * total / max(handled, 1):.0f} µs/event, "
                    f"{total / max(r['seconds'], 1e-9):.2f} of the machine's "
                    f"{os.cpu_count()} cores (client = the benchmark's process: HTTP client "
                    "threads, or the COPY writer for raw; server = gunicorn; service process = "
                    "the process calling ingest_events, event generation included; database = "
                    "the PostgreSQL backends serving them — for http sampled every "
                    f"{args.sample_every:g} s, so "
                    "connections gunicorn recycles count too, the AutoAnalyze thread's not)."
                    )  # fmt: skip
            print(line)
            md.append("\n" + line)
        if r.get("backend_states"):
            line = (f"{path} {backend}: the server's PostgreSQL backends, sampled every "
                    f"{args.sample_every:g} s: "
                    + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["backend_states"].items())
                    + ".")  # fmt: skip
            print(line)
            md.append("\n" + line)
        if r.get("analyze_runs"):
            line = (f"{path} {backend}: the server runs without autovacuum; the benchmark "
                    f"ran ANALYZE {r['analyze_runs']} times on grown tables during the timed "
                    "part, as autovacuum would (its CPU is not counted above; "
                    "--no-autoanalyze to turn off).")  # fmt: skip
            print(line)
            md.append("\n" + line)
        if path == "raw" and "failed" not in r:
            line = (f"raw {backend}: {r['method']}; {r['customers']:,} customers, "
                    f"{r['identities']:,} identities, {r['stored']:,} events; preparation "
                    f"(dedupe, normalise, hash, encrypt) took {r['prep_seconds']:.1f} s "
                    "more, not counted.")  # fmt: skip
            print(line)
            md.append("\n" + line)

    for (backend, _path), r in results.items():
        prof = r.get("profile")
        if not prof:
            continue
        title = (f"Profile of the service path on {backend}: {prof['events']:,} events for "
                 f"{prof['customers']:,} customers, {prof['ingest_seconds']:.1f} s under "
                 f"cProfile ({prof['query_total']:,} statements through Django's cursor, "
                 f"{prof['query_total'] / prof['events']:.2f} per event, "
                 f"{prof['query_seconds']:.1f} s in the database driver)")  # fmt: skip
        print("\n" + title + "\n")
        print(prof["top"])
        print()
        bh = ["part", "seconds (cum.)", "share", "calls"]
        common.print_table(bh, prof["breakdown"])
        print()
        qh = ["SQL statement", "count", "per event", "seconds"]
        common.print_table(qh, prof["queries"])
        md += [
            f"\n### {title}\n",
            "Top 15 by cumulative time:\n\n```\n" + prof["top"] + "\n```\n",
            "Breakdown (cumulative seconds; nested rows are part of the row above):\n",
            common.table(bh, prof["breakdown"], markdown=True),
            "\nSQL issued through Django's cursor, by statement and table (the bulk statements "
            "— lookups, inserts, COPY, the aggregate upsert — use a server-side-binding psycopg "
            "cursor and are not counted here; their time is in the breakdown):\n",
            common.table(qh, prof["queries"], markdown=True),
        ]
    return "\n".join(md) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--customers", type=int, default=None,
                        help="default 200,000, or events/5 when --events is given")  # fmt: skip
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--clients", type=int, default=2, help="HTTP client threads")
    parser.add_argument("--server-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="threads per gunicorn worker (1: sync workers, one request per process at a "
        "time; with more, both clients' keep-alive connections can land on one worker and "
        "share its GIL while the other idles — measured 2026-12-06)",
    )
    parser.add_argument(
        "--sample-every",
        type=float,
        default=1.0,
        help="seconds between the http step's samples of the database's backends (every 0.1 "
        "s cost the two cores more: bench/RESULTS.md, session 10)",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--no-autoanalyze",
        action="store_true",
        help="on a PostgreSQL server with autovacuum off, do not ANALYZE grown tables as "
        "autovacuum would (see AutoAnalyze)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the figures as markdown here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.customers is None:
        args.customers = (
            DEFAULT_CUSTOMERS if args.events == DEFAULT_EVENTS else max(1, args.events // 5)
        )

    if args._child:
        _, path = args._child.split(":", 1)
        result = STEPS[path](args, args._url, args._workdir)
        args._out.write_text(json.dumps(result))
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}")
    for p in paths:
        if p not in PATHS:
            parser.error(f"unknown path {p!r}")
    info = common.machine_info()
    print("Yutang ingestion benchmark")
    common.print_machine_info(info)
    print(f"  events      {args.events:,} for {args.customers:,} customers, batches of {BATCH:,}")
    print(f"  command     {' '.join([Path(sys.executable).name, *sys.argv])}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="yutang-bench-ingest-"))
    results: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for backend in backends:
            if backend == "postgresql" and info["postgresql"] == "not reachable":
                print(f"\n== postgresql: not reachable at {common.PG_ADMIN_URL}, skipped ==")
                continue
            # The raw limit first: it is the reference the other paths are compared with.
            for path in sorted(paths, key=lambda p: p != "raw"):
                print(f"\n== {backend} / {path} ==", flush=True)
                r = results[(backend, path)] = run_step(args, backend, path, workdir)
                if "failed" in r:
                    print(f"    FAILED: {r['failed']}", flush=True)
                else:
                    print(f"    {_rate(r):,.0f} events/s ({r['seconds']:.1f} s timed, step "
                          f"{r['step_seconds']:.0f} s; CPU: this benchmark "
                          f"{r['cpu']['ours_share']:.0%}, other processes "
                          f"{r['cpu']['other_share']:.0%} of {os.cpu_count()} cores)",
                          flush=True)  # fmt: skip
        md = report(args, results)
        if args.markdown:
            args.markdown.write_text(md)
    finally:
        if args.keep:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = any("failed" in r for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
