"""Settings for the test suite: the real settings, with the data folder under var/test."""

import os
from pathlib import Path

os.environ.setdefault("PRO_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from .settings import *  # noqa: F403

# Builds of app environments use no network in the tests: the sample apps' requirements are
# downloaded into var/test-wheelhouse by `make test` (tests/wheelhouse.py).
PRO_PACKAGE_INDEX_URL = os.environ.get("PRO_PACKAGE_INDEX_URL", "")
PRO_FIND_LINKS = [BASE_DIR / "var" / "test-wheelhouse"]  # noqa: F405

# Hashing is not under test; the default hasher costs a quarter second per login.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# One test database per run, so that two runs on one machine never share (or drop) each other's.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": DATA_DIR / f"test-db-{os.getpid()}.sqlite3"}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_pro_platform_{os.getpid()}"}  # noqa: F405
