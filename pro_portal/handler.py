"""Django's HTTP side under ASGI, with each request served in one call on a thread of a fixed pool.

Django's own ASGI handler gives every request a thread of its own (``ThreadSensitiveContext``)
and runs the middleware in async mode wherever one middleware can: for this project's chain that
meant a new thread per request, a hop back to the event loop and out again around the view, and
a new database connection per request, since a connection belongs to its thread. Measured, those
were most of the time of a job's GET that scripts and pages poll.

:class:`PooledASGIHandler` runs the middleware and the view synchronously, as under WSGI, in one
call on a thread of a pool of ``PRO_WEB_THREADS`` threads. Each thread keeps its database
connection between requests (``CONN_MAX_AGE``), checked and replaced as Django does at the start
of a request. The event loop still reads bodies, sends answers (streamed ones too) and notices
clients that go away; websockets do not come here (channels routes them, see ``asgi.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

from .later import LaterResponse

_pool: ThreadPoolExecutor | None = None


def request_threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=settings.PRO_WEB_THREADS, thread_name_prefix="web-request")
    return _pool


class PooledASGIHandler(ASGIHandler):
    """See the module's docstring."""

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)  # one synchronous chain, called once per request

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP here, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        """Django's, but for where two things happen, each of which cost a hop to asgiref's own
        thread and back per request: the ``request_started`` signal is sent on the request's
        thread (``_respond``), and the response is closed (``request_finished``) on the event
        loop, where no database connection is open to check."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return
        answering = asyncio.create_task(self._answer(request, send))
        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait([disconnect, answering], return_when=asyncio.FIRST_COMPLETED)
        for task in (disconnect, answering):  # as Django: a client gone cancels the answer
            if not task.done():
                task.cancel()
            with contextlib.suppress(RequestAborted, asyncio.CancelledError):
                await task
        if answering.cancelled():
            signals.request_finished.send(sender=self.__class__)
        else:
            answering.result().close()
        body_file.close()

    async def _answer(self, request: HttpRequest, send) -> HttpResponseBase:
        response = await self.run_get_response(request)
        with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
            await self.send_response(response, send)
        return response

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        context = contextvars.copy_context()  # what Django keeps per request (URLconf, language) goes along
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(request_threads(), context.run, self._respond, request)
        if isinstance(response, LaterResponse):
            await response.complete()  # waits on the event loop: the request thread serves others meanwhile
        return response

    def _respond(self, request: HttpRequest) -> HttpResponseBase:
        signals.request_started.send(sender=self.__class__, scope=request.scope)  # type: ignore[attr-defined]
        close_old_connections()  # this thread's connection: renewed when broken or too old
        request.pro_may_answer_later = True  # type: ignore[attr-defined]  # see LaterResponse
        return self.get_response(request)


def get_asgi_application() -> PooledASGIHandler:
    import django

    django.setup(set_prefix=False)
    return PooledASGIHandler()
