"""A warm interpreter's head start: what it imports while it waits for its order. No Django here.

The session pool and the solve pool start their sandboxes ahead of need, each of them for one
data session or one job; what they import before the order arrives is what the app then does
not wait for.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

READY = "READY"  # the line a warm interpreter prints once it waits for its order


def warm_imports(*names: str) -> None:
    """What every app needs (numpy, HiGHS where the runtime has it, the SDK), and ``names`` besides."""
    import numpy  # noqa: F401

    for name in ("highspy", "pro_sdk", *names):
        with contextlib.suppress(ImportError):  # a runtime without HiGHS still runs apps
            importlib.import_module(name)


def preload(listing: Path) -> None:
    """Import what the apps of this environment import (recorded at their verification)."""
    for name in listing.read_text().split():
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def wait_for_order() -> str:
    """Say ready on stdout and wait for the order, one line of stdin ("" when stdin closed)."""
    print(READY, flush=True)
    return sys.stdin.readline()
