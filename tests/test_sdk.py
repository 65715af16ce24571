"""The app SDK on its own (no server): declarations, data checks, and the case format."""

import pytest

from pro_sdk import App, AppDefinitionError, Button, Chart, DataError, Field, SolveContext, Table
from sessions.runtime.case import apply_case, case_from_data, case_to_bytes, read_case
from sessions.runtime.interface import app_from_interface


def make_app() -> App:
    app = App("shop", title="Shop")
    items = app.set("items", default=["a", "b"])
    days = app.set("days", default=["mon", "tue"])
    price = app.parameter("price", index=[items], default=1.0, minimum=0, unit="EUR", data={"a": 2.5})
    stock = app.parameter("stock", index=[items, days], type="int", default=0)
    open_ = app.scalar("open", type="bool", default=True)
    revenue = app.output("revenue", unit="EUR")

    @app.procedure(title="Add up")
    def add_up(data):
        data["revenue"] = sum(data["price"].values())

    app.page(
        "Data", [Table(price), Table(stock), Field(open_), Chart(price, kind="line"), Field(revenue), Button(add_up)]
    )
    return app


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("3", "float", 3.0),
        (" 2.5 ", "float", 2.5),
        ("4", "int", 4),
        (4.0, "int", 4),
        ("yes", "bool", True),
        ("0", "bool", False),
    ],
)
def test_values_are_coerced(value, kind, expected):
    app = App("t")
    app.scalar("x", type=kind)
    data = app.new_data()
    data["x"] = value
    assert data["x"] == expected and type(data["x"]) is type(expected)


@pytest.mark.parametrize(
    ("value", "kind"), [("lots", "float"), ("2.5", "int"), ("maybe", "bool"), (True, "float"), (float("nan"), "float")]
)
def test_bad_values_are_refused(value, kind):
    app = App("t")
    app.scalar("x", type=kind)
    with pytest.raises(DataError):
        app.new_data()["x"] = value


def test_tables_cells_and_limits():
    data = make_app().new_data()
    assert data["price"] == {"a": 2.5, "b": 1.0}
    assert data["stock"][("a", "tue")] == 0
    assert data.set_cell("stock", ["b", "mon"], "7") == 7
    with pytest.raises(DataError, match="at least 0"):
        data.set_cell("price", "a", -1)
    with pytest.raises(DataError, match="not an element"):
        data.set_cell("price", "z", 1)
    assert data["price"]["a"] == 2.5


def test_set_change_keeps_kept_cells():
    data = make_app().new_data()
    data.set_cell("price", "b", 4)
    data["items"] = ["b", "c"]
    assert data["price"] == {"b": 4.0, "c": 1.0}
    assert set(data["stock"]) == {("b", "mon"), ("b", "tue"), ("c", "mon"), ("c", "tue")}
    with pytest.raises(DataError, match="duplicate"):
        data["items"] = ["x", "x"]


def test_partial_update_changes_only_given_cells():
    data = make_app().new_data()
    data.update_from_dict({"stock": [["a", "tue", 3]], "open": False})
    assert data["stock"][("a", "tue")] == 3 and data["stock"][("b", "mon")] == 0
    assert data["price"]["a"] == 2.5 and data["open"] is False
    with pytest.raises(DataError, match="rows must be"):
        data.update_from_dict({"stock": [["a", 3]]})


def test_declarations_are_checked():
    app = App("t")
    with pytest.raises(AppDefinitionError, match="does not declare"):
        app.page("P", [Table("ghost")])
    app.scalar("x")
    with pytest.raises(AppDefinitionError, match="declared twice"):
        app.scalar("x")
    with pytest.raises(AppDefinitionError, match="button must run a procedure"):
        app.page("P", [Button("x")])
    with pytest.raises(AppDefinitionError, match="chart kind"):
        Chart("x", kind="pie")


def test_describe_and_stand_in_app_agree():
    app = make_app()
    described = app.describe()
    assert [p["title"] for p in described["pages"]] == ["Data"]
    assert {i["name"]: i["kind"] for i in described["identifiers"]}["revenue"] == "output"
    stand_in = app_from_interface({"name": "shop", "interface": described})
    assert stand_in.new_data().to_dict() == app.new_data().to_dict()


def test_run_and_case_round_trip():
    app = make_app()
    data = app.run("add_up")
    assert data["revenue"] == 3.5
    case = read_case(case_to_bytes(case_from_data(data)))
    fresh = app.new_data()
    fresh["items"] = ["a"]
    apply_case(fresh, case)
    assert fresh.to_dict() == data.to_dict()


def test_set_elements_keeps_values_of_kept_keys():
    data = make_app().new_data()
    data.set_cell("stock", ("b", "tue"), 5)
    data.set_elements("days", ["tue", "wed"])
    assert data["stock"] == {("a", "tue"): 0, ("a", "wed"): 0, ("b", "tue"): 5, ("b", "wed"): 0}
    assert data["price"] == {"a": 2.5, "b": 1.0}  # not indexed over days: untouched
    data.set_elements("days", ["mon", "tue"])
    assert data["stock"][("b", "tue")] == 5 and data["stock"][("b", "mon")] == 0


def test_to_dict_and_update_from_dict_round_trip():
    data = make_app().new_data()
    data["items"] = ["a", "b", "c"]
    data.set_cell("price", "c", "4.25")
    data.set_cell("stock", ("c", "mon"), 9)
    data["open"] = "no"
    data["revenue"] = 12
    plain = data.to_dict()
    assert plain["items"] == ["a", "b", "c"]
    assert ["c", "mon", 9] in plain["stock"] and ["c", 4.25] in plain["price"]
    assert plain["open"] is False and plain["revenue"] == 12.0
    fresh = make_app().new_data()
    fresh.update_from_dict(plain)
    assert fresh.to_dict() == plain
    assert fresh["stock"][("c", "mon")] == 9
    with pytest.raises(DataError, match="not an identifier"):
        fresh.update_from_dict({"ghost": 1})


def test_bad_update_changes_nothing_in_that_table():
    data = make_app().new_data()
    with pytest.raises(DataError, match="expected an integer"):
        data.update_from_dict({"stock": [["a", "mon", 3], ["b", "mon", "x"]]})
    assert data["stock"][("a", "mon")] == 0


def test_describe_shape():
    described = make_app().describe()
    assert set(described) == {"sdk_version", "identifiers", "procedures", "pages"}
    by_name = {i["name"]: i for i in described["identifiers"]}
    assert list(by_name) == ["items", "days", "price", "stock", "open", "revenue"]
    assert by_name["items"] == {
        "name": "items",
        "kind": "set",
        "title": "items",
        "description": "",
        "default": ["a", "b"],
    }
    price = by_name["price"]
    assert price["kind"] == "parameter" and price["index"] == ["items"] and price["unit"] == "EUR"
    assert price["minimum"] == 0 and price["data"] == [["a", 2.5]]
    assert by_name["stock"]["type"] == "int" and by_name["stock"]["index"] == ["items", "days"]
    assert by_name["open"]["index"] == [] and by_name["open"]["default"] is True
    assert described["procedures"] == [{"name": "add_up", "title": "Add up", "kind": "procedure", "time_limit": None}]
    widgets = described["pages"][0]["widgets"]
    assert [w["widget"] for w in widgets] == ["table", "table", "field", "chart", "field", "button"]
    assert widgets[3] == {"widget": "chart", "target": "price", "title": "", "chart": "line"}


def test_solve_procedure_gets_a_context(tmp_path):
    app = App("t")
    app.output("seen", type="str")

    @app.solve(time_limit=30)
    def solve(data, ctx):
        data["seen"] = ctx.local_path("apps/t/data/in.txt").read_text()
        ctx.progress(0.5, "half", objective=1.0)

    (tmp_path / "apps" / "t" / "data").mkdir(parents=True)
    (tmp_path / "apps" / "t" / "data" / "in.txt").write_text("hello")
    ctx = SolveContext(time_limit=30, storage_root=tmp_path)
    assert app.run(solve, None, ctx)["seen"] == "hello"
    assert ctx.progress_points[0]["fraction"] == 0.5 and not ctx.should_stop()
    assert 0 < ctx.remaining_time() <= 30
    ctx.request_stop()
    assert ctx.should_stop()
    with pytest.raises(PermissionError):
        ctx.local_path("../outside.txt")
    with pytest.raises(FileNotFoundError):
        SolveContext().local_path("apps/t/data/in.txt")
    with pytest.raises(KeyError, match="no procedure"):
        app.run("missing")


@pytest.mark.parametrize(
    ("raw", "kind"), [("inf", "float"), (float("-inf"), "float"), ("1e400", "int"), (float("inf"), "int")]
)
def test_infinite_values_are_refused(raw, kind):
    app = App("t")
    app.scalar("x", type=kind)
    with pytest.raises(DataError):
        app.new_data()["x"] = raw


def test_big_integers_stay_exact():
    app = App("t")
    app.scalar("x", type="int")
    data = app.new_data()
    data["x"] = "10000000000000001"
    assert data["x"] == 10000000000000001
