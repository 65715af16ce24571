"""Runtime references as manifests write them: ``py311-highs``, ``py311-highs@1``, ``py311-highs@1.2``.

No dependencies beyond the standard library: app processes parse manifests with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
VERSION = re.compile(r"^\d{1,6}(\.\d{1,6}){0,2}$")


class RuntimeRefError(ValueError):
    """A runtime name or version is malformed."""

    code = "bad_runtime"


@dataclass(frozen=True)
class RuntimeRef:
    """What a manifest asks for: ``name`` alone, ``name@1`` (the newest 1.x) or ``name@1.2`` exactly."""

    name: str
    version: str = ""  # empty: the newest of the family

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    def matches(self, version: str) -> bool:
        """Whether ``version`` is this reference's version or one of its family."""
        if not self.version:
            return True
        asked, offered = version_tuple(self.version), version_tuple(version)
        return offered[: len(asked)] == asked


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def parse_ref(text: str) -> RuntimeRef:
    name, _, version = str(text).strip().partition("@")
    if not NAME.match(name):
        raise RuntimeRefError(f"{text!r} is not a runtime name (lower-case letters, digits, '-')")
    if version and not VERSION.match(version):
        raise RuntimeRefError(f"{text!r}: a runtime version is one to three numbers, e.g. 1 or 1.2")
    return RuntimeRef(name, version)
