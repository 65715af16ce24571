"""The data session process: one user's live copy of one app, served over a websocket. No Django.

    python -m sessions.runtime.session_server [--pool]

In its sandbox it has no network of its own: it serves on the listening socket its node made
for it (``PRO_LISTEN_FD``, on the node's ``PRO_NODE_ADDRESS``) and reaches the platform's API
through the Unix socket ``api_socket``. Unsandboxed (``PRO_SANDBOX=off``, or run by hand) it
listens on ``host`` and a port of its choosing. It accepts a connection only with
the per-session secret (``Authorization: Secret <secret>``), which the platform's websocket
proxy holds and the browser never sees. With ``--pool`` it starts, imports the heavy modules
(SDK, numpy, highspy) and waits for its launch order on stdin, so that a launch costs only the
import of the app itself.

Launch order (a JSON object, from the environment or on stdin): ``app_dir``, ``secret``,
``session``, ``api_url``, ``api_socket``, ``ticket`` (scoped to this session), ``app``,
``version``, ``host``.
Once listening it prints ``LISTENING <port>`` on stdout.

Frames are JSON. From the browser: ``{"op": ..., "re": n, ...}``; to it: ``state``,
``values``, ``error`` (with ``re``, identifier and key), ``ok``, ``exists`` (a case name is
taken), ``job``, ``log``, ``status``, ``cases``, ``comparison``. See :class:`LiveSession` for the operations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

from . import netforward
from .api_client import ApiClient, ApiError
from .case import apply_case, case_from_data, case_to_bytes, read_case
from .loader import load_app
from .manifest import Manifest, validate_manifest
from .sdk import AppDefinition, DataError, OutputDef, ParameterDef, SetDef
from .session_backend import JOB_ENDED_STATES, JOB_SUCCEEDED, BackendRefused, PlatformBackend, SessionBackend
from .warm import preload, wait_for_order, warm_imports

FIRST_POLL_SECONDS = 0.05


class LiveSession:
    """The live side of a data session: the app's data in memory and the operations the WebUI can ask for.

    (The platform's record of the session is the ``sessions.models.DataSession`` row.) Its cases
    and solves go to its ``backend``: the platform's API on a server, or a local one for
    ``pro app run``.
    """

    def __init__(self, manifest: Manifest, app: AppDefinition, backend: SessionBackend):
        self.manifest = manifest
        self.app = app
        self.data = self.app.new_data()
        self.backend = backend
        self.clients: set = set()
        self.jobs: dict[int, dict[str, Any]] = {}
        self.status = "Ready"

    async def replace_app(self, manifest: Manifest, app: AppDefinition) -> None:
        """The app's code changed (``pro app run``): the new declarations and initial data, with
        the values the user changed kept where they still fit, and every browser redrawn."""
        before, defaults = self.data.to_dict(), self.app.new_data().to_dict()
        edited = {
            name: value
            for name, value in before.items()
            if value != defaults.get(name) and not isinstance(self.app.identifiers[name], OutputDef)
        }
        self.manifest, self.app, self.data = manifest, app, app.new_data()
        for name in sorted(edited, key=lambda n: not isinstance(app.identifiers.get(n), SetDef)):
            if name in app.identifiers:
                with contextlib.suppress(DataError, ValueError, TypeError):
                    self.data.update_from_dict({name: edited[name]})
        self.status = "Reloaded the app's changed code"
        await self.broadcast(self.state())

    # ------------------------------------------------------------ messages out
    def state(self) -> dict[str, Any]:
        return {
            "type": "state",
            "app": {"name": self.app.name, "title": self.app.title, "version": self.manifest.version},
            "interface": self.app.describe(),
            "values": self.data.to_dict(),
            "jobs": list(self.jobs.values()),
            "status": self.status,
        }

    async def broadcast(self, message: dict[str, Any]) -> None:
        frame = json.dumps(message)
        for client in list(self.clients):
            try:
                await client.send(frame)
            except Exception:  # a client that went away; the proxy reconnects it later
                self.clients.discard(client)

    async def set_status(self, text: str) -> None:
        self.status = text
        await self.broadcast({"type": "status", "status": text})

    # ------------------------------------------------------------ operations
    async def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        op = message.get("op")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if handler is None:
            return {"type": "error", "message": f"unknown operation {op!r}"}
        try:
            return await handler(message)
        except DataError as exc:
            return {"type": "error", "identifier": exc.identifier, "key": exc.key, "message": str(exc)}
        except (ApiError, BackendRefused) as exc:
            return {"type": "error", "message": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"type": "error", "message": f"bad request: {exc}"}

    async def op_get_state(self, message):
        return self.state()

    async def op_set(self, message):
        """Set one cell (``key`` given), a scalar, or a set's elements."""
        name = message["identifier"]
        definition = self.data.definition(name)
        if isinstance(definition, OutputDef):
            raise DataError(name, "is an output: procedures write it, not the user")
        if "key" in message and message["key"] is not None:
            value = self.data.set_cell(name, message["key"], message["value"])
            changed = {name: self.data.to_dict()[name]}
        else:
            self.data[name] = message["value"]
            value = self.data[name]
            changed = self._affected(name)
        await self.broadcast({"type": "values", "values": changed})
        return {"type": "ok", "identifier": name, "value": value if not isinstance(value, dict) else None}

    async def op_paste(self, message):
        """Set a block of cells at once; every cell is checked before any is changed."""
        name = message["identifier"]
        cells = message["cells"]
        definition = self.data.definition(name)
        if not isinstance(definition, ParameterDef) or isinstance(definition, OutputDef) or definition.is_scalar:
            raise DataError(name, "is not an editable table")
        staged = self.app.new_data()
        staged.update_from_dict(self.data.to_dict())
        errors = []
        for key, value in cells:
            try:
                staged.set_cell(name, key, value)
            except DataError as exc:
                errors.append({"key": exc.key, "message": str(exc)})
        if errors:
            return {
                "type": "error",
                "identifier": name,
                "message": f"{len(errors)} pasted cell(s) are not valid; nothing was changed",
                "cells": errors,
            }
        for key, value in cells:
            self.data.set_cell(name, key, value)
        await self.broadcast({"type": "values", "values": {name: self.data.to_dict()[name]}})
        return {"type": "ok", "identifier": name, "count": len(cells)}

    def _affected(self, name: str) -> dict[str, Any]:
        everything = self.data.to_dict()
        if not isinstance(self.data.definition(name), SetDef):
            return {name: everything[name]}
        return {n: v for n, v in everything.items() if n == name or name in self._index_of(n)}

    def _index_of(self, name: str) -> list[str]:
        definition = self.app.identifiers[name]
        return [s.name for s in definition.index] if isinstance(definition, ParameterDef) else []

    async def op_run(self, message):
        """Run a solver-less procedure here, in the session."""
        name = message["procedure"]
        procedure = self.app.procedures.get(name)
        if procedure is None or procedure.is_solve:
            return {"type": "error", "message": f"{name!r} is not a procedure of this app"}
        await self.set_status(f"Running {procedure.title or name}…")
        try:
            procedure.function(self.data)
        except DataError:
            raise
        except Exception as exc:
            await self.set_status(f"{procedure.title or name} failed")
            return {"type": "error", "message": f"{name} failed: {type(exc).__name__}: {exc}"}
        await self.broadcast({"type": "values", "values": self.data.to_dict()})
        await self.set_status(f"{procedure.title or name} done")
        return {"type": "ok", "procedure": name}

    async def op_solve(self, message):
        """Save the data as an input case and submit a job; follow it until it ends."""
        name = message["procedure"]
        procedure = self.app.procedures.get(name)
        if procedure is None or not procedure.is_solve:
            return {"type": "error", "message": f"{name!r} is not a solve procedure of this app"}
        blob = case_to_bytes(case_from_data(self.data, meta={"app": self.app.name}))
        job = await asyncio.to_thread(self.backend.submit_solve, name, blob)
        self.jobs[job["id"]] = self._job_summary(job)
        await self.broadcast({"type": "job", "job": self.jobs[job["id"]]})
        await self.set_status(f"Job {job['id']} queued")
        asyncio.get_running_loop().create_task(self.follow_job(job["id"]))
        return {"type": "ok", "job": job["id"]}

    async def op_cancel_job(self, message):
        job_id = int(message["job"])
        if job_id not in self.jobs:
            return {"type": "error", "message": f"job {job_id} is not one of this session's"}
        job = await asyncio.to_thread(self.backend.stop_job, job_id, bool(message.get("interrupt")))
        return {"type": "ok", "job": job["id"], "state": job["state"]}

    async def op_job_log(self, message):
        """The whole log of one of this session's jobs (a reconnecting browser catches up)."""
        job_id = int(message["job"])
        if job_id not in self.jobs:
            return {"type": "error", "message": f"job {job_id} is not one of this session's"}
        return {"type": "log", "job": job_id, "text": await asyncio.to_thread(self._whole_log, job_id), "reset": True}

    def _whole_log(self, job_id: int) -> str:
        """Every page of a job's log (a capped log is at most its head, a marker and its tail)."""
        pages, offset = [], 0
        while True:
            page = self.backend.job_log(job_id, offset)
            pages.append(page["text"])
            if not page["text"] or page["offset"] >= page.get("size", page["offset"]):
                return "".join(pages)
            offset = page["offset"]

    @staticmethod
    def _job_summary(job: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "id",
            "procedure",
            "state",
            "attempt",
            "progress",
            "progress_points",
            "solver_status",
            "error_message",
            "created_at",
        )
        return {k: job.get(k) for k in keys}

    async def follow_job(self, job_id: int) -> None:
        """Stream a job's state and log to the browsers; load its results when it succeeds."""
        offset, pause = 0, FIRST_POLL_SECONDS
        while True:
            try:
                job = await asyncio.to_thread(self.backend.job, job_id)
                log = await asyncio.to_thread(self.backend.job_log, job_id, offset)
            except ApiError as exc:
                await self.set_status(f"Lost track of job {job_id}: {exc}")
                return
            if log["text"]:
                offset = log["offset"]
                await self.broadcast({"type": "log", "job": job_id, "text": log["text"]})
            summary = self._job_summary(job)
            if summary != self.jobs.get(job_id):
                self.jobs[job_id] = summary
                await self.broadcast({"type": "job", "job": summary})
            if job["state"] in JOB_ENDED_STATES and log.get("finished", True):
                break
            await asyncio.sleep(pause)
            # A short solve's result is there in a fraction of a second; a long one is asked after less often.
            pause = min(pause * 2, self.backend.poll_seconds)
        if job["state"] == JOB_SUCCEEDED and job.get("result_case"):
            blob = await asyncio.to_thread(self.backend.job_result, job_id)
            outputs = {n for n, d in self.app.identifiers.items() if isinstance(d, OutputDef)}
            apply_case(self.data, read_case(blob), only=outputs)
            await self.broadcast({"type": "values", "values": self.data.to_dict()})
            await self.set_status(f"Job {job_id} succeeded: results loaded")
        else:
            await self.set_status(f"Job {job_id} {job['state']}: {job.get('error_message') or ''}".strip())

    # ------------------------------------------------------------ cases
    async def op_list_cases(self, message):
        cases = await asyncio.to_thread(self.backend.list_cases)
        return {"type": "cases", "cases": cases}

    async def op_save_case(self, message):
        """Save the data as a case; a name already taken is replaced only when ``overwrite`` says so."""
        name = str(message.get("name", "")).strip()
        if not name:
            return {"type": "error", "message": "give the case a name"}
        listed = await asyncio.to_thread(self.backend.list_cases)
        taken = [case["id"] for case in listed if case["name"] == name and not case.get("remote")]
        if taken and not message.get("overwrite"):
            # The browser asks the user first: a click on Save must not silently replace a case.
            return {"type": "exists", "name": name, "message": f"a case named {name!r} exists"}
        blob = case_to_bytes(case_from_data(self.data, meta={"app": self.app.name, "name": name}))
        case = await asyncio.to_thread(self.backend.save_case, blob, name)
        for old in taken:  # after the upload, so that a failed upload loses nothing
            if old != case["id"]:
                await asyncio.to_thread(self.backend.delete_case, old)
        await self.set_status(f"Saved case {name}" + (" (replaced)" if taken else ""))
        return {"type": "ok", "case": case, "replaced": len(taken)}

    async def op_load_case(self, message):
        blob = await asyncio.to_thread(self.backend.case_bytes, str(message["case"]))
        apply_case(self.data, read_case(blob))
        await self.broadcast({"type": "values", "values": self.data.to_dict()})
        await self.set_status("Case loaded")
        return {"type": "ok"}

    async def op_delete_case(self, message):
        await asyncio.to_thread(self.backend.delete_case, str(message["case"]))
        return {"type": "ok"}

    async def op_push_case(self, message):
        """A local case copied to the platform (``pro app run --remote``)."""
        return await self._move_case("push_case", str(message["case"]))

    async def op_pull_case(self, message):
        """A platform case kept as a local file (``pro app run --remote``)."""
        return await self._move_case("pull_case", str(message["case"]))

    async def _move_case(self, how: str, case_id: str) -> dict[str, Any]:
        move = getattr(self.backend, how, None)
        if move is None:
            return {"type": "error", "message": "this session's cases are on the platform already"}
        return {"type": "ok", "case": await asyncio.to_thread(move, case_id)}

    async def op_compare_cases(self, message):
        """Two cases side by side, identifier by identifier, with the changed cells marked."""
        left, right = message["left"], message["right"]
        sides = []
        for case_id in (left, right):
            if case_id == "current":
                sides.append(self.data.to_dict())
            else:
                blob = await asyncio.to_thread(self.backend.case_bytes, str(case_id))
                sides.append(read_case(blob).to_json())
        described = {item["name"]: item for item in self.app.describe()["identifiers"]}
        return {
            "type": "comparison",
            "left": left,
            "right": right,
            "identifiers": compare(sides[0], sides[1], described),
        }


def _rows(value: Any) -> dict[tuple[str, ...], Any]:
    """A value as ``{key: value}``, keys being tuples of index elements (``()`` for a scalar)."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        return {tuple(map(str, row[:-1])): row[-1] for row in value}
    return {(): value}


def compare(
    left: dict[str, Any], right: dict[str, Any], described: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Every identifier of either side, its cells keyed by their index elements in set order.

    ``described`` (the app's interface by name) adds each identifier's kind, title, type and index
    sets, so that the browser can label keys by their sets and pivot two-dimensional tables.
    """
    described = described or {}
    result = []
    for name in sorted(set(left) | set(right)):
        a, b = _rows(left.get(name)), _rows(right.get(name))
        keys = list(dict.fromkeys([*a, *b]))  # the left side's order, then keys only the right has
        cells = [
            {"key": list(key), "left": a.get(key), "right": b.get(key), "changed": a.get(key) != b.get(key)}
            for key in keys
        ]
        about = described.get(name, {})
        result.append(
            {
                "identifier": name,
                "title": about.get("title", name),
                "kind": about.get("kind", ""),
                "type": about.get("type", ""),
                "unit": about.get("unit", ""),
                "index": about.get("index", []),
                "changed": any(c["changed"] for c in cells),
                "cells": cells,
            }
        )
    return result


def platform_session(app_dir: Path, order: dict[str, Any]) -> LiveSession:
    """The session of a platform's launch order: the published app in ``app_dir``, cases and
    solves through the platform's API with the session's ticket."""
    manifest = validate_manifest(json.loads((app_dir / "manifest.json").read_text()))
    api = ApiClient(order.get("api_url", ""), order.get("ticket", ""), order.get("api_socket", ""))
    return LiveSession(manifest, load_app(app_dir, manifest), PlatformBackend(api, manifest.name, manifest.version))


# ---------------------------------------------------------------- serving


async def converse(session: LiveSession, websocket: Any) -> None:
    """One browser's connection: the state first, then its operations answered until it goes."""
    session.clients.add(websocket)
    try:
        await websocket.send(json.dumps(session.state()))
        async for frame in websocket:
            try:
                message = json.loads(frame)
            except ValueError:
                await websocket.send(json.dumps({"type": "error", "message": "frames must be JSON"}))
                continue
            if not isinstance(message, dict):
                continue
            reply = await session.handle(message)
            if reply is not None:
                reply["re"] = message.get("re")
                await websocket.send(json.dumps(reply))
    finally:
        session.clients.discard(websocket)


async def serve(
    session: LiveSession, secret: str, port: int = 0, host: str = "127.0.0.1", sock: socket.socket | None = None
) -> None:
    from websockets.asyncio.server import serve as ws_serve
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    def check_secret(connection, request):
        given = request.headers.get("Authorization", "")
        if not secret or given != f"Secret {secret}":
            return Response(HTTPStatus.FORBIDDEN.value, "Forbidden", Headers(), b"a session secret is required\n")
        return None

    async def handler(websocket):
        await converse(session, websocket)

    # max_queue bounds what a slow reader buffers: backpressure instead of unbounded memory.
    where = {"sock": sock} if sock is not None else {"host": host, "port": port}
    async with ws_serve(
        handler, process_request=check_secret, max_size=16 * 1024 * 1024, max_queue=32, **where
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"LISTENING {bound}", flush=True)
        await asyncio.Future()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", action="store_true", help="start, warm up, and wait for the launch order on stdin")
    parser.add_argument("--preload", help="a file of modules (one a line) to import while warming up")
    args = parser.parse_args()
    netforward.start_from_environment()
    if args.pool:
        warm_imports("websockets.asyncio.server")
        if args.preload:
            preload(Path(args.preload))
        order = json.loads(wait_for_order() or "{}")
    else:
        order = json.loads(os.environ.get("PRO_SESSION_ORDER", "{}"))
    if not order.get("app_dir"):
        print("no launch order", file=sys.stderr)
        return 2
    try:
        session = platform_session(Path(order["app_dir"]), order)
    except Exception as exc:
        print(f"START FAILED {type(exc).__name__}: {exc}", flush=True)
        return 1
    listen_fd = os.environ.get("PRO_LISTEN_FD")
    sock = socket.socket(fileno=int(listen_fd)) if listen_fd else None
    host = order.get("host") or "127.0.0.1"
    asyncio.run(serve(session, order.get("secret", ""), int(order.get("port", 0)), host, sock=sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
