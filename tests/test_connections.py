"""Managed connections: admins define them (secrets sealed, never shown), grant them to apps, and
a granted app's sandbox reaches just that database or service by name.

Real servers of this machine: MariaDB (127.0.0.1:3306) and PostgreSQL (127.0.0.1:5432) with a
database and a password-protected user made for each test, and a real HTTP service of the test's
own that wants a bearer token. Jobs run in real sandboxes (bubblewrap) through a real worker.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pymysql
import pytest
from django.conf import settings as django_settings

from apps.accounts.models import SecurityEvent
from sessions.models import Job, JobState
from tests.helpers import publish_folder, wait_for

HERE = Path(__file__).parent
CONNPROBE = HERE / "apps" / "connprobe"
TRANSPORT_DB = HERE.parent / "examples" / "transport-db"
SCHEMA = (TRANSPORT_DB / "schema.sql").read_text()


def statements(sql: str) -> list[str]:
    return [part for part in sql.split(";") if part.strip()]


@pytest.fixture
def mariadb():
    """A database and a user of its own with a password, filled with the sample app's tables."""
    tag = secrets.token_hex(4)
    name, user, password = f"conn_{tag}", f"planner_{tag}", "pw-" + secrets.token_urlsafe(12)
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with root.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cursor.execute(f"GRANT ALL ON {name}.* TO '{user}'@'%'")
    owner = pymysql.connect(host="127.0.0.1", port=3306, user=user, password=password, database=name, autocommit=True)
    with owner.cursor() as cursor:
        for statement in statements(SCHEMA):
            cursor.execute(statement)
    yield {"database": name, "user": user, "password": password, "db": owner}
    owner.close()
    with root.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.fixture
def postgres():
    tag = secrets.token_hex(4)
    name, user, password = f"conn_{tag}", f"planner_{tag}", "pw-" + secrets.token_urlsafe(12)
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as root:
        root.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        root.execute(f"CREATE DATABASE {name} OWNER {user}")
    with psycopg.connect(host="127.0.0.1", port=5432, user=user, password=password, dbname=name) as owner:
        for statement in statements(SCHEMA):
            owner.execute(statement)
    yield {"database": name, "user": user, "password": password}
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as root:
        root.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        root.execute(f"DROP ROLE IF EXISTS {user}")


@pytest.fixture
def token_service():
    """A web service on the node's loopback that answers only with its bearer token."""
    token = "tok-" + secrets.token_urlsafe(16)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == f"Bearer {token}"
            body = json.dumps({"path": self.path, "items": [1, 2, 3]} if ok else {"error": "no token"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/api/v2", "token": token}
    server.shutdown()
    server.server_close()


@pytest.fixture
def connprobe(alice, runtime, platform_public_key):
    return publish_folder(alice, CONNPROBE, platform_public_key)


def define(api, admin_user, name: str, url: str, **fields) -> dict:
    response = api(admin_user).post("/api/v1/connections", {"name": name, "url": url, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def grant(api, admin_user, name: str, app: str) -> None:
    assert api(admin_user).put(f"/api/v1/connections/{name}/apps/{app}").status_code == 200


def run(api, user, app: str, procedure: str, **values) -> Job:
    response = api(user).post("/api/v1/jobs", {"app": app, "procedure": procedure, "input": values}, format="json")
    assert response.status_code == 201, response.content
    return wait_for(Job.objects.get(pk=response.json()["id"]), JobState.SUCCEEDED, JobState.FAILED)


def probe(api, user, **values) -> dict:
    job = run(api, user, "connprobe", "probe", **values)
    assert job.state == JobState.SUCCEEDED, job.error_message
    result = api(user).get(f"/api/v1/jobs/{job.pk}/result?format=json").json()
    return json.loads(result["identifiers"]["report"])


def log_of(api, user, job: Job) -> str:
    return api(user).get(f"/api/v1/jobs/{job.pk}/log").content.decode()


# ---------------------------------------------------------------- defining and granting


@pytest.mark.django_db
def test_admins_define_connections_and_the_secret_never_comes_back(api, admin_user, alice):
    from apps.connections.models import Connection

    made = define(api, admin_user, "warehouse", "mysql://planner:s3cr%40t-pw@DB.example.com/plans?charset=utf8mb4")
    assert made["kind"] == "mysql" and made["has_secret"] is True
    assert made["url"] == "mysql://planner@db.example.com:3306/plans?charset=utf8mb4"
    assert (made["host"], made["port"], made["apps"]) == ("db.example.com", 3306, [])
    stored = Connection.objects.get(name="warehouse")
    assert "s3cr" not in stored.secret_sealed and "s3cr" not in stored.url
    for path in ("/api/v1/connections", "/api/v1/connections/warehouse"):
        assert "s3cr" not in api(admin_user).get(path).content.decode()
    assert SecurityEvent.objects.filter(kind="connection.create", target="connection warehouse").exists()

    service = define(api, admin_user, "erp", "https://erp.example.com/api", secret="tok", headers={"X-Site": "7"})
    assert (service["kind"], service["port"], service["has_secret"]) == ("service", 443, True)
    other = define(api, admin_user, "dwh", "mssql+pyodbc://reader:pw@10.1.2.3:1433/dwh")
    assert (other["kind"], other["url"]) == ("sqlalchemy", "mssql+pyodbc://reader@10.1.2.3:1433/dwh")

    # Only admins see or write connections.
    assert api(alice).get("/api/v1/connections").status_code == 403
    refused = api(alice).post("/api/v1/connections", {"name": "x", "url": "mysql://h/db"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api(alice).get("/api/v1/connections/warehouse").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": "plans.example.com:3306"}, "needs a scheme"),
        ({"url": "sqlite:///var/plans.db"}, "must name a host"),
        ({"url": "snowflake://acct/db"}, "must give the port"),
        ({"url": "mysql://h:99999/db"}, "not valid"),
        ({"url": "https://user:pw@erp.example.com"}, "not in its URL"),
        ({"url": "https://erp.example.com", "headers": {"Bad Name": "x"}}, "not a valid header"),
        ({"url": "https://erp.example.com", "headers": {"X-A": "a\r\nInjected: 1"}}, "not a valid header"),
        ({"url": "mysql://h/db", "name": "Not a slug!"}, "name"),
    ],
)
def test_bad_connections_are_refused_with_a_clear_error(api, admin_user, body, words):
    from apps.connections.models import Connection

    response = api(admin_user).post("/api/v1/connections", {"name": "bad", **body}, format="json")
    assert response.status_code == 400, response.content
    assert words in json.dumps(response.json())
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_changes_grants_and_deletion(api, admin_user, alice, connprobe):
    from apps.connections.models import Connection

    define(api, admin_user, "warehouse", "mysql://planner:one@127.0.0.1:3306/plans")
    assert (
        api(admin_user)
        .post("/api/v1/connections", {"name": "warehouse", "url": "mysql://h/d"}, format="json")
        .status_code
        == 409
    )
    changed = api(admin_user).patch(
        "/api/v1/connections/warehouse", {"url": "mysql://planner@127.0.0.1:3307/plans"}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["port"] == 3307 and changed.json()["has_secret"] is True
    kind = api(admin_user).patch("/api/v1/connections/warehouse", {"url": "https://x.example.com"}, format="json")
    assert kind.status_code == 400 and "needs a new connection" in kind.json()["error"]["message"]
    cleared = api(admin_user).patch("/api/v1/connections/warehouse", {"secret": ""}, format="json")
    assert cleared.json()["has_secret"] is False

    grant(api, admin_user, "warehouse", "connprobe")
    grant(api, admin_user, "warehouse", "connprobe")  # again: nothing changes
    assert api(admin_user).get("/api/v1/connections/warehouse").json()["apps"] == ["connprobe"]
    assert api(alice).put("/api/v1/connections/warehouse/apps/connprobe").status_code == 403
    assert api(admin_user).put("/api/v1/connections/warehouse/apps/nope").status_code == 404
    assert SecurityEvent.objects.filter(kind="connection.grant").count() == 1
    assert api(admin_user).delete("/api/v1/connections/warehouse/apps/connprobe").status_code == 204
    assert api(admin_user).get("/api/v1/connections/warehouse").json()["apps"] == []
    assert SecurityEvent.objects.filter(kind="connection.revoke").count() == 1
    assert api(admin_user).delete("/api/v1/connections/warehouse").status_code == 204
    assert not Connection.objects.exists()
    assert api(admin_user).get("/api/v1/connections/warehouse").status_code == 404


@pytest.mark.django_db
def test_a_changed_platform_key_says_the_secrets_must_be_set_again(api, admin_user, connprobe, settings):
    from apps.connections.models import Connection
    from apps.connections.services import connections_hand_over
    from pro_portal.errors import ApplicationError

    define(api, admin_user, "warehouse", "mysql://planner:pw@127.0.0.1:3306/plans")
    grant(api, admin_user, "warehouse", "connprobe")
    handed = connections_hand_over(app=connprobe.app, actor=admin_user, purpose="test")
    assert handed.details["warehouse"]["password"] == "pw" and handed.targets == ("127.0.0.1:3306",)
    settings.SECRET_KEY = "another key entirely"
    with pytest.raises(ApplicationError, match="must set them again"):
        connections_hand_over(app=Connection.objects.get().apps.get(), actor=admin_user, purpose="test")


# ---------------------------------------------------------------- in real sandboxes


@pytest.mark.django_db(transaction=True)
def test_a_granted_app_reads_and_writes_mariadb_and_the_password_stays_out_of_logs(
    api, admin_user, alice, bob, mariadb, connprobe, worker
):
    url = f"mysql://{mariadb['user']}:{mariadb['password']}@127.0.0.1:3306/{mariadb['database']}"
    define(api, admin_user, "plans", url)
    before = probe(api, alice, name="plans", action="query", argument="SELECT name FROM plants ORDER BY name")
    assert "is not granted to this app" in before["error"]
    raw = probe(api, alice, name="plans", action="raw", argument="127.0.0.1:3306")
    assert "error" in raw  # no grant, no network: the database is out of reach

    grant(api, admin_user, "plans", "connprobe")
    rows = probe(api, alice, name="plans", action="query", argument="SELECT name FROM plants ORDER BY name")
    assert rows == {"ok": [["San-Diego"], ["Seattle"]]}
    wrote = probe(api, alice, name="plans", action="query", argument="INSERT INTO plants VALUES ('Boise', 10)")
    assert wrote == {"ok": 1}
    with mariadb["db"].cursor() as cursor:
        cursor.execute("SELECT supply FROM plants WHERE name = 'Boise'")
        assert cursor.fetchone() == (10.0,)
    engine = probe(api, alice, name="plans", action="engine", argument="SELECT COUNT(*) FROM lanes")
    assert engine == {"ok": [[6]]}
    assert SecurityEvent.objects.filter(kind="connection.use", target="connection plans").count() >= 3

    leak = run(api, alice, "connprobe", "probe", name="plans", action="leak")
    log = log_of(api, alice, leak)
    assert "the password is ********" in log and "again: ********" in log
    assert mariadb["password"] not in log
    for path in (f"/api/v1/jobs/{leak.pk}", "/api/v1/apps/connprobe", f"/api/v1/jobs/{leak.pk}/result?format=json"):
        assert mariadb["password"] not in api(alice).get(path).content.decode()
    # Nothing of the hand-over is left on the node once the job is done.
    assert not list(Path(django_settings.PRO_WORK_DIR).rglob("*.connections.json"))

    # Revoked: the next job starts without it.
    assert api(admin_user).delete("/api/v1/connections/plans/apps/connprobe").status_code == 204
    after = probe(api, alice, name="plans", action="query", argument="SELECT 1")
    assert "is not granted to this app" in after["error"]


@pytest.mark.django_db(transaction=True)
def test_postgresql_connections_and_an_app_granted_another_connection(
    api, admin_user, alice, postgres, mariadb, connprobe, worker
):
    define(
        api,
        admin_user,
        "pg",
        f"postgresql://{postgres['user']}:{postgres['password']}@127.0.0.1/{postgres['database']}",
    )
    define(
        api,
        admin_user,
        "maria",
        f"mysql://{mariadb['user']}:{mariadb['password']}@127.0.0.1:3306/{mariadb['database']}",
    )
    grant(api, admin_user, "pg", "connprobe")
    rows = probe(
        api,
        alice,
        name="pg",
        action="query",
        argument="SELECT market, unit_cost FROM lanes WHERE plant = 'Seattle' ORDER BY market",
    )
    assert rows == {"ok": [["Chicago", 0.153], ["New-York", 0.225], ["Topeka", 0.162]]}
    assert probe(api, alice, name="pg", action="engine", argument="SELECT COUNT(*) FROM markets") == {"ok": [[3]]}
    # Granted pg, not maria: the other connection is neither handed over nor reachable.
    assert "is not granted to this app (it has: pg)" in probe(api, alice, name="maria", action="query")["error"]
    assert "error" in probe(api, alice, name="pg", action="raw", argument="127.0.0.1:3306")


@pytest.mark.django_db(transaction=True)
def test_a_web_service_gets_its_token_from_the_platform(api, admin_user, alice, token_service, connprobe, worker):
    define(api, admin_user, "erp", token_service["url"], secret=token_service["token"])
    grant(api, admin_user, "erp", "connprobe")
    answer = probe(api, alice, name="erp", action="service", argument="orders?open=1")
    assert answer == {"ok": {"status": 200, "body": {"path": "/api/v2/orders?open=1", "items": [1, 2, 3]}}}


# ---------------------------------------------------------------- the sample app (examples/transport-db)


def shipped_and_runs(db) -> tuple[float, list]:
    with db.cursor() as cursor:
        cursor.execute("SELECT SUM(cases) FROM shipments")
        shipped = cursor.fetchone()[0]
        cursor.execute("SELECT status, total_cost FROM plan_runs")
        return shipped, [list(row) for row in cursor.fetchall()]


def transport_db_connected(user, admin_user, mariadb, platform_public_key):
    """The sample app published by ``user``, its connection defined and granted (through the services)."""
    from apps.connections import services

    version = publish_folder(user, TRANSPORT_DB, platform_public_key)
    url = f"mysql://{mariadb['user']}:{mariadb['password']}@127.0.0.1:3306/{mariadb['database']}"
    connection = services.connection_create(user=admin_user, name="transport-db", url=url)
    services.connection_grant(user=admin_user, connection=connection, app=version.app)
    return version


@pytest.mark.django_db(transaction=True)
def test_the_sample_app_plans_from_the_database_as_a_scheduled_task(
    api, admin_user, alice, mariadb, runtime, platform_public_key, worker
):
    from apps.schedules.models import Schedule
    from apps.schedules.services import schedules_tick

    transport_db_connected(alice, admin_user, mariadb, platform_public_key)
    body = {"app": "transport-db", "procedure": "refresh", "interval_seconds": 3600, "name": "nightly plan"}
    assert api(alice).post("/api/v1/schedules", body, format="json").status_code == 201
    schedule = Schedule.objects.get()
    (run_made,) = schedules_tick(node="test", now=schedule.next_run_at)
    job = wait_for(Job.objects.get(pk=run_made.job_id), JobState.SUCCEEDED, JobState.FAILED)
    assert job.state == JobState.SUCCEEDED, job.error_message
    shipped, runs = shipped_and_runs(mariadb["db"])
    assert shipped == pytest.approx(900)
    assert runs == [["Optimal", pytest.approx(153.675)]]
    log = log_of(api, alice, job)
    assert "3 markets and 6 lanes from transport-db" in log and mariadb["password"] not in log


@pytest.fixture
def transport_db_for_carol(carol, alice, admin_user, mariadb, runtime, platform_public_key):
    """Published and connected before the browser starts: Playwright's event loop forbids the ORM in this thread."""
    version = transport_db_connected(alice, admin_user, mariadb, platform_public_key)
    version.app.grants.create(user=carol, level="viewer")
    return mariadb


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_sample_app_loads_solves_and_writes_back_in_the_browser(live_node, transport_db_for_carol, browser_page):
    from tests.browser import log_in

    page, errors = browser_page
    log_in(page, live_node.url, "carol")
    page.locator("[data-app=transport-db]").get_by_role("button", name="Open").click()
    page.get_by_role("button", name="Load from the database").click()
    page.wait_for_function(
        "() => /6 lanes from transport-db/.test(document.getElementById('page').textContent)", timeout=30_000
    )
    assert page.get_by_label("supply San-Diego").input_value() == "600"
    page.get_by_label("supply San-Diego").fill("700")  # edited in the session, then planned and written back
    page.get_by_label("supply San-Diego").press("Tab")
    page.get_by_role("button", name="Solve and write the plan back").click()
    page.wait_for_function(
        "() => /Job \\d+ succeeded/.test(document.getElementById('status').textContent)", timeout=60_000
    )
    page.get_by_role("tab", name="Plan").click()
    assert "shipments written to transport-db" in page.locator("#page").inner_text()
    shipped, runs = shipped_and_runs(transport_db_for_carol["db"])
    assert shipped == pytest.approx(900)
    assert runs == [["Optimal", pytest.approx(153.675)]]  # more supply: the same optimal plan
    assert transport_db_for_carol["password"] not in page.content()
    assert not errors


@pytest.mark.django_db
def test_the_app_page_names_its_connections_to_its_managers_only(api, admin_user, alice, carol, connprobe):
    from tests.helpers import browser

    define(api, admin_user, "warehouse", "mysql://planner:hidden-pw@127.0.0.1:3306/plans")
    grant(api, admin_user, "warehouse", "connprobe")
    connprobe.app.grants.create(user=carol, level="viewer")
    page = browser(alice).get("/apps/connprobe/").content.decode()
    assert "Connections: warehouse (granted by an admin" in page and "hidden-pw" not in page
    assert "app-connections" not in browser(carol).get("/apps/connprobe/").content.decode()
    assert "/admin/pro_connections/connection/" in browser(admin_user).get("/apps/connprobe/").content.decode()


@pytest.mark.django_db
def test_the_django_admin_writes_the_secret_and_never_shows_it(admin_user, connprobe):
    from django.test import Client

    from apps.connections.models import Connection

    portal = Client()
    portal.force_login(admin_user)
    form = {
        "name": "erp",
        "title": "ERP",
        "description": "",
        "url": "https://erp.example.com/api",
        "secret": "tok-never-shown",
        "headers": '{"X-Site": "seven-and-more"}',
        "grants-TOTAL_FORMS": "1",
        "grants-INITIAL_FORMS": "0",
        "grants-MIN_NUM_FORMS": "0",
        "grants-MAX_NUM_FORMS": "1000",
        "grants-0-app": str(connprobe.app.pk),
    }
    response = portal.post("/admin/pro_connections/connection/add/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    made = Connection.objects.get(name="erp")
    assert made.kind == "service" and made.secret_sealed and made.headers_sealed
    assert list(made.apps.values_list("name", flat=True)) == ["connprobe"]
    page = portal.get(f"/admin/pro_connections/connection/{made.pk}/change/").content.decode()
    assert "tok-never-shown" not in page and "seven-and-more" not in page and made.secret_sealed not in page
    bad = portal.post("/admin/pro_connections/connection/add/", {**form, "name": "erp2", "headers": "{nope"})
    assert bad.status_code == 200 and "Not JSON" in bad.content.decode()
    assert not Connection.objects.filter(name="erp2").exists()
