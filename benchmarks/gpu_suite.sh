#!/usr/bin/env bash
# Every kernel benchmark in one pass, for a lent GPU (see docs/benchmarks.md).
# Usage: bash benchmarks/gpu_suite.sh [OUT_DIR] [BENCH ...]   (default OUT_DIR ./bench_out, all benchmarks)
# Each benchmark runs with --quick under its own time limit and writes OUT_DIR/<name>.txt; one failure
# does not stop the others. Per-benchmark limits: LIMIT_<name>=seconds (default BENCH_LIMIT, 150). Install first: pip install --no-deps --no-build-isolation -e .
set -u
out=${1:-bench_out}; shift || true
benches=${*:-kmeans fused_logprob dequant_matmul ponita_conv pair_loss}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"; } 2>&1 | tee "$out/env.txt"
for b in $benches; do
  echo "=== $b ($(date -u +%T))"
  limit_var="LIMIT_$b"; limit=${!limit_var:-${BENCH_LIMIT:-150}}
  timeout "$limit" python3 "benchmarks/$b.py" --quick > "$out/$b.txt" 2>&1
  echo "exit $? after $SECONDS s"; tail -n 40 "$out/$b.txt"
done
