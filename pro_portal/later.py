"""An answer given once something happened, without holding a request thread while it waits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.http import HttpResponse


class LaterResponse(HttpResponse):
    """An answer that a view gives once something happened (a task's job ended), without holding a
    request thread while it waits: the view returns it (only where ``request.pro_may_answer_later``),
    the middleware adds its headers as to any answer, then the handler awaits ``settle`` on the
    event loop, which gives the status and the JSON body.
    """

    def __init__(self, settle: Callable[[], Awaitable[tuple[int, bytes]]], **headers: str):
        super().__init__(content_type="application/json", headers=headers)
        self.settle = settle

    async def complete(self) -> None:
        self.status_code, self.content = await self.settle()
        self["Content-Length"] = str(len(self.content))
