"""How the platform's long-running management commands meet signals, in one place.

``solve_worker``, ``session_manager``, ``node_agent`` and ``run_platform`` each call
:func:`stop_on_signals` first thing: SIGTERM and SIGINT (Ctrl-C) set the returned event, which
their loops watch to stop cleanly, and SIGUSR2 dumps every thread's stack on stderr (a stuck
process shows where it is; the tests send it to a node that does not stop). Standard library only.
"""

from __future__ import annotations

import faulthandler
import signal
import threading


def stop_on_signals() -> threading.Event:
    """Install the handlers in this (main) thread; the event is set on SIGTERM or SIGINT."""
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    return stopping
