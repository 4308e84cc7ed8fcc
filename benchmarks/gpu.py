"""Every GPU measurement of the README's performance section, in one run that fits a short GPU lease.

    bash benchmarks/gpu.sh "$OUT"                     # on the GPU machine (installs the carried wheels first)
    python benchmarks/gpu.py --smoke --out /tmp/gpu   # on a CPU: every step on tiny sizes, under the GPU image's
                                                      # packages (benchmarks/gpu_image), to catch what would fail there

Steps, most valuable first. A step whose estimate does not fit in the time left is skipped and recorded as such,
and every process gets at most the time left, so the whole run ends inside ``--budget`` seconds:
  throughput   the paper shapes' training step at fp32, TF32, bf16 and bf16 + torch.compile, and data generation on
               the CPU and on the device against the step's consumption (benchmarks/throughput.py, in this process)
  fidelity     benchmarks/precision.py: each setting against fp32, 2 seeds; both events (the FF learns the noise,
               the induction head forms) happen before step 300 of the paper config, so 1000 steps; 4 runs at a
               time (their timings are not used: the step times come from ``throughput`` and ``paper_fastest``)
  paper_fastest  configs/paper/noisy.yaml, 5000 steps with its evaluations, at the fastest setting that passed
  packing      one task of configs/sweeps/hijack_pe.yaml alone, then 10 of them packed on the GPU (pipeline/packing.py),
               GPU utilisation sampled (nvidia-smi); the GPU time per task of each
  gradient_noise  one GradientNoise measurement (256 sequences, per-sequence gradients in vmapped passes) on the
               paper config's model: the paper config takes 5 in its 5000 steps
  stacking     the same config's training step as 1, 10 and 20 seeds stacked in one model (benchmarks/stacking.py):
               what stacking replicas would save on the steps, against packing's whole runs as processes
  paper_fp32   the same 5000 steps at fp32 (today's path), side by side with paper_fastest
  noisy_default  GPU utilisation of one run of the CPU default config (configs/noisy.yaml)
Everything goes to one JSON, ``gpu_<device>.json``, rewritten after each step: a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
import precision  # noqa: E402
import stacking  # noqa: E402
import throughput  # noqa: E402

THROUGHPUT_SETTINGS = {  # benchmarks/throughput.py's setting -> benchmarks/precision.py's
    ("fp32", False): "fp32", ("tf32", False): "tf32", ("bf16", False): "bf16-mixed", ("bf16", True): "bf16-mixed+compile"}
QUIET = ["--report", "false", "--trainer.enable_progress_bar", "false"]
PLANS = {  # per mode: each step's sizes and its time estimate on that machine (seconds), used to skip what cannot fit
    "cuda": dict(accelerator="gpu", shapes="paper", repeats=5, precision_config="paper", parallel=4,
                 fidelity=["--trainer.max_steps", "1000", "--trainer.val_check_interval", "500"], paper=[],
                 settings=list(precision.SETTINGS), pack=10, hijack=[], noisy=[], stack=dict(replicas=[1, 10, 20], steps=100),
                 estimate=dict(throughput=90, fidelity=200, paper_fastest=70, packing=150, gradient_noise=20, stacking=30, paper_fp32=230,
                               noisy_default=60)),
    "smoke": dict(accelerator="cpu", shapes="cpu", repeats=1, precision_config="small", parallel=1,
                  fidelity=["--trainer.max_steps", "40", "--trainer.val_check_interval", "20"],
                  paper=["--trainer.max_steps", "20", "--trainer.val_check_interval", "10", "--trainer.callbacks", "[]"],
                  settings=["fp32", "bf16-mixed"], pack=2,
                  hijack=["trainer.max_steps: [20]", "trainer.val_check_interval: [10]", "data.init_args.n_test: [32]"],
                  noisy=["--trainer.max_steps", "20", "--trainer.val_check_interval", "10", "--model.init_args.early_eval_steps", "[]"],
                  stack=dict(replicas=[1, 2], steps=5),
                  estimate=dict(throughput=30, fidelity=150, paper_fastest=60, packing=150, gradient_noise=30, stacking=20, paper_fp32=60,
                                noisy_default=60)),
}


class Sampler:
    """nvidia-smi's GPU utilisation and memory, every 200 ms, while a run lasts (nothing where there is no nvidia-smi)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float]] = []
        self.proc = None

    def __enter__(self) -> "Sampler":
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                util, mem = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.rows.append((util, mem))

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def summary(self) -> dict:
        if not self.rows:
            return {"gpu_utilisation_mean_percent": None, "gpu_memory_peak_mib": None, "samples": 0}
        util = [u for u, _ in self.rows]
        return {"gpu_utilisation_mean_percent": round(sum(util) / len(util), 1),
                "gpu_memory_peak_mib": max(m for _, m in self.rows), "samples": len(self.rows)}


class Bench:
    def __init__(self, mode: str, out: Path, budget: float) -> None:
        self.mode, self.plan, self.out, self.budget = mode, PLANS[mode], out, budget
        self.start = time.monotonic()
        self.device = "cuda" if mode == "cuda" else "cpu"
        self.path = out / f"gpu_{'cuda' if mode == 'cuda' else 'cpu_smoke'}.json"
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
        self.record: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "mode": mode, "budget_s": budget,
                             "machine": machine(), "steps": {}}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def step(self, name: str, fn) -> dict | None:
        estimate = self.plan["estimate"][name]
        if self.left() < estimate:
            result = {"skipped": f"{self.left():.0f} s left of the budget, the step needs about {estimate} s"}
        else:
            t = time.monotonic()
            print(f"[{time.strftime('%H:%M:%S')}] {name} (about {estimate} s; {self.left():.0f} s left)", flush=True)
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001  a failed step is recorded; the others still run
                result = {"error": f"{type(e).__name__}: {e}"[:500]}
            result["step_wall_s"] = round(time.monotonic() - t, 1)
        self.record["steps"][name] = result
        self.record["elapsed_s"] = round(time.monotonic() - self.start, 1)
        self.path.write_text(json.dumps(self.record, indent=2) + "\n")
        print(json.dumps({name: result})[:2000], flush=True)
        return result

    def timed(self, cmd: list[str]) -> dict:
        """One process under the GPU sampler, given the time left: wall time, exit status, GPU use; the end of its
        stderr when it fails; a process past its time is killed and recorded with its wall time (returncode null)."""
        t = time.monotonic()
        with Sampler() as gpu:
            try:
                proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(10, self.left()))
                code, err = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired as e:
                code, err = None, f"killed after {e.timeout:.0f} s (the budget's time left): " + (e.stderr or b"").decode(errors="replace")
        out = {"wall_s": round(time.monotonic() - t, 1), "returncode": code, **gpu.summary()}
        return out if code == 0 else out | {"error": err.strip()[-600:]}

    def main_py(self, name: str, args: list[str]) -> dict:
        """One ``main.py fit`` in its own root, GPU sampled; its summary's numbers."""
        root = self.tmp / name
        cmd = [sys.executable, "main.py", "fit", *args, "--trainer.accelerator", self.plan["accelerator"], *QUIET,
               "--trainer.default_root_dir", str(root)]
        out = self.timed(cmd)
        if out["returncode"] != 0:
            return out
        (summary,) = [json.load(open(p)) for p in glob.glob(f"{root}/*/*/summary.json")]
        variants = summary.get("variants") or {}
        keep = ("full", "layers.1.ff.w2@rho0")
        return out | {"step_seconds": (summary.get("timing") or {}).get("step_seconds"), "global_step": summary.get("global_step"),
                      "variants": {k: v for k, v in variants.items() if k in keep}}

    # ---- the steps ------------------------------------------------------------------------------------------------
    def throughput(self) -> dict:
        import torch

        device, shape = torch.device(self.device), throughput.SHAPES[self.plan["shapes"]]
        result = {"shapes": self.plan["shapes"], **shape, "matmul_fp32_flops": throughput.matmul_flops(device),
                  "generation_cpu_tokens_per_s": throughput.generation_tokens_per_s(shape["batch"], shape["seq_len"]),
                  "generation_device_tokens_per_s": throughput.generation_tokens_per_s(shape["batch"], shape["seq_len"], device, 16),
                  "settings": {}}
        settings = [(p, c) for (p, c), name in THROUGHPUT_SETTINGS.items() if name in self.plan["settings"]]
        for prec, comp in settings:
            try:
                r = throughput.training_step(shape, device, self.plan["repeats"], 1, prec, comp)
            except Exception as e:  # noqa: BLE001  one setting failing (compile, say) keeps the others
                r = {"error": f"{type(e).__name__}: {e}"[:300]}
            if "step_s" in r:
                r["generation_over_consumption"] = result["generation_device_tokens_per_s"] / r["tokens_per_s"]
                r["mfu_vs_fp32_matmul"] = r["achieved_flops"] / result["matmul_fp32_flops"]
            result["settings"][THROUGHPUT_SETTINGS[(prec, comp)]] = r
        return result

    def fidelity(self) -> dict:
        path = self.out / f"precision_{self.plan['precision_config']}_{self.device}.json"
        report = precision.main(["--config", self.plan["precision_config"], "--device", self.plan["accelerator"],
                                 "--settings", *self.plan["settings"], "--parallel", str(self.plan["parallel"]),
                                 "--timeout", str(int(self.left())), "--out", str(path), "--extra", *self.plan["fidelity"]])
        return {"file": path.name, "verdicts": {s: v.get("pass") for s, v in report["verdicts"].items()}}

    def fastest_passing(self) -> str:
        steps = self.record["steps"]
        verdicts = (steps.get("fidelity") or {}).get("verdicts") or {}
        timed = (steps.get("throughput") or {}).get("settings") or {}
        ok = [s for s, passed in verdicts.items() if passed and "step_s" in timed.get(s, {})]
        return min(ok, key=lambda s: timed[s]["step_s"]) if ok else "fp32"

    def paper(self, setting: str) -> dict:
        config, overrides, _ = precision.CONFIGS[self.plan["precision_config"]]
        return {"setting": setting, "config": config,
                **self.main_py(f"paper-{setting}", ["--config", precision.without_logger(config, self.tmp), *overrides, *precision.SETTINGS[setting], *self.plan["paper"]])}

    def packing(self) -> dict:
        spec = yaml.safe_load((REPO / "configs/sweeps/hijack_pe.yaml").read_text())
        spec["base"] = precision.without_logger(spec["base"], self.tmp)
        spec["grid"] |= {"trainer.accelerator": [self.plan["accelerator"]], "report": [False],
                         "trainer.enable_progress_bar": [False]}
        spec["grid"] |= {k: yaml.safe_load(v) for k, v in (line.split(": ", 1) for line in self.plan["hijack"])}
        sweep = self.tmp / "hijack_pe.yaml"
        sweep.write_text(yaml.safe_dump(spec))
        pack = self.plan["pack"]
        runs = {}
        for name, extra in (("alone", ["--task", "0"]), (f"{pack}_packed", ["--pack", str(pack), "--task", "0"])):
            runs[name] = self.timed([sys.executable, "-m", "pipeline.sweep", str(sweep), "--root", str(self.tmp / f"pack-{name}"), *extra])
            runs[name]["completed"] = len(glob.glob(f"{self.tmp}/pack-{name}/*/*/*/summary.json"))
        alone, packed = runs["alone"], runs[f"{pack}_packed"]
        ratio = (pack * alone["wall_s"] / packed["wall_s"]) if alone["returncode"] == 0 and packed["returncode"] == 0 else None
        return {"sweep": "configs/sweeps/hijack_pe.yaml", "runs_per_gpu": pack, "runs": runs,
                "gpu_seconds_per_task_alone": alone["wall_s"], "gpu_seconds_per_task_packed": round(packed["wall_s"] / pack, 1),
                "gpu_time_ratio_alone_over_packed": ratio and round(ratio, 2)}

    def gradient_noise(self) -> dict:
        import torch

        from callbacks.gradient_noise import GradientNoise, projected_gradients

        config = "configs/paper/noisy.yaml"
        dm, (module,), _ = stacking.build(config, [0])
        device = torch.device(self.device)
        module = module.to(device)
        batch = {k: v.to(device) for k, v in dm.gen.sample(256, torch.Generator().manual_seed(0)).items()}
        groups = GradientNoise().groups(module)
        times = []
        for _ in range(2):  # the first call includes the kernels' first launch
            throughput.sync(device)
            t = time.perf_counter()
            proj = projected_gradients(module, batch, groups, dm.noise_id)
            throughput.sync(device)
            times.append(time.perf_counter() - t)
        snr = {g: float(v.mean() / v.std()) for g, v in proj.items()}
        return {"config": config, "sequences": 256, "call_s": [round(t, 3) for t in times], "calls_per_paper_run": 5,
                "snr_at_init": snr}

    def stacking(self) -> dict:
        stack = self.plan["stack"]
        return stacking.main(["--config", "configs/hijack.yaml", "--device", self.device, "--steps", str(stack["steps"]),
                              "--replicas", *map(str, stack["replicas"])])

    def noisy_default(self) -> dict:
        return self.main_py("noisy-default", ["--config", precision.without_logger("configs/noisy.yaml", self.tmp), *self.plan["noisy"]])

    def run(self) -> dict:
        self.step("throughput", self.throughput)
        self.step("fidelity", self.fidelity)
        fastest = self.fastest_passing()
        self.step("paper_fastest", lambda: self.paper(fastest))
        self.step("packing", self.packing)
        self.step("gradient_noise", self.gradient_noise)
        self.step("stacking", self.stacking)
        self.step("paper_fp32", lambda: self.paper("fp32"))
        self.step("noisy_default", self.noisy_default)
        shutil.rmtree(self.tmp, ignore_errors=True)
        print(f"-> {self.path} ({self.record['elapsed_s']} s)")
        return self.record


def machine() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "device_name": torch.cuda.get_device_name() if cuda else None,
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--smoke", action="store_true", help="every step on tiny sizes, on the CPU")
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole run (default 540: a 600 s call)")
    args = parser.parse_args(argv)
    image = str(REPO / "benchmarks" / "gpu_image")
    if args.smoke and os.environ.get("FFVA_GPU_IMAGE") != "1":  # again, under the GPU image's packages only
        env = {**os.environ, "FFVA_GPU_IMAGE": "1", "WANDB_MODE": "disabled",
               "PYTHONPATH": os.pathsep.join([image, *filter(None, [os.environ.get("PYTHONPATH")])])}
        os.execve(sys.executable, [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)], env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return Bench("smoke" if args.smoke else "cuda", out, args.budget).run()


if __name__ == "__main__":
    main()
