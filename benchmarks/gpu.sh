#!/usr/bin/env bash
# Every GPU measurement of the README's performance section, in one run of under 10 minutes on one GPU (H200):
#   bash benchmarks/gpu.sh [results dir, default benchmarks/results]
# 1. the training step of the paper shapes at fp32, TF32, bf16 and bf16 + torch.compile, and data generation on the
#    CPU and on the GPU against the step's consumption (benchmarks/throughput.py);
# 2. the fidelity check: the paper config (2000 steps) for 2 seeds per setting against fp32 (benchmarks/precision.py);
# 3. the paper config's 5000 steps with its evaluations, at fp32 and at the fastest setting that passed, side by side;
# 4. GPU use of one run of each small shipped config (nvidia-smi), and the hijack PE sweep's tasks packed 10 to a GPU
#    against one at a time (the GPU time per task).
# Each step writes JSON under the results directory; a step that fails is recorded and the others still run.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
PY=${PYTHON:-python}
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*"; }
start=$(date +%s)

log "1/4 throughput of the paper shapes"
for p in fp32 tf32 bf16; do
  $PY benchmarks/throughput.py --device cuda --config paper --precision $p --repeats 5 --out "$OUT/throughput_paper_cuda_$p.json" | tail -8
done
$PY benchmarks/throughput.py --device cuda --config paper --precision bf16 --compile --repeats 5 --out "$OUT/throughput_paper_cuda_bf16_compile.json" | tail -8

log "2/4 fidelity of each speed setting (paper config, 2000 steps, seeds 0 and 1)"
$PY benchmarks/precision.py --config paper --device cuda --seeds 0 1 --out "$OUT/precision_paper_cuda.json" \
  --extra --trainer.max_steps 2000 --trainer.val_check_interval 500 | tail -6

log "3/4 the paper config, 5000 steps, fp32 and the fastest passing setting"
fastest=$($PY - "$OUT/precision_paper_cuda.json" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))["verdicts"]
ok = [s for s, r in v.items() if r.get("pass") and r.get("speedup_vs_fp32")]
print(max(ok, key=lambda s: v[s]["speedup_vs_fp32"]) if ok else "fp32")
EOF
)
$PY - "$OUT/paper_config_cuda.json" "$fastest" <<'EOF'
import json, subprocess, sys, time
sys.path.insert(0, "benchmarks")
from precision import SETTINGS
out, fastest = sys.argv[1], sys.argv[2]
rows = []
for setting in dict.fromkeys(["fp32", fastest]):
    t = time.time()
    args = [sys.executable, "main.py", "fit", "--config", "configs/paper/noisy.yaml", *SETTINGS[setting],
            "--data.init_args.sample_on", "device", "--data.init_args.num_workers", "0", "--trainer.logger", "false",
            "--report", "false", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", f"/tmp/paper-{setting}"]
    p = subprocess.run(args, capture_output=True, text=True)
    summaries = sorted(__import__("glob").glob(f"/tmp/paper-{setting}/*/*/summary.json"))
    s = json.load(open(summaries[-1])) if summaries else {}
    v = s.get("variants") or {}
    rows.append({"setting": setting, "returncode": p.returncode, "wall_seconds": round(time.time() - t, 1),
                 "step_seconds": (s.get("timing") or {}).get("step_seconds"), "p_noise": (v.get("full") or {}).get("p_noise"),
                 "rank0_p_noise": (v.get("layers.1.ff.w2@rho0") or {}).get("p_noise"),
                 "rank0_acc": (v.get("layers.1.ff.w2@rho0") or {}).get("acc"), "error": p.stderr.strip()[-300:] if p.returncode else None})
    print(rows[-1], flush=True)
json.dump({"date": time.strftime("%Y-%m-%d"), "config": "configs/paper/noisy.yaml", "steps": 5000, "rows": rows}, open(out, "w"), indent=2)
EOF

log "4/4 GPU use of small runs, and packing"
gpu_use() {  # name, command...: run it while nvidia-smi samples the GPU; the mean utilisation and peak memory
  local name=$1; shift
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "/tmp/smi_$name.csv" &
  local smi=$!; local t=$(date +%s.%N)
  "$@" > "/tmp/run_$name.log" 2>&1; local rc=$?
  local t2=$(date +%s.%N); kill $smi 2>/dev/null; wait $smi 2>/dev/null
  $PY - "$name" "$rc" "$t" "$t2" "/tmp/smi_$name.csv" >> "$OUT/gpu_use_cuda.jsonl" <<'EOF'
import json, sys
name, rc, t, t2, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rows = [l.split(",") for l in open(path) if l.strip()]
util = [float(r[0]) for r in rows]; mem = [float(r[1]) for r in rows]
print(json.dumps({"run": name, "returncode": rc, "wall_seconds": round(t2 - t, 1), "samples": len(rows),
                  "gpu_utilisation_mean_percent": round(sum(util) / len(util), 1) if util else None,
                  "memory_peak_mib": max(mem) if mem else None}))
EOF
}
rm -f "$OUT/gpu_use_cuda.jsonl"
gpu_use noisy_default $PY main.py fit --config configs/noisy.yaml --trainer.accelerator gpu --trainer.logger false --report false --trainer.enable_progress_bar false --trainer.default_root_dir /tmp/use-noisy
gpu_use hijack $PY main.py fit --config configs/hijack.yaml --trainer.accelerator gpu --trainer.logger false --report false --trainer.enable_progress_bar false --trainer.default_root_dir /tmp/use-hijack
# the hijack PE sweep's first task alone, then its first 10 tasks packed on the GPU: GPU time per task
sed -e 's/accelerator: cpu/accelerator: gpu/' configs/hijack.yaml > /tmp/hijack_gpu.yaml
$PY - <<'EOF'
import yaml
s = yaml.safe_load(open("configs/sweeps/hijack_pe.yaml")); s["base"] = "/tmp/hijack_gpu.yaml"
s["grid"]["trainer.logger"] = [False]; s["grid"]["report"] = [False]; s["grid"]["trainer.enable_progress_bar"] = [False]
yaml.safe_dump(s, open("/tmp/hijack_pe_gpu.yaml", "w"))
EOF
gpu_use hijack_pe_task0_alone $PY -m pipeline.sweep /tmp/hijack_pe_gpu.yaml --root /tmp/pack1 --task 0
gpu_use hijack_pe_10_packed $PY -m pipeline.sweep /tmp/hijack_pe_gpu.yaml --root /tmp/pack10 --pack 10 --task 0
log "done in $(( $(date +%s) - start )) s; results in $OUT"
