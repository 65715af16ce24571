"""Inside a build sandbox: install an app's requirements on top of its runtime and pack what differs.

``python -m sessions.runtime.env_build WORK`` reads from the working folder ``requirements.txt``,
``constraints.txt`` (the runtime's packages that the app does not pin itself, so that shared
dependencies resolve to the runtime's versions), ``runtime_packages.json`` and ``pip_args.json``
(where packages come from). pip installs into ``WORK/env``; packages identical to the runtime's
are then removed (the runtime provides them), and the rest is packed into ``WORK/env.tar.gz``
with a summary in ``WORK/env.json``. No Django here.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from email.parser import HeaderParser
from pathlib import Path

from . import folder_archive, netforward


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions(folder: Path) -> dict[str, tuple[str, Path]]:
    """name -> (version, dist-info folder) of what is installed in ``folder``."""
    found = {}
    for info in folder.glob("*.dist-info"):
        metadata = info / "METADATA"
        if metadata.is_file() and not metadata.is_symlink():
            headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
            if headers["Name"] and headers["Version"]:
                found[normalise(headers["Name"])] = (headers["Version"], info)
    return found


def remove_distribution(folder: Path, info: Path) -> None:
    """Remove the files an installed distribution's RECORD lists (inside ``folder`` only), and it."""
    record = info / "RECORD"
    root = folder.resolve()
    lines = record.read_text(encoding="utf-8", errors="replace").splitlines() if record.is_file() else []
    parents: set[Path] = set()
    for line in lines:
        path = (folder / line.split(",", 1)[0]).resolve()
        if path.is_relative_to(root) and path != root and (path.is_file() or path.is_symlink()):
            path.unlink()
            parents.update(p for p in path.parents if p.is_relative_to(root) and p != root)
    shutil.rmtree(info, ignore_errors=True)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def folder_size(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def main() -> int:
    work = Path(sys.argv[1])
    env = work / "env"
    netforward.start_from_environment()
    from pip._internal.cli.main import main as pip

    pip_args = json.loads((work / "pip_args.json").read_text())
    command = ["install", "--target", str(env), "-r", str(work / "requirements.txt")]
    command += ["-c", str(work / "constraints.txt"), *pip_args]
    print("$ pip " + " ".join(command), flush=True)
    code = pip(command)
    if code:
        return code
    runtime = json.loads((work / "runtime_packages.json").read_text())
    for name, (version, info) in sorted(distributions(env).items()):
        if runtime.get(name) == version:
            remove_distribution(env, info)
            print(f"{name} {version}: the runtime's own, not kept", flush=True)
    packages = {name: version for name, (version, _) in sorted(distributions(env).items())}
    (work / "env.tar.gz").write_bytes(folder_archive.pack_folder(env))
    (work / "env.json").write_text(json.dumps({"packages": packages, "installed_size": folder_size(env)}))
    print(f"Environment: {', '.join(f'{n}=={v}' for n, v in packages.items()) or 'nothing beyond the runtime'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
