"""The schedule ticker: a thread of each node's agent that fires due slots (docs/schedules.md).

Every node's ticker tries; the database makes each slot fire once (:mod:`apps.schedules.services`).
It sleeps until the earliest next slot, at most ``PRO_SCHEDULE_POLL_SECONDS``, so a slot fires
within milliseconds of its time and a new or resumed schedule is seen within the poll.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from .services import schedules_tick, seconds_to_next_slot

logger = logging.getLogger(__name__)


def ticker_run(stopping: threading.Event, node: str) -> None:
    poll = settings.PRO_SCHEDULE_POLL_SECONDS
    try:
        while not stopping.is_set():
            wait = poll
            try:
                schedules_tick(node=node)
                upcoming = seconds_to_next_slot()
                if upcoming is not None:
                    wait = min(poll, max(0.01, upcoming))
            except DatabaseError as exc:
                logger.warning("Node %s: the schedule tick failed (%s); trying again", node, exc)
                close_old_connections()
                connection.close()
            except Exception:
                logger.exception("Node %s: the schedule tick failed", node)
            stopping.wait(wait)
    finally:
        connection.close()


def ticker_start(stopping: threading.Event, node: str) -> threading.Thread | None:
    """Start this node's ticker in a daemon thread (unless PRO_SCHEDULE_TICKER is off)."""
    if not settings.PRO_SCHEDULE_TICKER:
        return None
    thread = threading.Thread(target=ticker_run, args=(stopping, node), name="schedule-ticker", daemon=True)
    thread.start()
    return thread
