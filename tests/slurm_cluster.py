"""A real Slurm cluster on this machine, for the tests of the Slurm executor.

``start_slurm_cluster()`` (and the session-scoped fixture ``slurm_cluster``) starts, from a
``slurm.conf`` written into a temporary folder of its own:

- one ``munged`` with its own key, socket, pid, seed and log files (``--force``: we run as root);
- one ``slurmctld``;
- one ``slurmd -N <name>`` per node (``pn1``, ``pn2``, ...), each on a port of its own and with
  a spool folder of its own; the nodes have one CPU and 2000 MB each, so that as many one-CPU
  jobs as there are nodes fill the cluster. Partitions: ``solve`` (every node, the default) and
  ``small`` (the first node).

Every port is picked free at start, so that test processes beside one another (pytest-xdist)
each run a cluster of their own. Nothing outside the temporary folder is written: no
``/etc/slurm``, ``/var/spool`` or ``/run/munge``. Jobs run as root, like the tests.

The host's cgroups are never touched: no cgroup plugin is configured (``proctrack/linuxproc``,
``task/none``, ``jobacct_gather/none``), and every Slurm daemon runs in a private mount namespace
in which an empty read-only tmpfs hides ``/sys/fs/cgroup`` (slurmd 22.05 loads a cgroup plugin
whatever the configuration: ``cgroup.conf`` points it at an empty folder of ours). Each daemon
also gets a PID namespace of its own: a slurmd's ``slurmstepd`` and its jobs' processes live in
it, so that ``kill_node()`` (SIGKILL) takes them all down at once, as a node's crash would
(without cgroups, a job's processes would otherwise outlive their slurmd).

There is no accounting database (``sacct`` answers "Slurm accounting storage is disabled"): a
finished job's final state is in ``scontrol show job -o <id>`` (``JobState=`` and ``ExitCode=``)
or ``squeue -h -t all -j <id> -o '%T %r'`` for ``MinJobAge`` (300 s) after its end.
Needs the Debian packages ``slurm-wlm`` and ``munge``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.live import free_port

START_TIMEOUT = 30.0
SLURMD_TIMEOUT = 10  # seconds without an answer from a slurmd before slurmctld sets its node DOWN
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "unshare")
INSTALL_HINT = "the Slurm tests need the Debian packages slurm-wlm and munge: apt-get install -y slurm-wlm munge"
ACTIVE_STATES = "PD,R,CG,CF,S,RQ,RS,SO,ST"  # squeue -t: every state of a job not yet ended

# The first process of a daemon's namespaces: hides the host's cgroup hierarchy (an empty read-only
# tmpfs over it, in the private mount namespace), starts the daemon, and reaps every process orphaned
# in the namespace (slurmd's slurmstepd are) until the daemon exits; the kernel then kills the rest.
NAMESPACE_INIT = (
    "if [ -d /sys/fs/cgroup ]; then mount -t tmpfs -o ro,size=4k slurm-no-cgroups /sys/fs/cgroup || exit 97; fi; "
    '"$@" & wait $!'
)

CONFIG = """\
ClusterName={cluster_name}
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={root}/plugstack.conf
MailProg=/bin/true

# No cgroups at all: the host's are not ours to change.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none

# Jobs start within about a second of their submission (most by the backfill scheduler).
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,batch_sched_delay=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The nodes' declared CPUs and memory stand, whatever this machine has.
SlurmdParameters=config_overrides

# A dead slurmd makes its node DOWN (and its jobs NODE_FAIL) quickly; a node back up serves again.
SlurmdTimeout={slurmd_timeout}
SlurmctldTimeout=30
MessageTimeout=5
TCPTimeout=2
ReturnToService=2
JobRequeue=0
KillWait=2
InactiveLimit=0
OverTimeLimit=0
# Finished jobs stay in `scontrol show job` for 5 minutes (there is no accounting database).
MinJobAge=300
MaxJobCount=10000

{nodes}
{partitions}
"""


def program(name: str) -> str | None:
    """The path of ``name``, also where ``/usr/sbin`` is not on ``PATH`` (the daemons are there)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def namespaced(command: list[str]) -> list[str]:
    """``command`` in a private mount namespace and a PID namespace (``/proc`` too) of its own.

    ``--kill-child``: when ``unshare`` dies, so does the namespace's first process, and with it the namespace.
    """
    return [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL",
        "sh", "-c", NAMESPACE_INIT, "sh", *command,
    ]  # fmt: skip


def die_with_parent() -> None:
    """In a daemon's process before exec: SIGKILL when the test process dies, even killed, so nothing outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def node_line(name: str, port: int) -> str:
    """A node of one CPU on this host (all nodes share it: each slurmd listens on a port of its own)."""
    return f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} CPUs=1 RealMemory=2000 State=UNKNOWN"


def parse_record(line: str) -> dict[str, str]:
    """The fields of one line of ``scontrol show ... -o`` output (values may hold ``=``, rarely spaces)."""
    fields = {}
    for part in re.split(r" (?=[A-Za-z][\w/:]*=)", line.strip()):
        name, _, value = part.partition("=")
        fields[name] = value
    return fields


@dataclass
class SlurmCluster:
    """A running cluster: its folder, its configuration and its daemons (see the module's docstring)."""

    root: Path
    nodes: list[str]
    partitions: dict[str, list[str]]
    cluster_name: str = "pt"
    slurmd_timeout: int = SLURMD_TIMEOUT
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        """The environment for sbatch, squeue, scontrol, scancel and sinfo to use this cluster.

        ``SLURM_CONF`` is all it takes (the munge socket is in the configuration); the ``SLURM_*``,
        ``SBATCH_*``, ``SQUEUE_*``... variables of whoever runs the tests are left out: they would change the commands.
        """
        prefixes = ("SLURM", "SBATCH_", "SQUEUE_", "SALLOC_", "SRUN_", "SINFO_", "SCANCEL_", "SCONTROL_")
        env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def log_path(self, daemon: str) -> Path:
        """A daemon's log: ``munged``, ``slurmctld`` or a node's name (its slurmd's log)."""
        if daemon in ("munged", "slurmctld"):
            return self.root / "log" / f"{daemon}.log"
        return self.root / "log" / f"slurmd-{daemon}.log"

    def logs(self) -> str:
        """The end of every daemon's log and output, for a failing test's message."""
        text = []
        for path in sorted((self.root / "log").glob("*")):
            with contextlib.suppress(OSError):
                text.append(f"---- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(text)

    # ------------------------------------------------------------ commands

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster, e.g. ``run("squeue", "-h")``, with its output as text."""
        return subprocess.run(
            list(command), env=self.env, cwd=self.root, capture_output=True, text=True, check=check, timeout=timeout
        )

    def submit(self, *args: str, cwd: Path | str | None = None) -> str:
        """``sbatch --parsable <args>``: the job's id. ``cwd``: the job's working folder (its output goes there)."""
        command = ["sbatch", "--parsable", *args]
        result = subprocess.run(command, env=self.env, cwd=cwd or self.root, capture_output=True, text=True, timeout=30)
        if result.returncode:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}")
        return result.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o <id>`` as a dict (``JobState``, ``Reason``, ``ExitCode``, ``NodeList``...); {} if unknown."""
        result = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        if result.returncode or not result.stdout.strip():
            return {}
        return parse_record(result.stdout.splitlines()[0])

    def wait_job(self, job_id: str, states: str | tuple[str, ...], timeout: float = 30) -> dict[str, str]:
        """Until the job is in one of ``states``: its record. AssertionError (with the logs) at the timeout."""
        wanted = (states,) if isinstance(states, str) else states

        def reached() -> dict[str, str]:
            record = self.job(job_id)
            return record if record.get("JobState") in wanted else {}

        job = wait_until(reached, timeout=timeout, interval=0.2)
        if not job:
            raise AssertionError(
                f"job {job_id} not {'/'.join(wanted)} within {timeout} s: {self.job(job_id)}\n{self.logs()}"
            )
        return job

    def node_states(self) -> dict[str, str]:
        """Each node's state as ``sinfo`` shows it: ``idle``, ``alloc``, ``alloc*``, ``down*``, ``idle*``..."""
        result = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        states: dict[str, str] = {}
        for line in result.stdout.splitlines():
            name, _, state = line.partition(" ")
            states[name] = state.strip()
        return states

    def wait_node(self, name: str, states: str | tuple[str, ...], timeout: float = 60) -> str:
        """Until node ``name`` is in one of ``states`` (``sinfo`` spelling, e.g. ``down*``): its state."""
        wanted = (states,) if isinstance(states, str) else states
        state = wait_until(lambda: (found := self.node_states().get(name, "")) in wanted and found, timeout, 0.2)
        if not state:
            raise AssertionError(
                f"node {name} not {'/'.join(wanted)} within {timeout} s: {self.node_states()}\n{self.logs()}"
            )
        return state

    # ------------------------------------------------------------ daemons

    def _start(self, name: str, command: list[str]) -> None:
        with open(self.root / "log" / f"{name}.out", "ab") as sink:
            self.processes[name] = subprocess.Popen(
                command, cwd=self.root, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip

    def start_munged(self) -> None:
        munge = self.root / "munge"
        self._start(
            "munged",
            [
                str(program("munged")), "--foreground", "--force", f"--key-file={munge / 'munge.key'}",
                f"--socket={self.munge_socket}", f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}", f"--log-file={self.log_path('munged')}",
            ],
        )  # fmt: skip
        process = self.processes["munged"]
        wait_until(lambda: self.munge_socket.exists() or process.poll() is not None, timeout=START_TIMEOUT)
        if not self.munge_socket.exists():
            raise RuntimeError(f"munged did not start\n{self.logs()}")

    def start_slurmctld(self) -> None:
        # -i: go on whatever the state files hold (a fresh cluster has none).
        self._start("slurmctld", namespaced([str(program("slurmctld")), "-D", "-i", "-f", str(self.conf)]))

    def start_node(self, name: str) -> None:
        """Start the slurmd of ``name``, in namespaces of its own: its jobs' processes live and die with it."""
        (self.root / "spool" / name).mkdir(parents=True, exist_ok=True)
        self._start(name, namespaced([str(program("slurmd")), "-D", "-N", name, "-f", str(self.conf)]))

    def node_alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def kill_node(self, name: str) -> None:
        """A node's crash: SIGKILL to its slurmd, and with it to every slurmstepd and job process of the node.

        slurmctld notices at its next ping after ``SlurmdTimeout`` (10 s; in all about 20 s): the
        node goes DOWN (``down*``, "Not responding") and its running jobs end as NODE_FAIL.
        """
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart_node(self, name: str, wait: bool = True, timeout: float = START_TIMEOUT) -> None:
        """Start a node's slurmd again (killing it first if it runs); with ``wait``, until the node is idle.

        A DOWN node serves again as soon as its slurmd registers (ReturnToService=2). A node
        restarted before slurmctld noticed its death (still ``alloc``) shows its lost jobs RUNNING
        until its next registration, up to a minute later, when they end as NODE_FAIL: call
        ``wait_node(name, "down*")`` between ``kill_node`` and ``restart_node`` for a quick failure.
        """
        if name in self.processes and self.node_alive(name):
            self.kill_node(name)
        self.start_node(name)
        if wait:
            self.wait_ready(timeout, nodes=[name])

    def wait_ready(self, timeout: float = START_TIMEOUT, nodes: list[str] | None = None) -> None:
        """Until every node (or those of ``nodes``) is idle; RuntimeError with the daemons' logs if not in time."""
        names = nodes or self.nodes
        deadline = time.monotonic() + timeout
        while True:
            dead = [name for name in ("munged", "slurmctld", *names) if self.processes[name].poll() is not None]
            if dead:
                raise RuntimeError(f"Slurm daemons exited: {', '.join(dead)}\n{self.logs()}")
            states = self.node_states()
            if all(states.get(name) == "idle" for name in names):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"Slurm nodes not idle within {timeout} s: {states}\n{self.logs()}")
            time.sleep(0.1)

    def reset(self, timeout: float = START_TIMEOUT) -> None:
        """Back to an idle cluster between tests: every job cancelled, every node up and idle."""
        self.run("scancel", "--user=root", check=False)
        if not wait_until(
            lambda: not self.run("squeue", "-h", "-t", ACTIVE_STATES, check=False).stdout.strip(), timeout, 0.2
        ):
            raise RuntimeError(
                f"jobs still active after scancel: {self.run('squeue', check=False).stdout}\n{self.logs()}"
            )
        for name in self.nodes:
            if not self.node_alive(name):
                self.start_node(name)
        # Nodes taken out by hand (DOWN or DRAIN while their slurmd answers) need an explicit resume.
        states = self.node_states()
        held = [
            name
            for name in self.nodes
            if states.get(name, "").startswith(("down", "drain", "drng", "fail")) and "*" not in states[name]
        ]
        if held:
            self.run("scontrol", "update", f"nodename={','.join(held)}", "state=resume", check=False)
        self.wait_ready(timeout)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start munged, slurmctld and the slurmd of every node, and wait until every node is idle."""
        self.start_munged()
        self.start_slurmctld()
        for name in self.nodes:
            self.start_node(name)
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Kill every daemon (with its namespace: every job's process too), wait for them, delete the folder."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def write_config(cluster: SlurmCluster) -> None:
    """The folder's layout, the munge key, ``cgroup.conf`` and ``slurm.conf``, with a free port for every daemon."""
    root = cluster.root
    for folder in ("munge", "state", "spool", "run", "log", "no-cgroups"):
        (root / folder).mkdir(mode=0o700, exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (root / "plugstack.conf").write_text("")
    # slurmd 22.05 loads a cgroup plugin whatever the other plugins; the v1 one, pointed at an empty
    # folder, loads without finding (or changing) any cgroup, and nothing configured uses it.
    (root / "cgroup.conf").write_text(
        f"CgroupPlugin=cgroup/v1\nCgroupMountpoint={root}/no-cgroups\nCgroupAutomount=no\n"
    )
    cluster.ports = {"slurmctld": free_port(), **{name: free_port() for name in cluster.nodes}}
    nodes = "\n".join(node_line(name, cluster.ports[name]) for name in cluster.nodes)
    partitions = "\n".join(
        f"PartitionName={name} Nodes={','.join(members)} Default={'NO' if index else 'YES'} MaxTime=INFINITE State=UP"
        for index, (name, members) in enumerate(cluster.partitions.items())
    )
    cluster.conf.write_text(
        CONFIG.format(
            cluster_name=cluster.cluster_name, ctld_port=cluster.ports["slurmctld"], munge_socket=cluster.munge_socket,
            root=root, slurmd_timeout=cluster.slurmd_timeout, nodes=nodes, partitions=partitions,
        )
    )  # fmt: skip


def start_slurm_cluster(
    node_count: int = 3,
    partitions: Mapping[str, list[str]] | None = None,
    slurmd_timeout: int = SLURMD_TIMEOUT,
    timeout: float = START_TIMEOUT,
) -> SlurmCluster:
    """Start a cluster of ``node_count`` nodes and wait until it is ready (about 1.5 s); RuntimeError if it cannot.

    ``partitions``: name -> nodes, the first the default; ``solve`` (every node) and ``small`` (the first node) if not given.
    """
    missing = [name for name in PROGRAMS if program(name) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise RuntimeError("the Slurm test cluster runs as root (munged, slurmd and the jobs)")
    nodes = [f"pn{index}" for index in range(1, node_count + 1)]
    root = Path(tempfile.mkdtemp(prefix="slurm-"))  # short: the munge socket's path must fit in 108 bytes
    cluster = SlurmCluster(
        root=root,
        nodes=nodes,
        partitions=dict(partitions or {"solve": nodes, "small": nodes[:1]}),
        cluster_name="pt" + re.sub(r"[^a-z0-9]", "x", root.name[-8:].lower()),
        slurmd_timeout=slurmd_timeout,
    )
    try:
        write_config(cluster)
        cluster.start(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running_slurm_cluster(
    node_count: int = 3, partitions: Mapping[str, list[str]] | None = None
) -> Iterator[SlurmCluster]:
    """``start_slurm_cluster`` as a context manager: stopped, its folder gone, on leaving."""
    cluster = start_slurm_cluster(node_count, partitions)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """One cluster for the test session (for each xdist worker): tests call ``reset()`` to start on an idle one.

    Fails, not skips, where Slurm is missing or cannot start: CI installs it, and a skip would hide that.
    """
    try:
        cluster = start_slurm_cluster()
    except RuntimeError as error:
        pytest.fail(f"no Slurm test cluster: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
