"""The websocket proxy: the browser's only way to its data session process."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import data_sessions as service
from . import selectors
from .models import DataSession, SessionState

logger = logging.getLogger("sessions.proxy")

WAIT_FOR_START = 20.0  # seconds a browser waits for a starting session before giving up
UPSTREAM_QUEUE = 32  # frames buffered from the session before reading pauses (backpressure)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_ADDRESS_NOT_ALLOWED = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_ENDED = 4410
CLOSE_UNREACHABLE = 4502


@database_sync_to_async
def _user_from_ticket(headers: list[tuple[bytes, bytes]]):
    from apps.accounts.api_keys import api_key_lookup
    from apps.accounts.services import ticket_lookup

    for name, value in headers:
        if name.lower() == b"authorization" and value.lower().startswith(b"bearer "):
            raw = value[7:].decode("latin-1").strip()
            credential = ticket_lookup(raw) or api_key_lookup(raw)
            # A data session's own ticket is for its calls to the API, not for reaching sessions.
            return credential.user if credential is not None and not credential.scope else None
    return None


@database_sync_to_async
def _address_refusal(address: str, user, session_id) -> str | None:
    from apps.accounts.network import AddressNotAllowed, network_enforce

    try:
        network_enforce(address=address, user=user, via=f"websocket to session {session_id}")
    except AddressNotAllowed as refusal:
        return str(refusal)
    return None


@database_sync_to_async
def _reload(session: DataSession) -> DataSession:
    session.refresh_from_db()
    return session


class SessionProxyConsumer(AsyncWebsocketConsumer):
    """Relays frames between one browser tab and the user's own session process.

    It authenticates the user (portal login, or a ticket for scripts), checks that the session
    is theirs and live, connects to the session process with the per-session secret, and
    relays frames both ways; a slow side slows the other instead of filling memory.
    """

    upstream = None
    relay_task: asyncio.Task | None = None
    session: DataSession | None = None

    async def connect(self) -> None:
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            user = await _user_from_ticket(self.scope.get("headers", []))
        if user is None:
            logger.warning("Refused websocket to session %s: not logged in (%s)", session_id, self._client())
            await self._record("session.attach", "", session_id, "denied", reason="not logged in")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        refusal = await _address_refusal(self._address(), user, session_id)
        if refusal is not None:
            logger.warning("Refused websocket to session %s: %s", session_id, refusal)
            await self.close(code=CLOSE_ADDRESS_NOT_ALLOWED)
            return
        session = await database_sync_to_async(selectors.session_owned)(user, session_id)
        if session is None:
            logger.warning(
                "Refused websocket to session %s for %s: not theirs or unknown (%s)",
                session_id,
                user.username,
                self._client(),
            )
            await self.close(code=CLOSE_NOT_FOUND)
            return
        session = await self._wait_running(session)
        if session.state != SessionState.RUNNING:
            logger.info("Refused websocket to session %s for %s: it is %s", session_id, user.username, session.state)
            await self.close(code=CLOSE_ENDED)
            return
        try:
            self.upstream = await self._connect_upstream(session)
        except Exception as exc:
            logger.warning("Session %s is unreachable: %s", session_id, exc)
            await self.close(code=CLOSE_UNREACHABLE)
            return
        self.session = session
        await self.accept()
        await self._record("session.attach", user.username, session_id, "success")
        await database_sync_to_async(service.session_attach)(session=session)
        self.relay_task = asyncio.ensure_future(self._relay_from_session())

    async def _record(self, kind: str, actor: str, session_id, outcome: str, **detail) -> None:
        from apps.accounts.events import security_event

        await database_sync_to_async(security_event)(
            kind, actor=actor, target=f"session {session_id}", outcome=outcome, source=self._address(), **detail
        )

    def _address(self) -> str:
        return (self.scope.get("client") or ("", 0))[0]

    def _client(self) -> str:
        return f"from {self._address() or '?'}"

    async def _wait_running(self, session: DataSession) -> DataSession:
        deadline = asyncio.get_running_loop().time() + WAIT_FOR_START
        while session.state == SessionState.STARTING and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            session = await _reload(session)
        return session

    async def _connect_upstream(self, session: DataSession):
        from websockets.asyncio.client import connect

        return await connect(
            f"ws://{session.host}:{session.port}/",
            additional_headers={"Authorization": f"Secret {session.secret}"},
            max_queue=UPSTREAM_QUEUE,
            max_size=16 * 1024 * 1024,
            open_timeout=10,
        )

    async def _relay_from_session(self) -> None:
        try:
            async for frame in self.upstream:
                if isinstance(frame, bytes):
                    await self.send(bytes_data=frame)
                else:
                    await self.send(text_data=frame)
        except Exception as exc:
            logger.info("Session %s connection ended: %s", self.session.pk, exc)
        await self.close(code=CLOSE_ENDED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.upstream is None:
            return
        # Awaiting the send holds back the next browser frame until the session has taken this one.
        await self.upstream.send(text_data if text_data is not None else bytes_data)

    async def disconnect(self, code: int) -> None:
        if self.relay_task is not None:
            self.relay_task.cancel()
        if self.upstream is not None:
            await self.upstream.close()
        if self.session is not None:
            await database_sync_to_async(service.session_detach)(session=self.session)
            self.session = None
