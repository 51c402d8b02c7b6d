"""Encoder throughput and ChromaDB index speed and recall on Amazon Beauty (12,101 items).

    LLMREC_DATA_DIR=/work/shared/datasets python bench/encoder_index.py

(a) encoder: items/s over a random sample of item texts, without cache; then the whole catalog through the
    embedding cache (the cache a run with the default settings reuses).
(b) index: insert rate of all item vectors into a fresh embedded collection, single-query latency (query = mean
    of 5 random items, n=100, those 5 excluded) and recall@100 of the same queries against exact search.
Results go to bench/results/encoder_index.json (one record per part).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from records import make_record, write_records

from llmrec.config import DataConfig, EncoderConfig, IndexConfig
from llmrec.data.registry import DATA_DIR_ENV, load_dataset
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.eval.ann import ann_recall
from llmrec.index.chroma_index import ItemIndex

DATASET = "amazon-beauty"
SEED = 42
RESULTS = Path(__file__).parent / "results" / "encoder_index.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=2000, help="texts encoded without cache for items/s")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--cache-dir", default=EncoderConfig().cache_dir,
                        help="embedding cache filled with the whole catalog (default: the library's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rng = np.random.default_rng(SEED)
    catalog = load_dataset(DataConfig(name=DATASET)).catalog
    texts, item_ids = catalog.texts(), [str(i) for i in catalog.ids]

    started = time.perf_counter()
    sample = [texts[i] for i in rng.choice(len(texts), size=min(args.sample, len(texts)), replace=False)]
    encoder = ItemEncoder(EncoderConfig(cache_dir=None))  # timed: no cache
    encode_started = time.perf_counter()
    encoder.encode(sample, catalog.text_template)
    encoder_metrics = {"items_per_s": round(len(sample) / (time.perf_counter() - encode_started), 1),
                       "n_items": len(sample)}
    vectors = ItemEncoder(EncoderConfig(cache_dir=args.cache_dir)).encode(texts, catalog.text_template)
    encoder_s = time.perf_counter() - started

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        index_metrics = measure_index(ItemIndex(IndexConfig(), Path(folder), f"bench-{DATASET}"), item_ids,
                                      vectors, args.queries, rng)
    index_s = time.perf_counter() - started

    command = command_line()
    records = [make_record(DATASET, "encoder", encoder_metrics, command, SEED, encoder_s),
               make_record(DATASET, "chroma-index", index_metrics, command, SEED, index_s)]
    write_records(RESULTS, records)
    for record in records:
        print(record["model"], record["metrics"])


def measure_index(index: ItemIndex, item_ids: list[str], vectors: np.ndarray, n_queries: int,
                  rng: np.random.Generator) -> dict[str, float]:
    """Insert rate, single-query latency percentiles and recall@100 on a fresh collection."""
    started = time.perf_counter()
    index.rebuild(item_ids, vectors)
    insert_s = time.perf_counter() - started
    picks = np.stack([rng.choice(len(item_ids), size=5, replace=False) for _ in range(n_queries)])
    queries = vectors[picks].mean(axis=1)
    latencies = []
    for query, pick in zip(queries, picks):
        started = time.perf_counter()
        index.query(query[None], n=100, exclude=[{item_ids[i] for i in pick}])
        latencies.append(time.perf_counter() - started)
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return {"insert_per_s": round(len(item_ids) / insert_s, 1), "query_p50_ms": round(float(p50), 2),
            "query_p99_ms": round(float(p99), 2),
            "recall@100": round(ann_recall(index, queries, item_ids, vectors, n=100), 4), "n_items": len(item_ids)}


def command_line() -> str:
    """This run's command, with the data folder it read."""
    data_dir = os.environ.get(DATA_DIR_ENV)
    prefix = f"{DATA_DIR_ENV}={shlex.quote(data_dir)} " if data_dir else ""
    return prefix + shlex.join(["python", *sys.argv])


if __name__ == "__main__":
    main()
