"""Storage on S3, for real: a local S3-compatible server in a process of its own (moto's server).

Nothing here patches boto3: the platform's own processes (the web server, a node's solve
worker) and this test process talk HTTP to that server, configured only by the environment
(``PRO_STORAGE_URL=s3://bucket/prefix`` and ``AWS_*``), as a cluster's nodes are; what they
store is then read back from the bucket with a separate boto3 client.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from sessions.runtime import package
from sessions.runtime.case import case_from_data, case_to_bytes, read_case
from sessions.runtime.interface import app_from_interface
from tests.helpers import ROOT, publish_as, rss_mb, wait_until
from tests.live import (
    START_TIMEOUT,
    PlatformServer,
    free_port,
    platform_env,
    start_group,
    start_node,
    start_web_server,
    stop_group,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

REGION = "eu-central-1"
PREFIX = "platform/storage"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "pro-test-key", "AWS_SECRET_ACCESS_KEY": "pro-test-secret"}
EXAMPLES = ROOT / "examples"
BIG = 12 * 1024 * 1024  # over boto3's 8 MiB multipart threshold: the upload goes up in parts
UPLOAD_LIMIT = 20 * 1024 * 1024


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    log_path: Path

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1}),
        )


def _answers(server: S3Server) -> bool:
    try:
        server.client().list_buckets()
    except (EndpointConnectionError, ClientError):
        return False
    return True


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3-compatible server on a free port of 127.0.0.1, stopped (its whole group) after the module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    command = [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)]
    process = start_group(command, {**os.environ, **CREDENTIALS}, log_path, cwd=log_path.parent)
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        up = wait_until(lambda: process.poll() is not None or _answers(server), START_TIMEOUT, interval=0.1)
        if not up or process.poll() is not None:
            raise AssertionError(f"the S3 server did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        yield server
    finally:
        stop_group(process)


@pytest.fixture
def bucket(s3_server) -> Iterator[str]:
    """An empty bucket of this test's own, emptied and removed after it."""
    name = f"pro-test-{uuid.uuid4().hex[:12]}"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield name
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for key in keys(s3_server, name):
        s3.delete_object(Bucket=name, Key=key)
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def s3_env(s3_server, bucket) -> dict[str, str]:
    """The environment that puts a platform process's storage in the bucket, under PREFIX."""
    return {
        "PRO_STORAGE_URL": f"s3://{bucket}/{PREFIX}",
        "AWS_S3_ENDPOINT_URL": s3_server.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        **CREDENTIALS,
    }


@pytest.fixture
def s3_storage(settings, monkeypatch, storage_folder, s3_env, bucket):
    """This test process's default storage on S3, built by the platform's own settings code.

    Changing ``STORAGES`` sends ``setting_changed``; Django's test receiver for it
    (``django.test.signals.storages_changed``) drops the cached backends of
    ``django.core.files.storage.storages`` and empties ``default_storage``, so the next use
    builds the S3 backend; the old setting comes back the same way after the test.
    """
    from django.core.files.storage import default_storage

    from pro_portal.settings import _storage_backend

    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {**settings.STORAGES, "default": _storage_backend(s3_env["PRO_STORAGE_URL"])}
    assert default_storage.bucket_name == bucket and default_storage.location == PREFIX
    return default_storage


def keys(s3_server: S3Server, bucket: str, under: str = "") -> list[str]:
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def object_bytes(s3_server: S3Server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def ticket(url: str, username: str) -> dict[str, str]:
    response = requests.post(
        f"{url}/api/v1/auth/tickets", json={"username": username, "password": f"{username}-Secret-pw-1"}, timeout=30
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['ticket']}"}


@pytest.fixture
def s3_web(transactional_db, s3_env, tmp_path) -> Iterator[PlatformServer]:
    """The platform's web server (the command ``run_platform`` runs) on the test database and the bucket."""
    env = platform_env(free_port(), PRO_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT), **s3_env)
    with start_web_server(env, tmp_path / "web.log") as server:
        yield server


def chunks_of(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    """A request body without a length: requests sends it with chunked transfer encoding."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_storage_api_round_trip_on_s3(s3_web, s3_server, bucket, carol, storage_folder):
    url, auth = s3_web.url, ticket(s3_web.url, "carol")
    api = f"{url}/api/v1/storage/users/carol"
    small = b"plant,market,cases\nSeattle,Chicago,300\n"
    response = requests.put(f"{api}/in/shipments.csv", data=small, headers=auth, timeout=30)
    assert response.status_code == 201, response.text
    assert response.json()["path"] == "users/carol/in/shipments.csv" and response.json()["size"] == len(small)
    assert keys(s3_server, bucket) == [f"{PREFIX}/users/carol/in/shipments.csv"]
    assert object_bytes(s3_server, bucket, f"{PREFIX}/users/carol/in/shipments.csv") == small

    # Several MB, sent without a length, in chunks; it reaches the bucket as a multipart upload.
    big = os.urandom(BIG)
    response = requests.put(f"{api}/in/big.bin", data=chunks_of(big), headers=auth, timeout=120)
    assert response.status_code == 201, response.text
    assert response.json()["size"] == BIG
    head = s3_server.client().head_object(Bucket=bucket, Key=f"{PREFIX}/users/carol/in/big.bin")
    assert head["ContentLength"] == BIG
    assert re.search(r"-\d+$", head["ETag"].strip('"')), f"not a multipart upload: ETag {head['ETag']}"

    listing = requests.get(f"{api}/in/", headers=auth, timeout=30)
    assert listing.status_code == 200, listing.text
    entries = {entry["name"]: entry for entry in listing.json()["entries"]}
    assert sorted(entries) == ["big.bin", "shipments.csv"]
    assert entries["big.bin"]["size"] == BIG and not entries["big.bin"]["is_folder"]
    assert entries["shipments.csv"]["modified"]
    top = requests.get(f"{api}/", headers=auth, timeout=30).json()["entries"]
    assert [(entry["name"], entry["is_folder"]) for entry in top] == [("in", True)]

    assert requests.get(f"{api}/in/shipments.csv", headers=auth, timeout=30).content == small
    digest, pieces = hashlib.sha256(), 0
    with requests.get(f"{api}/in/big.bin", headers=auth, stream=True, timeout=120) as download:
        assert download.status_code == 200
        assert download.headers["Content-Length"] == str(BIG)
        for piece in download.iter_content(1024 * 1024):
            digest.update(piece)
            pieces += 1
    assert digest.hexdigest() == hashlib.sha256(big).hexdigest() and pieces >= BIG // (1024 * 1024)

    # A second PUT replaces the object; over the limit is refused and leaves nothing behind.
    response = requests.put(f"{api}/in/shipments.csv", data=small * 2, headers=auth, timeout=30)
    assert response.status_code == 201 and response.json()["size"] == 2 * len(small)
    assert object_bytes(s3_server, bucket, f"{PREFIX}/users/carol/in/shipments.csv") == small * 2
    too_big = bytes(UPLOAD_LIMIT + 1)
    refused = requests.put(f"{api}/in/too-big.bin", data=chunks_of(too_big, 1024 * 1024), headers=auth, timeout=120)
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "too_large"
    assert f"{PREFIX}/users/carol/in/too-big.bin" not in keys(s3_server, bucket)
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    # Other users' folders stay out of reach on S3 as on a disk.
    assert requests.get(f"{url}/api/v1/storage/users/alice/", headers=auth, timeout=30).status_code == 404

    for name in ("shipments.csv", "big.bin"):
        assert requests.delete(f"{api}/in/{name}", headers=auth, timeout=30).status_code == 204
    assert keys(s3_server, bucket) == []
    assert requests.get(f"{api}/in/big.bin", headers=auth, timeout=30).status_code == 404
    assert requests.delete(f"{api}/in/big.bin", headers=auth, timeout=30).status_code == 404
    assert requests.get(f"{api}/in/", headers=auth, timeout=30).json()["entries"] == []
    assert files_in(storage_folder) == [], "the web server wrote to the file storage, not to S3"


def test_publish_and_cases_on_s3(s3_storage, s3_server, bucket, alice, runtime, platform_public_key, api):
    from sessions.cases import case_delete, case_read_bytes, case_store

    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    version = publish_as(alice, blob)  # verification reads the package back from the bucket
    assert version.verification_state == "verified", version.verification_error
    stored = keys(s3_server, bucket)
    assert f"{PREFIX}/{version.package_path}" in stored and f"{PREFIX}/{version.icon_path}" in stored
    assert object_bytes(s3_server, bucket, f"{PREFIX}/{version.package_path}") == blob
    icon = api(alice).get("/api/v1/apps/transport/icon")
    assert icon.status_code == 200
    assert b"".join(icon.streaming_content if icon.streaming else [icon.content]).lstrip().startswith(b"<")

    data = app_from_interface(version.manifest).new_data()  # the app's identifiers, from its manifest
    data.update_from_dict({"supply": {"Seattle": 350.0, "San-Diego": 600.0}})
    case_blob = case_to_bytes(case_from_data(data, meta={"app": "transport"}))
    case = case_store(owner=alice, app=version.app, app_version=version, blob=case_blob, name="baseline")
    key = f"{PREFIX}/cases/transport/{case.id}.case"
    assert case.storage_path == f"cases/transport/{case.id}.case" and key in keys(s3_server, bucket)
    assert object_bytes(s3_server, bucket, key) == case_blob
    assert case_read_bytes(case) == case_blob
    assert read_case(case_read_bytes(case)).table("supply") == {"Seattle": 350.0, "San-Diego": 600.0}

    listed = api(alice).get("/api/v1/cases?app=transport").json()
    assert [item["name"] for item in listed] == ["baseline"]
    case_delete(case=case)
    assert key not in keys(s3_server, bucket)


def test_solve_job_on_a_live_node_on_s3(
    s3_storage, s3_env, s3_server, bucket, alice, runtime, platform_public_key, tmp_path, storage_folder
):
    blob, _ = package.pack_folder(EXAMPLES / "transport", platform_public_key)
    version = publish_as(alice, blob)
    assert version.verification_state == "verified", version.verification_error
    node = start_node(tmp_path, storage_folder, roles=("solves",), extra_env=s3_env)
    try:
        auth = ticket(node.url, "alice")
        response = requests.post(
            f"{node.url}/api/v1/jobs", json={"app": "transport", "procedure": "solve"}, headers=auth, timeout=30
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]

        def finished() -> dict | None:
            job = requests.get(f"{node.url}/api/v1/jobs/{job_id}", headers=auth, timeout=30).json()
            return job if job["state"] in ("succeeded", "failed", "cancelled") else None

        job = wait_until(finished, 120, interval=0.2)
        assert job and job["state"] == "succeeded", f"{job}\n{node.log('solves')[-5000:]}"
        result = requests.get(f"{node.url}/api/v1/jobs/{job_id}/result?format=json", headers=auth, timeout=30)
        assert result.json()["identifiers"]["total_cost"] == pytest.approx(153.675, rel=1e-6)
        log = requests.get(f"{node.url}/api/v1/jobs/{job_id}/log", headers=auth, timeout=30).json()
        assert log["finished"] and log["text"]
        download = requests.get(f"{node.url}/api/v1/jobs/{job_id}/result", headers=auth, timeout=30).content
    finally:
        node.stop()

    from sessions.models import Job

    record = Job.objects.select_related("input_case", "result_case").get(pk=job_id)
    stored = keys(s3_server, bucket)
    assert f"{PREFIX}/{record.input_case.storage_path}" in stored
    result_key = f"{PREFIX}/{record.result_case.storage_path}"
    assert result_key in stored and object_bytes(s3_server, bucket, result_key) == download
    assert read_case(download).values["total_cost"] == pytest.approx(153.675, rel=1e-6)
    assert re.fullmatch(rf"jobs/{job_id}/log-[0-9a-f]{{12}}\.txt", record.log_path)
    assert object_bytes(s3_server, bucket, f"{PREFIX}/{record.log_path}").decode() == log["text"]
    assert files_in(storage_folder) == [], "the node wrote to the file storage, not to S3"


def test_a_download_from_s3_streams_with_flat_server_memory(s3_web, s3_server, bucket, carol):
    """The web server reads the object as it sends it: its memory does not grow with the file."""
    size = 96 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    key = f"{PREFIX}/users/carol/large.bin"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=block * (size // len(block)))
    url, auth = s3_web.url, ticket(s3_web.url, "carol")
    requests.get(f"{url}/api/v1/storage/users/carol/", headers=auth, timeout=30)  # warm: imports, connections
    baseline = peak = rss_mb(s3_web.pid)
    received = 0
    with requests.get(f"{url}/api/v1/storage/users/carol/large.bin", headers=auth, stream=True, timeout=300) as got:
        assert got.status_code == 200 and got.headers["Content-Length"] == str(size)
        for piece in got.iter_content(1024 * 1024):
            assert piece == block[: len(piece)] or len(piece) < len(block)
            received += len(piece)
            peak = max(peak, rss_mb(s3_web.pid))
    assert received == size
    growth = peak - baseline
    print(f"\nserver RSS {baseline:.0f} MB, peak {peak:.0f} MB (+{growth:.0f} MB) for a {size >> 20} MB S3 object")
    assert growth < 40, f"the server grew by {growth:.0f} MB sending a {size >> 20} MB object"


def test_a_file_on_s3_reads_from_any_position(s3_storage, s3_server, bucket):
    """Job logs are read from an offset on: a seek is a new ranged GET, not a download of the whole."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    data = bytes(range(256)) * 4096  # 1 MiB
    default_storage.save("jobs/7/log.txt", ContentFile(data))
    with default_storage.open("jobs/7/log.txt", "rb") as handle:
        assert handle.size == len(data)
        handle.seek(1000)
        assert handle.read(10) == data[1000:1010]
        handle.seek(-6, 2)
        assert handle.read() == data[-6:]
        handle.seek(0)
        assert handle.read() == data
    with pytest.raises(FileNotFoundError):
        default_storage.open("jobs/7/missing.txt", "rb")
