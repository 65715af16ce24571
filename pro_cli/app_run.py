"""``pro app run FOLDER``: an app's WebUI on the modeler's own machine, without a platform install.

One process serves, on 127.0.0.1, the page at ``/``, the WebUI's static files and the data
session's websocket at ``/ws``; the data session (:class:`~sessions.runtime.session_server.LiveSession`)
runs in this Python with the app imported from FOLDER. Its cases and solves go to a
:class:`~pro_cli.local_backend.LocalBackend`: local files and local solve processes, or solves
delegated to a platform (``--remote URL`` with an API key).

Another user of the machine, or a web page open in the browser, must not drive the session (it
may hold the user's API key): every request needs the token printed in the URL (kept as a
cookie after the first visit), the websocket's ``Origin`` must be this server, and the ``Host``
must be the loopback name it listens on (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import html
import http.cookies
import mimetypes
import os
import secrets
import sys
import webbrowser
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pro_cli
from sessions.runtime.api_client import ApiError
from sessions.runtime.loader import load_app
from sessions.runtime.manifest import Manifest, read_author_manifest, validate_manifest
from sessions.runtime.sdk import AppDefinition
from sessions.runtime.session_server import LiveSession, converse

from .local_backend import LocalBackend, platform_backend

COOKIE = "pro_local_token"
SOCKET_PATH = "/ws"
RELOAD_CHECK_FILES = ("*.py", "*.toml", "*.json")  # what a change of the app's code touches


class RunError(Exception):
    """The app cannot be served (a bad folder or manifest, an import error); the CLI prints it."""


def static_root() -> Path:
    """The WebUI's static files: in the wheel beside this package, in a checkout the repo's ``static/``."""
    packaged = Path(pro_cli.__file__).resolve().parent / "webui_static"
    return packaged if packaged.is_dir() else Path(pro_cli.__file__).resolve().parent.parent / "static"


def load_folder(folder: Path) -> tuple[Manifest, AppDefinition]:
    """The app of a modeler's folder (its ``manifest.toml``), imported into this process."""
    for name in [n for n, m in sys.modules.items() if _defined_in(m, folder)]:
        del sys.modules[name]  # a changed helper module of the app is imported afresh too
    try:
        manifest = validate_manifest(read_author_manifest(folder), require_interface=False)
        return manifest, load_app(folder, manifest)
    except Exception as exc:  # the app's own code may raise anything at import
        raise RunError(f"cannot load the app of {folder}: {type(exc).__name__}: {exc}") from None


def _defined_in(module: Any, folder: Path) -> bool:
    source = getattr(module, "__file__", None)
    return isinstance(source, str) and Path(source).resolve().is_relative_to(folder)


def code_fingerprint(folder: Path, skip: Path) -> tuple:
    """What changes when the modeler edits the app (the cases folder, if inside, aside)."""
    found = []
    for pattern in RELOAD_CHECK_FILES:
        for path in folder.rglob(pattern):
            if not path.is_relative_to(skip) and "__pycache__" not in path.parts:
                stat = path.stat()
                found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))


class LocalRunner:
    """The page, the static files and the websocket of one local data session."""

    def __init__(self, folder: Path, backend: LocalBackend, solves: str, cases_dir: Path):
        self.folder = folder
        self.backend = backend
        self.solves = solves
        self.cases_dir = cases_dir
        self.token = secrets.token_urlsafe(24)
        self.static = static_root().resolve()
        manifest, app = load_folder(folder)
        self.session = LiveSession(manifest, app, backend)
        self.fingerprint = code_fingerprint(folder, cases_dir)
        self.port = 0

    # ------------------------------------------------------------ reload on change
    async def reload_if_changed(self) -> None:
        """The app imported afresh when its files changed (at a page load or a reconnect)."""
        now = code_fingerprint(self.folder, self.cases_dir)
        if now == self.fingerprint:
            return
        self.fingerprint = now
        try:
            manifest, app = load_folder(self.folder)
        except RunError as exc:
            print(exc, file=sys.stderr, flush=True)
            await self.session.set_status(f"{exc} (the page still runs the code before the change)")
            return
        print(f"reloaded {self.folder}: its code changed", file=sys.stderr, flush=True)
        await self.session.replace_app(manifest, app)

    # ------------------------------------------------------------ HTTP
    async def process_request(self, connection: Any, request: Any) -> Any:
        """Every request: the checks, then the page or a static file; ``None`` lets the websocket through."""
        host = request.headers.get("Host", "")
        if host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return connection.respond(HTTPStatus.FORBIDDEN, "this server answers only at 127.0.0.1 or localhost\n")
        path, _, query = request.path.partition("?")
        given = dict(part.partition("=")[::2] for part in query.split("&") if part)
        if given.get("token") == self.token and path == "/":
            response = connection.respond(HTTPStatus.FOUND, "")
            response.headers["Location"] = "/"
            response.headers["Set-Cookie"] = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return response
        if not secrets.compare_digest(self._cookie(request), self.token):
            return connection.respond(
                HTTPStatus.FORBIDDEN, "open the address with its token that `pro app run` printed\n"
            )
        if path == SOCKET_PATH:
            if request.headers.get("Origin") != f"http://{host}":
                return connection.respond(HTTPStatus.FORBIDDEN, "the websocket is for this server's own page\n")
            await self.reload_if_changed()
            return None
        if path == "/":
            await self.reload_if_changed()
            return self._answer(connection, self.page().encode(), "text/html; charset=utf-8")
        if path.startswith("/static/"):
            return self._static(connection, path.removeprefix("/static/"))
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    @staticmethod
    def _cookie(request: Any) -> str:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(request.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            return ""
        return jar[COOKIE].value if COOKIE in jar else ""

    def _static(self, connection: Any, relative: str) -> Any:
        target = (self.static / relative).resolve()
        if not target.is_relative_to(self.static) or not target.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return self._answer(connection, target.read_bytes(), kind)

    @staticmethod
    def _answer(connection: Any, body: bytes, content_type: str) -> Any:
        response = connection.respond(HTTPStatus.OK, "")
        response.body = body
        del response.headers["Content-Type"], response.headers["Content-Length"]  # a multi-dict: set once
        response.headers["Content-Type"] = content_type
        response.headers["Content-Length"] = str(len(body))
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "connect-src 'self'; frame-ancestors 'none'"
        )
        return response

    def page(self) -> str:
        title = self.session.app.title or self.session.manifest.name
        page = PAGE.format(
            title=html.escape(title),
            version=html.escape(self.session.manifest.version),
            solves=html.escape(f"solves {self.solves}"),
            remote=' data-remote="1"' if self.backend.platform is not None else "",
            socket=SOCKET_PATH,
        )
        return page.replace("<!--shell-->", (self.static / "webui" / "shell.html").read_text())

    # ------------------------------------------------------------ serving
    async def serve(self, port: int, opened: asyncio.Future | None = None) -> None:
        from websockets.asyncio.server import serve as ws_serve

        async def handler(websocket: Any) -> None:
            await converse(self.session, websocket)

        async with ws_serve(
            handler,
            "127.0.0.1",
            port,
            process_request=self.process_request,
            max_size=16 * 1024 * 1024,
            max_queue=32,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            if opened is not None:
                opened.set_result(self.port)
            await asyncio.Future()

    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · local</title>
  <link rel="stylesheet" href="/static/css/portal.css">
  <link rel="stylesheet" href="/static/css/webui.css">
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body>
<main>
<div id="webui" class="webui" data-state="running" data-socket="{socket}"{remote}>
  <div class="webui-head">
    <h1 id="app-title">{title} <span class="muted">{version}</span></h1>
    <div class="webui-tools">
      <span class="badge" id="local-solves" title="where this page's solves run">{solves}</span>
      <button id="cases-button" type="button">Cases</button>
    </div>
  </div>
<!--shell-->
</div>
</main>
<script defer src="/static/vendor/chartjs/chart.umd.min.js"></script>
<script type="module" src="/static/js/webui.js"></script>
</body>
</html>
"""


def start(
    folder: Path,
    *,
    port: int = 0,
    solve: str | None = None,
    remote: str | None = None,
    credential: str = "",
    cases_dir: Path | None = None,
    storage_dir: Path | None = None,
    open_browser: bool = True,
) -> None:
    """``pro app run``: check what was asked, then serve the app until Ctrl+C."""
    folder = folder.resolve()
    if not (folder / "manifest.toml").is_file():
        raise RunError(f"{folder} is not an app folder: it has no manifest.toml")
    manifest, app = load_folder(folder)
    solve = solve or ("remote" if remote else "local")
    if solve == "remote" and not remote:
        raise RunError("--solve remote needs --remote URL (and an API key: --api-key or PRO_API_KEY)")
    platform, where = None, "on this machine"
    if remote:
        if not credential:
            raise RunError("--remote needs an API key: --api-key, PRO_API_KEY, or 'pro login' to that server")
        platform = platform_backend(remote, credential, manifest.name, None)
        try:
            published = platform.api.get(f"apps/{manifest.name}")
        except ApiError as exc:
            raise RunError(f"{remote}: app {manifest.name!r}: {exc}") from None
        where = f"on {remote} (version {published.get('latest_version') or 'latest'})"
    cases_dir = (cases_dir or default_cases_dir(manifest.name)).resolve()
    time_limits = {name: p.time_limit for name, p in app.procedures.items()}
    backend = LocalBackend(
        folder,
        cases_dir,
        time_limits=time_limits,
        storage_dir=storage_dir.resolve() if storage_dir else None,
        platform=platform,
        solve_remote=solve == "remote",
    )
    runner = LocalRunner(folder, backend, where if solve == "remote" else "on this machine", cases_dir)
    run(runner, port, open_browser)


def default_cases_dir(app: str) -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "pro" / "cases" / app


def run(runner: LocalRunner, port: int, open_browser: bool) -> None:
    """Serve until Ctrl+C; print the address (with its token) once listening."""

    async def main() -> None:
        opened: asyncio.Future = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(runner.serve(port, opened))
        await asyncio.wait([serving, opened], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # the port was taken: its error
        print(f"Serving {runner.session.app.title or runner.session.manifest.name} at {runner.address()}", flush=True)
        print(f"Solves run {runner.solves}; cases are kept in {runner.cases_dir}. Ctrl+C stops.", flush=True)
        if open_browser:
            webbrowser.open(runner.address())
        await serving

    asyncio.run(main())  # Ctrl+C ends it: the CLI exits with 130
