"""Rebuild an app's declarations from its manifest, without its code.

The web process never imports app code, yet must check job inputs and show pages: the
interface recorded by ``pro app pack`` is enough to declare a stand-in app with the same
identifiers, whose procedures do nothing.
"""

from __future__ import annotations

from typing import Any

from .sdk import AppDefinition, SetDef


def app_from_interface(manifest: dict[str, Any]) -> AppDefinition:
    interface = manifest.get("interface", {})
    app = AppDefinition(manifest.get("name", "app"), title=manifest.get("title", ""))
    sets: dict[str, SetDef] = {}
    identifiers = interface.get("identifiers", [])
    for item in identifiers:
        if item.get("kind") == "set":
            sets[item["name"]] = app.set(item["name"], default=item.get("default", []), title=item.get("title", ""))
    for item in identifiers:
        kind = item.get("kind")
        if kind not in ("parameter", "output"):
            continue
        common = {
            "index": [sets[s] for s in item.get("index", [])],
            "type": item.get("type", "float"),
            "default": item.get("default"),
            "unit": item.get("unit", ""),
            "title": item.get("title", ""),
        }
        if kind == "parameter":
            rows = item.get("data") or []
            data = {(tuple(row[:-1]) if len(row) > 2 else row[0]): row[-1] for row in rows}
            app.parameter(
                item["name"], minimum=item.get("minimum"), maximum=item.get("maximum"), data=data or None, **common
            )
        else:
            app.output(item["name"], **common)
    return app
