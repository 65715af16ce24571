"""An app version's decrypted archive, as the node's solve workers and session managers start it.

Reading the package from storage and unwrapping its key (an RSA decryption) is most of what a
start costs the node before the sandbox: the archives of the versions started lately are kept
in this process's memory, up to ``CACHE_BYTES`` in all, by the package's hash: a package never
changes (an upload is a new package, its data key drawn afresh), so nothing kept goes stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from django.core.files.storage import default_storage

from sessions.runtime import package

from .keys import platform_private_key
from .models import AppVersion

CACHE_BYTES = 64 * 1024 * 1024

_kept: OrderedDict[str, bytes] = OrderedDict()
_lock = threading.Lock()


def version_archive(version: AppVersion) -> bytes:
    """The archive inside ``version``'s package (raises ``package.PackageError`` as decrypt does)."""
    key = version.package_sha256 or version.package_path
    with _lock:
        if key in _kept:
            _kept.move_to_end(key)
            return _kept[key]
    with default_storage.open(version.package_path, "rb") as handle:
        archive = package.decrypt(handle.read(), platform_private_key())
    with _lock:
        _kept[key] = archive
        while sum(map(len, _kept.values())) > CACHE_BYTES and len(_kept) > 1:
            _kept.popitem(last=False)
    return archive
