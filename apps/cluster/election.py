"""Master election: a lease row in the admin database, claimed and renewed with conditional updates.

Why a lease row and not a PostgreSQL advisory lock: an advisory lock lives as long as its
connection, so a master that is frozen (stopped, swapping, cut off behind a proxy that keeps the
TCP connection open) keeps the lock and the cluster has no working master; a lease simply
expires. A lease also works on SQLite (the embedded default, one node), needs no connection held
open, and carries a term, the fencing token that every master action checks.

The timing, for a heartbeat interval ``I``: the lease lasts ``1.5 I`` and every node's agent
tries to take or renew it every ``I / 2``. A dead master's lease runs out at most ``1.5 I``
after its last renewal, and another node takes it within ``I / 2`` after that: a new master
within two intervals. A master that cannot renew (the database is out of reach, or another node
holds the lease) stops acting as master as soon as its own clock says the lease it last renewed
may have run out (a quarter interval early, against clock drift between nodes), before another
node can take it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from pro_portal.notify import notify

from .models import MASTER_LEASE, MasterLease

logger = logging.getLogger(__name__)

LEASE = MASTER_LEASE


def lease_seconds() -> float:
    return 1.5 * settings.PRO_HEARTBEAT_SECONDS


def _limit_waits(*, lock_seconds: float, idle_seconds: float | None = None) -> None:
    """On PostgreSQL, bound how long this transaction waits for a lock, and may sit idle.

    A master frozen inside its fenced transaction (stopped, or cut off with its connection left
    open) holds the lease row's lock: without these bounds a takeover would wait for it for as
    long as the freeze lasts. The server ends such a transaction after ``idle_seconds``, which
    releases its locks and rolls its changes back; a claim that meets a lock gives up after
    ``lock_seconds`` and tries again at the next tick.
    """
    if connection.vendor != "postgresql":
        return  # SQLite: one machine, whose lock waits are bounded by its busy timeout
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = %s", [f"{max(50, int(lock_seconds * 1000))}ms"])
        if idle_seconds is not None:
            cursor.execute(
                "SET LOCAL idle_in_transaction_session_timeout = %s", [f"{max(100, int(idle_seconds * 1000))}ms"]
            )


def lease_claim(*, node: str, now: datetime | None = None) -> int | None:
    """Renew this node's lease, or take the lease if it is free or has run out.

    Returns the term this node holds the lease in, or ``None`` when another node holds it.
    Raises ``DatabaseError`` when the lease row stays locked (a master frozen mid-action).
    """
    now = now or timezone.now()
    expires = now + timedelta(seconds=lease_seconds())
    MasterLease.objects.get_or_create(name=LEASE, defaults={"expires_at": now})
    lease = MasterLease.objects.filter(name=LEASE)
    with transaction.atomic():
        _limit_waits(lock_seconds=settings.PRO_HEARTBEAT_SECONDS / 4)
        renewed = lease.filter(holder=node, expires_at__gt=now).update(expires_at=expires, renewed_at=now)
        taken = renewed or lease.filter(Q(holder="") | Q(expires_at__lte=now)).update(
            holder=node, term=F("term") + 1, acquired_at=now, renewed_at=now, expires_at=expires
        )
        if taken and not renewed:
            notify("nodes", id=node, master=True)
        return lease.values_list("term", flat=True).get() if taken else None


def lease_release(*, node: str) -> bool:
    """Give the lease up (a clean stop), so that another node need not wait for it to run out."""
    return bool(MasterLease.objects.filter(name=LEASE, holder=node).update(holder="", expires_at=timezone.now()))


def lease_held(*, node: str, term: int, now: datetime | None = None) -> bool:
    """Inside a transaction: lock the lease row and check it is still this node's, in this term.

    A master's actions run in the same transaction, so a takeover waits for them to commit, and
    they do not happen at all once another node holds the lease.
    """
    now = now or timezone.now()
    # Frozen for half an interval inside its actions, a master is cut off by the database.
    interval = settings.PRO_HEARTBEAT_SECONDS
    _limit_waits(lock_seconds=interval / 4, idle_seconds=interval / 2)
    return (
        MasterLease.objects.select_for_update().filter(name=LEASE, holder=node, term=term, expires_at__gt=now).exists()
    )


@dataclass
class Candidate:
    """This node's side of the election: whether it is master now, by its own clock."""

    node: str
    term: int | None = None
    valid_until: float = 0.0  # time.monotonic() after which this node may no longer act as master

    @property
    def is_master(self) -> bool:
        return self.term is not None and time.monotonic() < self.valid_until

    def campaign(self) -> bool:
        """Take or renew the lease; return whether this node is master now."""
        asked_at = time.monotonic()
        was = self.term
        try:
            term = lease_claim(node=self.node)
        except DatabaseError as exc:
            logger.warning("Node %s could not renew or take the master lease: %s", self.node, exc)
            connection.close()  # a fresh connection next time, whatever state this one is in
            term = was  # still master until its own clock says the lease may have run out
        else:
            if term is not None:
                # Counted from before the request: the lease the database stored runs out later than this.
                self.valid_until = asked_at + lease_seconds() - settings.PRO_HEARTBEAT_SECONDS / 4
        self.term = term
        if not self.is_master:
            if was is not None:
                logger.warning("Node %s is no longer master (term %s)", self.node, was)
            self.term = None
            return False
        if term != was:
            # Taking the lease is the election working as it should (a single node takes it at every
            # start): information. Losing one held before is what an operator needs to hear about.
            logger.info("Node %s is master now (term %s)", self.node, term)
        return True

    def act(self, action, *args, **kwargs):
        """Run a master action in a transaction fenced by the lease; ``None`` when no longer master."""
        if not self.is_master:
            return None
        with transaction.atomic():
            if not lease_held(node=self.node, term=self.term):
                self.term = None
                logger.warning("Node %s lost the master lease; it does not act as master", self.node)
                return None
            return action(*args, **kwargs)

    def resign(self) -> None:
        if self.term is not None:
            lease_release(node=self.node)
            logger.info("Node %s gave up the master lease (term %s)", self.node, self.term)
        self.term = None
