"""A real single-node SLURM cluster on localhost for the tests: Debian's slurm-wlm and munge, started and stopped
here (munged, slurmctld, slurmd with a generated slurm.conf; proctrack/linuxproc, no cgroups)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.apt import apt_install

CONF = """ClusterName=ffva-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmUser=root
SlurmdUser=root
JobRequeue=1
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install() -> str | None:
    """Install slurm-wlm and munge if missing; the reason they cannot be had, or None."""
    return apt_install(["slurm-wlm", "munge"], lambda: bool(shutil.which("slurmctld") and shutil.which("munged")))


class Cluster:
    def __init__(self, directory: Path):
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.started_munge = False

    def start(self) -> str | None:
        """Start the daemons; the reason they did not come up, or None."""
        if os.geteuid() != 0:
            return "slurmd must run as root"
        reason = install()
        if reason:
            return reason
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        (self.dir / "spool").mkdir(exist_ok=True)
        mem_kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        self.conf.write_text(CONF.format(host=socket.gethostname().split(".")[0], ctld_port=_free_port(), d_port=_free_port(),
                                         dir=self.dir, cpus=os.cpu_count(), mem=mem_kb // 1024 // 2))
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            if not Path("/etc/munge/munge.key").exists():
                subprocess.run(["mungekey", "--create"], capture_output=True)
            subprocess.run(["munged", "--force", "--num-threads=10"], capture_output=True)
            self.started_munge = True
        for daemon in ("slurmctld", "slurmd"):
            out = subprocess.run([daemon, "-f", str(self.conf)], env=self.env, capture_output=True, text=True)
            if out.returncode != 0:
                return f"{daemon} did not start: {out.stderr[-500:]}"
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T").stdout.strip()
            if state == "idle":
                return None
            time.sleep(1)
        return f"the node did not become idle (sinfo: {state!r}); see {self.dir}/slurmctld.log and slurmd.log"

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=60)

    def wait(self, job: str, timeout: float = 600) -> None:
        """Until no task of ``job`` is pending or running."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.run("squeue", "-h", "-j", job).stdout.strip():
                return
            time.sleep(2)
        raise TimeoutError(f"job {job} still in the queue after {timeout} s: {self.run('squeue').stdout}")

    def start_requeued(self, task: str, timeout: float = 120) -> None:
        """Once ``task`` has been requeued, start it again without sitting out SLURM's requeue delay (BeginTime).

        The delay is there for a reason the test must respect too: until slurmd has cleaned up the old run, and
        within the same second as the requeue, a restart is refused ("Job credential revoked") and the task fails.
        So: wait until it is pending, then until the node is idle, then a little longer.
        """
        deadline = time.time() + timeout
        while self.run("squeue", "-h", "-j", task, "-o", "%t").stdout.strip() != "PD":
            if time.time() > deadline:
                raise TimeoutError(f"{task} was not requeued within {timeout} s: {self.run('squeue').stdout}")
            time.sleep(0.5)
        while self.run("sinfo", "-h", "-o", "%T").stdout.strip() != "idle":
            if time.time() > deadline:
                raise TimeoutError(f"the node did not become idle after requeueing {task}: {self.run('sinfo').stdout}")
            time.sleep(0.5)
        time.sleep(2)
        self.run("scontrol", "update", f"JobId={task}", "StartTime=now")

    def stop(self) -> None:
        self.run("scancel", "--full", "-u", "root")
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            pid = self.dir / pid_file
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], capture_output=True)
        if self.started_munge:
            subprocess.run(["pkill", "-x", "munged"], capture_output=True)
