"""Live-code routing throughput (issue 5): `assign_account` decisions per second, one client
and several concurrent clients, and `record_contact_added` per second, on SQLite and
PostgreSQL. The issue sets no speed goal; the figures show the cost of the atomic caps.

    .venv/bin/python bench/routing.py                       # both backends, defaults
    .venv/bin/python bench/routing.py --backends sqlite --adds 2000 --threads 4

PostgreSQL databases are created and dropped on YUTANG_BENCH_POSTGRES_URL's server."""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import common


def run_one(backend: str, adds: int, threads: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    with common.temp_database(backend, "bench_routing", workdir) as url:
        common.django_setup(url, workdir)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        from tests.factories import make_account, make_brand, make_staff, make_store
        from yutang.acquisition import services
        from yutang.core.models import CarrierAccount
        from yutang.customers import services as customers
        from yutang.customers.identities import normalize_identity

        brand = make_brand("bench")
        store = make_store(brand)
        pool = [make_account(brand, staff=make_staff(brand, "advisor", stores=[store]))
                for _ in range(5)]  # fmt: skip
        CarrierAccount.objects.filter(pk__in=[a.pk for a in pool]).update(daily_add_cap=None)
        channel = services.create_channel(actor=None, brand=brand, code="bench", name="b",
                                          type="package_card")  # fmt: skip
        code = services.create_live_code(
            actor=None, brand=brand, channel_id=channel.pk, name="bench", rule="round_robin",
            members=[{"account_id": a.pk} for a in pool],
        )  # fmt: skip
        at = dt.datetime(2026, 11, 2, 4, tzinfo=dt.UTC)
        rows = []
        with common.timer() as t:
            for _ in range(adds):
                services.assign_account(live_code=code, at=at)
        rows.append(["assign_account, 1 client", adds, f"{t.seconds:.1f}",
                     common.fmt_int(common.rate(adds, t.seconds))])  # fmt: skip

        per_thread = adds // threads
        errors: list[BaseException] = []

        def client() -> None:
            try:
                for _ in range(per_thread):
                    services.assign_account(live_code=code, at=at + dt.timedelta(days=1))
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connection.close()

        workers = [threading.Thread(target=client) for _ in range(threads)]
        with common.timer() as t:
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        done = per_thread * threads - len(errors)
        rows.append([f"assign_account, {threads} clients", done, f"{t.seconds:.1f}",
                     common.fmt_int(common.rate(done, t.seconds))])  # fmt: skip
        people = [
            customers.resolve_customer(
                brand=brand, identities=[normalize_identity("external", f"p{n}")], source="bench"
            ).customer
            for n in range(adds // 5)
        ]
        with common.timer() as t:
            for n, person in enumerate(people):
                services.record_contact_added(
                    brand=brand, account=pool[n % 5], customer=person, state=code.state,
                    occurred_at=at + dt.timedelta(seconds=n),
                )  # fmt: skip
        rows.append(["record_contact_added", len(people), f"{t.seconds:.1f}",
                     common.fmt_int(common.rate(len(people), t.seconds))])  # fmt: skip
        print(f"\n== {backend} ==")
        common.print_table(["step", "operations", "seconds", "per second"], rows)
        if errors:
            print(f"{len(errors)} client errors, first: {errors[0]!r}")
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--adds", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        run_one(args.only, args.adds, args.threads)
        return
    common.print_machine_info()
    for backend in args.backends.split(","):
        # One process per backend: Django is configured once per process.
        subprocess.run(
            [sys.executable, __file__, "--only", backend, "--adds", str(args.adds),
             "--threads", str(args.threads)],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
