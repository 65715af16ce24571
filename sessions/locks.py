"""Cluster-wide locks around what is counted across nodes: a user's quota, the platform's seats.

On PostgreSQL each is a transaction-scoped advisory lock: a second node's claim or launch for the
same user (or any seat-taking one, for the seats) waits until the first commits, then counts
again. SQLite's writers queue up on their own (``BEGIN IMMEDIATE``), and SQLite is one machine.
"""

from __future__ import annotations

from django.db import connection

LOCKS = 0x50524F  # the platform's namespace of advisory locks
SEATS = -1  # the seats' lock in that namespace (users' locks are their ids, which are positive)


def _advisory_lock(key: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCKS, key])


def owner_lock(owner_id: int) -> None:
    """Inside a transaction: hold off the other claims, submits and launches of this user until it ends."""
    _advisory_lock(owner_id % 2**31)


def seats_lock() -> None:
    """Inside a transaction: hold off every other seat-taking claim or launch until it ends."""
    _advisory_lock(SEATS)
