"""HiGHS wired to a solve context: its log, progress, time limit and interrupts. No Django here.

h = highspy.Highs()
...build the model...
status = pro_sdk.run_highs(h, ctx)  # "Optimal", "Time limit reached", "Interrupted by user", ...
if pro_sdk.has_solution(h): ...read the solution (an interrupted MIP keeps its incumbent)...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import highspy

# HiGHS's value of primal_solution_status when a feasible point (optimal or incumbent) exists.
SOLUTION_FEASIBLE = 2


class SolveContextLike(Protocol):
    """What the helper uses of a solve context (the SDK's, or the solve runner's on a server)."""

    def log(self, line: str) -> None: ...

    def progress(
        self,
        fraction: float | None = None,
        message: str = "",
        objective: float | None = None,
        bound: float | None = None,
    ) -> None: ...

    def should_stop(self) -> bool: ...

    def remaining_time(self) -> float | None: ...

    def local_path(self, storage_path: str) -> Path: ...


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class HighsLink:
    """The callbacks that tie one ``Highs`` object to one context; :meth:`finish` after the run."""

    def __init__(self, h: highspy.Highs, ctx: SolveContextLike):
        self.h = h
        self.ctx = ctx
        self.error: BaseException | None = None
        self._pending = ""
        self._last_progress: tuple[Any, ...] | None = None

    # An exception must not cross HiGHS's C++ frames (it would abandon the solve half-way, with
    # its worker threads): remember it, stop the solve cleanly, and raise it in finish().
    def _guard(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        def guarded(event: Any) -> None:
            if self.error is not None:
                event.interrupt()
                return
            try:
                handler(event)
            except Exception as exc:
                self.error = exc
                event.interrupt()

        return guarded

    def on_log(self, event: Any) -> None:
        # HiGHS sends several lines at once or a line in pieces (IPX ends its lines separately).
        self._pending += event.message
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.ctx.log(line.rstrip())

    def on_interrupt(self, event: Any) -> None:
        if self.ctx.should_stop():
            event.interrupt()

    def on_mip_progress(self, event: Any) -> None:
        data = event.data_out
        objective, bound, gap = _finite(data.mip_primal_bound), _finite(data.mip_dual_bound), _finite(data.mip_gap)
        nodes = int(data.mip_node_count)
        # The improving-solution and logging callbacks often report the same state back to back.
        if (objective, bound, nodes) == self._last_progress:
            return
        self._last_progress = (objective, bound, nodes)
        fraction = None if gap is None else max(0.0, min(1.0, 1.0 - gap))
        message = f"nodes {nodes}" + (f", gap {gap:.2%}" if gap is not None else "")
        self.ctx.progress(fraction, message, objective=objective, bound=bound)

    def subscribe(self) -> None:
        h = self.h
        # The log goes to the context only; HiGHS's own printing would show every line twice.
        h.setOptionValue("log_to_console", False)
        self.set_time_limit()
        h.cbLogging.subscribe(self._guard(self.on_log))
        for callback in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            callback.subscribe(self._guard(self.on_interrupt))
        for callback in (h.cbMipImprovingSolution, h.cbMipLogging):
            callback.subscribe(self._guard(self.on_mip_progress))

    def set_time_limit(self) -> None:
        remaining = self.ctx.remaining_time()
        if remaining is not None:
            # A limit of 0 would make HiGHS stop before it even looks at the model.
            self.h.setOptionValue("time_limit", max(0.01, float(remaining)))

    def finish(self) -> None:
        """Log a last unterminated line and raise what a callback raised, if anything."""
        if self._pending.strip():
            self.ctx.log(self._pending.rstrip())
        self._pending = ""
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def attach(h: highspy.Highs, ctx: SolveContextLike) -> HighsLink:
    """Route HiGHS's log to ``ctx.log`` and MIP progress to ``ctx.progress``; obey ``ctx``'s stop and time.

    Attach before ``readModel`` to log what HiGHS says about the file. ``run`` attaches if needed;
    who calls ``h.run()`` directly calls the returned link's ``finish()`` afterwards.
    """
    link = getattr(h, "_pro_link", None)
    if link is not None and link.ctx is ctx:
        return link
    if link is not None:
        raise ValueError("this Highs object is already attached to another solve context")
    link = HighsLink(h, ctx)
    link.subscribe()
    h._pro_link = link  # type: ignore[attr-defined]  # found again by getattr above
    return link


def run(h: highspy.Highs, ctx: SolveContextLike) -> str:
    """Solve ``h`` under ``ctx``; return HiGHS's model status as text ("Optimal", "Infeasible", ...)."""
    link = attach(h, ctx)
    link.set_time_limit()  # the time spent building or reading the model is already gone
    h.run()
    link.finish()
    status = h.getModelStatus()
    # Once the job's time is up the context asks to stop too, and its interrupt may beat HiGHS's own clock.
    if status == highspy.HighsModelStatus.kInterrupt and ctx.remaining_time() == 0:
        status = highspy.HighsModelStatus.kTimeLimit
    return h.modelStatusToString(status)


def has_solution(h: highspy.Highs) -> bool:
    """Whether the solve left a primal solution to read (an interrupted MIP's incumbent counts)."""
    return h.getInfo().primal_solution_status == SOLUTION_FEASIBLE
