"""What loading a serving bundle costs: seconds and memory of `Recommender.load(bundle)` in a fresh process, the
first time (an empty state folder: the ChromaDB collection is copied and the profiles seeded into it) and on a
restart (the state folder kept), and the first request after it. Writes the record `bundle-load` to
bench/results/online.json.

    python bench/bundle.py runs/bench-amazon-beauty/llmrec          # a run folder: its bundle, exported if stale
    python bench/bundle.py runs/bench-amazon-beauty/llmrec/bundle   # or the bundle itself

Each load runs in its own spawned process, so `rss_mb` (its peak resident memory) holds the imports (torch,
transformers, chromadb: `import_rss_mb`) and the bundle, and nothing from an earlier load. The state goes to a
temporary folder, never into the bundle's own `state/`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "online.json"


def measure_load(bundle: Path, state_dir: Path) -> dict[str, float]:
    """In this (fresh) process: import the facade, load the bundle with `state_dir` as its state folder and
    answer one request for the first user; seconds and peak RSS of each step."""
    started = time.perf_counter()
    from llmrec.pipeline import Recommender
    from llmrec.train.loop import peak_rss_mb

    imported = time.perf_counter()
    import_rss_mb = peak_rss_mb()
    recommender = Recommender.load(bundle, [f"online.state_dir={state_dir}"])
    loaded = time.perf_counter()
    rss_mb = peak_rss_mb()
    recommender.recommend(str(recommender.split.user_ids[0]), k=10)
    answered = time.perf_counter()
    recommender.close()
    return {"import_s": imported - started, "load_s": loaded - imported, "first_recommend_ms":
            1000 * (answered - loaded), "import_rss_mb": import_rss_mb, "rss_mb": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a bundle folder, or a trained run folder (served through its bundle)")
    parser.add_argument("--name", default="bundle-load", help="the record's model name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from llmrec.config import load_config
    from llmrec.serving.bundle import CONFIG, read_manifest, served_bundle

    bundle = served_bundle(args.path).resolve()
    manifest = read_manifest(bundle)
    with tempfile.TemporaryDirectory(prefix="bundle-state-") as state, \
            ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        first = pool.submit(measure_load, bundle, Path(state)).result()
        restart = pool.submit(measure_load, bundle, Path(state)).result()
    size_mb = sum((bundle / name).stat().st_size for name in manifest["files"]) / 2 ** 20
    metrics = {"load_s": round(restart["load_s"], 3), "rss_mb": round(restart["rss_mb"], 1),
               "import_rss_mb": round(restart["import_rss_mb"], 1), "import_s": round(restart["import_s"], 2),
               "first_load_s": round(first["load_s"], 3),
               "first_recommend_ms": round(restart["first_recommend_ms"], 1), "bundle_mb": round(size_mb, 1),
               "files": len(manifest["files"])}
    command = "python " + shlex.join(sys.argv)
    wall_s = first["import_s"] + first["load_s"] + restart["import_s"] + restart["load_s"]
    record = make_record(manifest["dataset"], args.name, metrics, command, load_config(bundle / CONFIG).seed, wall_s)
    write_records(RESULTS, [record])
    print(f"{manifest['dataset']} {args.name}: {metrics}")


if __name__ == "__main__":
    main()
