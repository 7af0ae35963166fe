#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 nvcc from pip wheels into .cuda/ at the repository root
# (git-ignored) and prints the path of nvcc. No system CUDA or GPU is needed; nvcc needs
# a host gcc. Pin 13.0: the GPU driver (CUDA 13.0) refuses PTX from newer nvcc, and an
# unpinned wheel pulls the others to the newest version.
#   export NVCC="$(tools/install-nvcc.sh)" && cargo build --features cuda
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.cuda"
if ! ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --no-cache-dir \
        "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88" \
        "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" >&2
fi
nvcc="$(ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc | head -n 1)"
"$nvcc" --version >&2
echo "$nvcc"
