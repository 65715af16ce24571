"""Live pages: the portal's lists learn over one websocket that something they show has changed.

A page opens ``/ws/live/?topics=jobs,sessions`` (``&job=<id>`` for one job's page) and is sent
``{"changes": [...]}`` frames, each change the notification's own small payload (a job's or a
session's id and state, whether its log or progress moved, a node's name). The page then fetches
what changed through the API or the page itself, with the caller's own permissions, so nothing
here decides what a user may read beyond which changes they are told of: their own jobs and
sessions, everyone's for an admin, nodes for admins only.

While nothing changes a page costs one idle socket and no query. The changes of a short burst
reach a page in one frame (``COALESCE_SECONDS``), so a burst of a thousand jobs does not become a
thousand fetches. ``{"resync": true}`` tells the page that changes may have been missed (the
listener lost its database connection) and it should fetch everything once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from pro_portal import notify

logger = logging.getLogger("portal.live")

COALESCE_SECONDS = 0.25  # changes within this window after the first reach a page in one frame
ADMIN_TOPICS = {"nodes"}
PAGE_TOPICS = {"jobs", "sessions", "nodes"}
MAX_CHANGES_PER_FRAME = 200  # past this a page is told to fetch everything instead

CLOSE_UNAUTHENTICATED = 4401
CLOSE_ADDRESS_NOT_ALLOWED = 4403
CLOSE_BAD_REQUEST = 4400


def change_visible(payload: dict[str, Any], *, user_id: int, is_admin: bool, job: int | None) -> bool:
    """Whether one notification concerns the page of this user (and of this job, when given)."""
    if payload.get("resync"):
        return True
    if job is not None and payload.get("id") != job:
        return False
    if is_admin:
        return True
    return payload.get("owner") == user_id


def page_subscription(query_string: bytes, *, is_admin: bool) -> tuple[set[str], int | None]:
    """The topics (and the one job) a page asks for; ``ValueError`` with the reason when it may not."""
    query = parse_qs(query_string.decode("latin-1"))
    topics = {topic for raw in query.get("topics", []) for topic in raw.split(",") if topic}
    if not topics or not topics <= PAGE_TOPICS:
        raise ValueError(f"topics must be some of {', '.join(sorted(PAGE_TOPICS))}")
    if topics & ADMIN_TOPICS and not is_admin:
        raise ValueError("only admins follow the nodes")
    job = None
    if query.get("job"):
        try:
            job = int(query["job"][0])
        except ValueError:
            raise ValueError("job must be a job's number") from None
    return topics, job


@database_sync_to_async
def _address_refusal(address: str, user) -> str | None:
    from apps.accounts.network import AddressNotAllowed, network_enforce

    try:
        network_enforce(address=address, user=user, via="live page updates")
    except AddressNotAllowed as refusal:
        return str(refusal)
    return None


class LiveUpdatesConsumer(AsyncWebsocketConsumer):
    """One open portal page: tells it which of its jobs, sessions or nodes changed."""

    subscriptions: list[notify.Subscription]
    forward_task: asyncio.Task | None = None

    async def connect(self) -> None:
        self.subscriptions = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        address = (self.scope.get("client") or ("", 0))[0]
        if await _address_refusal(address, user) is not None:
            await self.close(code=CLOSE_ADDRESS_NOT_ALLOWED)
            return
        try:
            topics, job = page_subscription(self.scope.get("query_string", b""), is_admin=user.is_superuser)
        except ValueError as exc:
            logger.info("Refused live updates for %s: %s", user.username, exc)
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        # The first subscription of a process waits for its listener to start: not on the event loop.
        for topic in sorted(topics):
            self.subscriptions.append(await asyncio.to_thread(notify.async_subscription, topic, loop, queue))
        await self.accept()
        self.forward_task = asyncio.ensure_future(
            self._forward(queue, user_id=user.pk, is_admin=user.is_superuser, job=job)
        )

    async def _forward(self, queue: asyncio.Queue, *, user_id: int, is_admin: bool, job: int | None) -> None:
        while True:
            changes = [await queue.get()]
            await asyncio.sleep(COALESCE_SECONDS)
            while not queue.empty():
                changes.append(queue.get_nowait())
            frame = self._frame(changes, user_id=user_id, is_admin=is_admin, job=job)
            if frame is not None:
                await self.send_json(frame)

    def _frame(self, changes: list[tuple[str, dict]], **who: Any) -> dict | None:
        visible = [{"topic": topic, **payload} for topic, payload in changes if change_visible(payload, **who)]
        if not visible:
            return None
        if any(change.get("resync") for change in visible) or len(visible) > MAX_CHANGES_PER_FRAME:
            return {"resync": True}
        for change in visible:
            change.pop("owner", None)
        return {"changes": visible}

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=json.dumps(content, default=str))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A page has nothing to say; what it sends is ignored."""

    async def disconnect(self, code: int) -> None:
        if self.forward_task is not None:
            self.forward_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.forward_task
        for subscription in getattr(self, "subscriptions", []):
            subscription.close()
