"""The plan-vs-outcome table (text) and the self-contained HTML report (ECharts inlined)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from yutang.simulator.services import Outcome, SimulationResult

ECHARTS = Path(__file__).resolve().parent.parent / "console/static/vendor/echarts/echarts.min.js"


def _yuan(fen: float) -> str:
    return f"¥{fen / 100:,.0f}"


def rows(outcome: Outcome) -> list[tuple[str, str, str]]:
    """(metric, plan, outcome) rows."""
    o = outcome
    return [
        ("pool (contacts held)", f"{o.target_pool:,}" if o.target_pool else "—", f"{o.pool:,}"),
        ("adds", "", f"{o.adds:,}"),
        ("  of which referred", "", f"{o.referral_adds:,}"),
        ("deletions", "", f"{o.deletions:,}"),
        ("monthly deletion rate", "", f"{o.monthly_deletion_rate:.1%}"),
        ("first-order rate (3 days)", "", f"{o.first_order_rate:.1%}"),
        ("repurchase rate", "", f"{o.repurchase_rate:.1%}"),
        ("orders", "", f"{o.orders:,}"),
        ("GMV", _yuan(o.target_gmv_fen) if o.target_gmv_fen else "—", _yuan(o.gmv_fen)),
        ("refunds", "", _yuan(o.refund_fen)),
        ("cost", "", _yuan(o.cost_fen)),
        ("cost per kept contact", "", f"¥{o.cost_per_kept_contact_fen / 100:,.2f}"),
        ("marketing touches blocked by policy", "", f"{o.blocked_marketing:,}"),
    ]


def table(result: SimulationResult) -> str:
    lines = [f"{'metric':<38}{'plan':>16}{'outcome':>16}"]
    lines += [f"{m:<38}{p:>16}{v:>16}" for m, p, v in rows(result.outcome)]
    return "\n".join(lines)


def comparison(a: SimulationResult, b: SimulationResult) -> str:
    name_a, name_b = a.scenario.name, b.scenario.name
    width = max(16, len(name_a) + 2, len(name_b) + 2)
    lines = [f"{'metric':<38}{name_a:>{width}}{name_b:>{width}}{'difference':>16}"]
    for (m, _, va), (_, _, vb), diff in zip(
        rows(a.outcome), rows(b.outcome), differences(a.outcome, b.outcome), strict=True
    ):
        lines.append(f"{m:<38}{va:>{width}}{vb:>{width}}{diff:>16}")
    return "\n".join(lines)


def differences(a: Outcome, b: Outcome) -> list[str]:
    def num(x: float, y: float) -> str:
        return f"{x - y:+,.0f}"

    def pct(x: float, y: float) -> str:
        return f"{(x - y) * 100:+.1f} pt"

    def money(x: float, y: float) -> str:
        return f"{'+' if x >= y else '-'}¥{abs(x - y) / 100:,.0f}"

    return [
        num(a.pool, b.pool),
        num(a.adds, b.adds),
        num(a.referral_adds, b.referral_adds),
        num(a.deletions, b.deletions),
        pct(a.monthly_deletion_rate, b.monthly_deletion_rate),
        pct(a.first_order_rate, b.first_order_rate),
        pct(a.repurchase_rate, b.repurchase_rate),
        num(a.orders, b.orders),
        money(a.gmv_fen, b.gmv_fen),
        money(a.refund_fen, b.refund_fen),
        money(a.cost_fen, b.cost_fen),
        money(a.cost_per_kept_contact_fen, b.cost_per_kept_contact_fen),
        num(a.blocked_marketing, b.blocked_marketing),
    ]


def _cumulative(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(round(total, 2))
    return out


def _charts(results: list[SimulationResult]) -> list[dict[str, object]]:
    dates = [d.isoformat() for d in results[0].dates]

    def chart(title: str, pick: str, cumulative: bool = False, scale: float = 1.0) -> dict:
        series = []
        for r in results:
            values = [v / scale for v in r.series[pick]]
            series.append(
                {
                    "name": r.scenario.name,
                    "type": "line",
                    "showSymbol": False,
                    "data": _cumulative(values) if cumulative else values,
                }
            )
        return {
            "title": {"text": title},
            "tooltip": {"trigger": "axis"},
            "legend": {"top": 28},
            "grid": {"top": 64, "left": 70, "right": 24},
            "xAxis": {"type": "category", "data": dates},
            "yAxis": {"type": "value"},
            "series": series,
        }

    return [
        chart("Pool (contacts held)", "pool"),
        chart("Adds per day", "adds"),
        chart("Deletions per day", "deletions"),
        chart("Cumulative GMV (yuan)", "gmv_fen", cumulative=True, scale=100),
        chart("Orders per day", "orders"),
        chart("Marketing touches per day", "marketing_touches"),
        chart("Group members", "group_members"),
    ]


def write_html(path: Path, results: list[SimulationResult]) -> None:
    """One file that opens offline: the vendored ECharts is inlined."""
    script = ECHARTS.read_text(encoding="utf-8").replace("</script", "<\\/script")
    tables = ""
    for r in results:
        body = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{html.escape(p)}</td><td>{html.escape(v)}</td></tr>"
            for m, p, v in rows(r.outcome)
        )
        s = r.scenario
        tables += (
            f"<h2>{html.escape(s.name)}</h2><p>{html.escape(s.description)}</p>"
            f"<p>seed {s.seed}, scale {s.scale}, {s.days} days from {s.start_date}</p>"
            f"<table><tr><th>metric</th><th>plan</th><th>outcome</th></tr>{body}</table>"
        )
    if len(results) == 2:
        diff = html.escape(comparison(results[0], results[1]))
        tables += f"<h2>Comparison</h2><pre>{diff}</pre>"
    charts = json.dumps(_charts(results), ensure_ascii=False).replace("</", "<\\/")
    divs = "".join(
        f'<div id="chart{i}" style="height:320px;margin:16px 0"></div>'
        for i in range(len(_charts(results)))
    )
    title = " vs ".join(html.escape(r.scenario.name) for r in results)
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Yutang simulation: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style>
<script>{script}</script></head>
<body><h1>Yutang simulation: {title}</h1>{tables}{divs}
<script>
const charts = {charts};
charts.forEach((option, i) => echarts.init(document.getElementById('chart' + i)).setOption(option));
</script></body></html>
""",
        encoding="utf-8",
    )
