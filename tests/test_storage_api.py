"""The storage file API: private and shared folders, streaming, and paths that try to escape."""

import pytest

from tests.helpers import body_of

pytestmark = pytest.mark.django_db


def put(client, path, content: bytes):
    return client.generic("PUT", f"/api/v1/storage/{path}", content, content_type="application/octet-stream")


def get_bytes(response) -> bytes:
    return body_of(response)


def test_private_folder_round_trip(api, carol, storage_folder):
    client = api(carol)
    response = put(client, "users/carol/models/afiro.mps", b"NAME AFIRO\n")
    assert response.status_code == 201
    assert response.json() == {
        **response.json(),
        "path": "users/carol/models/afiro.mps",
        "size": 11,
        "is_folder": False,
    }
    assert (storage_folder / "users/carol/models/afiro.mps").read_bytes() == b"NAME AFIRO\n"
    download = client.get("/api/v1/storage/users/carol/models/afiro.mps")
    assert download.status_code == 200 and get_bytes(download) == b"NAME AFIRO\n"
    assert download["Content-Length"] == "11"
    listing = client.get("/api/v1/storage/users/carol/").json()
    assert listing["entries"] == [
        {"name": "models", "path": "users/carol/models", "is_folder": True, "size": None, "modified": None}
    ]
    assert client.delete("/api/v1/storage/users/carol/models/afiro.mps").status_code == 204
    assert client.get("/api/v1/storage/users/carol/models/afiro.mps").status_code == 404


def test_put_replaces_whole_file(api, carol, storage_folder):
    put(api(carol), "users/carol/a.txt", b"first version, long")
    put(api(carol), "users/carol/a.txt", b"second")
    assert (storage_folder / "users/carol/a.txt").read_bytes() == b"second"
    assert [p.name for p in (storage_folder / "users/carol").iterdir()] == ["a.txt"]


def test_other_users_folder_is_not_found(api, carol, dave):
    put(api(carol), "users/carol/secret.txt", b"x")
    for method in ("get", "delete"):
        response = getattr(api(dave), method)("/api/v1/storage/users/carol/secret.txt")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert put(api(dave), "users/carol/planted.txt", b"x").status_code == 404
    assert api(dave).get("/api/v1/storage/users/carol/").status_code == 404


def test_app_folder_is_shared_with_granted_users(api, alice, carol, dave, published):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol", "level": "collaborator"}, format="json")
    assert put(api(alice), "apps/demo/data/input.csv", b"a,b\n").status_code == 201
    assert get_bytes(api(carol).get("/api/v1/storage/apps/demo/data/input.csv")) == b"a,b\n"
    assert put(api(carol), "apps/demo/data/result.csv", b"1,2\n").status_code == 201
    assert api(dave).get("/api/v1/storage/apps/demo/data/input.csv").status_code == 404
    assert put(api(dave), "apps/demo/data/x", b"").status_code == 404


def test_root_listing_shows_reachable_folders(api, alice, carol, published):
    api(alice).post("/api/v1/apps/demo/grants", {"username": "carol"}, format="json")
    client = api(carol)
    assert [e["path"] for e in client.get("/api/v1/storage/").json()["entries"]] == ["apps", "users"]
    assert [e["path"] for e in client.get("/api/v1/storage/apps/").json()["entries"]] == ["apps/demo"]
    assert [e["path"] for e in client.get("/api/v1/storage/apps/demo/").json()["entries"]] == ["apps/demo/data"]
    assert [e["path"] for e in client.get("/api/v1/storage/users/").json()["entries"]] == ["users/carol"]
    assert client.get("/api/v1/storage/apps/demo/data/").json()["entries"] == []


def test_admin_sees_all(api, admin_user, carol, published):
    put(api(carol), "users/carol/x.txt", b"x")
    client = api(admin_user)
    names = {e["name"] for e in client.get("/api/v1/storage/").json()["entries"]}
    assert {"users", "packages"} <= names
    assert get_bytes(client.get("/api/v1/storage/users/carol/x.txt")) == b"x"


def test_platform_folders_are_admin_only(api, alice, published):
    path = published.package_path
    assert api(alice).get(f"/api/v1/storage/{path}").status_code == 404
    assert put(api(alice), "packages/demo/evil.proapp", b"x").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "users/carol/../dave/x",
        "users/carol/./x",
        "users/carol/%2e%2e/dave/x",
        "users/carol/..%2fdave/x",
        "users/carol/a\\..\\b",
        "users/carol/a%00b",
        "users/carol/.upload-abc",
    ],
)
def test_paths_that_escape_are_refused(api, carol, dave, storage_folder, path):
    response = put(api(carol), path, b"x")
    assert response.status_code in (400, 404)
    assert response.json()["error"]["code"] in ("bad_path", "not_found")
    assert not [p for p in storage_folder.rglob("*") if p.is_file()]


def test_writing_a_platform_folder_itself_is_refused(api, alice, published):
    response = put(api(alice), "apps/demo/data", b"x")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_path"
    assert put(api(alice), "users/alice", b"x").status_code == 400


def test_file_over_the_limit_is_refused_and_nothing_stays(api, carol, storage_folder, settings):
    settings.PRO_MAX_UPLOAD_BYTES = 1000
    response = put(api(carol), "users/carol/big.bin", b"x" * 2000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert not [p for p in storage_folder.rglob("*") if p.is_file()]


def test_limit_without_content_length_leaves_old_file(api, carol, storage_folder, settings):
    from apps.storage import services

    put(api(carol), "users/carol/keep.bin", b"good")
    settings.PRO_MAX_UPLOAD_BYTES = 1000
    import io

    with pytest.raises(services.TooLarge):
        services.storage_put(user=carol, path="users/carol/keep.bin", stream=io.BytesIO(b"y" * 5000))
    assert (storage_folder / "users/carol/keep.bin").read_bytes() == b"good"
    assert [p.name for p in (storage_folder / "users/carol").iterdir()] == ["keep.bin"]


def test_delete_missing_and_folder(api, carol):
    assert api(carol).delete("/api/v1/storage/users/carol/none.txt").status_code == 404
    put(api(carol), "users/carol/sub/x.txt", b"x")
    assert api(carol).delete("/api/v1/storage/users/carol/sub").status_code == 404


def test_get_a_folder_without_slash_lists_nothing_wrong(api, carol):
    put(api(carol), "users/carol/sub/x.txt", b"x")
    assert api(carol).get("/api/v1/storage/users/carol/sub").status_code == 404


def test_anonymous_is_refused(db):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/storage/").status_code == 401
