"""The case format: a binary, compressed, versioned snapshot of an app's data.

    b"PROCASE\\x01" | 4-byte big-endian header length | header (JSON) | blocks

The header lists one block per identifier (name, kind, dtype, index sets, element count,
offset and length in the file). Numeric values are stored densely over the product of their
index sets as little-endian arrays, each compressed on its own with zlib, so that a case of
millions of cells loads with one decompression and one ``numpy.frombuffer`` per identifier.
Sets and text values are JSON.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

MAGIC = b"PROCASE\x01"
FORMAT_VERSION = 1
MAX_HEADER = 64 * 1024 * 1024
NUMERIC_DTYPES = {"float": "<f8", "int": "<i8", "bool": "|u1"}


class CaseFormatError(ValueError):
    """The bytes are not a case this version can read."""


@dataclass
class CaseData:
    """The content of a case: set elements, and one value per identifier.

    ``values[name]`` is a plain value for a scalar, a numpy array over the product of
    ``index[name]``'s sets (in set order) for a numeric table, and a list for a text table.
    """

    sets: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    index: dict[str, list[str]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(len(self.sets[s]) for s in self.index.get(name, []))

    def table(self, name: str) -> dict[Any, Any]:
        """An indexed identifier as ``{key: value}`` (keys are tuples from two indices up)."""
        import itertools

        lists = [self.sets[s] for s in self.index[name]]
        keys = lists[0] if len(lists) == 1 else list(itertools.product(*lists))
        flat = self.values[name]
        flat = flat.reshape(-1).tolist() if isinstance(flat, np.ndarray) else list(flat)
        return dict(zip(keys, flat, strict=True))

    def to_json(self) -> dict[str, Any]:
        """Every identifier as JSON: sets as lists, tables as ``[[element, ..., value], ...]``."""
        result: dict[str, Any] = {name: list(elements) for name, elements in self.sets.items()}
        for name, value in self.values.items():
            if self.index.get(name):
                result[name] = [[*(k if isinstance(k, tuple) else (k,)), v] for k, v in self.table(name).items()]
            else:
                result[name] = value.item() if isinstance(value, np.generic) else value
        return result


# ---------------------------------------------------------------- writing


def _block(payload: bytes, level: int) -> bytes:
    return zlib.compress(payload, level)


def write_case(sink: BinaryIO, case: CaseData, *, level: int = 1) -> None:
    """Write ``case`` to a binary file object."""
    entries, blocks, offset = [], [], 0

    def add(entry: dict[str, Any], payload: bytes) -> None:
        nonlocal offset
        compressed = _block(payload, level)
        entries.append({**entry, "offset": offset, "length": len(compressed), "codec": "zlib"})
        blocks.append(compressed)
        offset += len(compressed)

    for name, elements in case.sets.items():
        add({"name": name, "kind": "set", "dtype": "json", "count": len(elements)}, json.dumps(list(elements)).encode())
    for name, value in case.values.items():
        index = list(case.index.get(name, []))
        value_type = case.types.get(name) or _guess_type(value)
        entry = {"name": name, "kind": case.kinds.get(name, "parameter"), "type": value_type, "index": index}
        if not index:
            add({**entry, "dtype": "json", "count": 1}, json.dumps(_plain(value)).encode())
        elif value_type in NUMERIC_DTYPES:
            array = np.ascontiguousarray(np.asarray(value, dtype=NUMERIC_DTYPES[value_type]).reshape(-1))
            expected = int(np.prod(case.shape(name))) if index else 1
            if array.size != expected:
                raise CaseFormatError(f"{name} has {array.size} values for {expected} index keys")
            add({**entry, "dtype": NUMERIC_DTYPES[value_type], "count": int(array.size)}, array.tobytes())
        else:
            items = [_plain(v) for v in value]
            add({**entry, "dtype": "json", "count": len(items)}, json.dumps(items).encode())
    header = json.dumps({"format": FORMAT_VERSION, "meta": case.meta, "blocks": entries}).encode()
    sink.write(MAGIC + struct.pack(">I", len(header)) + header)
    for block in blocks:
        sink.write(block)


def case_to_bytes(case: CaseData, *, level: int = 1) -> bytes:
    buffer = io.BytesIO()
    write_case(buffer, case, level=level)
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _guess_type(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return {"f": "float", "i": "int", "u": "int", "b": "bool"}.get(value.dtype.kind, "str")
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


# ---------------------------------------------------------------- reading


def read_case(source: bytes | BinaryIO) -> CaseData:
    """Read a case from bytes or a binary file object."""
    blob = memoryview(source if isinstance(source, (bytes, bytearray, memoryview)) else source.read())
    if bytes(blob[: len(MAGIC)]) != MAGIC:
        if bytes(blob[:7]) == MAGIC[:7]:
            raise CaseFormatError(f"this case was written in format {blob[7]}, which this version cannot read")
        raise CaseFormatError("these bytes are not a case")
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if length > MAX_HEADER or start + length > len(blob):
        raise CaseFormatError("the case header is damaged")
    try:
        header = json.loads(bytes(blob[start : start + length]))
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise CaseFormatError("the case header is damaged") from None
    body = start + length
    case = CaseData(meta=header.get("meta", {}))
    for entry in header["blocks"]:
        payload = blob[body + entry["offset"] : body + entry["offset"] + entry["length"]]
        try:
            raw = zlib.decompress(payload)
        except zlib.error:
            raise CaseFormatError(f"the data of {entry['name']} is damaged") from None
        try:
            _load_entry(case, entry, raw)
        except RecursionError:  # a value nested too deep to read back
            raise CaseFormatError(f"the data of {entry['name']} is nested too deep") from None
    return case


def _load_entry(case: CaseData, entry: dict[str, Any], raw: bytes) -> None:
    name = entry["name"]
    if entry["kind"] == "set":
        case.sets[name] = json.loads(raw)
        return
    case.kinds[name] = entry["kind"]
    case.types[name] = entry.get("type", "float")
    case.index[name] = entry.get("index", [])
    if not case.index[name] or entry["dtype"] == "json":
        case.values[name] = json.loads(raw)
    else:
        array = np.frombuffer(raw, dtype=entry["dtype"])
        if array.size != entry["count"]:
            raise CaseFormatError(f"{name} holds {array.size} values, its header says {entry['count']}")
        case.values[name] = array.astype(bool) if case.types[name] == "bool" else array


# ---------------------------------------------------------------- SDK data


def case_from_data(data: Any, meta: dict[str, Any] | None = None) -> CaseData:
    """Snapshot an SDK :class:`~sessions.runtime.sdk.Data` as a case."""
    from .sdk import ParameterDef, SetDef

    case = CaseData(meta=dict(meta or {}))
    for name, definition in data.app.identifiers.items():
        if isinstance(definition, SetDef):
            case.sets[name] = list(data[name])
    for name, definition in data.app.identifiers.items():
        if not isinstance(definition, ParameterDef):
            continue
        case.kinds[name], case.types[name] = definition.kind, definition.type
        case.index[name] = [s.name for s in definition.index]
        value = data[name]
        case.values[name] = list(value.values()) if isinstance(value, dict) else value
    return case


def apply_case(data: Any, case: CaseData, *, only: set[str] | None = None) -> None:
    """Load a case's values into SDK data (identifiers the app no longer has are skipped)."""
    known = data.app.identifiers
    values: dict[str, Any] = {}
    for name, elements in case.sets.items():
        if name in known and (only is None or name in only):
            values[name] = elements
    for name in case.values:
        if name in known and (only is None or name in only):
            values[name] = case.table(name) if case.index.get(name) else case.values[name]
    data.update_from_dict(values)
