"""Settings for the test suite: the real settings, with the data folder under var/test."""

import os
from pathlib import Path

os.environ.setdefault("PRO_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from .settings import *  # noqa: F403

# Hashing is not under test; the default hasher costs a quarter second per login.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # One file per test run, so that two runs on one machine never share a database.
    DATABASES["default"]["TEST"] = {"NAME": DATA_DIR / f"test-db-{os.getpid()}.sqlite3"}  # noqa: F405
