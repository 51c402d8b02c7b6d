"""A tiny trained run folder for the online-path tests: the cyclic dataset as generic files (plus one catalog item
nobody interacted with), template profiles, an interest model and a reranker trained for a few epochs, ready for
`Recommender.load`; and `hold`, which keeps an LLM worker busy."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llmrec.config import load_config
from llmrec.experiment import Experiment
from llmrec.serving.llm_worker import LLMWorker
from synthetic import cyclic_dataset

NEW_ITEM = "i-new"
"""The catalog item without interactions (no ID embedding)."""


def tiny_run(tmp_path_factory: pytest.TempPathFactory, **sections: dict) -> Path:
    """Write the dataset and config under a fresh folder, train `llmrec` and the reranker; returns the run
    folder. `sections` update config sections (e.g. online={"retrieval": "exact"})."""
    root = tmp_path_factory.mktemp("tiny-run")
    dataset = cyclic_dataset(num_users=40, num_items=30, length=12)
    dataset.interactions.events[["user_id", "item_id", "timestamp"]].to_csv(root / "events.csv", index=False)
    items = pd.concat([dataset.catalog.items, pd.DataFrame({"item_id": [NEW_ITEM], "text": ["a film nobody saw"]})])
    items.assign(title=lambda t: "Film " + t["text"].str.title()).to_csv(root / "items.csv", index=False)
    config = generic_config(
        root, interest={"hidden_size": 16, "epochs": 4, "batch_size": 16, "num_negatives": 8, "threads": 1},
        rerank={"candidates": 10, "epochs": 3, "batch_size": 8, "threads": 1},
        online={"explain_with_llm": False, "profile_refresh_every": 3})
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    experiment = Experiment(load_config(root / "config.yaml"))
    experiment.save_config()
    experiment.train("llmrec")
    experiment.reranker()
    return Path(config["run_dir"])


def generic_config(root: Path, **sections: dict) -> dict:
    """The config of a tiny llmrec run over `root`/events.csv and `root`/items.csv (generic files, template
    profiles, L=3), with `sections` added."""
    return {"run_dir": str(root / "run"), "models": ["llmrec"],
            "data": {"name": "generic", "path": str(root), "k_core": 0,
                     "generic": {"interactions": "events.csv", "items": "items.csv", "text_template": "{text}"}},
            "encoder": {"cache_dir": str(root / "cache")},
            "profile": {"writer": "template", "recent_items": 3}, **sections}


def hold(worker: LLMWorker) -> threading.Event:
    """Occupy the worker's thread with a background job (as a long profile rewrite would) until the returned gate
    is set."""
    gate, started = threading.Event(), threading.Event()

    def long_job() -> None:
        started.set()
        gate.wait(30)

    worker.submit(long_job)
    assert started.wait(10), "the LLM worker did not start the job"
    return gate
