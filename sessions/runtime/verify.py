"""The verification run of a published version: import the app, compare it with its manifest.

``python -m sessions.runtime.verify APP_DIR`` prints one JSON line, ``{"ok": true}`` or
``{"ok": false, "error": "..."}``, and exits 0 or 1. No Django here.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from .loader import load_app
from .manifest import validate_manifest


def differences(declared: dict, recorded: dict) -> list[str]:
    """How the imported app's interface differs from the one its manifest records."""
    problems = []
    for key in ("identifiers", "procedures", "pages"):
        mine = {json.dumps(item, sort_keys=True) for item in declared.get(key, [])}
        theirs = {json.dumps(item, sort_keys=True) for item in recorded.get(key, [])}
        for item in sorted(theirs - mine):
            problems.append(
                f"the manifest lists {key[:-1]} {json.loads(item).get('name') or json.loads(item).get('title')!r}, which the app does not declare that way"
            )
        for item in sorted(mine - theirs):
            problems.append(
                f"the app declares {key[:-1]} {json.loads(item).get('name') or json.loads(item).get('title')!r}, which the manifest does not list that way"
            )
    return problems


MAX_PRELOAD = 5000


def imported_from_sites(before: set[str]) -> list[str]:
    """The modules imported since ``before`` that come from the runtime's or environment's folders,
    in import order: what a warm interpreter of that environment imports ahead of a launch."""
    sites = tuple(folder + "/" for folder in os.environ.get("PRO_SITE_DIRS", "").split(os.pathsep) if folder)
    found = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name not in before and sites and origin.startswith(sites):
            found.append(name)
    return found[:MAX_PRELOAD]


def verify(app_dir: Path, preload: list[str] | None = None) -> list[str]:
    manifest = validate_manifest(json.loads((app_dir / "manifest.json").read_text()))
    before = set(sys.modules)
    app = load_app(app_dir, manifest)
    if preload is not None:
        preload.extend(imported_from_sites(before))
    problems = differences(app.describe(), manifest.interface)
    if app.name != manifest.name:
        problems.append(f"the app calls itself {app.name!r} but its manifest says {manifest.name!r}")
    data = app.new_data()
    data.to_dict()
    return problems


def main() -> int:
    preload: list[str] = []
    try:
        problems = verify(Path(sys.argv[1]), preload)
    except BaseException as exc:
        detail = traceback.format_exc(limit=5)
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": detail}))
        return 1
    if problems:
        print(json.dumps({"ok": False, "error": "; ".join(problems)}))
        return 1
    print(json.dumps({"ok": True, "preload": preload}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
