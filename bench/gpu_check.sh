#!/usr/bin/env bash
# The device check, in one run of at most 8 minutes on a machine with a CUDA GPU (e.g. a lent GPU machine with
# a copy of this repository): the CUDA tests, then bench/gpu_check.py on ML-100K (CPU and GPU rankings agree;
# one training epoch and reranking timed on both), which writes `gpu-check-*` records to
# bench/results/online.json. Copies its log and the records to $OUT when that is set.
#
#   bash bench/gpu_check.sh                       # LLMREC_DATA_DIR defaults to ../shared/datasets
#   bash bench/gpu_check.sh --epochs 1            # extra arguments go to bench/gpu_check.py
#
# Python: $LLMREC_PYTHON, else the carried .venv (it needs a CUDA build of torch), else python3. Without a GPU,
# `python bench/gpu_check.py --device cpu --results /tmp/check.json` is the dry run of the second part.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${LLMREC_PYTHON:-}" ]; then python="$LLMREC_PYTHON"
elif [ -x .venv/bin/python ]; then python=.venv/bin/python
else python=python3
fi
export LLMREC_DATA_DIR="${LLMREC_DATA_DIR:-$PWD/../shared/datasets}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
log="${OUT:-/tmp}/gpu-check.log"
exec > >(tee "$log") 2>&1

"$python" - <<'EOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit(f"torch {torch.__version__} sees no CUDA GPU: use a CUDA build of torch (LLMREC_PYTHON)")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
EOF
[ -f "$LLMREC_DATA_DIR/movielens-100k/u.data" ] || { echo "ML-100K not found under $LLMREC_DATA_DIR"; exit 2; }

echo "== CUDA tests (every device-parametrised test; DDP over a CPU model on a machine with a GPU)"
timeout 180 "$python" -m pytest -q -rs tests/test_devices.py tests/test_distributed.py

echo "== CPU against cuda on ML-100K"
timeout 270 "$python" bench/gpu_check.py --device cuda "$@"
if [ -n "${OUT:-}" ]; then cp bench/results/online.json "$OUT/online.json"; fi
