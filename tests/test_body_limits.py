"""Request bodies over their endpoint's limit are refused before Django reads (or spools) them.

The ASGI application is called directly, with a ``receive`` that records what is read, and
through the real server for what only HTTP shows: a refusal without waiting for the body, a
chunked body cut off, the connection closed.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import numpy as np
import pytest
from django.conf import settings as django_settings

from sessions.runtime.case import CaseData, case_to_bytes
from tests.helpers import publish_as

pytestmark = pytest.mark.django_db(transaction=True)

KIB, MIB, GIB = 1024, 1024**2, 1024**3
MULTIPART = 64 * KIB


class Exchange:
    """One request through the ASGI application: what it read and what it answered."""

    def __init__(self, method: str, path: str, headers: dict[str, str], chunks: list[bytes], query: str = ""):
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.chunks, self.reads, self.sent = list(chunks) or [b""], 0, []

    async def _run(self) -> None:
        from pro_portal.asgi import application

        done = asyncio.Event()

        async def receive():
            if self.chunks:
                self.reads += 1
                chunk = self.chunks.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
            await done.wait()  # after the body: the client waits for the answer
            return {"type": "http.disconnect"}

        async def send(message):
            self.sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await application(self.scope, receive, send)

    def run(self) -> Exchange:
        asyncio.run(self._run())
        return self

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(next(m["headers"] for m in self.sent if m["type"] == "http.response.start"))

    def json(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))


def exchange(method, path, *, headers=None, chunks=(), length=None, query="") -> Exchange:
    headers = dict(headers or {})
    if length is not None:
        headers["Content-Length"] = str(length)
    elif chunks:
        headers["Transfer-Encoding"] = "chunked"
    return Exchange(method, path, headers, list(chunks), query).run()


def bearer(user) -> dict[str, str]:
    from apps.accounts.services import ticket_issue_for_user

    raw, _ = ticket_issue_for_user(user=user)
    return {"Authorization": f"Bearer {raw}"}


def assert_too_large(response: Exchange) -> None:
    assert response.status == 413, response.sent
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "too_large", body
    assert body["error"]["message"]
    assert response.headers[b"content-type"] == b"application/json"
    assert response.headers[b"connection"] == b"close"


def nothing_created(storage_folder) -> None:
    from apps.catalog.models import App
    from sessions.models import Case

    assert not Case.objects.exists()
    assert not App.objects.exists()
    assert not [p for p in storage_folder.rglob("*") if p.is_file()]


UPLOADS = [
    pytest.param("POST", "/api/v1/apps", "", lambda s: s.PRO_MAX_PACKAGE_BYTES + MULTIPART, id="package-api"),
    pytest.param("POST", "/publish/", "", lambda s: s.PRO_MAX_PACKAGE_BYTES + MULTIPART, id="package-portal"),
    pytest.param("PUT", "/api/v1/storage/users/alice/big.bin", "", lambda s: s.PRO_MAX_UPLOAD_BYTES, id="storage-api"),
    pytest.param("POST", "/files/users/alice/", "", lambda s: s.PRO_MAX_UPLOAD_BYTES + MULTIPART, id="files-portal"),
    pytest.param("POST", "/api/v1/cases", "app=demo", lambda s: s.PRO_MAX_CASE_BYTES + MULTIPART, id="case"),
    pytest.param("POST", "/api/v1/runtimes", "", lambda s: s.PRO_MAX_RUNTIME_BYTES + MULTIPART, id="runtime-api"),
    pytest.param(
        "POST", "/admin/catalog/runtime/add/", "", lambda s: s.PRO_MAX_RUNTIME_BYTES + MULTIPART, id="runtime-admin"
    ),
    pytest.param(
        "PUT", "/api/v1/wheelhouse/x-1.0-py3-none-any.whl", "", lambda s: s.PRO_MAX_WHEEL_BYTES + MULTIPART, id="wheel"
    ),
    pytest.param("POST", "/api/v1/jobs", "", lambda s: s.PRO_MAX_REQUEST_BYTES, id="other"),
    pytest.param("POST", "/api/v1/nothing/here", "", lambda s: s.PRO_MAX_REQUEST_BYTES, id="unknown"),
]


@pytest.mark.parametrize(("method", "path", "query", "limit"), UPLOADS)
def test_each_endpoint_has_its_limit(method, path, query, limit):
    from pro_portal.body_limits import endpoint_limit

    assert endpoint_limit(method, path) == limit(django_settings)
    assert endpoint_limit("POST", "/api/v1/storage/users/alice/x") == django_settings.PRO_MAX_REQUEST_BYTES


@pytest.mark.parametrize(("method", "path", "query", "limit"), UPLOADS)
def test_a_declared_length_over_the_limit_is_refused_unread(method, path, query, limit, alice, storage_folder):
    response = exchange(
        method, path, headers=bearer(alice), length=limit(django_settings) + 1, chunks=[b"x"], query=query
    )
    assert_too_large(response)
    assert response.reads == 0
    assert str(limit(django_settings)) in response.json()["error"]["message"]
    nothing_created(storage_folder)


def test_a_declared_length_within_the_limit_goes_through(alice, runtime, pack, storage_folder, settings):
    publish_as(alice, pack(), verify=False)
    settings.PRO_MAX_UNAUTHENTICATED_BYTES = 16 * KIB
    blob = case_to_bytes(CaseData(sets={"s": list(range(5000))}, values={"w": np.arange(5000.0)}, index={"w": ["s"]}))
    assert len(blob) > 16 * KIB
    settings.PRO_MAX_CASE_BYTES = len(blob)
    response = exchange(
        "POST",
        "/api/v1/cases",
        query="app=demo",
        headers={**bearer(alice), "Content-Type": "application/octet-stream"},
        length=len(blob),
        chunks=[blob[: len(blob) // 2], blob[len(blob) // 2 :]],
    )
    assert response.status == 201, response.json()
    assert response.json()["size"] == len(blob)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer pro_t_made_up"}, id="made-up-ticket"),
        pytest.param({"Authorization": "Basic YWxpY2U6eA=="}, id="not-a-ticket"),
        pytest.param({"Cookie": "sessionid=made-up"}, id="made-up-session"),
    ],
)
def test_without_valid_credentials_only_a_small_body_is_taken(credentials, alice, runtime, pack, storage_folder):
    publish_as(alice, pack(), verify=False)
    small = django_settings.PRO_MAX_UNAUTHENTICATED_BYTES
    assert small <= django_settings.FILE_UPLOAD_MAX_MEMORY_SIZE  # what is taken stays in memory
    response = exchange("POST", "/api/v1/cases", query="app=demo", headers=credentials, length=small + 1)
    assert_too_large(response)
    assert response.reads == 0
    assert "ticket" in response.json()["error"]["message"]
    refused = exchange("POST", "/api/v1/auth/tickets", headers=credentials, chunks=[b"x" * 256 * KIB] * 8)
    assert_too_large(refused)
    assert refused.reads <= small // (256 * KIB) + 1
    from sessions.models import Case

    assert not Case.objects.exists()


def test_a_signed_in_session_takes_the_endpoint_limit(alice, storage_folder):
    from django.test import Client

    client = Client()
    client.force_login(alice)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    big = django_settings.PRO_MAX_UNAUTHENTICATED_BYTES + 1
    response = exchange("PUT", "/api/v1/storage/users/alice/a.bin", headers={"Cookie": cookie}, chunks=[b"x" * big])
    assert response.reads == 1
    assert response.status == 403  # through to the view: a session's API write needs its CSRF token
    alice.set_password("another-Secret-pw-2")
    alice.save()  # the session's hash no longer matches: signed out
    stale = exchange("PUT", "/api/v1/storage/users/alice/a.bin", headers={"Cookie": cookie}, length=big)
    assert_too_large(stale)
    assert stale.reads == 0


def test_a_chunked_body_is_cut_off_at_the_limit(alice, runtime, pack, storage_folder, settings):
    publish_as(alice, pack(), verify=False)
    settings.PRO_MAX_CASE_BYTES = 100 * KIB
    head = case_to_bytes(CaseData(meta={}))
    chunks = [head] + [b"\0" * 32 * KIB] * 20
    response = exchange(
        "POST",
        "/api/v1/cases",
        query="app=demo",
        headers={**bearer(alice), "Content-Type": "application/octet-stream"},
        chunks=chunks,
    )
    assert_too_large(response)
    limit = 100 * KIB + MULTIPART  # a case may come as a form
    assert response.reads == 2 + (limit - len(head)) // (32 * KIB)  # refused at the first chunk past the limit
    from sessions.models import Case

    assert not Case.objects.exists()
    assert not (storage_folder / "cases").exists()


def test_a_bad_content_length_is_refused():
    response = exchange("POST", "/api/v1/jobs", headers={"Content-Length": "lots"}, chunks=[b"{}"])
    assert response.status == 400 and response.json()["error"]["code"] == "invalid"
    assert response.reads == 0


def test_requests_without_a_body_pass_untouched(alice):
    response = exchange("GET", "/api/v1/cases", headers=bearer(alice))
    assert response.status == 200


# ---------------------------------------------------------------- through the real server


def raw_http(port: int, head: str, chunks=(), timeout: float = 10.0) -> tuple[int, dict, dict, int, float]:
    """Send ``head`` and then ``chunks`` (chunked) until the server answers; return its answer.

    Returns the status, the headers, the JSON body, how many body bytes were sent, and how long
    the answer took. The server must also close the connection after its answer.
    """
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there: stop sending
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(chunk)
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break  # closed by the server
            answer += data
    elapsed = time.monotonic() - started
    head_part, _, body = answer.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body), sent, elapsed


def request_head(method: str, path: str, headers: dict[str, str]) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.mark.live
@pytest.mark.parametrize(
    ("method", "path", "length"),
    [
        ("PUT", "/api/v1/storage/users/alice/huge.bin", 11 * GIB),
        ("POST", "/api/v1/cases?app=demo", 3 * GIB),
        ("POST", "/api/v1/apps", 300 * MIB),
        ("POST", "/api/v1/jobs", 5 * MIB),
    ],
)
def test_the_server_refuses_a_declared_length_without_waiting_for_the_body(
    platform_server, alice, storage_folder, method, path, length
):
    headers = {**bearer(alice), "Content-Type": "application/octet-stream", "Content-Length": str(length)}
    status, response_headers, body, _, elapsed = raw_http(platform_server.port, request_head(method, path, headers))
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert response_headers["content-type"] == "application/json"
    assert elapsed < 5  # answered from the headers, and the connection closed: no body was awaited
    nothing_created(storage_folder)


@pytest.mark.live
def test_the_server_takes_little_from_a_request_without_credentials(platform_server, storage_folder):
    headers = {"Content-Type": "application/json", "Content-Length": str(2 * MIB)}  # within the endpoint's 4 MiB
    status, _, body, _, elapsed = raw_http(platform_server.port, request_head("POST", "/api/v1/auth/tickets", headers))
    assert status == 413 and body["error"]["code"] == "too_large"
    assert "ticket" in body["error"]["message"]
    assert elapsed < 5

    chunked = {"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}
    status, _, body, sent, _ = raw_http(
        platform_server.port,
        request_head("PUT", "/api/v1/storage/users/alice/x.bin", chunked),
        chunks=[b"x" * 64 * KIB] * 1600,  # 100 MiB offered
    )
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert sent < 40 * MIB  # cut off soon after the first MiB, whatever the socket buffers took meanwhile
    assert not [p for p in storage_folder.rglob("*") if p.is_file()]


@pytest.fixture
def small_case_limit(monkeypatch):
    """The live server's case limit (read from the environment when it starts): 2 MiB."""
    monkeypatch.setenv("PRO_MAX_CASE_BYTES", str(2 * MIB))


@pytest.mark.live
def test_the_server_cuts_off_a_chunked_case_over_its_limit(
    small_case_limit, platform_server, alice, runtime, pack, storage_folder
):
    publish_as(alice, pack(), verify=False)
    headers = {**bearer(alice), "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}
    first = case_to_bytes(CaseData(meta={}))
    status, _, body, sent, _ = raw_http(
        platform_server.port,
        request_head("POST", "/api/v1/cases?app=demo", headers),
        chunks=[first] + [b"\0" * 64 * KIB] * 1600,
    )
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert sent < 60 * MIB
    from sessions.models import Case

    assert not Case.objects.exists()
    assert not (storage_folder / "cases").exists()
