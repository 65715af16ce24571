"""Import an app from its folder: the only place app code is imported.

Used by ``pro app pack`` on the modeler's machine, by a modeler's own tests, and by the
session, solve and verification processes on a server; never by the web process.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .manifest import Manifest, ManifestError, read_author_manifest, validate_manifest
from .sdk import AppDefinition


def load_app(folder: str | Path, manifest: Manifest | None = None) -> AppDefinition:
    """Import the app of ``folder`` by its entry point and return its :class:`AppDefinition` (``pro_sdk.App``)."""
    folder = Path(folder).resolve()
    if manifest is None:
        manifest = validate_manifest(read_author_manifest(folder), require_interface=False)
    module_file = folder / manifest.entry_module_path
    if not module_file.is_file():
        raise ManifestError(
            "bad_entry_point", f"entry point module {manifest.entry_module_path} is not in the app folder"
        )
    attribute = manifest.entry_point.split(":", 1)[1]
    # A name unique per app keeps two apps with a module of the same name apart in one process.
    module_name = f"_pro_app_{manifest.name.replace('-', '_')}_{manifest.entry_point.split(':')[0].replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, module_file)
    if spec is None or spec.loader is None:
        raise ManifestError("bad_entry_point", f"entry point module {manifest.entry_module_path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    app = getattr(module, attribute, None)
    if not isinstance(app, AppDefinition):
        raise ManifestError("bad_entry_point", f"{manifest.entry_point} is not an App of the SDK")
    return app
