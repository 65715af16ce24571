"""HiGHS wired to a solve context: its log, progress, time limit and interrupts. No Django here.

h = highspy.Highs()
...build the model...
status = pro_sdk.run_highs(h, ctx)   # "Optimal", "Time limit reached", "Interrupted by user", ...
"""

from __future__ import annotations

import math
from typing import Any

import highspy


def attach(h: highspy.Highs, ctx: Any) -> None:
    """Route HiGHS's log to ``ctx.log``, its MIP progress to ``ctx.progress``, and obey ``ctx``'s stop."""
    h.setOptionValue("log_to_console", False)
    remaining = ctx.remaining_time()
    if remaining is not None:
        h.setOptionValue("time_limit", max(0.01, float(remaining)))

    def on_log(event) -> None:
        for line in event.message.rstrip("\n").split("\n"):
            ctx.log(line)

    def on_interrupt(event) -> None:
        if ctx.should_stop():
            event.interrupt()

    def on_mip_progress(event) -> None:
        data = event.data_out
        objective, bound = data.mip_primal_bound, data.mip_dual_bound
        if not math.isfinite(objective):
            objective = None
        if not math.isfinite(bound):
            bound = None
        gap = data.mip_gap if math.isfinite(data.mip_gap) else None
        fraction = None if gap is None else max(0.0, min(1.0, 1.0 - gap))
        message = f"nodes {int(data.mip_node_count)}" + (f", gap {gap:.2%}" if gap is not None else "")
        ctx.progress(fraction, message, objective=objective, bound=bound)

    h.cbLogging.subscribe(on_log)
    for callback in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
        callback.subscribe(on_interrupt)
    h.cbMipImprovingSolution.subscribe(on_mip_progress)
    h.cbMipLogging.subscribe(on_mip_progress)


def run(h: highspy.Highs, ctx: Any) -> str:
    """Solve with ``attach``; return HiGHS's model status as text."""
    attach(h, ctx)
    h.run()
    return h.modelStatusToString(h.getModelStatus())


def has_solution(h: highspy.Highs) -> bool:
    """Whether the solve left a primal solution to read (an incumbent counts)."""
    return h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
