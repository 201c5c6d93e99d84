#!/usr/bin/env bash
# Compile the CUDA multi-scale deformable attention kernel into `focus._C` (called by `make build-cuda`).
#
#   bash tools/build_cuda.sh [--inplace]
# Default: build into build/cuda/lib (a compile check; nothing in the source tree changes). With --inplace the
# extension is placed next to the sources (focus/_C*.so, gitignored) so `import focus._C` finds it.
# Environment: CUDA_HOME (default /usr/local/cuda-13.0 if present), TORCH_CUDA_ARCH_LIST (default 8.0, recorded
# in the binary: focus._C.cuda_arch_list()), MAX_JOBS (default 2), PYTHON (default .venv/bin/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda-13.0 ]; then
  export CUDA_HOME=/usr/local/cuda-13.0
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
export FORCE_CUDA=1
if [ "${1:-}" = "--inplace" ]; then
  target=(--inplace)
else
  target=(--build-lib build/cuda/lib)
fi
echo "[build-cuda] CUDA_HOME=${CUDA_HOME:-<torch default>} TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
start=$(date +%s)
"$PYTHON" setup.py -q build_ext --build-temp build/cuda/temp "${target[@]}"
so="$(find build/cuda/lib focus -maxdepth 2 -name '_C*.so' -newermt "@$start" 2>/dev/null | head -1)"
echo "[build-cuda] built ${so:-focus._C} in $(( $(date +%s) - start )) s"
