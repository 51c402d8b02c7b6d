#!/usr/bin/env bash
# Set up the environment if needed and run the default test suite (slow benchmarks excluded; `-m slow` runs
# them). Extra arguments go to pytest. pytest exits non-zero when no test is collected, and so does this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export TQDM_DISABLE="${TQDM_DISABLE:-1}"
exec .venv/bin/python -m pytest "$@"
