"""``Client.solve`` against a real node: a model built in the caller's code (a ``highspy.Highs``
object, or an MPS or LP file) solved by the published ``mps-solver`` app, its log streamed, its
solution mapped back to the caller's columns; refusals as clear errors, never a traceback from
inside the client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import highspy
import pytest
import requests

from pro_sdk.client import Client, PlatformError, SolveError
from pro_sdk.remote_solve import ModelFile, Names, _result
from tests.helpers import EXAMPLES, password, publish_as

INSTANCES = EXAMPLES / "instances"
OPTIMA = json.loads((INSTANCES / "optima.json").read_text())  # the known optima, shared by the tests


def live(test):
    """A test against a real node (the others here need none)."""
    return pytest.mark.live(pytest.mark.django_db(transaction=True)(test))


@pytest.fixture
def published(live_node, alice, carol, runtime, platform_public_key):
    """mps-solver published by alice, granted to carol (a plain user, viewer: she cannot write its folder)."""
    from apps.catalog.services import grant_access
    from sessions.runtime import package

    version = publish_as(alice, package.pack_folder(EXAMPLES / "mps-solver", platform_public_key)[0])
    assert version.verification_state == "verified", version.verification_error
    grant_access(user=alice, app=version.app, level="viewer", username="carol")
    return live_node


def key_client(node, user) -> Client:
    from apps.accounts.api_keys import api_key_create

    raw, _ = api_key_create(user=user, name="solve test")
    return Client(node.url, api_key=raw)


@pytest.fixture
def client(published, carol) -> Client:
    return key_client(published, carol)


def local(h: highspy.Highs) -> highspy.Highs:
    h.setOptionValue("output_flag", False)
    h.run()
    return h


def read_locally(path: Path) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(path))
    return local(h)


def small_mip() -> tuple[highspy.Highs, list]:
    """Named and unnamed columns, a name HiGHS cannot write as it is, an integer column, named and unnamed rows."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    x = h.addVariable(lb=0, ub=4, name="x")
    y = h.addVariable(lb=0, ub=10)  # unnamed
    z = h.addIntegral(lb=0, ub=3, name="z")
    w = h.addVariable(lb=1, ub=6, name="in stock")  # a space: written as in_stock
    v = h.addVariable(lb=0, ub=2)  # unnamed
    h.addConstr(x + y + z + w <= 9.5)
    h.addConstr(x - y + v >= -2, name="balance")
    h.addConstr(2 * z + v <= 5.5)
    h.setObjective(x + 2 * y + 3 * z - w + 0.5 * v + 10, highspy.ObjSense.kMaximize)  # not solved here
    return h, [x, y, z, w, v]


def own_files(client: Client, folder: str) -> list[str]:
    return [entry["name"] for entry in client.storage_list(folder)]


@live
def test_shared_instances_reach_their_known_optima(client):
    times = {}
    for name, optimum in OPTIMA.items():
        started = time.monotonic()
        result = client.solve(INSTANCES / name, log=None)
        times[name] = time.monotonic() - started
        assert result.status == "Optimal", name
        assert result.objective == pytest.approx(optimum, rel=1e-6), name
        h = read_locally(INSTANCES / name)
        assert list(result.values) == list(h.getLp().col_names_), name  # by name, in the file's order
        assert result.col_values == pytest.approx(list(h.getSolution().col_value), abs=1e-6), name
        assert result.job.state == "succeeded" and result.job.info["app"] == "mps-solver"
    # The uploads went into carol's own folder (the app's is not hers to write) and are gone.
    assert own_files(client, "users/carol/remote-solve") == []
    print("remote solve round trips:", {name: round(seconds, 3) for name, seconds in times.items()})


@live
def test_a_highspy_model_comes_back_to_its_own_columns(client):
    h, (_, _, z, w, _) = small_mip()
    lines: list[str] = []
    result = client.solve(h, log=lines.append)
    expected = local(small_mip()[0])
    assert result.status == "Optimal"
    assert result.objective == pytest.approx(expected.getInfo().objective_function_value, rel=1e-9)
    assert result.col_values == pytest.approx(list(expected.getSolution().col_value), abs=1e-6)
    # By the caller's own names where a column has one, HiGHS's names for the others.
    assert list(result.values) == ["x", "c_ekk0", "z", "in stock", "c_ekk1"]
    assert result.values["in stock"] == result.col_values[3] == result.value(w) == result.value(3)
    assert result.value(z) == pytest.approx(round(result.value(z)))  # integral
    assert 0.0 <= result.mip_gap <= 1e-4 and result.duals == {}  # a MIP: no duals
    assert list(h.getLp().col_names_) == ["x", "", "z", "in stock", ""]  # the caller's model is unchanged
    # The log came line by line, the platform's and HiGHS's.
    assert lines[0].startswith("--- attempt 1 of job")
    assert any("HiGHS" in line for line in lines) and any("remote-solve/model-" in line for line in lines)
    assert repr(result).startswith("<SolveResult Optimal objective=")

    # The same model as an LP, from an .lp file: row duals too, by the caller's row names.
    h.changeColIntegrality(z.index, highspy.HighsVarType.kContinuous)
    lp = local(h)
    result = client.solve(h, log=None)
    assert result.col_values == pytest.approx(list(lp.getSolution().col_value), abs=1e-6)
    assert result.row_duals == pytest.approx(list(lp.getSolution().row_dual), abs=1e-6)
    assert list(result.duals) == ["r_ekk0", "balance", "r_ekk1"] and result.mip_gap == 0.0


@live
def test_lp_files_and_time_limits(client, tmp_path):
    h = read_locally(INSTANCES / "afiro.mps")
    h.writeModel(str(tmp_path / "afiro.lp"))
    result = client.solve(tmp_path / "afiro.lp", log=None, time_limit=60)
    assert result.status == "Optimal" and result.objective == pytest.approx(OPTIMA["afiro.mps"], rel=1e-6)
    assert sorted(result.values) == sorted(h.getLp().col_names_)
    assert result.job.info["time_limit"] == 60


@live
def test_refusals_are_clear(client, tmp_path):
    with pytest.raises(PlatformError) as unknown:
        client.solve(INSTANCES / "afiro.mps", app="nowhere", log=None)
    assert unknown.value.status == 404 and unknown.value.code == "not_found"
    with pytest.raises(PlatformError) as no_version:
        client.solve(INSTANCES / "afiro.mps", version="9.9.9", log=None)
    assert no_version.value.code == "not_found"
    # A file HiGHS cannot read: the job says so in its status and its log.
    junk = tmp_path / "junk.mps"
    junk.write_text("this is not a model\n")
    lines: list[str] = []
    result = client.solve(junk, log=lines.append)
    assert result.status.startswith("Cannot read users/carol/remote-solve/junk-") and result.status.endswith(
        ".mps as an MPS or LP model"
    )
    assert result.values == {} and result.col_values == [] and result.objective == 0.0
    assert any("Parser error" in line for line in lines)
    assert own_files(client, "users/carol/remote-solve") == []  # nothing left behind


@live
def test_whose_folder(published, alice, admin_user):
    ticket = requests.post(
        f"{published.url}/api/v1/auth/tickets", json={"username": "alice", "password": password("alice")}, timeout=30
    ).json()["ticket"]
    lines: list[str] = []
    result = Client(published.url, api_key=ticket).solve(INSTANCES / "afiro.mps", log=lines.append)
    assert result.status == "Optimal" and any("users/alice/remote-solve/afiro-" in line for line in lines)
    # An API key says whose it is (GET /api/v1/auth/me), an admin's too; a folder of one's choice also works.
    admin = key_client(published, admin_user)
    assert admin.me() == {"username": "root", "role": "admin", "credential": "api_key"}
    assert admin.solve(INSTANCES / "afiro.mps", log=None).status == "Optimal"
    assert own_files(admin, "users/root/remote-solve") == []
    result = admin.solve(INSTANCES / "afiro.mps", log=None, folder="users/root/models")
    assert result.status == "Optimal" and own_files(admin, "users/root/models") == []


def test_bad_models_are_refused_before_anything_is_sent(tmp_path):
    client = Client("http://127.0.0.1:1", api_key="unused", retries=0)  # nothing listens there
    with pytest.raises(FileNotFoundError, match=r"there is no model file .*none\.mps"):
        client.solve(tmp_path / "none.mps")
    (tmp_path / "notes.txt").write_text("x\n")
    with pytest.raises(ValueError, match=r"must end in \.mps, \.lp"):
        client.solve(tmp_path / "notes.txt")
    with pytest.raises(TypeError, match=r"highspy\.Highs object or an \.mps or \.lp file's path"):
        client.solve({"x": 1})


class FakeJob:
    """A job as the client sees it, for what no real job does on demand."""

    id = 7

    def __init__(self, identifiers: dict | None = None, ends: str = "succeeded", lines: tuple = ("a line",)):
        self.identifiers, self.ends, self.lines = identifiers or {}, ends, lines
        self.info = {"version": "1.0.0", "state": "running"}
        self.cancelled = False

    @property
    def state(self) -> str:
        return self.info["state"]

    def logs(self, follow: bool = False):
        yield from self.lines

    def wait(self) -> dict:
        self.info = {**self.info, "state": self.ends, "error_message": "MemoryError: the solve ran out of memory"}
        return self.info

    def cancel(self) -> dict:
        self.cancelled = True
        self.info = {**self.info, "state": "cancelled"}
        return self.info

    def result(self) -> dict:
        return self.identifiers


class FakeClient(Client):
    """Storage and submit in memory: the steps of a solve around a job that fails or is stopped."""

    def __init__(self, job: FakeJob | None):
        super().__init__("http://127.0.0.1:1", api_key="unused")
        self.fake_job, self.stored, self.deleted = job, [], []

    def own_folder(self) -> str:
        return "users/carol"

    def storage_put(self, source, path: str) -> dict:
        self.stored.append(path)
        return {"path": path}

    def storage_delete(self, path: str) -> None:
        self.deleted.append(path)

    def submit(self, app: str, procedure: str, **options):
        if self.fake_job is None:
            raise PlatformError(404, "not_found", f"There is no app {app!r}.")
        return self.fake_job


def test_a_failed_job_raises_and_its_file_is_removed():
    client = FakeClient(FakeJob(ends="failed"))
    with pytest.raises(SolveError, match="job 7 failed: MemoryError") as failed:
        client.solve(INSTANCES / "afiro.mps", log=None)
    assert failed.value.job is client.fake_job
    assert client.stored == client.deleted and client.stored[0].startswith("users/carol/remote-solve/afiro-")
    refused = FakeClient(None)
    with pytest.raises(PlatformError, match="no app"):
        refused.solve(INSTANCES / "afiro.mps", log=None)
    assert refused.stored == refused.deleted != []


def test_stopping_the_call_cancels_the_job():
    def interrupted(line: str) -> None:
        raise KeyboardInterrupt

    client = FakeClient(FakeJob())
    with pytest.raises(KeyboardInterrupt):
        client.solve(INSTANCES / "afiro.mps", log=interrupted)
    assert client.fake_job.cancelled and client.stored == client.deleted


def test_an_app_without_column_values_is_named():
    old = FakeJob({"status": "Optimal", "objective": 1.0, "solve_seconds": 0.1})
    with pytest.raises(SolveError, match=r"'mps-solver' 1\.0\.0 does not report column values"):
        _result(old, "mps-solver", ModelFile(Path("m.mps")))
    names = Names(["c0", "c1"], ["x", "c1"])
    job = FakeJob({"status": "Optimal", "objective": 1.0, "columns": ["c1", "c0"], "col_value": [["c1", 2], ["c0", 1]]})
    result = _result(job, "mps-solver", ModelFile(Path("m.mps"), columns=names))
    assert result.col_values == [1.0, 2.0] and result.values == {"x": 1.0, "c1": 2.0}


@live
def test_a_jobs_tables_as_pandas_frames(client):
    import pandas as pd

    result = client.solve(INSTANCES / "afiro.mps", log=None)
    frames = result.job.result(frames=True)
    values = frames["col_value"]
    assert isinstance(values, pd.DataFrame) and len(values) == len(result.col_values) == 32
    assert values.iloc[:, 0].tolist() == pytest.approx(result.col_values)
    assert list(values.index) == list(result.values)  # indexed by the column names
    assert frames["status"] == "Optimal" and not isinstance(frames["objective"], pd.DataFrame)
