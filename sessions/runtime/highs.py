"""HiGHS wired to a solve context: its log, progress, time limit and interrupts. No Django here.

h = highspy.Highs()
...build the model...
status = pro_sdk.run_highs(h, ctx)  # "Optimal", "Time limit reached", "Interrupted by user", ...
if pro_sdk.has_solution(h): ...read the solution (an interrupted MIP keeps its incumbent)...

What it costs a solve. HiGHS asks its interrupt callbacks at every simplex iteration, IPM step
and MIP check, and each call crosses into Python (the GIL, pybind11's wrappers, highspy's
dispatch): 2 to 6 us a call, a tenth or more of the time of an LP of short iterations (6000
iterations of 15 us). So during :func:`run` these callbacks are off, and a ticker thread turns
them on every ``CHECK_EVERY`` seconds for one check, which turns them off again: Python is
entered some 20 times a second whatever the solver's pace, and a stop (``ctx.should_stop()``;
the job's SIGUSR1, whose Python handler runs in that check) still reaches HiGHS within about
``CHECK_EVERY``. MIP progress goes to the context at most every ``PROGRESS_EVERY`` seconds, its
last state always: each report is a message to the worker.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import highspy

# HiGHS's value of primal_solution_status when a feasible point (optimal or incumbent) exists.
SOLUTION_FEASIBLE = 2
# Seconds between two interrupt checks during run(): how late a stop may reach HiGHS.
CHECK_EVERY = 0.05
# Seconds between two progress reports of a MIP (a few a second are plenty for the chart).
PROGRESS_EVERY = 0.25

_Type = highspy.cb.HighsCallbackType
INTERRUPT_TYPES = (_Type.kCallbackSimplexInterrupt, _Type.kCallbackIpmInterrupt, _Type.kCallbackMipInterrupt)


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
        self._unreported: tuple[float | None, str, float | None, float | None] | None = None
        self._report_after = 0.0  # time.monotonic() from which the next progress report may go
        self._ticking = False  # run() drives the interrupt checks with its ticker
        self._on_interrupt = self._guard(self.on_interrupt)
        self._types: list[Any] = []  # the interrupt callbacks the ticker switches

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
            event.interrupt()  # the checks stay on: HiGHS may ask again on its way out
            return
        if self._ticking:
            # This was the ticker's one check: off until its next tick. The tick is also when a
            # held-back progress report falls due while HiGHS reports nothing new.
            self.set_interrupt_checks(False)
            self.report_progress()

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
        self._unreported = (fraction, message, objective, bound)
        self.report_progress()

    def report_progress(self, now: bool = False) -> None:
        """Pass the latest MIP state to the context, unless one went less than ``PROGRESS_EVERY`` ago.

        Each report is a message to the worker (and a point of the job's chart): a burst of
        incumbents makes one report of the last of them, sent by the next report or tick, or by
        :meth:`finish`.
        """
        if self._unreported is None:
            return
        moment = time.monotonic()
        if not now and moment < self._report_after:
            return
        fraction, message, objective, bound = self._unreported
        self._unreported = None
        self._report_after = moment + PROGRESS_EVERY
        self.ctx.progress(fraction, message, objective=objective, bound=bound)

    def subscribe(self) -> None:
        h = self.h
        # The log goes to the context only; HiGHS's own printing would show every line twice.
        h.setOptionValue("log_to_console", False)
        self.set_time_limit()
        h.cbLogging.subscribe(self._guard(self.on_log))
        # Checked at every iteration outside run() (for who calls h.run() directly); run() makes
        # them periodic.
        for callback in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            callback.subscribe(self._on_interrupt)
        for callback in (h.cbMipImprovingSolution, h.cbMipLogging):
            callback.subscribe(self._guard(self.on_mip_progress))

    def set_time_limit(self) -> None:
        remaining = self.ctx.remaining_time()
        if remaining is not None:
            # A limit of 0 would make HiGHS stop before it even looks at the model.
            self.h.setOptionValue("time_limit", max(0.01, float(remaining)))

    def _own_interrupt_types(self) -> list[Any]:
        """The interrupt callbacks that call only this link (an app's own interrupt handler stays on)."""
        return [t for t in INTERRUPT_TYPES if self.h.callbacks[int(t)].callbacks == [self._on_interrupt]]

    def set_interrupt_checks(self, on: bool) -> None:
        # Flips HiGHS's flags of these callbacks only (their subscriptions stay). Called from the
        # ticker thread while the solver runs: the solver only reads the flags, and every writer
        # holds the GIL (the ticker, and the callback that turns them off), so no write is lost.
        switch = self.h.startCallback if on else self.h.stopCallback
        for callback_type in self._types:
            switch(callback_type)

    @contextlib.contextmanager
    def ticking(self) -> Iterator[None]:
        """Around ``h.run()``: interrupt checks every ``CHECK_EVERY`` s instead of every iteration."""
        self._types = self._own_interrupt_types()
        done = threading.Event()

        def tick() -> None:
            while not done.wait(CHECK_EVERY):
                self.set_interrupt_checks(True)

        self.set_interrupt_checks(False)
        self._ticking = True
        ticker = threading.Thread(target=tick, name="highs-interrupt-ticker", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            self._ticking = False
            self.set_interrupt_checks(True)  # as attach() left them, for a later direct h.run()

    def finish(self) -> None:
        """Log a last unterminated line, report the last progress, raise what a callback raised, if anything."""
        if self._pending.strip():
            self.ctx.log(self._pending.rstrip())
        self._pending = ""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.report_progress(now=True)


def attach(h: highspy.Highs, ctx: SolveContextLike) -> HighsLink:
    """Route HiGHS's log to ``ctx.log`` and MIP progress to ``ctx.progress``; obey ``ctx``'s stop and time.

    Attach before ``readModel`` to log what HiGHS says about the file. ``run`` attaches if needed;
    who calls ``h.run()`` directly calls the returned link's ``finish()`` afterwards (the stop is
    then checked at every iteration, which costs the solve time that ``run`` saves).
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
    with link.ticking():
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
