"""Uses a managed connection as its input says and reports what happened (tests only)."""

import json
import socket

from pro_sdk import App, Button, Field, connection
from sessions.runtime import connections

app = App("connprobe", title="Connection probe")
name = app.parameter("name", type="str", default="db")
action = app.parameter("action", type="str", default="query")
argument = app.parameter("argument", type="str", default="SELECT 1")
report = app.output("report", type="str")


def _query(connection_name: str, sql: str, engine: bool):
    if engine:
        from sqlalchemy import text

        with connection(connection_name, engine=True).begin() as db:
            return [list(row) for row in db.execute(text(sql))]
    with connection(connection_name) as db, db.cursor() as cursor:
        cursor.execute(sql)
        rows = [list(row) for row in cursor.fetchall()] if cursor.description else cursor.rowcount
        db.commit()
        return rows


def _run(data, ctx):
    what, arg = data["action"], data["argument"]
    if what in ("query", "engine"):
        return _query(data["name"], arg, engine=what == "engine")
    if what == "service":
        answer = connection(data["name"]).get(arg)
        return {"status": answer.status_code, "body": answer.json()}
    if what == "leak":
        print("the password is", connections.details(data["name"])["password"])
        ctx.log("again: " + connections.details(data["name"])["password"])
        return "printed"
    if what == "raw":
        host, _, port = arg.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=3):
            return "connected"
    raise ValueError(f"unknown action {what!r}")


@app.solve(title="Probe")
def probe(data, ctx):
    try:
        data["report"] = json.dumps({"ok": _run(data, ctx)}, default=str)
    except Exception as exc:  # the report says what the app met
        data["report"] = json.dumps({"error": f"{type(exc).__name__}: {exc}"})


app.page("Probe", [Field(name), Field(action), Field(argument), Field(report), Button(probe)])
