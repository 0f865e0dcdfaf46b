#!/usr/bin/env bash
# The engine's GPU check, run once on a CUDA machine (see docs/performance.md):
# the engine tests with the CUDA ones included, then the quick benchmark on the GPU.
# Logs go to $OUT (default ./gpu-check). Needs python3 with torch (CUDA), numpy,
# safetensors, pytest and scikit-learn; not the service's dependencies: conftest files
# above tests/engine are not loaded, and pytest-timeout's ini key is tolerated.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

timeout 240 "$PY" -m pytest tests/engine -q -m "cuda or not cuda" -p no:cacheprovider \
  --confcutdir=tests/engine -W "ignore::pytest.PytestConfigWarning" -x --durations=8 \
  >"$OUT/pytest.txt" 2>&1
echo "pytest exit: $?" | tee -a "$OUT/pytest.txt"
tail -n 25 "$OUT/pytest.txt"

timeout 200 "$PY" -m bench.engine --device cuda --quick >"$OUT/bench.txt" 2>&1
echo "bench exit: $?" | tee -a "$OUT/bench.txt"
cat "$OUT/bench.txt"
