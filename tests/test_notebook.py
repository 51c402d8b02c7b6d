"""notebooks/quickstart.ipynb runs top to bottom: MovieLens-100K, profiles, training, evaluation, plots and the
online facade, in a fresh kernel of this interpreter, with its run folder in `tmp_path` (nothing is written to
the repository). It trains SASRec and the interest model on short schedules: a few minutes on 2 CPU cores."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

from llmrec.data.registry import BUILTIN, DATA_DIR_ENV, DOWNLOAD_BASE_ENV, default_data_root

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
SHARED_ML100K = REPO.parent / "shared" / "datasets" / "movielens-100k"
KERNEL = "llmrec-notebook-test"


def _reachable(host: str, port: int = 443) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture
def ml100k_source() -> str:
    """Where the notebook will find ML-100K: the shared copy, a copy in the data folder, or a download (the
    notebook's own fallback); skipped with the reason when none of them can work."""
    if SHARED_ML100K.is_dir():
        return str(SHARED_ML100K)
    folder = default_data_root() / "movielens-100k"
    if (folder / BUILTIN["movielens-100k"].marker).is_file():
        return str(folder)
    if os.environ.get(DOWNLOAD_BASE_ENV) or _reachable("files.grouplens.org"):
        return "download"
    pytest.skip(f"ML-100K not available: no {SHARED_ML100K}, no copy in {folder} (${DATA_DIR_ENV}), and "
                "files.grouplens.org is unreachable")


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter (the venv's), found first through JUPYTER_PATH; no user-level
    kernelspec is installed or consulted."""
    folder = tmp_path / "jupyter" / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "llmrec (test)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code), \
        "clear the outputs before committing notebooks/quickstart.ipynb"


def test_quickstart_runs(ml100k_source: str, kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         record_property):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("LLMREC_NOTEBOOK_RUN_DIR", str(run_dir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    seconds = time.perf_counter() - started
    record_property("notebook_seconds", round(seconds, 1))
    print(f"notebooks/quickstart.ipynb ran in {seconds:.0f}s (ML-100K from {ml100k_source})")

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # the three figures

    # everything went to the run folder given by the test
    results = json.loads((run_dir / "results" / "evaluation.json").read_text())
    assert set(results) >= {"popularity", "sasrec", "llmrec"}
    assert all(0 < results[name]["NDCG@10"] <= 1 for name in ("popularity", "sasrec", "llmrec"))
    for name in ("sasrec", "llmrec", "rerank"):
        assert (run_dir / "models" / name / "model.json").is_file()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "bundle" / "state" / "events.sqlite").is_file()
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "943 users: 943 already stored, 0 written now" in text  # the preloaded LLM profiles were used
    assert "notebook done in" in text
