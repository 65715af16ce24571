"""The transport-db app with plain pytest, on a real MariaDB of this machine (127.0.0.1:3306),
through a local connections file as a modeler would write one (no platform involved)."""

import json
import secrets
from pathlib import Path

import pymysql
import pytest

from pro_sdk import ConnectionNotGranted, DataError, SolveContext, load_app

HERE = Path(__file__).parents[1]
app = load_app(HERE)


@pytest.fixture
def database(tmp_path, monkeypatch):
    name = f"transport_{secrets.token_hex(4)}"
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        with root.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        db = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=name, autocommit=True)
        with db.cursor() as cursor:
            for statement in (HERE / "schema.sql").read_text().split(";"):
                if statement.strip():
                    cursor.execute(statement)
        file = tmp_path / "connections.json"
        details = {"kind": "mysql", "host": "127.0.0.1", "port": 3306, "username": "root", "database": name}
        file.write_text(json.dumps({"transport-db": details}))
        monkeypatch.setenv("PRO_CONNECTIONS_FILE", str(file))
        yield db
    finally:
        with root.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")


def test_reads_solves_and_writes_the_plan_back(database):
    ctx = SolveContext()
    data = app.run("refresh", app.new_data(), ctx)
    assert data["status"] == "Optimal"
    assert data["total_cost"] == pytest.approx(153.675, rel=1e-6)
    with database.cursor() as cursor:
        cursor.execute("SELECT SUM(cases) FROM shipments")
        assert cursor.fetchone()[0] == pytest.approx(900)
        cursor.execute("SELECT status, total_cost FROM plan_runs")
        assert cursor.fetchall() == (("Optimal", pytest.approx(153.675)),)


def test_a_market_no_lane_reaches_is_reported_and_nothing_is_written(database):
    with database.cursor() as cursor:
        cursor.execute("INSERT INTO markets VALUES ('Boise', 10)")
    with pytest.raises(DataError, match="no lane of the lanes table reaches Boise"):
        app.run("refresh", app.new_data(), SolveContext())
    with database.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM plan_runs")
        assert cursor.fetchone()[0] == 0


def test_without_the_connection_the_app_says_which_it_needs(monkeypatch):
    monkeypatch.delenv("PRO_CONNECTIONS_FILE", raising=False)
    with pytest.raises(ConnectionNotGranted, match="'transport-db' is not granted to this app"):
        app.run("load", app.new_data())
