"""Wake-ups across the cluster: ``notify(topic, **payload)`` once the current transaction commits,
``subscribe(topic)`` to be told.

On PostgreSQL a notification is a ``NOTIFY pro_<topic>``: it is sent when the writer's transaction
commits (never for a rolled-back one) and reaches every process of every node through one
``LISTEN`` connection per process, held by a thread. With SQLite (one machine) it is a datagram
to every listening process's Unix socket in ``<data>/notify/``, sent after the commit. Either way
a subscriber keeps a slow safety poll: a notification is a hint that something changed, never
the only way to find out.

Topics: ``jobs`` (a job was queued, claimed, ended, or asked to stop), ``sessions`` (a session was
launched, stopped or changed state), ``nodes`` (a node's heartbeat, state or mastership) and
``tasks`` (a task was queued for django-q2: :mod:`pro_portal.task_broker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction

logger = logging.getLogger(__name__)

TOPICS = ("jobs", "sessions", "nodes", "tasks")
PREFIX = "pro_"
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
RESYNC = {"resync": True}
SEND_TIMEOUT = 0.05  # seconds a datagram waits for room in a listener's queue (SQLite)  # what subscribers get after the listener lost its connection


def notify(topic: str, **payload: Any) -> None:
    """Tell every subscriber of ``topic`` on every node, once the current transaction commits."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}")
    data = json.dumps(payload, default=str)
    if len(data) > MAX_PAYLOAD:
        data = json.dumps({key: value for key, value in payload.items() if key in ("id", "owner", "state")})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [PREFIX + topic, data])
    else:
        transaction.on_commit(lambda: _send_local(PREFIX + topic, data))


def _socket_folder() -> Path:
    return Path(settings.DATA_DIR) / "notify"


def _send_local(channel: str, data: str) -> None:
    """A datagram to every listening process of this machine (SQLite)."""
    folder = _socket_folder()
    message = f"{channel} {data}".encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        # A listener's queue holds only a few datagrams (net.unix.max_dgram_qlen): in a burst the
        # sender waits the moment its thread takes to drain it, and gives up on a stuck process.
        sender.settimeout(SEND_TIMEOUT)
        for path in folder.glob("*.sock") if folder.is_dir() else []:
            try:
                sender.sendto(message, str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)  # its process is gone
            except OSError as exc:  # a queue still full: that process catches up at its safety poll
                logger.debug("No notification to %s: %s", path, exc)


class Subscription:
    """One waiter's mailbox for one topic: ``wait(timeout)`` returns what arrived since the last wait."""

    def __init__(
        self,
        topic: str,
        on_message: Callable[[dict], None] | None = None,
        wants: Callable[[dict], bool] | None = None,
    ):
        self.topic = topic
        self.event = threading.Event()
        self.items: deque[dict] = deque(maxlen=1000)
        self.on_message = on_message
        self.wants = wants  # the messages worth waking for (all when None)

    def put(self, payload: dict) -> None:
        if self.wants is not None and not self.wants(payload):
            return
        self.items.append(payload)
        self.event.set()
        if self.on_message is not None:
            self.on_message(payload)

    def poke(self) -> None:
        """Wake the waiter without a message (e.g. its own work freed capacity)."""
        self.event.set()

    def wait(self, timeout: float) -> list[dict]:
        self.event.wait(timeout)
        self.event.clear()
        drained = []
        while self.items:
            drained.append(self.items.popleft())
        return drained

    def idle(self, stopping: threading.Event, timeout: float) -> list[dict]:
        """Wait until a message, a poke, ``stopping`` or ``timeout``; what arrived.

        Looks at ``stopping`` four times a second (no query): a node stops within that.
        """
        deadline = time.monotonic() + timeout
        while not stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.event.wait(min(left, 0.25)):
                break
        return self.wait(0)

    def close(self) -> None:
        hub().unsubscribe(self)


def async_subscription(topic: str, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> Subscription:
    """A subscription that hands each message to ``queue`` on ``loop`` as ``(topic, payload)``
    (for websocket consumers, which may follow several topics through one queue)."""

    def forward(payload: dict) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: its consumer is gone
            loop.call_soon_threadsafe(queue.put_nowait, (topic, payload))

    return hub().subscribe(topic, on_message=forward)


class Hub:
    """This process's subscribers, and on PostgreSQL the thread that listens for them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscribers: dict[str, list[Subscription]] = {topic: [] for topic in TOPICS}
        self.listener: threading.Thread | None = None
        self.listening = threading.Event()

    def subscribe(
        self,
        topic: str,
        on_message: Callable[[dict], None] | None = None,
        wants: Callable[[dict], bool] | None = None,
    ) -> Subscription:
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}")
        subscription = Subscription(topic, on_message, wants)
        with self.lock:
            self.subscribers[topic].append(subscription)
            if self.listener is None:
                postgres = connections["default"].vendor == "postgresql"
                target = self._listen if postgres else self._listen_local
                self.listener = threading.Thread(target=target, name="pro-notify", daemon=True)
                self.listener.start()
        if self.listener is not None:
            self.listening.wait(5)  # what is notified after subscribe() returns is not missed
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self.lock, contextlib.suppress(ValueError):
            self.subscribers[subscription.topic].remove(subscription)

    def dispatch(self, topic: str, payload: dict) -> None:
        with self.lock:
            waiting = list(self.subscribers.get(topic, []))
        for subscription in waiting:
            try:
                subscription.put(payload)
            except Exception:
                logger.exception("A subscriber of %s failed", topic)

    def _listen(self) -> None:
        import psycopg

        delay = 0.5
        while True:
            try:
                params = connections["default"].get_connection_params()
                with psycopg.connect(**params, autocommit=True) as listening:
                    for topic in TOPICS:
                        listening.execute(f"LISTEN {PREFIX}{topic}")
                    if delay > 0.5:  # reconnected: what happened meanwhile was missed
                        for topic in TOPICS:
                            self.dispatch(topic, RESYNC)
                    self.listening.set()
                    delay = 0.5
                    for message in listening.notifies():
                        self._deliver(message.channel, message.payload)
            except Exception as exc:  # the database went away: keep trying, the safety polls cover the gap
                logger.warning("Listening for notifications failed (%s); again in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _listen_local(self) -> None:
        folder = _socket_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}.sock"
        path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(str(path))
            self.listening.set()
            try:
                while True:
                    channel, _, raw = receiver.recv(65536).decode(errors="replace").partition(" ")
                    self._deliver(channel, raw)
            finally:
                path.unlink(missing_ok=True)

    def _deliver(self, channel: str, raw: str) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        self.dispatch(channel.removeprefix(PREFIX), payload if isinstance(payload, dict) else {})


_hub: Hub | None = None
_hub_lock = threading.Lock()


def hub() -> Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
        return _hub
