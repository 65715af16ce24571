"""A large file goes through the real server in both directions without the server holding it in memory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PRO = Path(sys.executable).parent / "pro"
SIZE = 300 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH = 100 * 1024 * 1024


def write_big_file(path: Path, size: int) -> str:
    """``size`` bytes, written a chunk at a time; return their sha256.

    Random chunks alternate with holes (left sparse on disk), so no compression or
    deduplication anywhere on the way could make the transfer cheaper than it is.
    """
    digest = hashlib.sha256()
    with open(path, "wb") as sink:
        written = 0
        while written < size:
            step = min(CHUNK, size - written)
            if (written // CHUNK) % 2 == 0:
                chunk = os.urandom(step)
                sink.write(chunk)
            else:
                chunk = bytes(step)
                sink.seek(step, os.SEEK_CUR)
            digest.update(chunk)
            written += step
        sink.truncate(size)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakRss:
    """The peak resident memory of a process during a block, in bytes.

    The kernel's high-water mark (VmHWM) is reset through ``clear_refs``; where that file
    cannot be written, VmRSS is sampled from a thread instead.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.baseline = self.peak = 0
        self.method = ""

    def _reset_hwm(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return status_kb(self.pid, "VmHWM") <= status_kb(self.pid, "VmRSS") + 1024

    @contextlib.contextmanager
    def measure(self):
        self.baseline = status_kb(self.pid, "VmRSS") * 1024
        if self._reset_hwm():
            self.method = "VmHWM"
            yield self
            self.peak = status_kb(self.pid, "VmHWM") * 1024
            return
        self.method = "sampled VmRSS"
        done = threading.Event()
        samples = [self.baseline]

        def sample():
            while not done.wait(0.01):
                samples.append(status_kb(self.pid, "VmRSS") * 1024)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            done.set()
            sampler.join()
            self.peak = max(samples)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def pro(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRO_")}
    env.update({"PRO_URL": url, "PRO_USERNAME": "alice", "PRO_PASSWORD": "alice-Secret-pw-1"})
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
