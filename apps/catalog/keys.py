"""The platform's key pair: packages are encrypted for its public half.

The private key comes from ``PRO_PLATFORM_KEY`` (PEM; every node of a cluster gets the same)
or, on one machine, from a file in the data folder created on first use, readable by its
owner only.
"""

from __future__ import annotations

import functools
import os

from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from sessions.runtime import package


@functools.cache
def platform_private_key() -> rsa.RSAPrivateKey:
    if settings.PRO_PLATFORM_KEY:
        return package.load_private_key(settings.PRO_PLATFORM_KEY.encode())
    path = settings.PRO_PLATFORM_KEY_PATH
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = package.private_key_to_pem(package.generate_private_key())
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            # A hard link appears whole or not at all: when two processes start at once,
            # one key wins and both read it.
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return package.load_private_key(path.read_bytes())


def platform_public_key_pem() -> str:
    return package.public_key_to_pem(platform_private_key().public_key()).decode()


def platform_key_id() -> str:
    return package.key_id(platform_private_key().public_key())
