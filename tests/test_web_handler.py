"""The web server's request threads (pro_portal/handler.py): each keeps its database connection
between requests, and a connection the database dropped is replaced before the next request
uses it, not answered with an error."""

from __future__ import annotations

import pytest
import requests
from django.db import connection

from apps.accounts.services import ticket_issue_for_user
from tests.live import free_port, platform_env, start_web_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def kept_connections_server(transactional_db, storage_folder, tmp_path):
    """The web server with connections kept, as ``run_platform`` starts it (two processes)."""
    env = platform_env(free_port(), storage_folder.as_uri(), PRO_DB_CONN_MAX_AGE="600", PRO_WEB_WORKERS="2")
    with start_web_server(env, tmp_path / "web.log") as server:
        yield server


def server_backends() -> list[int]:
    """The PostgreSQL backends of the web server's request threads (its listeners for notifications aside)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query NOT LIKE 'LISTEN%%'"
        )
        return [row[0] for row in cursor.fetchall()]


def ask(server, headers, times: int) -> list[int]:
    return [requests.get(f"{server.url}/api/v1/apps", headers=headers, timeout=30).status_code for _ in range(times)]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="counts PostgreSQL's backends (CI runs on PostgreSQL)")
def test_requests_reuse_their_threads_connections_and_survive_a_dropped_one(kept_connections_server, alice):
    headers = {"Authorization": f"Bearer {ticket_issue_for_user(user=alice)[0]}"}
    before = set(server_backends())
    assert ask(kept_connections_server, headers, 40) == [200] * 40
    kept = set(server_backends()) - before
    # Two processes of one request thread each: their connections stay, one each, however many requests.
    assert 1 <= len(kept) <= 2, kept
    assert ask(kept_connections_server, headers, 20) == [200] * 20
    assert set(server_backends()) - before == kept  # the same ones, not new ones

    with connection.cursor() as cursor:  # the database drops them (a restart, a failover, an admin)
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(kept)])
    assert ask(kept_connections_server, headers, 10) == [200] * 10
    assert not (set(server_backends()) & kept)
