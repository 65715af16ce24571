"""Get the admin database ready before a container's node starts (run by docker/entrypoint.sh).

A node with the web role migrates the admin database and runs ``pro_bootstrap``, holding a
PostgreSQL advisory lock so that web nodes starting at the same time take turns (Django's
migrations must not run twice at once), then collects the static files into its data folder.
Any other node waits until the database answers and has every migration applied, so that its
agent and workers never start on a database a web node is still migrating.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 300
LOCK_KEY = 0x70726F5F6D6967  # "pro_mig": the advisory lock web nodes take turns with


def say(message: str) -> None:
    print(f"prepare: {message}", flush=True)


def reachable() -> bool:
    from django.db import DatabaseError, connection

    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        say(f"waiting for the database: {exc}".strip())
        connection.close()
        return False
    return True


def migrated() -> bool:
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    if not reachable():
        return False
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        say(f"waiting for the database: {exc}".strip())
        connection.close()
        return False
    if pending:
        say(f"waiting for a web node to apply {len(pending)} migrations")
    return not pending


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"prepare: {what} not reached in {WAIT_SECONDS} s; giving up")
        time.sleep(2)


@contextlib.contextmanager
def migration_lock():
    """Hold PostgreSQL's advisory lock on a connection of its own.

    Not on Django's default connection: code that runs under the lock may close that one (the
    ORM broker of django-q closes obsolete connections when it enqueues), which would drop
    the lock half-way.
    """
    from django.db import connection, connections

    if connection.vendor != "postgresql":  # SQLite: one machine, nothing to take turns with
        yield
        return
    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:
            say("waiting for the migration lock")
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        yield
    finally:
        holder.close()  # ends the session, and with it the lock


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pro_portal.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if "web" not in settings.PRO_NODE_ROLES:
        wait_for(migrated, "a migrated admin database")
        say("the admin database is ready")
        return
    wait_for(reachable, "the database")
    samples = os.environ.get("PRO_BOOTSTRAP_SAMPLES", "true").strip().lower() not in ("0", "false", "no", "off")
    with migration_lock():
        call_command("migrate", interactive=False, verbosity=1)
        call_command("pro_bootstrap", no_samples=not samples)
    call_command("collectstatic", interactive=False, verbosity=0)
    say("the admin database is migrated and bootstrapped")


if __name__ == "__main__":
    main()
