"""Submit a sweep file as one SLURM array job: one task per grid point, each `main.py` run in its own directory.

    python slurm/submit.py configs/sweeps/noise.yaml [--dry-run] [--partition gpu --time 04:00:00 ...]

Settings come from the sweep file's ``slurm:`` section, then the command line. Before anything is printed or
submitted, every task's config is resolved through the CLI's parser by the interpreter the tasks will use (so a
misspelled grid key, or an interpreter without the project's packages, stops here, not after queueing).
``--dry-run`` prints the sbatch script and the task table and submits nothing. The job's nodes and tasks per node are read from the base
config's ``trainer.num_nodes`` and ``trainer.devices``, so srun starts exactly the processes Lightning expects.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import string
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
try:
    import yaml
except ImportError:  # started with an interpreter outside the project's environment: use the project's
    venv = REPO / ".venv" / "bin" / "python"
    if not venv.exists() or Path(sys.prefix).resolve() == venv.parent.parent.resolve():
        raise SystemExit(f"error: {sys.executable} lacks the project's packages (pyyaml); run this with the project's "
                         "environment (make demo creates .venv)") from None
    os.execv(str(venv), [str(venv), *sys.argv])
sys.path.insert(0, str(REPO))
from pipeline.sweep import Sweep, write_tasks  # noqa: E402
from run_record import files  # noqa: E402

DEFAULTS = {"partition": None, "account": None, "time": "01:00:00", "cpus_per_task": 2, "gpus_per_node": 0,
            "max_parallel": None, "signal_seconds": 120, "sbatch_lines": [], "setup": [], "python": None, "runs_per_gpu": 1}


class SubmitError(Exception):
    pass


def processes(sweep: Sweep) -> tuple[int, int, bool]:
    """(nodes, tasks per node, on GPUs) from the base config, the same for every task: srun must start exactly the
    processes Lightning's SLURMEnvironment expects, or DDP hangs waiting for the missing ones."""
    try:
        trainer = (yaml.safe_load(Path(sweep.base).read_text()) or {}).get("trainer") or {}
    except (yaml.YAMLError, AttributeError) as e:
        raise ValueError(f"{sweep.base}: not a readable config ({type(e).__name__})") from None
    for key in ("trainer.devices", "trainer.num_nodes", "trainer.accelerator"):
        if key in sweep.grid or key in sweep.overrides:
            raise ValueError(f"{'grid' if key in sweep.grid else 'overrides'}.{key}: every task of an array job has the same shape; set it in the base config")
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if not isinstance(devices, int) or not isinstance(nodes, int):
        raise ValueError(f"{sweep.base}: trainer.devices and trainer.num_nodes must be integers under SLURM, got {devices!r}, {nodes!r}")
    return nodes, devices, trainer.get("accelerator") in ("gpu", "cuda")


def settings(sweep: Sweep, cli: dict) -> dict:
    unknown = set(sweep.slurm) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"slurm: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = DEFAULTS | sweep.slurm | {k: v for k, v in cli.items() if v not in (None, [])}
    for key, low in (("runs_per_gpu", 1), ("cpus_per_task", 1), ("gpus_per_node", 0), ("max_parallel", 1),
                     ("signal_seconds", 0)):
        value = opts[key]
        if value is None and key == "max_parallel":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"slurm.{key} must be a whole number >= {low}, got {value!r}")
    return opts


def _shell(lines: list[str], command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command`` after the setup lines, in the repository, as a task's shell would."""
    return subprocess.run([shutil.which("bash") or "/bin/bash", "-c", "\n".join([*lines, command])], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def interpreter(opts: dict) -> str:
    """The Python the tasks run with: ``--python``; else the one the setup lines activate (if they change it); else
    the project's .venv; else the one on PATH after setup. Never silently the interpreter running this script."""
    if opts["python"]:
        path = shutil.which(opts["python"]) or opts["python"]
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise SubmitError(f"--python {opts['python']}: no such executable")
        return os.path.abspath(path)
    find = "command -v python || command -v python3"
    before, after = _shell([], find, 60).stdout.strip(), _shell(opts["setup"], find).stdout.strip()
    if opts["setup"] and after and after != before:
        return after
    venv = REPO / ".venv" / "bin" / "python"
    if venv.exists():
        return str(venv)
    if after:
        return after
    raise SubmitError("no Python found on PATH after the setup lines; set slurm.python or --python")


def check_tasks(sweep: Sweep, python: str, setup: list[str]) -> None:
    """``<python> -m pipeline.sweep <file> --check`` after the setup lines: the tasks' interpreter can run the
    pipeline, and every task's config is valid."""
    out = _shell(setup, f"exec {shlex.quote(python)} -m pipeline.sweep {shlex.quote(str(Path(sweep.path).resolve()))} --check")
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()
        if any("ModuleNotFoundError" in line or "ImportError" in line for line in tail):
            raise SubmitError(f"{python} cannot run the pipeline ({tail[-1]}); submit with --python <the project's "
                              "environment>/bin/python, or a slurm.setup line that activates it")
        raise SubmitError("\n".join(tail[-40:]) or f"{python} -m pipeline.sweep --check failed ({out.returncode})")


def render(sweep: Sweep, sweep_dir: Path, opts: dict) -> str:
    nodes, per_node, gpus = processes(sweep)
    n_tasks = len(sweep.points())
    pack = int(opts["runs_per_gpu"] or 1)
    if pack < 1:
        raise ValueError(f"slurm.runs_per_gpu must be >= 1, got {pack}")
    if pack > 1 and (nodes, per_node) != (1, 1):
        raise ValueError(f"slurm.runs_per_gpu {pack}: packing is for single-device runs; {sweep.base} asks for "
                         f"{nodes} node(s) x {per_node} device(s)")
    groups = -(-n_tasks // pack)  # array tasks
    gpus_per_node = opts["gpus_per_node"] or (per_node if gpus else 0)  # one GPU per process unless told otherwise
    lines = [f"#SBATCH --partition={opts['partition']}"] if opts["partition"] else []
    lines += [f"#SBATCH --account={opts['account']}"] if opts["account"] else []
    lines += [f"#SBATCH --gpus-per-node={gpus_per_node}"] if gpus_per_node else []
    lines += [line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in opts["sbatch_lines"]]
    template = string.Template((REPO / "slurm" / "template.sbatch").read_text())
    return template.substitute(
        sweep=sweep.name, n_tasks=n_tasks, last_task=groups - 1, pack=pack,
        throttle=f"%{opts['max_parallel']}" if opts["max_parallel"] else "", nodes=nodes, ntasks_per_node=per_node,
        cpus_per_task=opts["cpus_per_task"], time=opts["time"], sweep_dir=sweep_dir, signal_seconds=opts["signal_seconds"],
        optional_lines="\n".join(lines), setup="\n".join(opts["setup"]), repo=REPO, python=opts["python"],
        sweep_file=shlex.quote(str(Path(sweep.path).resolve())),
    )


def main(argv: list[str] | None = None) -> str | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_file")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--root", default="runs/sweeps", help="sweeps go to <root>/<sweep name>")
    parser.add_argument("--partition"), parser.add_argument("--account"), parser.add_argument("--time")
    parser.add_argument("--cpus-per-task", type=int), parser.add_argument("--gpus-per-node", type=int)
    parser.add_argument("--max-parallel", type=int, help="array throttle: at most N tasks at once (%%N)")
    parser.add_argument("--signal-seconds", type=int, help="USR1 this long before the time limit (checkpoint + requeue)")
    parser.add_argument("--sbatch-line", dest="sbatch_lines", action="append", default=[], help="extra #SBATCH line")
    parser.add_argument("--setup", action="append", default=[], help="shell line run before the task (module load ...)")
    parser.add_argument("--python", help="interpreter on the compute nodes (default: this one)")
    parser.add_argument("--runs-per-gpu", type=int, help="grid points run at once in each array task, sharing its GPU")
    args = vars(parser.parse_args(argv))
    if not args["dry_run"] and shutil.which("sbatch") is None:
        raise SystemExit("sbatch not found on PATH: submit from a SLURM login node (--dry-run shows the script; "
                         "python -m pipeline.sweep runs the tasks on this machine)")
    try:
        sweep = Sweep.load(args.pop("sweep_file"))
        dry_run, root = args.pop("dry_run"), Path(args.pop("root")).resolve()
        sweep_dir = root / sweep.name
        opts = settings(sweep, args)
        opts["python"] = interpreter(opts)
        script = render(sweep, sweep_dir, opts)
        check_tasks(sweep, opts["python"], opts["setup"])
    except (SubmitError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    points = sweep.points()
    pack = int(opts["runs_per_gpu"] or 1)
    table = "\n".join(f"  task {i}: {json.dumps(p)}" + (f"  (array task {i // pack})" if pack > 1 else "")
                      for i, p in enumerate(points))
    if pack > 1:
        table += f"\n  {len(points)} tasks, {pack} per array task sharing its GPU: {-(-len(points) // pack)} array tasks"
    if dry_run:
        print(script)
        print(f"# {len(points)} tasks in {sweep_dir}:\n{table}")
        return None
    write_tasks(sweep, sweep_dir)
    (sweep_dir / "logs").mkdir(exist_ok=True)
    files.write_text(sweep_dir / "job.sbatch", script)
    out = subprocess.run(["sbatch", "--parsable", str(sweep_dir / "job.sbatch")], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"sbatch failed: {out.stderr.strip()}")
    job = out.stdout.strip().split(";")[0]
    files.write_json(sweep_dir / "submission.json", {"array_job": job, "script": str(sweep_dir / "job.sbatch")})
    print(f"submitted array job {job}: {len(points)} tasks, logs in {sweep_dir / 'logs'}\n{table}")
    print(f"when done: python slurm/collect.py {sweep_dir}")
    return job


if __name__ == "__main__":
    main()
