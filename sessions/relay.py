"""The only ways out of a sandbox: relays from Unix sockets mounted into it to what it may reach.

A sandbox has no network of its own. Its node listens on Unix sockets (mounted read-only into
the sandbox) and relays each connection:

- a data session's API socket, byte for byte to ``PRO_INTERNAL_API_URL`` (the session
  authenticates there with its own scoped ticket);
- an app's network grants (:mod:`sessions.network`): a named ``host:port`` byte for byte, and,
  where outbound network is granted, an HTTP proxy that refuses the node's own addresses and
  the platform's services.

Nothing else of the node (its database, broker, other sessions) can be reached through them.
One event loop thread per process serves every relay of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_CONNECTIONS = 32  # open connections one sandbox may hold through one relay socket
OPEN_TIMEOUT = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


MAX_SOCKET_PATH = 100  # a Unix socket's path is at most 107 bytes


def socket_path(workdir: Path, label: str) -> Path:
    """Where the host side of a sandbox's relay listens: beside its working folder, or, when that
    path is too long for a Unix socket (a deep data folder), in a private folder under /tmp."""
    beside = workdir.with_name(f"{workdir.name}.{label}.sock")
    if len(os.fsencode(beside)) <= MAX_SOCKET_PATH:
        return beside
    folder = Path(tempfile.gettempdir()) / f"pro-sockets-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.is_symlink():
        raise PermissionError(f"{folder} is not this user's own folder")
    digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:16]
    return folder / f"{digest}.{label}.sock"


def url_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))


def forward_to(host: str, port: int) -> Handler:
    """A handler that relays a connection byte for byte to ``host:port``."""

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, port), OPEN_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            logger.warning("A relay cannot reach %s:%s: %s", host, port, exc)
            writer.close()
            return
        await splice(reader, writer, upstream)

    return forward


class Relays:
    """Unix sockets and their handlers, served by one event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="relays", daemon=True)
        self.thread.start()

    def open(self, path: Path, handler: Handler) -> None:
        asyncio.run_coroutine_threadsafe(self._open(str(path), handler), self.loop).result(OPEN_TIMEOUT)

    def close(self, path: Path) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(str(path)), self.loop).result(OPEN_TIMEOUT)
        Path(path).unlink(missing_ok=True)

    async def _open(self, path: str, handler: Handler) -> None:
        limit = asyncio.Semaphore(MAX_CONNECTIONS)

        async def bounded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if limit.locked():
                writer.close()
                return
            async with limit:
                await handler(reader, writer)

        Path(path).unlink(missing_ok=True)
        self.servers[path] = await asyncio.start_unix_server(bounded, path=path)
        os.chmod(path, 0o600)

    async def _close(self, path: str) -> None:
        server = self.servers.pop(path, None)
        if server is not None:
            server.close()


_relays: Relays | None = None
_lock = threading.Lock()


def relays() -> Relays:
    """This process's relays (started on first use)."""
    global _relays
    with _lock:
        if _relays is None:
            _relays = Relays()
        return _relays
