"""A large file passes through the real server both ways with flat memory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PRO = str(Path(sys.executable).parent / "pro")
SIZE = 300 * 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_big_file(path: Path) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as sink:
        for i in range(SIZE // len(block)):
            chunk = block[:-1] + bytes([i % 256])
            digest.update(chunk)
            sink.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def test_300_mb_up_and_down_with_flat_server_memory(live_node, carol, tmp_path, storage_folder):
    big = tmp_path / "big.bin"
    digest = write_big_file(big)
    web = live_node.processes["web"].pid
    baseline = rss_mb(web)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb(web))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    env = {**os.environ, "PRO_CONFIG_DIR": str(tmp_path / "cfg"), "PRO_PASSWORD": "carol-Secret-pw-1"}
    try:
        subprocess.run(
            [PRO, "login", "--url", live_node.url, "--username", "carol"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [PRO, "storage", "put", str(big), "users/carol/big.bin"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(
            [PRO, "storage", "get", "users/carol/big.bin", str(tmp_path / "back.bin")],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        done.set()
        sampler.join()
    assert sha256_of(storage_folder / "users/carol/big.bin") == digest
    assert sha256_of(tmp_path / "back.bin") == digest
    growth = peak[0] - baseline
    print(f"\nserver RSS {baseline:.0f} MB, peak {peak[0]:.0f} MB (+{growth:.0f} MB) for a {SIZE // 2**20} MB file")
    assert growth < 100, f"the server grew by {growth:.0f} MB moving a {SIZE // 2**20} MB file"
