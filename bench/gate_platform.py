"""Micro-benchmark of the policy gate's decision (`gate.evaluate`), this tree's gate against
another revision's, on the same synthetic contexts, in CPU seconds: what counting WeCom
service messages against the platform limit (issue 4 audit, item 6) costs per decision.

    .venv/bin/python bench/gate_platform.py [--rev main] [--customers 50000]

50,000 customers with 0–5 WeCom touches each over the last 30 days (service and marketing),
the default WeCom limit (as many a month as the month has days), quiet hours off; the best of
5 runs over all candidates, for a queue of marketing only and one half service messages.
Prints µs per decision for both and the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yutang.settings")
os.environ.setdefault("YUTANG_DATABASE_URL", "")

import django  # noqa: E402

django.setup()

from yutang.messaging import gate as this_gate  # noqa: E402
from yutang.messaging.policy import PolicySettings  # noqa: E402

SH = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)


def gate_at(rev: str, workdir: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:yutang/messaging/gate.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = workdir / "other_gate.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("other_gate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_gate"] = module
    spec.loader.exec_module(module)
    return module


def contexts(g: ModuleType, n: int, service_share: float) -> tuple[object, list[object]]:
    rng = random.Random(7)
    policy = PolicySettings(quiet_hours_enabled=False, service_per_day=50)
    ctx = g.GateContext(now=NOW, tz=SH, policy=policy)
    fields_ = getattr(g.Touch, "_fields", None) or g.Touch.__dataclass_fields__
    with_cause = "cause" in fields_
    candidates = []
    for cid in range(n):
        ctx.recipients[(cid, 1)] = "x"
        ctx.consents[(cid, "marketing", "")] = "granted"
        for _ in range(rng.randint(0, 5)):
            at = NOW - dt.timedelta(hours=rng.randint(1, 24 * 30))
            fields = [at, rng.choice(["service", "marketing"]), "wecom", f"h{rng.randint(0, 9)}"]
            ctx.touches[cid].append(g.Touch(*fields, "journey") if with_cause else g.Touch(*fields))
        kind = "service" if rng.random() < service_share else "marketing"
        candidates.append(g.Candidate(cid, 1, "wecom", kind, "new", cause="journey"))
    return ctx, candidates


def per_decision(g: ModuleType, n: int, service_share: float) -> float:
    ctx, candidates = contexts(g, n, service_share)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for c in candidates:
            g.evaluate(c, ctx)
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="main", help="the revision to compare with")
    parser.add_argument("--customers", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = gate_at(args.rev, Path(tmp))
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        for share in (0.0, 0.5):
            theirs = per_decision(other, args.customers, share)
            ours = per_decision(this_gate, args.customers, share)
            print(
                f"service share {share:.1f}: {args.rev} {theirs:.2f} µs/decision, "
                f"this tree {ours:.2f} µs/decision ({ours / theirs - 1:+.0%})"
            )
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
