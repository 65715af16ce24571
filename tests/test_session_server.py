"""The data session process on its own: secret, operations, validation in place."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sessions.runtime import package

ROOT = Path(__file__).resolve().parents[1]
TRANSPORT = ROOT / "examples" / "transport"


@pytest.fixture
def session_process(tmp_path):
    """A session process of the transport app, started from its package as the session manager does."""
    key = package.generate_private_key()
    blob, _ = package.pack_folder(TRANSPORT, key.public_key())
    app_dir = tmp_path / "app"
    package.extract_archive(package.decrypt(blob, key), app_dir)
    order = {
        "app_dir": str(app_dir),
        "secret": "s3cret-of-the-proxy",
        "api_url": "http://127.0.0.1:9",
        "ticket": "none",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "sessions.runtime.session_server"],
        env={**os.environ, "PRO_SESSION_ORDER": json.dumps(order), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    line = process.stdout.readline().decode()
    assert line.startswith("LISTENING"), line
    yield int(line.split()[1]), order["secret"]
    process.terminate()
    process.wait(timeout=10)


def talk(port: int, secret: str, messages: list[dict]) -> list[dict]:
    async def run():
        async with connect(f"ws://127.0.0.1:{port}/", additional_headers={"Authorization": f"Secret {secret}"}) as ws:
            replies = [json.loads(await ws.recv())]
            for message in messages:
                await ws.send(json.dumps(message))
                while True:
                    reply = json.loads(await ws.recv())
                    replies.append(reply)
                    if reply.get("re") == message.get("re"):
                        break
            return replies

    return asyncio.run(run())


def test_state_on_connect(session_process):
    port, secret = session_process
    [state] = talk(port, secret, [])
    assert state["type"] == "state" and state["app"]["name"] == "transport"
    assert ["Seattle", 350.0] in state["values"]["supply"]
    assert [p["title"] for p in state["interface"]["pages"]] == ["Data", "Results"]


@pytest.mark.parametrize("header", [None, "Secret wrong", "Bearer s3cret-of-the-proxy"])
def test_refused_without_the_secret(session_process, header):
    port, _ = session_process

    async def run():
        headers = {"Authorization": header} if header else {}
        async with connect(f"ws://127.0.0.1:{port}/", additional_headers=headers):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(run())
    assert refused.value.response.status_code == 403


def test_listens_on_loopback_only(session_process):
    port, _ = session_process
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = [line.split()[1] for line in listening if line.split()[3] == "0A"]
    assert f"0100007F:{port:04X}" in local
    assert f"00000000:{port:04X}" not in local


def test_edit_cell_and_bad_value(session_process):
    port, secret = session_process
    replies = talk(
        port,
        secret,
        [
            {"op": "set", "identifier": "demand", "key": ["Chicago"], "value": "350", "re": 1},
            {"op": "set", "identifier": "demand", "key": ["Chicago"], "value": "lots", "re": 2},
            {"op": "set", "identifier": "shipments", "key": ["Seattle", "Chicago"], "value": 1, "re": 3},
            {"op": "set", "identifier": "demand", "key": ["Nowhere"], "value": 1, "re": 4},
        ],
    )
    by_re = {r.get("re"): r for r in replies if r.get("re")}
    assert by_re[1]["type"] == "ok"
    assert any(r["type"] == "values" and ["Chicago", 350.0] in r["values"]["demand"] for r in replies)
    assert by_re[2]["type"] == "error" and "expected a number" in by_re[2]["message"] and by_re[2]["key"] == "Chicago"
    assert by_re[3]["type"] == "error" and "is an output" in by_re[3]["message"]
    assert by_re[4]["type"] == "error" and "not an element" in by_re[4]["message"]
    [state] = talk(port, secret, [])
    assert ["Chicago", 350.0] in state["values"]["demand"]


def test_paste_is_all_or_nothing(session_process):
    port, secret = session_process
    bad = [[["Seattle", "New-York"], "0.5"], [["Seattle", "Chicago"], "x"]]
    good = [[["Seattle", "New-York"], "0.5"], [["Seattle", "Chicago"], "0.25"]]
    replies = talk(
        port, secret, [{"op": "paste", "identifier": "cost", "cells": bad, "re": 1}, {"op": "get_state", "re": 2}]
    )
    refused = next(r for r in replies if r.get("re") == 1)
    assert refused["type"] == "error" and refused["cells"][0]["key"] == ["Seattle", "Chicago"]
    assert ["Seattle", "New-York", 0.225] in next(r for r in replies if r.get("re") == 2)["values"]["cost"]
    replies = talk(
        port, secret, [{"op": "paste", "identifier": "cost", "cells": good, "re": 1}, {"op": "get_state", "re": 2}]
    )
    assert next(r for r in replies if r.get("re") == 1)["count"] == 2
    assert ["Seattle", "Chicago", 0.25] in next(r for r in replies if r.get("re") == 2)["values"]["cost"]


def test_procedure_runs_in_the_session(session_process):
    port, secret = session_process
    replies = talk(
        port,
        secret,
        [
            {"op": "run", "procedure": "check_balance", "re": 1},
            {"op": "run", "procedure": "solve", "re": 2},
            {"op": "fly", "re": 3},
        ],
    )
    assert any(r["type"] == "values" and r["values"]["balance"] == 50 for r in replies)
    assert next(r for r in replies if r.get("re") == 2)["type"] == "error"
    assert "unknown operation" in next(r for r in replies if r.get("re") == 3)["message"]
