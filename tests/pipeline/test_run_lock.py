"""One process per run directory (run_record/lock.py): a second process resuming the same run is refused in one line
naming the holder, before it touches a file; once the holder is dead (SIGKILL: no clean-up ran) its lock is taken
over by the next resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from main import main
from run_record import files
from run_record.lock import LOCK_FILE, RunLock, is_launcher
from tests.pipeline.test_cli import TINY, only_run_dir

HOLD = "import sys, time; from run_record.lock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def digests(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): files.sha256(p) for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def test_a_second_process_in_a_run_directory_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, capsys, monkeypatch, repo):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path / "runs")])
    run = only_run_dir(tmp_path / "runs")
    (ckpt,) = (run / "checkpoints").glob("*.ckpt")
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt)]
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=repo, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": repo})
    try:
        assert holder.stdout.readline().strip() == "held"
        before = digests(run)
        with pytest.raises(SystemExit) as exit_info:
            main(resume)
        assert exit_info.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: {run} is in use by pid {holder.pid} on ") and "one process per run directory" in line
        assert digests(run) == before  # nothing in the held directory was touched
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing anything: the kernel drops its lock
        holder.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == holder.pid  # the dead holder's details are still there
    main(resume)  # taken over
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_the_lock_is_held_by_one_process_at_a_time_and_released(tmp_path):
    lock = RunLock(tmp_path).acquire()
    probe = [sys.executable, "-c", "import sys; from run_record.lock import RunLock, RunDirectoryBusy\n"
             "try:\n    RunLock(sys.argv[1]).acquire(); print('got')\nexcept RunDirectoryBusy as e:\n    print('busy', e)",
             str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    assert subprocess.run(probe, capture_output=True, text=True, env=env).stdout.startswith(f"busy {tmp_path} is in use by pid {os.getpid()}")
    lock.release()
    assert subprocess.run(probe, capture_output=True, text=True, env=env).stdout.strip() == "got"


def test_only_the_launching_rank_locks():
    assert is_launcher({}) and is_launcher({"LOCAL_RANK": "0", "SLURM_PROCID": "0"})
    assert not is_launcher({"LOCAL_RANK": "1"}) and not is_launcher({"SLURM_PROCID": "3"}) and not is_launcher({"RANK": "2"})
