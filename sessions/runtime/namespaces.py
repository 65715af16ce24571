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
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_LAST = 63  # dropping past the kernel's last capability fails with EINVAL, which is ignored
LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


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


def undumpable() -> None:
    """No process of the same user may ptrace this one or read its /proc entries."""
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl", "PR_SET_DUMPABLE")


# The system calls a forked job may not make (its server had to be allowed them): new namespaces
# of any kind, joining one, and the kernel's keyrings (one session keyring is the whole node's).
# Numbers per architecture, as audit names it; clone3 passes its flags in memory, out of a
# filter's sight, so it is refused as unknown (ENOSYS) and the C library falls back to clone.
_ARCHES = {
    "x86_64": (0xC000003E, {"clone": 56, "unshare": 272, "setns": 308, "clone3": 435, "keys": (248, 249, 250)}),
    "aarch64": (0xC00000B7, {"clone": 220, "unshare": 97, "setns": 268, "clone3": 435, "keys": (217, 218, 219)}),
}
_CLONE_NEW_ANY = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_X32_BIT = 0x40000000
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 1, 38


def _filter_program(arch: int, numbers: dict) -> list[tuple[int, int, int, int]]:
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    eperm, enosys = 0x00050000 | _EPERM, 0x00050000 | _ENOSYS
    denied = [numbers["unshare"], numbers["setns"], *numbers["keys"]]
    program = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, _RET_KILL), (ld, 0, 0, 0)]
    program += [(jge, 0, 1, _X32_BIT), (ret, 0, 0, _RET_KILL)]
    program += [(jeq, 0, 1, numbers["clone3"]), (ret, 0, 0, enosys)]
    for number in denied:
        program += [(jeq, 0, 1, number), (ret, 0, 0, eperm)]
    program += [(jeq, 0, 3, numbers["clone"]), (ld, 0, 0, 16), (jset, 0, 1, _CLONE_NEW_ANY), (ret, 0, 0, eperm)]
    return [*program, (ret, 0, 0, _RET_ALLOW)]


def forbid_namespaces() -> None:
    """From now on, this process and its children make no namespace and use no keyring.

    Needs no new privileges (drop_capabilities sets it). Raises OSError on an architecture
    it does not know: a job is then not started, rather than started with less of a wall.
    """
    machine = os.uname().machine
    if machine not in _ARCHES:
        raise OSError(f"no system call filter for {machine}")
    program = _filter_program(*_ARCHES[machine])
    instructions = (_SockFilter * len(program))(*(_SockFilter(*op) for op in program))
    fprog = _SockFprog(len(program), instructions)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl", "PR_SET_SECCOMP")
