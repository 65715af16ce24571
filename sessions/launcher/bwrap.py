"""The bubblewrap command line of a sandbox: what app code sees, and nothing else.

Inside: the system's read-only ``/usr`` (and its ``/bin``, ``/lib`` links), a few harmless
files of ``/etc``, the runtime's interpreter and packages read-only, the platform's runtime code
(``sessions.runtime`` and ``pro_sdk``, no Django) read-only at ``INSIDE_LIB``, the working
folder writable at ``INSIDE_WORK`` with its ``app`` folder read-only, a private ``/tmp``, a
fresh ``/proc`` that shows only the sandbox's processes, and a minimal ``/dev``. New user, PID,
IPC, UTS, cgroup and network namespaces (what an app may reach is relayed into it); an unprivileged user with no
capabilities and no way to make further user namespaces; killed with its supervisor.

Not inside: the platform's source tree, data folder, database, keys, storage folder, other
sandboxes' folders, other processes, the node's services.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from . import LaunchSpec

INSIDE_WORK = "/pro/work"
INSIDE_LIB = "/pro/lib"
SITE_ROOT = "/pro/site"  # a runtime's and an environment's packages, read-only, in order
SANDBOX_UID = 65534  # "nobody" inside the sandbox

# Read by the C library, Python and TLS; none of them holds a secret.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "ssl/certs",
    "ca-certificates",
    "ca-certificates.conf",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "resolv.conf",
    "gai.conf",
    "protocols",
    "services",
    "mime.types",
    "os-release",
)
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
PASSWD = f"root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:{SANDBOX_UID}:{SANDBOX_UID}:app:{INSIDE_WORK}:/usr/sbin/nologin\n"
GROUP = f"root:x:0:\nnogroup:x:{SANDBOX_UID}:\n"


def executable() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def problem() -> str:
    """Why no sandbox can be made on this node ("" when one can): tried once per process."""
    binary = executable()
    if binary is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [binary, *_namespaces(), "--ro-bind", "/usr", "/usr", *_system_links(), "--", "true"]
    try:
        completed = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if completed.returncode != 0:
        return f"bwrap cannot create a sandbox: {completed.stderr.strip() or completed.returncode}"
    return ""


def _namespaces(nested: bool = False) -> list[str]:
    """Every namespace new, the network's too: what an app may reach is relayed (sessions.network).

    ``nested``: the sandbox may make namespaces of its own (a fork server walls off each job in
    new ones, sessions.runtime.fork_server); any other may not.
    """
    args = ["--die-with-parent", "--new-session", "--unshare-user", "--unshare-pid", "--unshare-ipc"]
    args += ["--unshare-uts", "--unshare-net", "--unshare-cgroup-try", "--cap-drop", "ALL"]
    if not nested:
        args.append("--disable-userns")
    return [*args, "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "pro-sandbox"]


def _system_links() -> list[str]:
    args = []
    for name in SYSTEM_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def runtime_folders(interpreter: str) -> list[Path]:
    """The folders a runtime's interpreter needs: its virtual environment and the Python under it."""
    executable_path = Path(interpreter)
    folders = []
    venv = executable_path.parent.parent
    config = venv / "pyvenv.cfg"
    if config.is_file():
        folders.append(venv)
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                folders.append(Path(value.strip()).parent)
    else:
        folders.append(executable_path.resolve().parent.parent)
    return [folder for folder in folders if not folder.resolve().is_relative_to("/usr")]


def _etc_fingerprint() -> str:
    """What the node's copies of ``ETC_FILES`` depend on: the entries' sizes and times."""
    parts = []
    for name in ETC_FILES:
        with contextlib.suppress(OSError):
            info = (Path("/etc") / name).lstat()
            parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join([PASSWD, GROUP, *parts]).encode()).hexdigest()[:16]


def _copy_etc_entry(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink() and os.readlink(source).startswith("/usr/"):
        target.symlink_to(os.readlink(source))  # resolves inside the sandbox, where /usr is
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)


@functools.cache
def etc_folder() -> Path:
    """The sandbox's ``/etc``: copies of ``ETC_FILES`` and a passwd naming only its user.

    One folder mounted at once costs a sandbox far less than a mount per file. It is built
    once per node and content, by whichever process needs it first.
    """
    folder = Path(settings.PRO_WORK_DIR) / f".sandbox-etc-{_etc_fingerprint()}"
    if folder.is_dir():
        return folder
    Path(settings.PRO_WORK_DIR).mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".sandbox-etc-building-", dir=settings.PRO_WORK_DIR))
    for name in ETC_FILES:
        source = Path("/etc") / name
        if source.exists() or source.is_symlink():
            with contextlib.suppress(OSError):
                _copy_etc_entry(source, building / name)
    (building / "passwd").write_text(PASSWD)
    (building / "group").write_text(GROUP)
    building.chmod(0o755)
    try:
        building.rename(folder)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return folder


def _file_system(spec: LaunchSpec) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", *_system_links(), "--proc", "/proc", "--dev", "/dev"]
    size = str(settings.PRO_SANDBOX_TMP_MB * 1024 * 1024)
    args += ["--size", size, "--tmpfs", "/dev/shm", "--size", size, "--tmpfs", "/tmp"]  # noqa: S108
    args += ["--ro-bind", str(etc_folder()), "/etc"]
    for folder in runtime_folders(spec.interpreter):
        args += ["--ro-bind", str(folder), str(folder)]
    base = Path(settings.BASE_DIR)
    args += ["--ro-bind", str(base / "sessions" / "__init__.py"), f"{INSIDE_LIB}/sessions/__init__.py"]
    args += ["--ro-bind", str(base / "sessions" / "runtime"), f"{INSIDE_LIB}/sessions/runtime"]
    args += ["--ro-bind", str(base / "pro_sdk"), f"{INSIDE_LIB}/pro_sdk"]
    args += ["--bind", str(spec.workdir), INSIDE_WORK]
    app = spec.workdir / "app"
    if app.is_dir():
        args += ["--ro-bind", str(app), f"{INSIDE_WORK}/app"]
    for number, folder in enumerate(spec.site_dirs):
        args += ["--ro-bind", str(folder), f"{SITE_ROOT}/{number}"]
    for inside, host in spec.read_only.items():
        args += ["--ro-bind", str(host), inside]
    # The sandbox's own root is a tmpfs bubblewrap made: read-only, so that nothing is written
    # beside /pro/work, /tmp and /dev/shm (whose sizes are bounded).
    return [*args, "--remount-ro", "/", "--chdir", INSIDE_WORK]


def command(spec: LaunchSpec, app_command: list[str], info_fd: int) -> list[str]:
    binary = executable()
    if binary is None:
        raise FileNotFoundError("bwrap")
    return [
        binary,
        *_namespaces(spec.nested_namespaces),
        *_file_system(spec),
        "--info-fd",
        str(info_fd),
        "--",
        *app_command,
    ]
