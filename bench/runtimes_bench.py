"""Publishing an app with requirements, the first time and with its environment already built (not a test).

    .venv/bin/python bench/runtimes_bench.py [--runs 3] [--out bench/runtimes-results.json]

On a throwaway data folder (SQLite), each run publishes examples/pyomo-blending under a new
name twice: first with requirements no environment has yet (pip installs Pyomo in a build
sandbox, the archive is stored, the node unpacks it), then a second app with the same
requirements (the environment is shared: verification only). Wheels come from the package
index, or from var/test-wheelhouse with --offline. For the launch of a session in such an
environment beside the default one, run bench/sessions_bench.py --app pyomo-blending.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "pyomo-blending"


def setup(data_dir: Path, offline: bool) -> None:
    os.environ.update({"PRO_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "pro_portal.settings"})
    os.environ.pop("DATABASE_URL", None)
    if offline:
        os.environ.update(PRO_PACKAGE_INDEX_URL="", PRO_FIND_LINKS=str(ROOT / "var" / "test-wheelhouse"))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def copy_as(name: str, folder: Path, pin: str) -> Path:
    target = folder / name
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    manifest = target / "manifest.toml"
    text = manifest.read_text().replace('name = "pyomo-blending"', f'name = "{name}"')
    manifest.write_text(text.replace('requirements = ["pyomo==6.10.1"]', f'requirements = ["pyomo==6.10.1", "{pin}"]'))
    model = target / "blending_model.py"
    model.write_text(model.read_text().replace('App("pyomo-blending"', f'App("{name}"'))
    return target


def publish(folder: Path, admin) -> float:
    from apps.catalog.bootstrap import sample_pack
    from apps.catalog.keys import platform_private_key
    from apps.catalog.services import app_publish
    from apps.catalog.verification import version_verify

    started = time.perf_counter()
    blob, _ = sample_pack(folder, platform_private_key().public_key())
    version = app_publish(user=admin, blob=blob)
    state = version_verify(version_id=version.pk)
    if state != "verified":
        version.refresh_from_db()
        raise RuntimeError(version.verification_error)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--offline", action="store_true", help="wheels from var/test-wheelhouse, no index")
    parser.add_argument("--out", default=str(ROOT / "bench" / "runtimes-results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pro-bench-") as folder:
        setup(Path(folder), args.offline)
        from apps.accounts.services import user_create
        from apps.catalog.runtimes import runtime_ensure_builtin

        runtime_ensure_builtin()
        admin = user_create(username="bench", password="Bench-pass-123", role="admin")  # noqa: S106
        cold, warm = [], []
        for run in range(args.runs):
            # A different second pin each run: a new environment, as a new app's needs would be.
            pin = f"ply=={('3.11', '3.10', '3.9')[run % 3]}" if not args.offline else "pyomo==6.10.1"
            cold.append(publish(copy_as(f"bench-cold-{run}", Path(folder), pin), admin))
            warm.append(publish(copy_as(f"bench-warm-{run}", Path(folder), pin), admin))
    results = {
        "first_publish_s": {"median": statistics.median(cold), "all": cold},
        "publish_with_built_environment_s": {"median": statistics.median(warm), "all": warm},
        "offline": args.offline,
    }
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
