"""The Linux calls a fork server's child makes to wall itself off: namespaces, mounts, capabilities.

No Django here: this runs inside a solve sandbox (:mod:`sessions.runtime.fork_server`). Python
3.11 has none of these calls, so they go through the C library; every failure raises ``OSError``
with the call's name, and the child then exits before any app code runs.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
ST_RELATIME = 4096  # statvfs's flag for it

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_LAST = 63  # dropping past the kernel's last capability fails with EINVAL, which is ignored
LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result: int, call: str, *detail: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{call}({', '.join(detail)}): {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare", hex(flags))


def map_own_ids(uid: int, gid: int) -> None:
    """In a new user namespace: be ``uid``/``gid`` there, the same ids as outside (one each)."""
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"{gid} {gid} 1")


def mount(source: str | None, target: str, kind: str | None, flags: int, options: str | None = None) -> None:
    encoded = [value.encode() if value is not None else None for value in (source, target, kind, options)]
    _check(_libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]), "mount", str(source), target)


def _kept_flags(target: str) -> int:
    """The flags a bind's remount must keep: those its source was mounted with (in a user
    namespace the kernel refuses to clear them), as mount flags."""
    flags = os.statvfs(target).f_flag
    kept = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    return kept | (MS_RELATIME if flags & ST_RELATIME else 0)


def bind(source: str, target: str, *, read_only: bool = False) -> None:
    mount(source, target, None, MS_BIND)
    if read_only:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
        mount(None, target, None, flags | _kept_flags(target))


def tmpfs(target: str, size_bytes: int, *, mode: str = "1777") -> None:
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode={mode}")


def move(source: str, target: str) -> None:
    mount(source, target, None, MS_MOVE)


def make_mounts_private() -> None:
    """Nothing mounted in this namespace from now on reaches another (or comes from one)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def die_with_parent(signum: int) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG")


def drop_capabilities() -> None:
    """No capability left, none to gain back by exec (no new privileges): what was held in the
    new user namespace, to make its mounts, is gone before app code runs."""
    for capability in range(CAP_LAST + 1):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # EINVAL: past the last
            _check(-1, "prctl", "PR_CAPBSET_DROP", str(capability))
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl", "PR_CAP_AMBIENT_CLEAR_ALL")
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl", "PR_SET_NO_NEW_PRIVS")
