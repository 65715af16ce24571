"""Download the sample apps' requirements into a folder, so that the tests build their environments
with no network (``make test`` runs it; pro_portal/test_settings.py points the builds at it).

    python -m tests.wheelhouse var/test-wheelhouse
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def sample_requirements() -> list[str]:
    pins = set()
    for manifest in EXAMPLES.glob("*/manifest.toml"):
        pins.update(tomllib.loads(manifest.read_text()).get("requirements", []))
    return sorted(pins)


def main(folder: str) -> int:
    target = Path(folder)
    pins = sample_requirements()
    stamp = target / ".requirements"
    if stamp.is_file() and stamp.read_text() == "\n".join(pins):
        return 0
    target.mkdir(parents=True, exist_ok=True)
    if pins:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "-d", str(target)]
        subprocess.run([*command, *pins], check=True)
    stamp.write_text("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
