"""The verification run of a published version: import the app, compare it with its manifest.

``python -m sessions.runtime.verify APP_DIR`` prints one JSON line, ``{"ok": true}`` or
``{"ok": false, "error": "..."}``, and exits 0 or 1. No Django here.
"""

from __future__ import annotations

import json
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


def verify(app_dir: Path) -> list[str]:
    manifest = validate_manifest(json.loads((app_dir / "manifest.json").read_text()))
    app = load_app(app_dir, manifest)
    problems = differences(app.describe(), manifest.interface)
    if app.name != manifest.name:
        problems.append(f"the app calls itself {app.name!r} but its manifest says {manifest.name!r}")
    data = app.new_data()
    data.to_dict()
    return problems


def main() -> int:
    try:
        problems = verify(Path(sys.argv[1]))
    except BaseException as exc:
        detail = traceback.format_exc(limit=5)
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": detail}))
        return 1
    if problems:
        print(json.dumps({"ok": False, "error": "; ".join(problems)}))
        return 1
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
