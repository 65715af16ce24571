"""A large file goes through the real server in both directions without the server holding it in memory.

The ``pro`` command moves 300 MB up and down through the web server as ``run_platform`` starts it;
the server's peak resident memory must not grow with the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PeakRss, password, sha256_of, write_big_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.slow]

PRO = Path(sys.executable).parent / "pro"
SIZE = 300 * 1024 * 1024
MAX_GROWTH = 100 * 1024 * 1024


def pro(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRO_")}
    env.update({"PRO_URL": url, "PRO_USERNAME": "alice", "PRO_PASSWORD": password("alice")})
    completed = subprocess.run([str(PRO), *args], env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"pro {' '.join(args)}: {completed.stdout}{completed.stderr}"
    return completed


def test_a_300_mb_file_streams_through_the_server_with_flat_memory(platform_server, alice, storage_folder, tmp_path):
    source = tmp_path / "big.bin"
    expected = write_big_file(source, SIZE)
    pro(platform_server.url, "storage", "ls", "users/")  # the first request loads what the server loads once

    upload = PeakRss(platform_server.pid)
    with upload.measure():
        done = pro(platform_server.url, "storage", "put", str(source), "users/alice/big.bin")
    assert done.stdout.strip() == f"Stored users/alice/big.bin ({SIZE} bytes)."
    stored = storage_folder / "users" / "alice" / "big.bin"
    assert stored.stat().st_size == SIZE
    assert sha256_of(stored) == expected

    download = PeakRss(platform_server.pid)
    target = tmp_path / "back.bin"
    with download.measure():
        pro(platform_server.url, "storage", "get", "users/alice/big.bin", str(target))
    assert target.stat().st_size == SIZE
    assert sha256_of(target) == expected

    report = (
        f"server peak RSS growth ({upload.method}): upload {upload.growth / 2**20:.1f} MB, "
        f"download {download.growth / 2**20:.1f} MB (baselines {upload.baseline / 2**20:.0f} MB, "
        f"{download.baseline / 2**20:.0f} MB)"
    )
    print(report)
    assert upload.growth < MAX_GROWTH, report
    assert download.growth < MAX_GROWTH, report
