"""The app SDK: how a modeler declares an optimization app in plain Python.

An app declares its *identifiers* (sets, parameters indexed over sets, scalars and outputs),
its *procedures* (solver-less, run inside the data session) and *solve procedures* (run as
jobs on a server with a solver), and its *pages* (what the WebUI shows). Nothing here imports
Django: the same code runs in the data session, the solve process, the verification run and a
modeler's own pytest.

Apps import it as :mod:`pro_sdk`, where :class:`AppDefinition` has its public name ``App``:

    app = App("transport", title="Transport")
    plants = app.set("plants", default=["Seattle", "San Diego"])
    supply = app.parameter("supply", index=[plants], default=0.0, unit="cases")

    @app.solve(title="Solve")
    def solve(data, ctx): ...

    app.page("Data", [Table(supply), Button(solve)])
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

SDK_VERSION = "1.0"

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
VALUE_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


class AppDefinitionError(ValueError):
    """The app's declarations are inconsistent (raised while the app module is imported)."""


class DataError(ValueError):
    """A value does not fit the identifier it is assigned to."""

    def __init__(self, identifier: str, message: str, key: Any = None):
        self.identifier = identifier
        self.key = key
        where = f"{identifier}[{_format_key(key)}]" if key is not None else identifier
        super().__init__(f"{where}: {message}")


def _format_key(key: Any) -> str:
    return ",".join(key) if isinstance(key, tuple) else str(key)


def coerce_value(value: Any, value_type: str) -> Any:
    """Convert ``value`` to ``value_type`` or raise ``ValueError`` saying why."""
    if value_type == "float":
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        if isinstance(value, str):
            value = value.strip()
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        if not math.isfinite(number):  # JSON, and so the WebUI, cannot carry NaN or infinity
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    if value_type == "int":
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())  # exact for large integers given as text
        except ValueError:
            pass
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(number)
    if value_type == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if value_type == "str":
        if value is None:
            raise ValueError("expected text, got nothing")
        return str(value)
    raise ValueError(f"unknown value type {value_type!r}")


@dataclass
class Identifier:
    """Common part of every declared identifier."""

    name: str
    title: str = ""
    description: str = ""

    kind = "identifier"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title or self.name,
            "description": self.description,
        }


@dataclass
class SetDef(Identifier):
    """A set: an ordered list of unique element names that parameters are indexed over."""

    default: list[str] = field(default_factory=list)
    kind = "set"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "default": list(self.default)}


@dataclass
class ParameterDef(Identifier):
    """A value per tuple of set elements (or a single value when ``index`` is empty)."""

    index: tuple[SetDef, ...] = ()
    type: str = "float"
    default: Any = None
    unit: str = ""
    data: Mapping[Any, Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    kind = "parameter"

    @property
    def is_scalar(self) -> bool:
        return not self.index

    def check(self, value: Any, key: Any = None) -> Any:
        try:
            value = coerce_value(value, self.type)
        except ValueError as exc:
            raise DataError(self.name, str(exc), key) from None
        if self.minimum is not None and value < self.minimum:
            raise DataError(self.name, f"must be at least {self.minimum}", key)
        if self.maximum is not None and value > self.maximum:
            raise DataError(self.name, f"must be at most {self.maximum}", key)
        return value

    def describe(self) -> dict[str, Any]:
        described = {
            **super().describe(),
            "index": [s.name for s in self.index],
            "type": self.type,
            "default": self.default,
            "unit": self.unit,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.data:
            # The initial values travel with the interface, so that the platform can start a
            # job's input from the app's own data without importing the app.
            described["data"] = [[*(k if isinstance(k, tuple) else (k,)), v] for k, v in self.data.items()]
        return described


@dataclass
class OutputDef(ParameterDef):
    """A result identifier: written by procedures, read-only in the WebUI."""

    kind = "output"


Value = TypeVar("Value", bound=ParameterDef)


@dataclass
class ProcedureDef:
    """A callable the WebUI can run: solver-less in the session, or a solve as a job."""

    name: str
    function: Callable[..., Any]
    title: str = ""
    is_solve: bool = False
    time_limit: float | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title or self.name,
            "kind": "solve" if self.is_solve else "procedure",
            "time_limit": self.time_limit,
        }


# ---------------------------------------------------------------- page widgets


@dataclass
class Widget:
    target: str
    title: str = ""
    widget = "widget"

    def describe(self) -> dict[str, Any]:
        return {"widget": self.widget, "target": self.target, "title": self.title}


def _target_name(target: Identifier | ProcedureDef | Callable | str) -> str:
    if isinstance(target, str):
        return target
    if isinstance(target, (Identifier, ProcedureDef)):
        return target.name
    declared = getattr(target, "__pro_procedure__", None)
    if declared is not None:
        return declared.name
    raise AppDefinitionError(f"a page widget must point at an identifier or procedure, not {target!r}")


def Table(target: Any, title: str = "") -> Widget:  # noqa: N802 - reads as a widget name
    """A table of an indexed parameter (editable) or output (read-only)."""
    widget = Widget(_target_name(target), title)
    widget.widget = "table"
    return widget


def Field(target: Any, title: str = "") -> Widget:  # noqa: N802
    """An input field for a scalar parameter, or a read-only value for a scalar output."""
    widget = Widget(_target_name(target), title)
    widget.widget = "field"
    return widget


def Button(target: Any, title: str = "") -> Widget:  # noqa: N802
    """A button that runs a procedure or submits a solve."""
    widget = Widget(_target_name(target), title)
    widget.widget = "button"
    return widget


@dataclass
class ChartWidget(Widget):
    chart: str = "bar"
    widget = "chart"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "chart": self.chart}


def Chart(target: Any, kind: str = "bar", title: str = "") -> ChartWidget:  # noqa: N802
    """A bar or line chart of a one- or two-dimensional identifier."""
    if kind not in ("bar", "line"):
        raise AppDefinitionError(f"chart kind must be 'bar' or 'line', not {kind!r}")
    return ChartWidget(_target_name(target), title, chart=kind)


@dataclass
class PageDef:
    title: str
    widgets: list[Widget]

    def describe(self) -> dict[str, Any]:
        return {"title": self.title, "widgets": [w.describe() for w in self.widgets]}


# ---------------------------------------------------------------- the app


class AppDefinition:
    """The declaration of one optimization app (``pro_sdk.App``), not the published app of the catalogue."""

    def __init__(self, name: str, title: str = "", description: str = ""):
        self.name = name
        self.title = title or name
        self.description = description
        self.identifiers: dict[str, SetDef | ParameterDef] = {}
        self.procedures: dict[str, ProcedureDef] = {}
        self.pages: list[PageDef] = []

    # declarations -------------------------------------------------------
    def _add(self, identifier: SetDef | ParameterDef) -> Any:
        if not NAME_RE.match(identifier.name):
            raise AppDefinitionError(f"{identifier.name!r} is not a valid identifier name")
        if identifier.name in self.identifiers or identifier.name in self.procedures:
            raise AppDefinitionError(f"{identifier.name!r} is declared twice")
        self.identifiers[identifier.name] = identifier
        return identifier

    def set(self, name: str, *, default: Iterable[str] = (), title: str = "", description: str = "") -> SetDef:
        elements = [str(e) for e in default]
        if len(set(elements)) != len(elements):
            raise AppDefinitionError(f"set {name!r} has duplicate elements in its default")
        return self._add(SetDef(name, title, description, default=elements))

    def _value_def(
        self,
        cls: type[Value],
        name: str,
        index: Iterable[SetDef],
        value_type: str,
        default: Any,
        unit: str,
        title: str,
        description: str,
        data: Any,
        minimum: float | None,
        maximum: float | None,
    ) -> Value:
        if value_type not in VALUE_TYPES:
            raise AppDefinitionError(f"{name!r}: type must be one of {sorted(VALUE_TYPES)}, not {value_type!r}")
        index = tuple(index)
        for s in index:
            if not isinstance(s, SetDef) or self.identifiers.get(s.name) is not s:
                raise AppDefinitionError(f"{name!r} is indexed over something that is not a set of this app")
        if default is None:
            default = {"float": 0.0, "int": 0, "bool": False, "str": ""}[value_type]
        definition = cls(
            name,
            title,
            description,
            index=index,
            type=value_type,
            default=default,
            unit=unit,
            data=data,
            minimum=minimum,
            maximum=maximum,
        )
        definition.default = definition.check(default)
        return self._add(definition)

    def parameter(
        self,
        name: str,
        *,
        index: Iterable[SetDef] = (),
        type: str = "float",
        default: Any = None,
        unit: str = "",
        title: str = "",
        description: str = "",
        data: Mapping | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> ParameterDef:
        """Declare an input parameter; with no ``index`` it is a scalar."""
        return self._value_def(
            ParameterDef, name, index, type, default, unit, title, description, data, minimum, maximum
        )

    def scalar(self, name: str, **kwargs: Any) -> ParameterDef:
        """Declare a scalar input parameter (a parameter without index)."""
        return self.parameter(name, index=(), **kwargs)

    def output(
        self,
        name: str,
        *,
        index: Iterable[SetDef] = (),
        type: str = "float",
        unit: str = "",
        title: str = "",
        description: str = "",
        default: Any = None,
    ) -> OutputDef:
        """Declare a result identifier that procedures and solves write."""
        return self._value_def(OutputDef, name, index, type, default, unit, title, description, None, None, None)

    def _procedure(self, function: Callable, title: str, is_solve: bool, time_limit: float | None) -> Callable:
        name = function.__name__
        if name in self.identifiers or name in self.procedures:
            raise AppDefinitionError(f"{name!r} is declared twice")
        definition = ProcedureDef(name, function, title, is_solve, time_limit)
        self.procedures[name] = definition
        function.__pro_procedure__ = definition  # type: ignore[attr-defined]  # the marker the loader finds
        return function

    def procedure(self, title: str = "") -> Callable[[Callable], Callable]:
        """Decorate ``f(data)``: a solver-less procedure run inside the data session."""
        return lambda function: self._procedure(function, title, False, None)

    def solve(self, title: str = "", time_limit: float | None = None) -> Callable[[Callable], Callable]:
        """Decorate ``f(data, ctx)``: a solve procedure, run as a job with a solver."""
        return lambda function: self._procedure(function, title, True, time_limit)

    def page(self, title: str, widgets: list[Widget]) -> PageDef:
        for widget in widgets:
            if widget.target not in self.identifiers and widget.target not in self.procedures:
                raise AppDefinitionError(f"page {title!r} shows {widget.target!r}, which the app does not declare")
            if widget.widget == "button" and widget.target not in self.procedures:
                raise AppDefinitionError(f"page {title!r}: a button must run a procedure, not {widget.target!r}")
        page = PageDef(title, list(widgets))
        self.pages.append(page)
        return page

    # use ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The app's interface, as the manifest and the WebUI know it."""
        return {
            "sdk_version": SDK_VERSION,
            "identifiers": [i.describe() for i in self.identifiers.values()],
            "procedures": [p.describe() for p in self.procedures.values()],
            "pages": [p.describe() for p in self.pages],
        }

    def new_data(self) -> Data:
        """A fresh data set holding every identifier's declared initial values."""
        return Data(self)

    def run(
        self,
        procedure: str | Callable,
        data: Data | None = None,
        ctx: SolveContext | None = None,
        *,
        remote: Any = None,
    ) -> Data:
        """Run a procedure or solve on ``data`` (a fresh data set if none) and return it.

        This is how a modeler tests an app with plain pytest, without a server. With ``remote``
        (a :class:`pro_sdk.client.Client`), a solve runs on the platform instead, as a job of the
        published app of the same name, and its results come back into ``data``.
        """
        name = _target_name(procedure)
        definition = self.procedures.get(name)
        if definition is None:
            raise KeyError(f"the app has no procedure {name!r}")
        data = data if data is not None else self.new_data()
        if remote is not None:
            if not definition.is_solve:
                raise ValueError(f"{name!r} is not a solve: only solves run on the platform")
            return self._run_remote(remote, name, data)
        if definition.is_solve:
            definition.function(data, ctx or SolveContext(time_limit=definition.time_limit))
        else:
            definition.function(data)
        return data

    def _run_remote(self, client: Any, procedure: str, data: Data) -> Data:
        from .case import apply_case, case_from_data, case_to_bytes, read_case

        blob = case_to_bytes(case_from_data(data, meta={"app": self.name}))
        stored = client.upload_case(self.name, blob, name=f"input of {procedure}", kind="input")
        job = client.submit(self.name, procedure, case=stored["id"])
        ended = job.wait()
        if ended["state"] != "succeeded":
            raise RuntimeError(
                f"job {job.id} {ended['state']}: {ended.get('error_message') or ended.get('solver_status')}"
            )
        apply_case(data, read_case(client.case_bytes(ended["result_case"])))
        return data


# ---------------------------------------------------------------- data


class Data:
    """The values of an app's identifiers: sets, parameters, scalars and outputs.

    ``data["plants"]`` is a list of elements; ``data["supply"]`` a dict keyed by element
    (by tuples of elements for two or more indices); ``data["freight"]`` a plain value.
    Assignments are checked against the declaration and raise :class:`DataError`.
    """

    def __init__(self, app: AppDefinition):
        self.app = app
        self._values: dict[str, Any] = {}
        for identifier in app.identifiers.values():
            if isinstance(identifier, SetDef):
                self._values[identifier.name] = list(identifier.default)
        for identifier in app.identifiers.values():
            if isinstance(identifier, ParameterDef):
                self._values[identifier.name] = self._initial(identifier)

    def _initial(self, definition: ParameterDef) -> Any:
        if definition.is_scalar:
            return definition.default
        values = {}
        given = definition.data or {}
        for key in self.keys(definition.name):
            values[key] = definition.check(given.get(key, definition.default), key)
        return values

    def definition(self, name: str) -> SetDef | ParameterDef:
        try:
            return self.app.identifiers[name]
        except KeyError:
            raise KeyError(f"the app has no identifier {name!r}") from None

    def keys(self, name: str) -> list[Any]:
        """Every index key of an indexed identifier, in set order."""
        definition = self.definition(name)
        if not isinstance(definition, ParameterDef) or definition.is_scalar:
            return []
        lists = [self._values[s.name] for s in definition.index]
        if len(lists) == 1:
            return list(lists[0])
        return list(itertools.product(*lists))

    def __getitem__(self, name: str) -> Any:
        self.definition(name)
        return self._values[name]

    def __setitem__(self, name: str, value: Any) -> None:
        definition = self.definition(name)
        if isinstance(definition, SetDef):
            self.set_elements(name, value)
        elif definition.is_scalar:
            self._values[name] = definition.check(value)
        else:
            self._values[name] = self._checked_table(definition, value)

    def _checked_table(self, definition: ParameterDef, value: Mapping) -> dict:
        if not isinstance(value, Mapping):
            raise DataError(definition.name, "expected a table of values")
        keys = self.keys(definition.name)
        known = set(keys)
        for key in value:
            if _normal_key(key) not in known:
                raise DataError(definition.name, "is not an element of its index", key)
        given = {_normal_key(k): v for k, v in value.items()}
        return {k: definition.check(given.get(k, definition.default), k) for k in keys}

    def set_cell(self, name: str, key: Any, value: Any) -> Any:
        """Change one cell of an indexed identifier; return the checked value."""
        definition = self.definition(name)
        if not isinstance(definition, ParameterDef) or definition.is_scalar:
            raise DataError(name, "is not an indexed parameter")
        key = _normal_key(key)
        if key not in self._values[name]:
            raise DataError(name, "is not an element of its index", key)
        checked = definition.check(value, key)
        self._values[name][key] = checked
        return checked

    def set_elements(self, name: str, elements: Iterable[str]) -> None:
        """Replace a set's elements; tables indexed over it keep the values of kept keys."""
        elements = [str(e) for e in elements]
        if len(set(elements)) != len(elements):
            raise DataError(name, "has duplicate elements")
        old = {n: v for n, v in self._values.items() if isinstance(v, dict)}
        self._values[name] = elements
        for other in self.app.identifiers.values():
            if isinstance(other, ParameterDef) and not other.is_scalar and any(s.name == name for s in other.index):
                previous = old.get(other.name, {})
                self._values[other.name] = {k: previous.get(k, other.default) for k in self.keys(other.name)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values; multi-dimensional keys joined as lists."""
        result: dict[str, Any] = {}
        for name, value in self._values.items():
            if isinstance(value, dict):
                result[name] = [[*(k if isinstance(k, tuple) else (k,)), v] for k, v in value.items()]
            else:
                result[name] = value
        return result

    def update_from_dict(self, values: Mapping[str, Any]) -> None:
        """Load values in :meth:`to_dict` form (sets first, so tables see their index)."""
        unknown = [n for n in values if n not in self.app.identifiers]
        if unknown:
            raise DataError(unknown[0], "is not an identifier of this app")
        ordered = sorted(values, key=lambda n: not isinstance(self.app.identifiers[n], SetDef))
        for name in ordered:
            value = values[name]
            definition = self.app.identifiers[name]
            if isinstance(definition, ParameterDef) and not definition.is_scalar:
                self._merge_table(definition, value)
            else:
                self[name] = value

    def _merge_table(self, definition: ParameterDef, value: Any) -> None:
        """Change the given cells of a table (all checked first); cells not given keep their values."""
        if isinstance(value, list):
            if not all(isinstance(row, (list, tuple)) and len(row) == len(definition.index) + 1 for row in value):
                raise DataError(definition.name, f"rows must be [{', '.join(s.name for s in definition.index)}, value]")
            value = {_row_key(row): row[-1] for row in value}
        if not isinstance(value, Mapping):
            raise DataError(definition.name, "expected a table of values")
        current = self._values[definition.name]
        checked = {}
        for key, cell in value.items():
            key = _normal_key(key)
            if key not in current:
                raise DataError(definition.name, "is not an element of its index", key)
            checked[key] = definition.check(cell, key)
        current.update(checked)


def _normal_key(key: Any) -> Any:
    if isinstance(key, (list, tuple)):
        key = tuple(str(k) for k in key)
        return key[0] if len(key) == 1 else key
    return str(key)


def _row_key(row: list) -> Any:
    return _normal_key(row[:-1])


# ---------------------------------------------------------------- solve context


class SolveContext:
    """What a solve procedure gets besides its data: log, progress, stop flag, files.

    On a server the solve runner provides a subclass wired to the job; locally this one
    prints the log, records progress and reads files below ``storage_root``.
    """

    def __init__(self, time_limit: float | None = None, storage_root: str | Path | None = None, echo: bool = False):
        self.time_limit = time_limit
        self.storage_root = Path(storage_root) if storage_root else None
        self.echo = echo
        self.log_lines: list[str] = []
        self.progress_points: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._stop_requested = False

    def log(self, line: str) -> None:
        self.log_lines.append(line)
        if self.echo:
            print(line, flush=True)

    def progress(
        self,
        fraction: float | None = None,
        message: str = "",
        objective: float | None = None,
        bound: float | None = None,
    ) -> None:
        self.progress_points.append(
            {
                "t": round(time.monotonic() - self.started, 3),
                "fraction": fraction,
                "message": message,
                "objective": objective,
                "bound": bound,
            }
        )

    def request_stop(self) -> None:
        self._stop_requested = True

    def should_stop(self) -> bool:
        """True once the user interrupted the job or its time limit is reached."""
        if self.time_limit is not None and time.monotonic() - self.started >= self.time_limit:
            return True
        return self._stop_requested

    def remaining_time(self) -> float | None:
        if self.time_limit is None:
            return None
        return max(0.0, self.time_limit - (time.monotonic() - self.started))

    def connection(self, name: str, *, engine: bool = False) -> Any:
        """A connection an admin granted the app (:func:`sessions.runtime.connections.connection`)."""
        from .connections import connection

        return connection(name, engine=engine)

    def local_path(self, storage_path: str) -> Path:
        """A local file for a storage path (``apps/<app>/data/...``)."""
        if self.storage_root is None:
            raise FileNotFoundError(f"no storage is available to read {storage_path!r}")
        root = self.storage_root.resolve()
        path = (root / storage_path.lstrip("/")).resolve()
        if root not in path.parents and path != root:
            raise PermissionError(f"{storage_path!r} escapes the storage folder")
        if not path.is_file():
            raise FileNotFoundError(f"storage has no file {storage_path!r}")
        return path
