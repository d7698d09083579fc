"""A throw-away one-node SLURM for tests: install (Debian), configure, start, stop.

Everything lives in one state directory: slurm.conf, gres.conf, a private munge key and
socket, spool/state dirs, logs and the job-completion log. Nothing under /etc is changed;
clients find the cluster through ``SLURM_CONF`` (see :attr:`LocalSlurm.env`). The daemons run in
the foreground as children of this process (``munged -F``, ``slurmctld -D``, ``slurmd -D``),
so :meth:`LocalSlurm.stop` terminates exactly the pids it started and nothing else.

Job status: no slurmdbd. ``squeue --states=all`` answers for finished jobs as long as
slurmctld keeps them (``MinJobAge``, set to 1 hour here), and ``jobcomp/filetxt`` writes one
line per finished job (id, state, node, allocated TRES) to ``jobcomp.log``: the test's
cluster-side record. The slurm profile is run with ``--slurm-status-command squeue``.

The node gets the machine's CPUs and memory and a count-only ``gpu`` GRES (``Name=gpu
Count=N`` with no device file), so ``--gpus=1`` is scheduled for real on a GPU-less machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "munged", "mungekey"]


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def ensure_installed() -> str | None:
    """Install Debian's SLURM and munge when missing. Returns None when usable, else why not."""
    if not missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing_binaries())} missing) and there is no apt-get"
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(missing_binaries())} missing) and installing needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            return f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr[-2000:]}"
    if missing_binaries():
        return f"still missing after apt-get install: {', '.join(missing_binaries())}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machine() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) as slurmd sees this machine, minus a little memory headroom."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    cpus = int(fields.get("CPUs", os.cpu_count() or 1))
    memory = int(fields.get("RealMemory", 1024))
    return cpus, max(256, memory - 512)


class LocalSlurm:
    """One node named ``localhost`` in partition ``debug`` (the default), loopback only."""

    def __init__(self, state: Path, gpus: int = 1, partition: str = "debug", default_partition: bool = True):
        self.state = Path(state)
        self.gpus = gpus
        self.partition = partition
        self.default_partition = default_partition
        self.procs: dict[str, subprocess.Popen] = {}
        self.cpus, self.memory = _machine()

    # ------------------------------------------------------------------ config
    @property
    def conf(self) -> Path:
        return self.state / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.state / "jobcomp.log"

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (and Snakemake) to reach this cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def write_config(self) -> None:
        s = self.state
        for d in ("spool", "statesave", "log", "munge"):
            (s / d).mkdir(parents=True, exist_ok=True)
        os.chmod(s, 0o755)
        os.chmod(s / "munge", 0o755)
        gres = f"Gres=gpu:{self.gpus} " if self.gpus else ""
        default = "YES" if self.default_partition else "NO"
        self.conf.write_text(
            f"""# written by tests/slurm_cluster.py — a one-node test cluster
ClusterName=layersimtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={s / 'munge' / 'munge.socket'}
StateSaveLocation={s / 'statesave'}
SlurmdSpoolDir={s / 'spool'}
SlurmctldPidFile={s / 'slurmctld.pid'}
SlurmdPidFile={s / 'slurmd.pid'}
SlurmctldLogFile={s / 'log' / 'slurmctld.log'}
SlurmdLogFile={s / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={self.cpus} RealMemory={self.memory} {gres}State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default={default} MaxTime=INFINITE State=UP
"""
        )
        self.gres_mode = None
        if self.gpus:
            self.gres_mode = "count-only"
            self._write_gres("")
            if "Name=gpu" not in self._gres_seen_by_slurmd():
                # Slurm 22.05 (Debian 12) drops a gpu GRES without File= (slurmd then reports
                # 0 < configured and drains the node). /dev/null stands in as the device file:
                # nothing is bound (task/none, no cgroup devices), the scheduler still counts it.
                self.gres_mode = "dummy-file /dev/null"
                self._write_gres(" File=/dev/null")
                if "Name=gpu" not in self._gres_seen_by_slurmd():
                    raise RuntimeError("slurmd accepts no gpu GRES, neither count-only nor with File=/dev/null")
        else:
            (s / "gres.conf").write_text("")
        key = s / "munge" / "munge.key"
        if not key.exists():
            subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
            os.chmod(key, 0o600)

    def _write_gres(self, extra: str) -> None:
        (self.state / "gres.conf").write_text(
            f"# GPUs the scheduler counts (no real devices on this machine)\n"
            f"NodeName=localhost Name=gpu Count={self.gpus}{extra}\n"
        )

    def _gres_seen_by_slurmd(self) -> str:
        """What ``slurmd -G`` parses from gres.conf (it prints one line per GRES it keeps)."""
        return self.run(_which("slurmd"), "-G", "-N", "localhost", "-f", str(self.conf)).stdout + \
            self.run(_which("slurmd"), "-G", "-N", "localhost", "-f", str(self.conf)).stderr

    # ----------------------------------------------------------------- daemons
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.state / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def _wait(self, what: str, ok, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{self.logs()}")
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")

    SYSTEM_CONF = Path("/etc/slurm/slurm.conf")

    def _link_system_conf(self) -> None:
        """Point /etc/slurm/slurm.conf at this cluster's config (removed again by stop()).

        The slurm-jobstep plugin runs each job through a nested `srun` with every SLURM_* variable
        but a few removed, SLURM_CONF included, so srun inside a job only finds the cluster through
        the default path (as on a real cluster). An existing file that is not ours is left alone
        and is an error.
        """
        link = self.SYSTEM_CONF
        if link.is_symlink() and "slurm-state" in os.readlink(link) and not Path(os.readlink(link)).exists():
            link.unlink()  # left by an earlier run that was killed
        if link.exists() or link.is_symlink():
            raise RuntimeError(f"{link} exists and is not this test's: refusing to run a test cluster beside a real one")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(self.conf)
        self._linked = True

    def start(self) -> "LocalSlurm":
        self.write_config()
        self._link_system_conf()
        m = self.state / "munge"
        self._spawn(
            "munged",
            [_which("munged"), "-F", "--force", f"--socket={m / 'munge.socket'}", f"--key-file={m / 'munge.key'}",
             f"--pid-file={m / 'munged.pid'}", f"--log-file={self.state / 'log' / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"],
        )
        self._wait("munged", lambda: (m / "munge.socket").exists())
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping").stdout.count("UP") >= 1)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
        self._wait("node idle", lambda: self.run("sinfo", "-h", "-N", "-o", "%t").stdout.strip() == "idle")
        return self

    def run(self, *cmd: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, check=check)

    def logs(self) -> str:
        parts = []
        for f in sorted((self.state / "log").glob("*")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Terminate the daemons this object started (slurmd, slurmctld, munged), by pid."""
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        if getattr(self, "_linked", False) and self.SYSTEM_CONF.is_symlink() and Path(os.readlink(self.SYSTEM_CONF)) == self.conf:
            self.SYSTEM_CONF.unlink()
            self._linked = False

    def __enter__(self) -> "LocalSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- history
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (``squeue --states=all``): id, name, state, comment, TRES."""
        out = self.run("squeue", "--states=all", "-h", "-o", "%i|%j|%T|%k|%b", check=True).stdout
        keys = ("id", "name", "state", "comment", "tres")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def completed(self) -> list[dict[str, str]]:
        """The job-completion log (jobcomp/filetxt), one dict of its key=value fields per job."""
        if not self.jobcomp.exists():
            return []
        rows = []
        for line in self.jobcomp.read_text().splitlines():
            row = {}
            for field in line.split():
                if "=" in field:
                    k, v = field.split("=", 1)
                    row[k] = v
            rows.append(row)
        return rows

    def show_job(self, job_id: str) -> str:
        return self.run("scontrol", "show", "job", job_id).stdout
