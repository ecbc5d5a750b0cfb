#!/usr/bin/env bash
# The one prepared script for a lent GPU (H100 / H200): environment, ceilings, the three benchmarks at
# full size with prm-jax and the Hugging Face peer side by side, then the summary table (printed last).
#
#   bash benchmarks/run_gpu.sh            # from the repository root; ~7-8 minutes of wall time
#   BUDGET=300 bash benchmarks/run_gpu.sh # a shorter run: later stages are skipped when time is spent
#   STAGES="train_bce peer_train" bash benchmarks/run_gpu.sh   # a rerun of some stages only
#
# Everything goes to $OUT (the device tool's folder; benchmarks/out when unset): results.json (all
# numbers), run.log (every stage's output), summary.md (the final tables). Stages run one after
# another, each in its own processes, so JAX and torch never hold the GPU at the same time; every
# stage has a timeout and the whole run a budget (BUDGET seconds, default 440) after which the
# remaining optional stages are skipped and named in the summary.
# Needs: python3 with jax[cuda], flax, optax, numpy, torch (CUDA), transformers, tqdm, and
# ml_collections (the train step completes its config from prm_jax/configs/base.py). No tfds / grain:
# the benchmarks import only the model, losses, scoring, train step and sampler. Wheels in .whl/ are
# installed first; the image of 2026-11 lacks ml_collections, so before a run, here:
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0
# and carry .whl (the device tool's `carry`).
set -u
cd "$(dirname "$0")/.."
export OUT="${OUT:-$PWD/benchmarks/out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# JAX takes 90% of the card up front (the default 75% can starve the no-remat variants); the peak we
# report is the allocator's peak in use, not the pool. Each stage's processes exit before the next.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}"
# Latency-hiding scheduler: overlaps independent work in the HLO schedule (free on one GPU).
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
# A rerun on the same warm machine reuses compiled programs (first_step_s then excludes compiles).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/prm_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=2
PY="${PYTHON:-python3}"
# TINY=1: the tiny shapes on whatever device is there (how this script is checked on a CPU).
TINY_ARG=""; [ "${TINY:-0}" = 1 ] && TINY_ARG="--tiny"
LOG="$OUT/run.log"
BUDGET="${BUDGET:-440}"
STAGES="${STAGES:-env ceilings train_bce train_implicit peer_train sampler scoring train_jax_extra train_jax_more train_jax_remat sampler_chunked flags info_bench}"
START=$(date +%s)
: > "$LOG"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site" || echo "wheel install failed" | tee -a "$LOG"
fi

if ! $PY -c "import ml_collections" 2>/dev/null; then
  echo "ml_collections is missing: put its wheel in .whl/ (see this script's header) and run again" | tee -a "$LOG"
  exit 2
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# stage NAME CAP_SECONDS MIN_SECONDS CMD...: runs CMD under min(CAP, time left) unless under MIN is left.
stage() {
  local name=$1 cap=$2 min=$3; shift 3
  case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
  local l; l=$(left)
  if [ "$l" -lt "$min" ]; then
    echo "== SKIP $name: ${l}s of the budget left, needs ${min}s" | tee -a "$LOG"
    $PY benchmarks/common.py skip "$name" "budget: ${l}s left" >/dev/null 2>&1
    return 0
  fi
  local t=$(( cap < l ? cap : l ))
  echo "== $name (timeout ${t}s, $(( $(date +%s) - START ))s into the run)" | tee -a "$LOG"
  local s0; s0=$(date +%s)
  timeout -k 10 "$t" "$@" $TINY_ARG --budget $(( t - 5 )) >> "$LOG" 2>&1
  local rc=$?
  echo "== $name done: rc=$rc in $(( $(date +%s) - s0 ))s" | tee -a "$LOG"
  [ $rc -ne 0 ] && $PY benchmarks/common.py skip "$name" "rc=$rc" >/dev/null 2>&1
  return 0
}

if [[ " $STAGES " == *" env "* ]]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit \
      --format=csv; timeout 120 $PY -c "import jax, torch, transformers, flax, optax; print('jax', jax.__version__, \
jax.devices(), '| torch', torch.__version__, torch.cuda.is_available(), '| transformers', \
transformers.__version__, '| flax', flax.__version__, '| optax', optax.__version__)"; } 2>&1 | tee -a "$LOG"
  timeout 60 $PY benchmarks/common.py env >> "$LOG" 2>&1
fi
stage ceilings 60 30 $PY benchmarks/common.py ceilings
# The must-haves first: prm-jax's two main steps, the peers they are compared with, sampler, scoring.
stage train_bce 150 60 $PY benchmarks/train_step.py --jax bce --peer none
stage train_implicit 150 60 $PY benchmarks/train_step.py --jax implicit --peer none
stage peer_train 200 60 $PY benchmarks/train_step.py --jax none --peer prm_eager,implicit_eager,prm_compile
stage sampler 150 40 $PY benchmarks/sampler.py
stage scoring 70 30 $PY benchmarks/scoring.py
# Then the 'before' of each optimisation, while the budget lasts (one compile each).
stage train_jax_extra 140 45 $PY benchmarks/train_step.py --jax bce_xla_attn,implicit_full_logprobs --peer none
stage train_jax_more 120 45 $PY benchmarks/train_step.py --jax implicit_bf16_head,implicit_remat_dots --peer none
stage train_jax_remat 120 45 $PY benchmarks/train_step.py --jax bce_remat_dots_no_batch,bce_remat_full --peer none
# The sampler with its prefill in 128-token slices, the vocabulary projection at the last position only.
stage sampler_chunked 90 40 $PY benchmarks/sampler.py --no-peer --prefill-chunk 128 --tag _prefill128
# Last, XLA flags worth a look (each in its own processes; an unknown flag fails only its stage):
# CUDA-graph command buffers around the decode loop's while body, and cuBLAS instead of Triton GEMMs.
XLA_FLAGS="$XLA_FLAGS --xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL" \
  stage flags 90 40 $PY benchmarks/sampler.py --no-peer --iters 2 --tag _cmdbuf_while
XLA_FLAGS="$XLA_FLAGS --xla_gpu_enable_triton_gemm=false" \
  stage flags 90 40 $PY benchmarks/train_step.py --jax bce --peer none --tag _no_triton_gemm

# What a user sees: `prm-jax info --bench`, the 30-second version of the three benchmarks.
if [[ " $STAGES " == *" info_bench "* ]]; then
  echo "== info_bench" | tee -a "$LOG"
  timeout 120 $PY -m prm_jax.cli info --bench --bench-seconds 20 2>&1 | tail -6 | tee -a "$LOG"
fi

echo "== total $(( $(date +%s) - START ))s" | tee -a "$LOG"
$PY benchmarks/summary.py $TINY_ARG --markdown "$OUT/summary.md"
