"""REST handler for the simulator's what-if (model only; nothing is written)."""

from __future__ import annotations

import dataclasses

from django.http import HttpRequest
from ninja import Router

from yutang.core.apiauth import actor
from yutang.simulator import services
from yutang.simulator.schemas import WhatIfIn, WhatIfOut

router = Router(tags=["simulator"])


@router.post("/simulator/whatif", response=WhatIfOut)
def whatif(request: HttpRequest, payload: WhatIfIn) -> object:
    """Run a scenario (and optionally a second one on the same seed) through the model and
    return the plan-vs-outcome numbers with the daily pool and GMV."""
    results = services.whatif(actor=actor(request), **payload.model_dump())
    return {
        "results": [
            {
                **dataclasses.asdict(r.outcome),
                "scenario": r.scenario.name,
                "seed": r.scenario.seed,
                "days": r.scenario.days,
                "scale": r.scenario.scale,
                "pool_by_day": [int(v) for v in r.series["pool"]],
                "gmv_fen_by_day": [int(v) for v in r.series["gmv_fen"]],
            }
            for r in results
        ]
    }
