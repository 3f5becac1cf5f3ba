#!/usr/bin/env bash
# Every benchmark, one after another (never two at once: they time each other otherwise),
# with the peers' venv of benchmarks/peers.sh. The raw output goes to
# benchmarks/results/DATE-DEVICE.md; docs/benchmarks.md holds the curated table.
#   bash benchmarks/run_all.sh [cpu|cuda] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
quick=${2:-}
[ -x benchmarks/.peers/bin/python ] || bash benchmarks/peers.sh
py=benchmarks/.peers/bin/python
mkdir -p benchmarks/results
out=benchmarks/results/$(date -u +%F)-$device.md
{
  echo "# lossatlas benchmarks, $(date -u '+%F %H:%M UTC'), device $device"
  echo
  echo "$(nproc) cores; $($py -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$device" = cuda ]; then $py -c 'import torch; print("GPU:", torch.cuda.get_device_name(0))'; fi
} > "$out"
run() {
  echo "## $*" | tee -a "$out"
  echo '```' >> "$out"
  local t0=$SECONDS
  "$py" "$@" 2>&1 | grep -v 'is ignored' | tee -a "$out"
  echo '```' >> "$out"
  echo "($((SECONDS - t0)) s; load average after: $(cut -d' ' -f1-3 /proc/loadavg))" >> "$out"
  echo >> "$out"
}
if [ "$device" = cuda ]; then
  # the GPU rows of docs/benchmarks.md: whole processes, big models, top eigenpair
  run benchmarks/bench_e2e.py --device cuda --runs 2
  run benchmarks/bench_big.py --device cuda --samples 10000 --points 8 --batch 1000 --eigen --eigen-samples 10000
else
  run benchmarks/bench_e2e.py --runs 5
  run benchmarks/bench_big.py --samples 1000 --points 3 --rounds 2
fi
run benchmarks/bench_objective.py --device "$device"
run benchmarks/bench_interpolation.py --device "$device"
run benchmarks/bench_planes.py
run benchmarks/bench_curvature.py
run benchmarks/bench_paths.py
run benchmarks/bench_progress.py
if [ "$quick" = --quick ]; then
  run benchmarks/bench_goldilocks.py --device "$device" --quick
  run benchmarks/bench_dss.py --pairs 2 --thresholds 0.01
else
  run benchmarks/bench_goldilocks.py --device "$device"
  run benchmarks/bench_dss.py --pairs 3 --thresholds 0.01 0.003
  run benchmarks/bench_dask.py --samples 4 --hidden 128
  run benchmarks/bench_memory.py
fi
echo "wrote $out"
