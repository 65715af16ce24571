"""The signed runtime file format (``.proruntime``) and runtime references.

A runtime is a named, versioned set of Python packages (``py311-highs@1.2``) installed from a
lock file with hashes into one folder, which nodes put on the ``sys.path`` of a bare
interpreter of the runtime's Python version. Its file is::

    b"PRORUNTIME\\x01\\n" | 4-byte big-endian header length | header (JSON)
    | 64-byte Ed25519 signature of (magic + header) | payload (tar.gz of the package folder)

The header names the runtime, its Python version, the lock file it was built from, the
packages it holds, the payload's SHA-256 and size, and the signer's key id. The signature
covers the header, and the header the payload, so one check of each refuses any change.
Nodes trust the public keys in ``PRO_RUNTIME_TRUSTED_KEYS`` (``ed25519:<base64>`` each).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .folder_archive import CHUNK, ArchiveError, extract, pack_folder
from .runtime_ref import NAME, VERSION, RuntimeRef, parse_ref, version_tuple

__all__ = ["CHUNK", "ArchiveError", "RuntimeRef", "extract", "pack_folder", "parse_ref", "version_tuple"]

MAGIC = b"PRORUNTIME\x01\n"
FORMAT_VERSION = 1
MAX_HEADER = 4 * 1024 * 1024  # a lock file of thousands of pinned packages fits
SIGNATURE_BYTES = 64
KEY_PREFIX = "ed25519:"

PYTHON = re.compile(r"^3\.\d{1,2}$")


class ByteSource(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class RuntimeFileError(ValueError):
    """A runtime file or reference is refused; ``code`` says why in a word, the message in a sentence."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


# ---------------------------------------------------------------- keys


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def signing_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_signing_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeFileError("bad_key", "a runtime signing key is an Ed25519 private key (pro runtime keygen)")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    """The one-line form nodes keep in ``PRO_RUNTIME_TRUSTED_KEYS``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        raise RuntimeFileError("bad_key", f"a trusted runtime key starts with {KEY_PREFIX!r}")
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text[len(KEY_PREFIX) :], validate=True))
    except ValueError:
        raise RuntimeFileError("bad_key", "a trusted runtime key is not a valid Ed25519 public key") from None


def signer_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, recorded in the files it signs."""
    return hashlib.sha256(public_key_text(key).encode()).hexdigest()[:16]


def trusted_keys(texts: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    keys = [load_public_key(text) for text in texts if text.strip()]
    return {signer_id(key): key for key in keys}


# ---------------------------------------------------------------- writing


def build(
    *, name: str, version: str, python: str, lock: str, packages: dict[str, str], payload: bytes, key: Ed25519PrivateKey
) -> bytes:
    """The signed runtime file of a packed package folder (``payload``, from :func:`pack_folder`)."""
    if not NAME.match(name) or not VERSION.match(version) or not PYTHON.match(python):
        raise RuntimeFileError("bad_runtime", "name, version (e.g. 1.2) or Python version (e.g. 3.11) is malformed")
    header = {
        "format": FORMAT_VERSION,
        "name": name,
        "version": version,
        "python": python,
        "lock": lock,
        "packages": dict(sorted(packages.items())),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_size": len(payload),
        "signer": signer_id(key.public_key()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    head = json.dumps(header, sort_keys=True).encode()
    signed = MAGIC + struct.pack(">I", len(head)) + head
    return signed + key.sign(MAGIC + head) + payload


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class RuntimeHeader:
    name: str
    version: str
    python: str
    lock: str
    packages: dict[str, str]
    payload_sha256: str
    payload_size: int
    signer: str
    created: str

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


def _read_exactly(stream: ByteSource, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise RuntimeFileError("bad_runtime", f"the runtime file ends inside its {what}")
    return data


def read_header(stream: ByteSource, trusted: dict[str, Ed25519PublicKey]) -> RuntimeHeader:
    """Read and check the header and signature; ``stream`` is left at the payload's first byte."""
    if _read_exactly(stream, len(MAGIC), "magic") != MAGIC:
        raise RuntimeFileError("bad_runtime", "this is not a runtime file (.proruntime)")
    (length,) = struct.unpack(">I", _read_exactly(stream, 4, "header"))
    if length > MAX_HEADER:
        raise RuntimeFileError("bad_runtime", "the runtime file's header is too large")
    head = _read_exactly(stream, length, "header")
    signature = _read_exactly(stream, SIGNATURE_BYTES, "signature")
    try:
        fields: dict[str, Any] = json.loads(head)
        header = RuntimeHeader(**{name: fields[name] for name in RuntimeHeader.__dataclass_fields__})
    except (ValueError, KeyError, TypeError):
        raise RuntimeFileError("bad_runtime", "the runtime file's header is not readable") from None
    key = trusted.get(header.signer)
    if key is None:
        raise RuntimeFileError(
            "untrusted_runtime",
            f"runtime {header.key} is signed by key {header.signer}, which this platform does not trust "
            "(PRO_RUNTIME_TRUSTED_KEYS)",
        )
    try:
        key.verify(signature, MAGIC + head)
    except InvalidSignature:
        raise RuntimeFileError("tampered_runtime", f"runtime {header.key}: the signature does not match") from None
    if fields.get("format") != FORMAT_VERSION:
        raise RuntimeFileError("bad_runtime", f"runtime file format {fields.get('format')} is not supported")
    if not NAME.match(header.name) or not VERSION.match(header.version) or not PYTHON.match(header.python):
        raise RuntimeFileError("bad_runtime", "the runtime's name, version or Python version is malformed")
    return header


def check_payload(stream: ByteSource, header: RuntimeHeader, sink: IO[bytes] | None = None) -> None:
    """Read the payload to its end, checking size and SHA-256 (copied to ``sink`` on the way)."""
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > header.payload_size:
            break
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    if size != header.payload_size or digest.hexdigest() != header.payload_sha256:
        raise RuntimeFileError("tampered_runtime", f"runtime {header.key}: the packages do not match the signature")
