"""Secrets the platform must use in the clear later (webhook signing keys, connection passwords),
stored encrypted at rest with a key derived from the platform's ``SECRET_KEY``.

AES-GCM under a key derived by HKDF per ``purpose``, with ``context`` (the owning row's identity)
as associated data: a sealed value copied onto another row, or read for another purpose, does
not open. Changing ``SECRET_KEY`` makes every sealed value unreadable (they must be set again).
"""

from __future__ import annotations

import base64
import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

NONCE_BYTES = 12


class SealBroken(ValueError):
    """A sealed value does not open: another key, another row, or a damaged value."""


@functools.cache
def _cipher(secret_key: str, purpose: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret_key.encode())
    return AESGCM(key)


def seal(text: str, *, purpose: bytes, context: str) -> str:
    """``text`` encrypted for storage (base64 of nonce and ciphertext)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = _cipher(settings.SECRET_KEY, purpose).encrypt(nonce, text.encode(), context.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(stored: str, *, purpose: bytes, context: str) -> str:
    """The text :func:`seal` stored, or :class:`SealBroken`."""
    try:
        raw = base64.b64decode(stored)
        opened = _cipher(settings.SECRET_KEY, purpose).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealBroken("a sealed secret does not open with this platform's key") from exc
    return opened.decode()
