"""Who may change which files: an app's shared folder for its collaborators, owner and admins
(viewers read it), and the platform's own folders for nobody through the file API."""

import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.catalog.models import App
from tests.helpers import api_as, body_of, browser, messages_of

pytestmark = pytest.mark.django_db

SHARED = "apps/lab/data/plants.csv"
ORIGINAL = b"plant,supply\n"


def put(client, path: str, content: bytes):
    return client.generic("PUT", f"/api/v1/storage/{path}", content, content_type="application/octet-stream")


@pytest.fixture
def shared(lab, alice, storage_folder):
    """The lab app's shared folder, holding one file alice (the owner) put there."""
    assert put(api_as(alice), SHARED, ORIGINAL).status_code == 201
    return storage_folder


def grant(user, level: str) -> None:
    App.objects.get(name="lab").grants.create(user=user, level=level)


def files_in(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_forbidden(response, *words: str) -> None:
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    for word in words:
        assert word in error["message"], error["message"]


# ---------------------------------------------------------------- an app's shared folder


def test_viewer_reads_but_does_not_change_the_shared_folder(shared, carol):
    grant(carol, "viewer")
    client = api_as(carol)
    assert body_of(client.get(f"/api/v1/storage/{SHARED}")) == ORIGINAL
    assert [e["path"] for e in client.get("/api/v1/storage/apps/lab/data/").json()["entries"]] == [SHARED]
    before = files_in(shared)
    assert_forbidden(put(client, SHARED, b"overwritten"), "collaborator", "viewer", "apps/lab/data/")
    assert_forbidden(put(client, "apps/lab/data/new.csv", b"x"), "collaborator")
    assert_forbidden(client.delete(f"/api/v1/storage/{SHARED}"), "collaborator")
    assert_forbidden(client.put("/api/v1/storage/apps/lab/data/sub/"), "collaborator")
    assert_forbidden(client.delete("/api/v1/storage/apps/lab/data/missing.csv"), "collaborator")
    assert files_in(shared) == before
    assert not (shared / "apps/lab/data/sub").exists()


@pytest.mark.parametrize("who", ["collaborator", "group collaborator", "owner", "admin"])
def test_collaborators_owner_and_admins_change_the_shared_folder(shared, alice, carol, admin_user, who):
    from django.contrib.auth.models import Group

    if who == "collaborator":
        user = carol
        grant(carol, "collaborator")
    elif who == "group collaborator":
        user = carol
        group = Group.objects.create(name="planners")
        carol.groups.add(group)
        grant(carol, "viewer")  # the group's collaborator rights outrank a viewer grant of one's own
        App.objects.get(name="lab").grants.create(group=group, level="collaborator")
    else:
        user = alice if who == "owner" else admin_user
    client = api_as(user)
    assert put(client, SHARED, b"replaced").status_code == 201
    assert (shared / SHARED).read_bytes() == b"replaced"
    assert client.put("/api/v1/storage/apps/lab/data/runs/").status_code == 201
    assert (shared / "apps/lab/data/runs").is_dir()
    assert put(client, "apps/lab/data/runs/a.csv", b"a").status_code == 201
    assert client.delete("/api/v1/storage/apps/lab/data/runs/a.csv").status_code == 204
    assert client.delete(f"/api/v1/storage/{SHARED}").status_code == 204
    assert not (shared / SHARED).exists()


def test_outsider_still_gets_not_found(shared, dave):
    client = api_as(dave)
    assert client.get(f"/api/v1/storage/{SHARED}").status_code == 404
    assert put(client, SHARED, b"x").status_code == 404
    assert client.delete(f"/api/v1/storage/{SHARED}").status_code == 404
    assert (shared / SHARED).read_bytes() == ORIGINAL


def test_own_folder_unchanged(carol, storage_folder):
    client = api_as(carol)
    assert put(client, "users/carol/a.txt", b"a").status_code == 201
    assert client.delete("/api/v1/storage/users/carol/a.txt").status_code == 204


def test_the_cli_says_what_rights_are_needed(shared, carol):
    """`pro storage put|rm` print the API's message: here, that collaborator rights are needed."""
    import requests

    from pro_cli.main import _error_message

    grant(carol, "viewer")
    answer = put(api_as(carol), SHARED, b"x")
    response = requests.Response()
    response.status_code, response._content, response.reason = answer.status_code, answer.content, "Forbidden"
    said = _error_message(response)
    assert "needs collaborator rights on the app" in said and said.endswith("(forbidden)")


# ---------------------------------------------------------------- the platform's own folders


PLATFORM_FILES = [
    "jobs/1/log.txt",
    "cases/lab/1.case",
    "runtimes/py311-highs-abc.proruntime",
    "environments/env.tar.gz",
    "wheelhouse/pkg-1.0-py3-none-any.whl",
    "icons/lab/1.0.0.png",
]


@pytest.fixture
def platform_files(lab, storage_folder):
    for path in PLATFORM_FILES:
        default_storage.save(path, ContentFile(b"the platform's"))
    return [lab.package_path, *PLATFORM_FILES]


@pytest.mark.parametrize("who", ["admin", "owner"])
def test_nobody_changes_the_platform_folders_through_the_api(platform_files, storage_folder, alice, admin_user, who):
    client = api_as(admin_user if who == "admin" else alice)
    before = files_in(storage_folder)
    for path in platform_files:
        folder = path.rsplit("/", 1)[0]
        top = path.split("/")[0]
        for response in (
            put(client, path, b"evil"),
            put(client, f"{folder}/planted.bin", b"evil"),
            client.put(f"/api/v1/storage/{folder}/new/"),
            client.delete(f"/api/v1/storage/{path}"),
        ):
            if who == "admin":
                assert_forbidden(response, f"{top}/", "platform")
            else:  # alice does not even see them
                assert response.status_code == 404, (path, response.content)
    # The platform's levels themselves, and folders beside an app's shared one.
    for path in ("packages", "apps/lab/extra.txt", "apps/lab/conf/x.txt", "top.txt"):
        response = put(client, path, b"evil")
        assert response.status_code in (400, 403, 404), (path, response.content)
    assert files_in(storage_folder) == before
    assert not (storage_folder / "jobs/1/new").exists()
    assert client.get(f"/api/v1/storage/{platform_files[0]}").status_code == (200 if who == "admin" else 404)


def test_admin_still_reads_the_platform_folders(platform_files, admin_user):
    client = api_as(admin_user)
    assert body_of(client.get("/api/v1/storage/jobs/1/log.txt")) == b"the platform's"
    assert [e["name"] for e in client.get("/api/v1/storage/wheelhouse/").json()["entries"]] == [
        "pkg-1.0-py3-none-any.whl"
    ]


def test_services_refuse_as_the_api_does(platform_files, admin_user, carol, shared):
    from apps.storage import services

    grant(carol, "viewer")
    with pytest.raises(services.Forbidden):
        services.storage_put(user=admin_user, path="jobs/1/log.txt", stream=io.BytesIO(b"x"))
    with pytest.raises(services.Forbidden):
        services.storage_delete(user=carol, path=SHARED)
    assert not services.can_write_into(admin_user, "jobs/1")
    assert not services.can_write_into(carol, "apps/lab/data")
    assert services.can_write_into(admin_user, "apps/lab/data")
    assert services.can_write_into(admin_user, "users/carol")
    assert services.can_write_into(admin_user, "apps/gone/data")  # what a deleted app left behind
    with pytest.raises(services.Forbidden, match="outside the folders"):
        services.storage_put(user=admin_user, path="apps/lab/conf/x.txt", stream=io.BytesIO(b"x"))


# ---------------------------------------------------------------- the files page


def test_files_page_shows_a_viewer_no_controls(shared, carol):
    grant(carol, "viewer")
    client = browser(carol)
    page = client.get("/files/apps/lab/data/")
    html = page.content.decode()
    assert page.status_code == 200 and "plants.csv" in html
    for control in ('id="upload-form"', 'id="folder-form"', 'value="delete"', "data-upload-url"):
        assert control not in html, control
    assert 'id="read-only"' in html and "collaborator rights" in html
    # Posting anyway: said on the page, nothing changed.
    upload = io.BytesIO(b"overwritten")
    upload.name = "plants.csv"
    for form in (
        {"action": "upload", "file": upload},
        {"action": "folder", "name": "sub"},
        {"action": "delete", "path": SHARED},
    ):
        response = client.post("/files/apps/lab/data/", form, follow=True)
        assert response.status_code == 200
        assert any("needs collaborator rights" in m for m in messages_of(response)), messages_of(response)
    assert (shared / SHARED).read_bytes() == ORIGINAL
    assert not (shared / "apps/lab/data/sub").exists()
    # Their own folder keeps its controls, and the levels above show no read-only note.
    own = client.get("/files/users/carol/").content.decode()
    assert 'id="upload-form"' in own and 'id="read-only"' not in own
    assert 'id="read-only"' not in client.get("/files/apps/lab/").content.decode()


def test_files_page_gives_a_collaborator_the_controls(shared, carol):
    grant(carol, "collaborator")
    html = browser(carol).get("/files/apps/lab/data/").content.decode()
    assert 'id="upload-form"' in html and 'value="delete"' in html and 'id="read-only"' not in html


def test_files_page_shows_admins_no_controls_in_platform_folders(platform_files, admin_user, storage_folder):
    client = browser(admin_user)
    html = client.get("/files/jobs/1/").content.decode()
    assert "log.txt" in html
    assert 'id="upload-form"' not in html and 'value="delete"' not in html
    assert 'id="read-only"' in html
    before = files_in(storage_folder)
    response = client.post("/files/jobs/1/", {"action": "delete", "path": "jobs/1/log.txt"}, follow=True)
    assert any("platform" in m for m in messages_of(response)), messages_of(response)
    assert files_in(storage_folder) == before
