"""``python -m pro_cli.app_check FOLDER RESULT``: import an app folder for ``pro app pack``, in a process of its own.

Writes ``RESULT`` (JSON): ``{"ok": true, "interface": {...}}``, or ``{"ok": false, "error": "..."}``
with one line saying what is wrong and, for an exception in the app's code, where. The app's
code runs here and not in the ``pro`` process, so that whatever it prints, raises or exits with
comes back to the command as one message; the checks are those the platform's verification
makes (:func:`sessions.runtime.package.describe_folder`).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from sessions.runtime.manifest import ManifestError
from sessions.runtime.package import PackageError, describe_folder


def where_in_app(exc: BaseException, folder: Path) -> str:
    """``file.py, line N``: the last place in the app folder that the exception passed through."""
    if isinstance(exc, SyntaxError) and exc.filename:
        frames = [(exc.filename, exc.lineno)]
    else:
        frames = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(exc.__traceback__)]
    root = folder.resolve()
    for filename, line in reversed(frames):
        path = Path(filename).resolve()
        if path.is_relative_to(root):
            return f"{path.relative_to(root)}, line {line}"
    return ""


def describe_error(exc: BaseException, folder: Path) -> str:
    if isinstance(exc, (ManifestError, PackageError)):
        return str(exc)
    if isinstance(exc, SystemExit):
        message = f"the app exited while it was imported (code {exc.code})"
    elif isinstance(exc, SyntaxError):  # its str() names the place too, said once below
        message = f"importing the app failed: SyntaxError: {exc.msg}"
    else:
        message = f"importing the app failed: {type(exc).__name__}: {exc}".rstrip(": ")
    where = where_in_app(exc, folder)
    return f"{message} ({where})" if where else message


def main(argv: list[str] | None = None) -> int:
    folder, result = (Path(arg) for arg in (argv or sys.argv[1:])[:2])
    try:
        answer = {"ok": True, "interface": describe_folder(folder)}
    except BaseException as exc:  # whatever the app's code raises, the command says it in one line
        answer = {"ok": False, "error": describe_error(exc, folder)}
    result.write_text(json.dumps(answer))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
