"""The app manifest: what an app package says about itself, checked without importing it.

A modeler writes ``manifest.toml`` in the app folder; ``pro app pack`` adds the app's
declared interface (identifiers, procedures, pages) and stores the result as
``manifest.json`` at the root of the package.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runtime_ref import RuntimeRefError, parse_ref

AUTHOR_FILE = "manifest.toml"
PACKAGE_FILE = "manifest.json"

APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
ENTRY_POINT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
ICON_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".webp")
KNOWN_KEYS = {
    "name",
    "version",
    "runtime",
    "entry_point",
    "title",
    "description",
    "category",
    "icon",
    "time_limit",
    "session_idle_timeout",
    "interface",
    "sdk_version",
    "requirements",
}
# An exact pin, e.g. "pyomo==6.9.2" or "pandas[performance]==2.2.3": nothing pip would read as an
# option, a URL or a marker.
REQUIREMENT_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?)(?:\[[A-Za-z0-9._,-]{1,100}\])?"
    r"==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63})$"
)
MAX_REQUIREMENTS = 200


class ManifestError(ValueError):
    """The manifest is missing, malformed, or says something impossible."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    runtime: str
    entry_point: str
    title: str
    description: str
    category: str
    icon: str
    time_limit: float | None
    interface: dict[str, Any]
    session_idle_timeout: float | None = None
    requirements: tuple[str, ...] = ()

    @property
    def entry_module_path(self) -> str:
        """The package-relative file that holds the entry module."""
        module = self.entry_point.split(":", 1)[0]
        return module.replace(".", "/") + ".py"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "runtime": self.runtime,
            "entry_point": self.entry_point,
            "title": self.title,
            "description": self.description,
            "category": self.category,
            "icon": self.icon,
            "time_limit": self.time_limit,
            "session_idle_timeout": self.session_idle_timeout,
            "interface": self.interface,
            "requirements": list(self.requirements),
        }


def version_key(version: str) -> tuple:
    """Sort key of a semantic version: releases after their pre-releases (semver 2.0 rule 11)."""
    match = SEMVER_RE.match(version)
    if not match:
        raise ManifestError("bad_version", f"{version!r} is not a semantic version (like 1.2.0)")
    major, minor, patch, pre = int(match[1]), int(match[2]), int(match[3]), match[4]
    if pre is None:
        return (major, minor, patch, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, parts)


def read_author_manifest(folder: str | Path) -> dict[str, Any]:
    """Read ``manifest.toml`` of an app folder."""
    path = Path(folder) / AUTHOR_FILE
    if not path.is_file():
        raise ManifestError("missing_manifest", f"{path} does not exist: an app folder needs a {AUTHOR_FILE}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError("bad_manifest", f"{AUTHOR_FILE} is not valid TOML: {exc}") from None


def _text(data: dict, key: str, *, required: bool = False, limit: int = 200) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ManifestError("bad_manifest", f"manifest field {key!r} must be text")
    value = value.strip()
    if required and not value:
        raise ManifestError("bad_manifest", f"manifest field {key!r} is required")
    if len(value) > limit:
        raise ManifestError("bad_manifest", f"manifest field {key!r} is longer than {limit} characters")
    return value


def validate_manifest(data: Any, *, require_interface: bool = True) -> Manifest:
    """Check a manifest's fields and return it; raise :class:`ManifestError` saying what is wrong."""
    if not isinstance(data, dict):
        raise ManifestError("bad_manifest", "the manifest must be an object of fields")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ManifestError("bad_manifest", f"unknown manifest field(s): {', '.join(unknown)}")
    name = _text(data, "name", required=True, limit=64)
    if not APP_NAME_RE.match(name):
        raise ManifestError(
            "bad_name", f"app name {name!r} must be 2-64 lower-case letters, digits and dashes, starting with a letter"
        )
    version = _text(data, "version", required=True, limit=64)
    version_key(version)
    runtime = _text(data, "runtime", required=True, limit=64)
    try:
        parse_ref(runtime)
    except RuntimeRefError as exc:
        raise ManifestError("bad_runtime", str(exc)) from None
    entry_point = _text(data, "entry_point", required=True)
    if not ENTRY_POINT_RE.match(entry_point):
        raise ManifestError("bad_manifest", f"entry_point {entry_point!r} must look like 'module:attribute'")
    icon = _text(data, "icon")
    if icon and not icon.lower().endswith(ICON_SUFFIXES):
        raise ManifestError("bad_manifest", f"icon {icon!r} must be one of {', '.join(ICON_SUFFIXES)}")
    time_limit = _seconds(data, "time_limit")
    idle_timeout = _seconds(data, "session_idle_timeout")
    requirements = _requirements(data.get("requirements", []))
    interface = data.get("interface")
    if require_interface:
        check_interface(interface)
    return Manifest(
        name=name,
        version=version,
        runtime=runtime,
        entry_point=entry_point,
        title=_text(data, "title", required=True),
        description=_text(data, "description", limit=4000),
        category=_text(data, "category", limit=64) or "General",
        icon=icon,
        time_limit=time_limit,
        interface=interface or {},
        session_idle_timeout=idle_timeout,
        requirements=requirements,
    )


def package_name(requirement: str) -> str:
    """The normalised package name of a pin (PEP 503): ``Py_Omo==1`` -> ``py-omo``."""
    match = REQUIREMENT_RE.match(requirement)
    name = match["name"] if match else requirement
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_REQUIREMENTS:
        raise ManifestError("bad_requirements", f"requirements must be a list of at most {MAX_REQUIREMENTS} pins")
    seen: dict[str, str] = {}
    for item in value:
        if not isinstance(item, str) or not REQUIREMENT_RE.match(item.strip()):
            raise ManifestError(
                "bad_requirements",
                f"requirement {item!r} must pin one exact version, like 'pyomo==6.9.2' (no URLs, ranges or options)",
            )
        name = package_name(item.strip())
        if name in seen:
            raise ManifestError("bad_requirements", f"requirements name {name!r} twice")
        seen[name] = item.strip()
    return tuple(sorted(seen.values(), key=package_name))


def _seconds(data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ManifestError("bad_manifest", f"{key} must be a positive number of seconds")
    return float(value)


def check_interface(interface: Any) -> None:
    """Check the shape of the declared interface that ``pro app pack`` records."""
    if not isinstance(interface, dict):
        raise ManifestError("bad_manifest", "the manifest has no interface: pack the app with 'pro app pack'")
    for key in ("identifiers", "procedures", "pages"):
        if not isinstance(interface.get(key), list):
            raise ManifestError("bad_manifest", f"the manifest's interface has no list of {key}")
    names = set()
    for item in interface["identifiers"] + interface["procedures"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ManifestError("bad_manifest", "every identifier and procedure in the interface needs a name")
        if item["name"] in names:
            raise ManifestError("bad_manifest", f"the interface declares {item['name']!r} twice")
        names.add(item["name"])
    for page in interface["pages"]:
        if not isinstance(page, dict) or not isinstance(page.get("widgets"), list):
            raise ManifestError("bad_manifest", "every page in the interface needs a list of widgets")
        for widget in page["widgets"]:
            if not isinstance(widget, dict) or widget.get("target") not in names:
                raise ManifestError(
                    "bad_manifest", f"page {page.get('title')!r} shows something the app does not declare"
                )


# ---------------------------------------------------------------- input values against the interface


class InputTypeError(ValueError):
    """An input value's JSON type does not fit the identifier it is given for."""

    def __init__(self, identifier: str, problem: str):
        self.identifier = identifier
        self.problem = problem
        super().__init__(f"{identifier}: {problem}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar_problem(value: Any, value_type: str) -> str | None:
    """Why ``value`` (decoded JSON) cannot be a ``value_type``; None when it can."""
    if value_type == "float" and not _is_number(value):
        return f"expected a number, got {_json_type(value)}"
    if value_type == "int" and not (_is_number(value) and (isinstance(value, int) or float(value).is_integer())):
        return f"expected an integer, got {_json_type(value) if not _is_number(value) else repr(value)}"
    if value_type == "bool" and not isinstance(value, bool):
        return f"expected true or false, got {_json_type(value)}"
    if value_type == "str" and not (isinstance(value, str) or _is_number(value)):  # a number reads as its text
        return f"expected text, got {_json_type(value)}"
    return None


def _is_element(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_input_types(interface: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Check the JSON types of input values (a job's, through the API) against the declared identifiers.

    Stricter than the SDK's coercion, which also reads what people type into the WebUI: through
    the API, a list given for a text or a string for a number is the caller's mistake, refused
    when the job is submitted rather than converted, or found only when it runs. Which
    identifiers and index keys exist and whether a value is within its bounds is left to the
    SDK's own checks. Raise :class:`InputTypeError` for the first value that does not fit.
    """
    declared = {item.get("name"): item for item in interface.get("identifiers", []) if isinstance(item, dict)}
    for name, value in values.items():
        item = declared.get(name)
        if item is None:
            continue
        if item.get("kind") == "set":
            if not isinstance(value, list) or not all(_is_element(e) for e in value):
                raise InputTypeError(name, f"expected a list of element names, got {_json_type(value)}")
            continue
        value_type, width = item.get("type", "float"), len(item.get("index") or [])
        if width == 0:
            problem = _scalar_problem(value, value_type)
        elif isinstance(value, list):
            problem = _rows_problem(value, value_type, width)
        elif isinstance(value, dict):
            problem = next(filter(None, (_scalar_problem(cell, value_type) for cell in value.values())), None)
        else:
            problem = f"expected a table (a list of rows or an object of values), got {_json_type(value)}"
        if problem:
            raise InputTypeError(name, problem)


def _rows_problem(rows: list[Any], value_type: str, width: int) -> str | None:
    expected = f"expected rows of [{'key, ' * width}value]"
    for row in rows:
        if not isinstance(row, list):
            return f"{expected}, got {_json_type(row)}"
        if len(row) != width + 1:
            return f"{expected}, got a row of {len(row)}"
        if not all(_is_element(key) for key in row[:-1]):
            return f"{expected} with element names for keys"
        problem = _scalar_problem(row[-1], value_type)
        if problem:
            return problem
    return None
