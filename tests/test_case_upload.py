"""Case uploads stream into storage, checked on the way, and the web server does not hold them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import requests

from sessions.case_check import CaseStreamCheck
from sessions.runtime.case import MAGIC, CaseData, CaseFormatError, case_to_bytes, read_case
from tests.helpers import PeakRss, publish_as, sha256_of

CASE = CaseData(
    meta={"app": "demo"},
    sets={"items": ["a", "b", "c"]},
    values={"weight": np.array([1.0, 2.5, 4.0]), "label": "hello", "count": 3},
    index={"weight": ["items"]},
    types={"weight": "float", "label": "str", "count": "int"},
)


def numbers_case(count: int, seed: int) -> bytes:
    values = np.random.default_rng(seed).random(count)
    return case_to_bytes(CaseData(sets={"s": list(range(count))}, values={"w": values}, index={"w": ["s"]}))


def check_stream(blob: bytes, chunk: int) -> None:
    check = CaseStreamCheck()
    for start in range(0, len(blob), chunk):
        check.feed(blob[start : start + chunk])
    check.finish()


def with_header(blob: bytes, change) -> bytes:
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    header = json.loads(blob[start : start + length])
    change(header)
    raw = json.dumps(header).encode()
    return MAGIC + struct.pack(">I", len(raw)) + raw + blob[start + length :]


def damaged_cases() -> dict[str, bytes]:
    good = case_to_bytes(CASE)
    return {
        "empty": b"",
        "short": b"PROC",
        "not a case": b"PK\x03\x04" + good[4:],
        "a future format": MAGIC[:7] + b"\x02" + good[8:],
        "a cut header": good[:20],
        "a huge header length": MAGIC + struct.pack(">I", 2**31) + good[12:],
        "a header that is not JSON": MAGIC + struct.pack(">I", 5) + b"{nope" + good[12:],
        "a header without blocks": with_header(good, lambda h: h.pop("blocks")),
        "a cut block": good[:-3],
        "a flipped byte in a block": good[:-6] + bytes([good[-6] ^ 0xFF]) + good[-5:],
        "more values than the header says": with_header(
            good, lambda h: [b.update(count=2) for b in h["blocks"] if b["name"] == "weight"]
        ),
        "fewer values than the header says": with_header(
            good, lambda h: [b.update(count=4) for b in h["blocks"] if b["name"] == "weight"]
        ),
        "an empty block": with_header(good, lambda h: h["blocks"].append({**h["blocks"][0], "name": "x", "length": 0})),
    }


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 30])
def test_a_good_case_passes_in_any_chunking(chunk):
    blob = case_to_bytes(CASE)
    read_case(blob)
    check_stream(blob, chunk)
    check_stream(case_to_bytes(CaseData(meta={})), chunk)


@pytest.mark.parametrize("name", list(damaged_cases()))
@pytest.mark.parametrize("chunk", [1, 4096])
def test_the_check_refuses_what_read_case_refuses(name, chunk):
    blob = damaged_cases()[name]
    with pytest.raises((CaseFormatError, IndexError, KeyError, struct.error)):
        read_case(blob)
    with pytest.raises(CaseFormatError):
        check_stream(blob, chunk)


def raw_case(blocks: list[tuple[dict, bytes]]) -> bytes:
    """A case put together by hand from (header entry, compressed block) pairs."""
    entries, offset = [], 0
    for entry, block in blocks:
        entries.append({**entry, "offset": offset, "length": len(block), "codec": "zlib"})
        offset += len(block)
    header = json.dumps({"format": 1, "meta": {}, "blocks": entries}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + b"".join(block for _, block in blocks)


@pytest.mark.slow
def test_a_numeric_bomb_stops_at_the_count_its_header_gives():
    # 1 GiB of zeros compresses to about 1 MiB; the header claims 3 values: refused within the first MiB out.
    packer = zlib.compressobj(9)
    bomb = b"".join(packer.compress(bytes(1 << 20)) for _ in range(1024)) + packer.flush()
    entry = {"name": "w", "kind": "parameter", "type": "float", "index": ["s"], "dtype": "<f8", "count": 3}
    sets = ({"name": "s", "kind": "set", "dtype": "json", "count": 3}, zlib.compress(b"[1, 2, 3]"))
    good = raw_case([sets, (entry, zlib.compress(np.zeros(3).tobytes()))])
    read_case(good)
    check_stream(good, 4096)
    with pytest.raises(CaseFormatError, match="more values than its header says"):
        check_stream(raw_case([sets, (entry, bomb)]), 1 << 20)


def test_blocks_with_gaps_pass_and_overlapping_ones_do_not():
    one = ({"name": "a", "kind": "set", "dtype": "json", "count": 1}, zlib.compress(b"[1]"))
    two = ({"name": "b", "kind": "set", "dtype": "json", "count": 1}, zlib.compress(b"[2]"))
    blob = raw_case([one, two])

    def gap(header):
        header["blocks"][1]["offset"] += 5

    spaced = with_header(blob, gap)
    spaced = spaced[: -len(two[1])] + b"\0" * 5 + two[1]
    assert read_case(spaced).sets == {"a": [1], "b": [2]}
    check_stream(spaced, 3)

    def overlap(header):
        header["blocks"][1]["offset"] = 1

    with pytest.raises(CaseFormatError, match="overlaps"):
        check_stream(with_header(blob, overlap), 4096)


# ---------------------------------------------------------------- the service and the API


class ChunkOnlySource:
    """A body that lets itself be read in chunks only, as a stream into storage does."""

    def __init__(self, blob: bytes):
        self.source, self.reads = io.BytesIO(blob), []

    def read(self, size: int = -1) -> bytes:
        assert 0 < size <= 1024 * 1024, f"read({size}) would hold the whole body"
        self.reads.append(size)
        return self.source.read(size)


@pytest.fixture
def demo_app(runtime, alice, pack):
    return publish_as(alice, pack(), verify=False).app


def stored_files(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "cases").rglob("*") if p.is_file()) if (folder / "cases").exists() else []


def test_case_upload_streams_into_storage_in_chunks(demo_app, alice, storage_folder):
    from sessions.cases import case_load, case_upload

    blob = numbers_case(400_000, 1)
    source = ChunkOnlySource(blob)
    case = case_upload(user=alice, app_name="demo", stream=source, name="big")
    assert len(source.reads) > 1
    assert case.size == len(blob)
    assert (storage_folder / case.storage_path).read_bytes() == blob
    assert case_load(case).values["w"].shape == (400_000,)


def test_a_bad_case_leaves_nothing(demo_app, alice, storage_folder, api):
    from sessions.models import Case

    for blob in damaged_cases().values():
        response = api(alice).post("/api/v1/cases?app=demo", blob, content_type="application/octet-stream")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "bad_case"
    assert not Case.objects.exists()
    assert stored_files(storage_folder) == []


def test_a_case_over_the_limit_leaves_nothing(demo_app, alice, storage_folder, api, settings):
    from sessions.cases import case_upload
    from sessions.models import Case

    blob = numbers_case(10_000, 2)
    settings.PRO_MAX_CASE_BYTES = len(blob) - 1
    response = api(alice).post("/api/v1/cases?app=demo", blob, content_type="application/octet-stream")
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    with pytest.raises(Exception, match="over the limit"):  # no Content-Length: stopped while reading
        case_upload(user=alice, app_name="demo", stream=ChunkOnlySource(blob))
    assert not Case.objects.exists()
    assert stored_files(storage_folder) == []
    settings.PRO_MAX_CASE_BYTES = len(blob)
    response = api(alice).post("/api/v1/cases?app=demo&name=fits", blob, content_type="application/octet-stream")
    assert response.status_code == 201, response.content
    assert response.json()["size"] == len(blob)


def test_a_case_for_an_unknown_app_is_not_read(alice, api, storage_folder):
    from sessions.cases import case_upload

    class Unread:
        def read(self, size=-1):
            raise AssertionError("the body was read")

    response = api(alice).post("/api/v1/cases?app=nope", case_to_bytes(CASE), content_type="application/octet-stream")
    assert response.status_code == 404
    with pytest.raises(Exception, match="no app"):
        case_upload(user=alice, app_name="nope", stream=Unread())


def test_a_case_as_a_form_field_is_stored_too(demo_app, alice, api):
    blob = case_to_bytes(CASE)
    upload = io.BytesIO(blob)
    upload.name = "saved.case"
    response = api(alice).post("/api/v1/cases?app=demo", {"case": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["size"] == len(blob)


# ---------------------------------------------------------------- through the real server

ROWS, COLUMNS = 4096, 6144  # 25 M random floats: a case of about 180 MiB
MAX_GROWTH = 100 * 1024 * 1024


def write_big_case(path: Path, rows: int = ROWS, columns: int = COLUMNS) -> str:
    """A valid case of random floats over two sets, written 256 rows at a time; return its sha256."""
    sets = {"i": list(range(rows)), "j": list(range(columns))}
    placeholder = 64 * 1024
    with open(path, "w+b") as sink:
        sink.write(b"\0" * (len(MAGIC) + 4 + placeholder))
        offset, entries = 0, []
        for name, elements in sets.items():
            block = zlib.compress(json.dumps(elements).encode(), 1)
            entries.append({"name": name, "kind": "set", "dtype": "json", "count": len(elements)})
            entries[-1].update(offset=offset, length=len(block), codec="zlib")
            sink.write(block)
            offset += len(block)
        packer, length = zlib.compressobj(1), 0
        numbers = np.random.default_rng(3)
        for _ in range(rows // 256):
            piece = packer.compress(numbers.random(256 * columns).astype("<f8").tobytes())
            sink.write(piece)
            length += len(piece)
        piece = packer.flush()
        sink.write(piece)
        length += len(piece)
        entries.append(
            {"name": "cost", "kind": "parameter", "type": "float", "index": ["i", "j"], "dtype": "<f8"}
            | {"count": rows * columns, "offset": offset, "length": length, "codec": "zlib"}
        )
        header = json.dumps({"format": 1, "meta": {"app": "demo"}, "blocks": entries}).encode()
        header = header + b" " * (placeholder - len(header))
        sink.seek(0)
        sink.write(MAGIC + struct.pack(">I", len(header)) + header)
    return sha256_of(path)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_180_mib_case_upload_does_not_grow_the_server(platform_server, demo_app, alice, storage_folder, tmp_path):
    from apps.accounts.services import ticket_issue_for_user
    from sessions.models import Case

    source = tmp_path / "big.case"
    expected = write_big_case(source)
    size = source.stat().st_size
    raw, _ = ticket_issue_for_user(user=alice)
    auth = {"Authorization": f"Bearer {raw}"}
    assert requests.get(f"{platform_server.url}/api/v1/cases", headers=auth, timeout=30).status_code == 200

    memory = PeakRss(platform_server.pid)
    with memory.measure(), open(source, "rb") as body:
        response = requests.post(
            f"{platform_server.url}/api/v1/cases?app=demo&name=big",
            data=body,
            headers={**auth, "Content-Type": "application/octet-stream"},
            timeout=300,
        )
    assert response.status_code == 201, response.text
    case = Case.objects.get(pk=response.json()["id"])
    assert case.size == size
    assert sha256_of(storage_folder / case.storage_path) == expected
    report = (
        f"server peak RSS growth ({memory.method}) for a {size / 2**20:.0f} MB case: {memory.growth / 2**20:.1f} MB"
    )
    print(report)
    assert memory.growth < MAX_GROWTH, report
    os.unlink(source)


def test_the_big_case_writer_writes_a_case(tmp_path):
    path = tmp_path / "small.case"
    digest = write_big_case(path, rows=512, columns=64)
    blob = path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == digest
    assert read_case(blob).values["cost"].shape == (512 * 64,)
    check_stream(blob, 1 << 20)
