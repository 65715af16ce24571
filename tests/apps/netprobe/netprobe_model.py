"""Reaches for the host and port its input names, and reports what happened (tests only)."""

import json
import os
import socket

from pro_sdk import App, Button, Field

app = App("netprobe", title="Network probe")
target = app.parameter("target", type="str", default="127.0.0.1:1")
report = app.output("report", type="str")


def reach(address: str) -> str:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3) as connection:
            connection.sendall(b"ping\n")
            return "answered " + connection.recv(100).decode(errors="replace").strip()
    except OSError as exc:
        return f"refused: {type(exc).__name__}: {exc}"


@app.solve(title="Probe")
def probe(data, ctx):
    targets = json.loads(os.environ.get("PRO_NETWORK_TARGETS") or "{}")
    where = targets.get(data["target"], data["target"])
    data["report"] = json.dumps({"where": where, "result": reach(where)})


app.page("Probe", [Field(target), Field(report), Button(probe)])
