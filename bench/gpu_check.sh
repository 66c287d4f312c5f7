#!/usr/bin/env bash
# The GPU checks in one run, for the lent GPU machine (one H100/H200, 16 cores,
# no network, no TensorFlow: everything here is index-only serving).
#
# Before, on the networked machine:  tools/gpu_wheels.sh   (.whl/: grpcio and friends)
# and the FAISS-GPU-with-cuVS bundle unpacked at /opt/faissgpu (or its parts in
# /tmp/gpu), as the lending workplace's instructions describe.
#
#   OUT=/some/folder bash bench/gpu_check.sh              # steps 1-4 on the GPU machine (under 10 minutes)
#   OUT=/some/folder STEPS=5 bash bench/gpu_check.sh      # step 5, a second run
#   SMALL=1 PYTHON=.venv/bin/python OUT=/tmp/gc STEPS="1 2 3 4 5" bash bench/gpu_check.sh
#                                                         # the whole plumbing here, small sizes, CPU
#
# Steps, most important first; each has its own time limit and writes
# $OUT/<step>.txt, so a run cut short still returns what it measured:
#   1 tests    the GPU half of the tests: CPU/GPU parity for every distance,
#              flat and IVF, every selectivity band, crowding; the GPU guards
#   2 filtered bench_filtered_search.py --gpu: filtered / unfiltered at 100%..0.01% (target <= 2x), build time
#   3 latency  bench_explain_latency.py --gpu: Explain batch 1 vs raw FAISS-GPU, flat and IVF
#   4 load     load_generator.py --gpu: 64 clients, flat and IVF, with and without batching
#              (targets: >= 10,000 calls/s, p99 < 25 ms, batching >= 5x)
#   5 bands    bench_filter_thresholds.py --gpu: where each filtering strategy wins (re-tunes FilterPolicy)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SMALL=${SMALL:-0}
STEPS=" ${STEPS:-1 2 3 4} "
if [ "$SMALL" = 1 ]; then
  N=20000; CALLS=200; REQUESTS=2000; CLIENTS=16; WORKERS=1; PROCS=1
else
  N=1000000; CALLS=2000; REQUESTS=60000; CLIENTS=64; WORKERS=4; PROCS=4
fi

if [ "$SMALL" != 1 ]; then
  if [ ! -d /opt/faissgpu ] && ls /tmp/gpu/faiss-gpu.tar.xz.part* >/dev/null 2>&1; then
    mkdir -p /opt/faissgpu && cat /tmp/gpu/faiss-gpu.tar.xz.part* | tar -xJ -C /opt/faissgpu
  fi
  # shellcheck disable=SC1091
  [ -f /opt/faissgpu/env.sh ] && . /opt/faissgpu/env.sh
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
  fi
  # explaind itself from the working tree (a namespace package split over client/ and server/).
  export PYTHONPATH=$PWD/client:$PWD/server:$PWD:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1

{
  echo "date: $(date -u)"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$PY" -c "import faiss, grpc; print('faiss', faiss.__version__, 'gpus', faiss.get_num_gpus(), 'cuvs', hasattr(faiss, 'GpuIndexCagra'), 'grpc', grpc.__version__)"
  "$PY" -c "import explaind.server.app; import importlib.util as u; print('explaind imports; tensorflow installed:', u.find_spec('tensorflow') is not None)"
} > "$OUT/0-env.txt" 2>&1
cat "$OUT/0-env.txt"

step() {   # step NAME SECONDS COMMAND...   (runs when NAME's number is in $STEPS)
  local name=$1 limit=$2; shift 2
  case "$STEPS" in *" ${name%%-*} "*) ;; *) return 0 ;; esac
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc seconds=$((SECONDS - start))" >> "$OUT/$name.txt"
  tail -n 25 "$OUT/$name.txt"
}

step 1-tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/unit/test_index_cpu_gpu_parity.py \
  tests/unit/test_index_gpu_guard.py
step 2-filtered 120 "$PY" bench/bench_filtered_search.py --gpu --n "$N"
step 3-latency-flat 75 "$PY" bench/bench_explain_latency.py --gpu --n "$N" --calls "$CALLS" --algorithm flat
step 3-latency-ivf 75 "$PY" bench/bench_explain_latency.py --gpu --n "$N" --calls "$CALLS" --algorithm ivf
for algorithm in flat ivf; do
  step "4-load-$algorithm" 110 "$PY" bench/load_generator.py --gpu --n "$N" --algorithm "$algorithm" \
    --distance DOT_PRODUCT_DISTANCE \
    --clients "$CLIENTS" --requests "$REQUESTS" --workers "$WORKERS" --client-processes "$PROCS"
done
step 5-bands 400 "$PY" bench/bench_filter_thresholds.py --gpu --n "$N" --repeat 3
echo "results in $OUT"
