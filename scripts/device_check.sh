#!/usr/bin/env bash
# One prepared check for a lent GPU machine (no internet, no snakemake, nothing installed):
# environment, the quantizer tests (CUDA cases included), the smoke-scale classification cells
# trained on CUDA, one SSD300 iteration on CUDA (FP and W3(+-4)/A8: the device pre-flight, mmcv's
# CUDA ops, torchvision-normalised inputs; scripts/device_detect.py), the quantizer benchmark on CUDA with the torch.compile contender, and the
# training-step benchmark (FP vs W3(+-4)/A2 vs W1/A1, ResNet-18/50, mini and paper size, eager
# vs torch.compile with CUDA graphs).
#
#   OUT=/path/to/out bash scripts/device_check.sh                 # on the GPU machine
#   OUT=/path/to/out QB_STEPS=env,train_step bash scripts/device_check.sh   # only some steps
#   OUT=/tmp/x PYTHON=.venv/bin/python bash scripts/device_check.sh --cpu-dry-run   # here
#
# Everything useful lands in $OUT: summary.txt (rc and seconds of every step, key results),
# env.log, pytest_quant.log, smoke.log, smoke_<dev>.json, detect.log, detect_<dev>.json, torchrun.log, torchrun_<dev>.json
# (torchrun with nccl on min(2, GPUs) GPUs against one process: the paper scale's launcher),
# bench_<dev>.log, quantizer_<dev>.json (or quantizer_<dev>.partial.json when the benchmark was
# cut off), train_step_<dev>.log, train_step_<dev>.json (or train_step_<dev>.partial.json).
# A step that fails does not stop the next one. The step time limits share one budget,
# QB_BUDGET_S seconds (default 600), so the whole script ends in about 10 minutes; QB_STEPS
# (comma-separated: env, pytest, smoke, detect, bench, train_step; default all) picks the steps.
# The training-step benchmark runs its cells in order (ResNet-18 mini and paper first) and
# keeps the finished ones when its time runs out.
# --cpu-dry-run: no GPU needed; a few tests, two smoke cells on the CPU, a one-level-set CPU
# benchmark with --compile and a tiny training-step benchmark, to check the script end to end.

set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/qbench_device_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DRY=0
case "${1:-}" in
  --cpu-dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: OUT=DIR bash scripts/device_check.sh [--cpu-dry-run]" >&2; exit 2 ;;
esac
BUDGET_S=${QB_BUDGET_S:-600}
STEPS=",${QB_STEPS:-env,pytest,smoke,detect,bench,train_step},"
want() { case $STEPS in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
T0=$(date +%s)
SUMMARY=$OUT/summary.txt
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/qbench_device_check.XXXXXX")
: > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - T0 )); }
# limit <cap> [floor]: min(cap, what is left of the budget), but at least floor (default 30) s
limit() {
  local cap=$1 floor=${2:-30} left=$(( BUDGET_S - $(date +%s) + T0 ))
  local t=$(( cap < left ? cap : left ))
  echo $(( t < floor ? floor : t ))
}
# record <step> <rc> <start> [note]
record() {
  local note=${4:-}
  case $2 in 124|137) note="TIMED OUT${note:+; $note}" ;; esac
  printf '%-8s rc=%-4s %4ss  %s\n' "$1" "$2" "$(( $(date +%s) - $3 ))" "$note" | tee -a "$SUMMARY"
}

say "qbench device check: $(date -u +%FT%TZ), host ${HOSTNAME:-$(uname -n)}, mode $([ $DRY = 1 ] && echo cpu-dry-run || echo gpu), budget ${BUDGET_S}s"
say "repo $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(git status --porcelain 2>/dev/null | wc -l) changed files), python $PY"

# --- 1. environment -------------------------------------------------------------------------
s=$(date +%s)
if want env; then
{
  echo "== nvidia-smi"
  if command -v nvidia-smi >/dev/null 2>&1; then timeout 30 nvidia-smi; else echo "nvidia-smi: not found"; fi
  echo "== versions and imports"
  timeout -k 5 "$(limit 60)" "$PY" - <<'EOF'
import importlib, pkgutil, sys, time, traceback
t0 = time.time()
print("python", sys.version.replace("\n", " "), sys.executable)
sys.path.insert(0, ".")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.1f} GiB", f"cc {p.major}.{p.minor}")
from importlib import metadata
for name, dist in (("triton", "triton"), ("torchvision", "torchvision"), ("numpy", "numpy"), ("yaml", "pyyaml"),
                   ("pandas", "pandas"), ("matplotlib", "matplotlib"), ("pytest", "pytest"), ("PIL", "pillow"),
                   ("tqdm", "tqdm"), ("jsonschema", "jsonschema"), ("snakemake", "snakemake"), ("mmcv", "mmcv"),
                   ("mmdet", "mmdet"), ("mmengine", "mmengine")):
    try:
        importlib.import_module(name)
        try:
            version = metadata.version(dist)
        except Exception:
            version = "present"
        print(f"  {name:12s} {version}")
    except BaseException as exc:
        print(f"  {name:12s} MISSING ({type(exc).__name__}: {str(exc)[:100]})")
# what the steps below import (must work), then every other module (detection needs mmdet/mmengine)
CORE = ["qbench.quant", "qbench.quant.kernels", "qbench.train", "qbench.train.trainer", "qbench.data",
        "qbench.models", "qbench.paper", "qbench.workflow.plan", "qbench.cli", "benchmarks.quantizer",
        "benchmarks.train_step"]
import qbench
others = sorted(m.name for m in pkgutil.walk_packages(qbench.__path__, "qbench.")
                if not m.name.endswith("__main__") and m.name not in CORE)
bad = {}
for mod in CORE + others:
    try:
        importlib.import_module(mod)
    except BaseException as exc:
        bad[mod] = f"{type(exc).__name__}: {str(exc)[:200]}"
        print(f"  import {mod}: FAILED {bad[mod]}")
core_bad = [m for m in CORE if m in bad]
print("imports:", ("core OK" if not core_bad else "CORE FAILED: " + ", ".join(core_bad))
      + (f"; {len(bad) - len(core_bad)} other module(s) fail: " + ", ".join(m for m in bad if m not in CORE)
         if len(bad) > len(core_bad) else "; every qbench module imports"))
from qbench.quant import kernels
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
bn = getattr(kernels, "backend_name", None)
print("kernels.backend_name:", "missing" if bn is None else {d: bn(torch.device(d), torch.float32)
      for d in (["cpu", "cuda"] if dev.type == "cuda" else ["cpu"])})
print("native CPU kernel:", "loaded" if kernels.native_library() is not None else f"unavailable ({kernels.native_error()})")
print(f"({time.time() - t0:.1f} s)")
EOF
} > "$OUT/env.log" 2>&1
rc=$?
cat "$OUT/env.log"
record env "$rc" "$s" "$(grep -m1 '^imports:' "$OUT/env.log" || echo 'imports: not reached')"
fi

HAS_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [ "$DRY" = 1 ]; then
  DEV=cpu
  say "cpu dry run: CUDA steps run on the CPU with tiny limits"
elif [ "$HAS_CUDA" = 1 ]; then
  DEV=cuda
else
  DEV=none
  say "WARNING: CUDA is not available here; pytest runs (CPU cases only), the CUDA steps are skipped"
fi

# --- 2. quantizer tests -----------------------------------------------------------------------
s=$(date +%s)
if [ "$DRY" = 1 ]; then
  TESTS=(tests/quant/test_levels.py tests/quant/test_schedule.py)
else
  TESTS=(tests/quant)
fi
if want pytest; then
  timeout -k 10 "$(limit 200)" "$PY" -m pytest "${TESTS[@]}" -q -x -p no:cacheprovider 2>&1 | tee "$OUT/pytest_quant.log"
  rc=${PIPESTATUS[0]}
  record pytest "$rc" "$s" "$(grep -E '(passed|failed|error|no tests ran)' "$OUT/pytest_quant.log" | tail -n 1)"
fi

# --- 3. smoke-scale classification cells (without snakemake) ---------------------------------
s=$(date +%s)
if ! want smoke; then
  :
elif [ "$DEV" = none ]; then
  record smoke skip "$s" "no CUDA"
else
  if [ "$DRY" = 1 ]; then
    SMOKE_ARGS=(--device cpu --cells alexnet_w2a32 --budget-s 60)
  else
    T=$(limit 110)
    SMOKE_ARGS=(--device cuda --budget-s $(( T > 60 ? T - 40 : 20 )))
  fi
  timeout -k 10 "$(limit 110)" "$PY" scripts/device_smoke.py "${SMOKE_ARGS[@]}" --workdir "$SCRATCH/smoke" \
    --out-json "$OUT/smoke_$DEV.json" 2>&1 | tee "$OUT/smoke.log"
  rc=${PIPESTATUS[0]}
  record smoke "$rc" "$s" "$(grep -m1 'cells ok in' "$OUT/smoke.log")"
fi

# --- 3a. one SSD iteration (the paper scale's Table 4 jobs) ----------------------------------
s=$(date +%s)
if ! want detect; then
  :
elif [ "$DEV" = none ]; then
  record detect skip "$s" "no CUDA"
else
  if [ "$DRY" = 1 ]; then DET_ARGS=(--device cpu --small --images 2); else DET_ARGS=(--device cuda); fi
  timeout -k 10 "$(limit 120)" "$PY" scripts/device_detect.py "${DET_ARGS[@]}" \
    --out-json "$OUT/detect_$DEV.json" 2>&1 | tee "$OUT/detect.log"
  rc=${PIPESTATUS[0]}
  record detect "$rc" "$s" "$(grep -m1 -E '^(preflight: [^o]|detect )' "$OUT/detect.log")"
fi

# --- 3b. torchrun: the paper scale's launcher (one process per GPU, nccl) --------------------
s=$(date +%s)
if [ "$DEV" = none ]; then
  record torchrun skip "$s" "no CUDA"
else
  if [ "$DRY" = 1 ]; then
    TR_ARGS=(--device cpu --nproc 2)   # gloo, as tests/cluster/test_torchrun_slurm.py
  else
    NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 1)
    TR_ARGS=(--device cuda --nproc $(( NGPU >= 2 ? 2 : 1 )))
  fi
  timeout -k 10 "$(limit 120)" "$PY" scripts/device_torchrun.py "${TR_ARGS[@]}" --workdir "$SCRATCH/torchrun" \
    --out-json "$OUT/torchrun_$DEV.json" > "$OUT/torchrun.log" 2>&1
  rc=$?
  tail -n 3 "$OUT/torchrun.log"
  record torchrun "$rc" "$s" "$(grep -m1 '^torchrun ' "$OUT/torchrun.log")"
fi

# --- 4. quantizer benchmark with the torch.compile contender ---------------------------------
s=$(date +%s)
if ! want bench; then
  :
elif [ "$DEV" = none ]; then
  record bench skip "$s" "no CUDA"
else
  if [ "$DRY" = 1 ]; then
    BENCH_ARGS=(--device cpu --quick --compile --levels ternary)
  else
    BENCH_ARGS=(--device cuda --quick --compile)
  fi
  JSON=$OUT/quantizer_$DEV.json
  timeout -k 10 "$(limit 150 90)" "$PY" -m benchmarks.quantizer "${BENCH_ARGS[@]}" --out "$JSON" \
    --progress-json "$SCRATCH/quantizer_progress.json" 2>&1 | tee "$OUT/bench_$DEV.log"
  rc=${PIPESTATUS[0]}
  if [ -f "$JSON" ]; then
    { echo; echo "== python -m benchmarks.quantizer --markdown $JSON"
      "$PY" -m benchmarks.quantizer --markdown "$JSON"; } >> "$OUT/bench_$DEV.log" 2>&1
    note=$("$PY" - "$JSON" <<'EOF'
import json, statistics, sys
d = json.load(open(sys.argv[1]))
rows = d["quantizer"]
r = [x["soft_vs_compiled_fwd_bwd"] for x in rows if x.get("soft_vs_compiled_fwd_bwd") is not None]
errs = sum(1 for x in rows if x.get("compiled_error"))
print(f"kernel {d['machine']['kernel']}, {len(rows)} rows, "
      f"compile start-up {d.get('compile_startup_s') or 0:.1f} s + {d.get('compile_s_total') or 0:.1f} s, "
      f"soft/compiled fwd+bwd median {statistics.median(r) if r else float('nan'):.2f}, {errs} compile errors, "
      f"train step W3/A2 {d['train_step']['w3pm4_a2_vs_fp']:.2f}x FP")
EOF
)
  else
    note="no result JSON"
    if [ -f "$SCRATCH/quantizer_progress.json" ]; then
      cp "$SCRATCH/quantizer_progress.json" "$OUT/quantizer_$DEV.partial.json"
      note="$note; partial rows in quantizer_$DEV.partial.json"
    fi
  fi
  record bench "$rc" "$s" "$note"
fi

# --- 5. training-step benchmark: FP vs quantized, eager vs compiled ---------------------------
s=$(date +%s)
if ! want train_step; then
  :
elif [ "$DEV" = none ]; then
  record train_step skip "$s" "no CUDA"
else
  if [ "$DRY" = 1 ]; then
    TS_ARGS=(--device cpu --models resnet18 --sizes mini --mini-batch 4 --rounds 1 --compile --compile-backend eager)
  else
    TS_ARGS=(--device cuda --compile)
  fi
  JSON=$OUT/train_step_$DEV.json
  timeout -k 10 "$(limit 600 120)" "$PY" -m benchmarks.train_step "${TS_ARGS[@]}" --out "$JSON" \
    --progress-json "$SCRATCH/train_step_progress.json" 2>&1 | tee "$OUT/train_step_$DEV.log"
  rc=${PIPESTATUS[0]}
  if [ ! -f "$JSON" ] && [ -f "$SCRATCH/train_step_progress.json" ]; then
    cp "$SCRATCH/train_step_progress.json" "$OUT/train_step_$DEV.partial.json"
  fi
  RESULT=$JSON; [ -f "$RESULT" ] || RESULT=$OUT/train_step_$DEV.partial.json
  if [ -f "$RESULT" ]; then
    note=$("$PY" - "$RESULT" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def f(v):
    return "-" if v is None else f"{v:.2f}"
cells = [f"{a}.{s}: W3/A2 {f(r['w3pm4_a2_vs_fp'])}x eager, {f(r.get('w3pm4_a2_compiled_vs_fp'))}x compiled"
         for a, sizes in d["train_step"].items() for s, r in sizes.items()]
print(("partial; " if d.get("partial") else "") + "; ".join(cells))
EOF
)
  else
    note="no result JSON"
  fi
  record train_step "$rc" "$s" "$note"
fi

say "total $(elapsed) s; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
# the device tool returns at most 8 files: everything but the summary travels as one archive
(cd "$OUT" && ls | grep -vx summary.txt | tar czf results.tar.gz -T - --remove-files) || true
rm -rf "$SCRATCH"
