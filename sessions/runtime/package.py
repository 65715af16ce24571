"""The encrypted app package format.

A package is a zip archive of the app folder with ``manifest.json`` at its root, encrypted
for one platform with hybrid encryption::

    b"PROAPP\\x01\\n" | 4-byte big-endian header length | header (JSON) | AES-256-GCM ciphertext

The header names the platform's key (``key_id``, a fingerprint of its public key), carries
the fresh AES key wrapped with the platform's RSA public key (OAEP, SHA-256) and the GCM
nonce. The header is the GCM associated data, so changing any byte of the file is detected.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .manifest import PACKAGE_FILE, Manifest, ManifestError, validate_manifest

MAGIC = b"PROAPP\x01\n"
FORMAT_VERSION = 1
MAX_HEADER = 16 * 1024
EXCLUDED_PARTS = {"__pycache__", ".git", ".pytest_cache", ".venv", "venv", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".proapp")
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class PackageError(ValueError):
    """A package is refused; ``code`` says why in a word, the message in a sentence."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold once decrypted (zip bombs and path tricks are refused)."""

    max_entries: int = 10_000
    max_uncompressed_bytes: int = 1024 * 1024 * 1024
    max_ratio: float = 200.0


# ---------------------------------------------------------------- keys


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def private_key_to_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the platform key must be an RSA private key")
    return key


def public_key_to_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    if isinstance(pem, str):
        pem = pem.encode()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the publisher key must be an RSA public key")
    return key


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """A short fingerprint that tells which platform a package is for."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:32]


# ---------------------------------------------------------------- encryption


def encrypt(archive: bytes, public_key: rsa.RSAPublicKey) -> bytes:
    """Encrypt an archive for the platform that holds the private half of ``public_key``."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "key_id": key_id(public_key),
            "cipher": "RSA-OAEP-SHA256+AES-256-GCM",
            "wrapped_key": base64.b64encode(public_key.encrypt(data_key, OAEP)).decode(),
            "nonce": base64.b64encode(nonce).decode(),
        },
        sort_keys=True,
    ).encode()
    ciphertext = AESGCM(data_key).encrypt(nonce, archive, header)
    return MAGIC + struct.pack(">I", len(header)) + header + ciphertext


def read_header(blob: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """Split a package into its header (parsed), the raw header bytes and the ciphertext."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise PackageError("not_a_package", "this file is not an app package (build one with 'pro app pack')")
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if length > MAX_HEADER or start + length > len(blob):
        raise PackageError("tampered", "the package header is damaged")
    raw = blob[start : start + length]
    try:
        header = json.loads(raw)
    except ValueError:
        raise PackageError("tampered", "the package header is damaged") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise PackageError("not_a_package", "this package was built in a format this platform does not read")
    return header, raw, blob[start + length :]


def decrypt(blob: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    """Return the archive inside a package, or raise :class:`PackageError`."""
    header, raw, ciphertext = read_header(blob)
    if header.get("key_id") != key_id(private_key.public_key()):
        raise PackageError(
            "wrong_platform",
            "this package was encrypted for another platform: pack it again with this platform's publisher key",
        )
    try:
        data_key = private_key.decrypt(base64.b64decode(header["wrapped_key"]), OAEP)
        nonce = base64.b64decode(header["nonce"])
        return AESGCM(data_key).decrypt(nonce, ciphertext, raw)
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise PackageError("tampered", "the package has been altered or damaged since it was packed") from None


# ---------------------------------------------------------------- archives


def _included(relative: PurePosixPath) -> bool:
    return not (set(relative.parts) & EXCLUDED_PARTS) and not relative.name.endswith(EXCLUDED_SUFFIXES)


def build_archive(folder: str | Path, manifest: dict[str, Any]) -> bytes:
    """Zip an app folder with ``manifest`` as its ``manifest.json`` (sorted, reproducible)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(PACKAGE_FILE, json.dumps(manifest, indent=2, sort_keys=True))
        for path in sorted(folder.rglob("*")):
            relative = PurePosixPath(path.relative_to(folder).as_posix())
            if path.is_symlink():
                raise PackageError("unsafe_path", f"{relative} is a link: packages hold plain files only")
            if path.is_file() and _included(relative) and str(relative) != PACKAGE_FILE:
                archive.write(path, str(relative))
    return buffer.getvalue()


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise PackageError("unsafe_path", f"the package holds an absolute path: {name}")
    if ".." in path.parts:
        raise PackageError("unsafe_path", f"the package holds a path that escapes it: {name}")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise PackageError("unsafe_path", f"the package holds a link: {name}")


def inspect_archive(archive: bytes, limits: ArchiveLimits | None = None) -> tuple[Manifest, list[str]]:
    """Check an archive's structure and manifest without extracting or importing anything."""
    limits = limits or ArchiveLimits()
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile:
        raise PackageError("not_a_package", "the package does not hold a valid archive") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise PackageError(
                "too_large", f"the package holds {len(infos)} files, more than the limit of {limits.max_entries}"
            )
        total = 0
        for info in infos:
            _check_entry(info)
            total += info.file_size
            if (
                info.compress_size
                and info.file_size / info.compress_size > limits.max_ratio
                and info.file_size > 1024 * 1024
            ):
                raise PackageError(
                    "too_large", f"{info.filename} expands more than {limits.max_ratio:g} times: refused as a zip bomb"
                )
        if total > limits.max_uncompressed_bytes:
            raise PackageError(
                "too_large",
                f"the package expands to {total} bytes, more than the limit of {limits.max_uncompressed_bytes}",
            )
        names = [i.filename for i in infos if not i.is_dir()]
        if PACKAGE_FILE not in names:
            raise PackageError("missing_manifest", f"the package has no {PACKAGE_FILE} at its root")
        try:
            raw = zf.read(PACKAGE_FILE)
            if len(raw) > 1024 * 1024:
                raise PackageError("bad_manifest", f"{PACKAGE_FILE} is larger than 1 MiB")
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise PackageError("bad_manifest", f"{PACKAGE_FILE} is not valid JSON") from None
        except zipfile.BadZipFile:
            raise PackageError("tampered", "the package archive is damaged") from None
    try:
        manifest = validate_manifest(data)
    except ManifestError as exc:
        raise PackageError(exc.code, str(exc)) from None
    if manifest.entry_module_path not in names:
        raise PackageError(
            "bad_entry_point", f"the entry point module {manifest.entry_module_path} is not in the package"
        )
    if manifest.icon and manifest.icon not in names:
        raise PackageError("bad_manifest", f"the icon {manifest.icon} is not in the package")
    return manifest, names


def read_member(archive: bytes, name: str, max_bytes: int = 512 * 1024) -> bytes:
    """Read one small file of an archive (e.g. the icon)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = zf.getinfo(name)
        if info.file_size > max_bytes:
            raise PackageError("too_large", f"{name} is larger than {max_bytes} bytes")
        return zf.read(info)


def extract_archive(archive: bytes, destination: str | Path, limits: ArchiveLimits | None = None) -> Manifest:
    """Check and extract an archive into ``destination`` (a private folder of a process)."""
    manifest, _ = inspect_archive(archive, limits)
    destination = Path(destination)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        for info in zf.infolist():
            target = destination / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(target, "wb") as sink:
                while chunk := source.read(1024 * 1024):
                    sink.write(chunk)
    return manifest


def describe_folder(folder: str | Path) -> dict[str, Any]:
    """Import the app of a folder and return its declared interface, after the checks verification makes.

    The platform verifies a published version by importing it in a sandbox
    (:mod:`sessions.runtime.verify`); what that would refuse of the app's own code is refused
    here, before a package is built: a different name in ``App(...)`` than in the manifest, or
    initial data that does not fit its declarations. This imports app code: ``pro app pack``
    runs it in a process of its own (:mod:`pro_cli.app_check`).
    """
    from .loader import load_app
    from .manifest import read_author_manifest

    author = read_author_manifest(folder)
    partial = validate_manifest(author, require_interface=False)
    app = load_app(folder, partial)
    if app.name != partial.name:
        raise PackageError(
            "name_mismatch",
            f"the app calls itself {app.name!r} but its manifest says {partial.name!r}: give App() the manifest's name",
        )
    try:
        app.new_data().to_dict()
    except ValueError as exc:
        raise PackageError("bad_data", f"the app's initial data does not fit its declarations: {exc}") from None
    return app.describe()


def pack_described(
    folder: str | Path, interface: dict[str, Any], public_key: rsa.RSAPublicKey
) -> tuple[bytes, Manifest]:
    """Build the encrypted package of an app folder whose interface :func:`describe_folder` returned."""
    from .manifest import read_author_manifest

    manifest = validate_manifest({**read_author_manifest(folder), "interface": interface})
    archive = build_archive(folder, manifest.to_dict())
    inspect_archive(archive)
    return encrypt(archive, public_key), manifest


def pack_folder(folder: str | Path, public_key: rsa.RSAPublicKey) -> tuple[bytes, Manifest]:
    """Build the encrypted package of an app folder (imports the app, in this process, to record its interface)."""
    return pack_described(folder, describe_folder(folder), public_key)
