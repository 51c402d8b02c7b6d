"""The interest model (`llmrec`) against the baselines under one protocol: the same split, evaluator and test
cases per dataset. Baselines come from the benchmark run (trained models committed under bench/models/ are
reused); every llmrec variant is trained in its own folder. Writes bench/results/interest.json.

    LLMREC_DATA_DIR=../shared/datasets python bench/interest.py movielens-1m amazon-beauty
    ... --variants llmrec llmrec-no-profile        only these variants (see VARIANTS)
    ... --variants llmrec llmrec-tuned-profile llmrec-no-profile
                                                    the tuned writer's profiles (bench/adapters/<dataset>, its
                                                    store from bench/profiles.py --write-store --set
                                                    profile.adapter=...) beside the base writer's and none
    ... --tag idd0 --set interest.id_dropout=0      a tuning run: its own folders, records named
                                                    `<variant>@idd0` in bench/results/interest_tuning.json
    ... --variants --baselines sasrec --tag lr2 --set sasrec.lr=0.002
                                                    a tuned baseline: record `sasrec@lr2`, its own folder

The `cold` protocol holds 5 % of the items out of training (data.cold_item_fraction=0.05) and trains SASRec,
text-kNN and llmrec (with template profiles) on that split, reporting HR@10 on test cases whose target is a
held-out item.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

from llmrec.config import RunConfig, load_config
from llmrec.experiment import Experiment

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, training_metrics, write_records  # noqa: E402

BENCH = Path(__file__).parent
RESULTS = BENCH / "results" / "interest.json"
BASELINES = ["popularity", "text-knn", "itemknn", "userknn", "lightgcn", "sasrec"]
VARIANTS: dict[str, list[str]] = {  # `{dataset}` is filled in
    "llmrec": [],
    "llmrec-no-profile": ["interest.use_profile=false"],
    "llmrec-tuned-profile": ["profile.adapter=bench/adapters/{dataset}",
                             "profile.preload=bench/profiles/{dataset}.tuned.jsonl.gz"],
    "llmrec-no-recent": ["interest.use_recent=false"],
    "llmrec-no-context": ["interest.use_context=false"],
    "llmrec-no-ids": ["interest.use_ids=false"],
    "llmrec-no-text-loss": ["interest.text_loss_weight=0"],
    "llmrec-profile-dropout": ["interest.profile_dropout=0.5"],
    "llmrec-fusion-sum": ["interest.fusion=sum"],
    "llmrec-fusion-attention": ["interest.fusion=attention"],
    "llmrec-gru": ["interest.short_term=gru"],
    "llmrec-time": ["interest.time_features=true"],
    "llmrec-template-profile": ["interest.profile_source=template"],
    "llmrec-mean-items-profile": ["interest.profile_source=mean-items"],
    "llmrec-graph-longterm": ["interest.profile_source=graph"],
    "llmrec-graph+profile": ["interest.profile_source=graph+profile"],
}
TUNING = BENCH / "results" / "interest_tuning.json"
BASELINE_SECTIONS = ("data.", "eval.", "encoder.", "sasrec.", "knn.", "lightgcn.")
"""Overrides in these sections change the baselines too; others (interest., profile., llm.) leave them alone."""
COLD = ["data.cold_item_fraction=0.05", "interest.profile_source=template"]
"""Holding items out changes the training histories, so the stored LLM profiles do not apply; llmrec takes the
template profile there (writing LLM profiles for a second split would double the hours of profile writing)."""
COLD_MODELS = ["text-knn", "sasrec", "llmrec"]
REPORTED = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "Coverage@10", "NDCG@10-tail-users",
            "HR@10-tail-users", "NDCG@10-tail-items", "HR@10-tail-items", "HR@10-cold-items", "cases-cold-items"]


def bench_config(dataset: str, overrides: list[str]) -> RunConfig:
    """The dataset's benchmark config plus `overrides`, with its stored profiles preloaded when there are any."""
    profiles = BENCH / "profiles" / f"{dataset}.jsonl.gz"  # written by bench/profiles.py
    preload = [f"profile.preload={profiles}"] if profiles.is_file() else []
    return load_config(BENCH / "configs" / f"{dataset}.yaml", preload + overrides)


def changes_results(overrides: list[str]) -> bool:
    """Whether `overrides` change what a model learns (a thread count changes only the schedule)."""
    return not all(o.partition("=")[0].endswith(".threads") for o in overrides)


def evaluate(dataset: str, model: str, record_name: str, overrides: list[str], command: str) -> dict:
    """Train (or reuse) `model` under the dataset's benchmark config plus `overrides`; one result record."""
    config = bench_config(dataset, overrides)
    experiment = Experiment(config)
    experiment.save_config()
    committed = BENCH / "models" / dataset / model
    trained = (experiment.model_dir(model) / "model.json").is_file()
    if not changes_results(overrides) and committed.is_dir() and not trained:
        shutil.copytree(committed, experiment.model_dir(model), dirs_exist_ok=True)
    started = time.perf_counter()
    results = experiment.evaluate([model])[model]
    metrics = {k: results[k] for k in REPORTED if k in results}
    metrics.update(training_metrics(experiment.model_dir(model))[0])
    print(f"{dataset} {record_name}: NDCG@10 {metrics['NDCG@10']:.4f} HR@10 {metrics['HR@10']:.4f}", flush=True)
    return make_record(dataset, record_name, metrics, command, config.seed, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", choices=[p.stem for p in (BENCH / "configs").glob("*.yaml")])
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS),
                        help="llmrec variants to train and evaluate (none: only baselines / the cold protocol)")
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=BASELINES,
                        help="baselines evaluated beside llmrec (trained first where not committed)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-item protocol")
    parser.add_argument("--cold-models", nargs="+", choices=COLD_MODELS, default=COLD_MODELS,
                        help="models trained on the cold split (an ID model such as SASRec scores 0 on "
                             "cold targets by construction)")
    parser.add_argument("--tag", help="name of a tuning run (see above)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    baseline_overrides = [o for o in args.overrides if o.startswith(BASELINE_SECTIONS)]
    if changes_results(baseline_overrides) and not args.tag:
        parser.error("overrides that change the baselines need --tag, so their records stay apart")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    results, suffix = (TUNING, f"@{args.tag}") if args.tag else (RESULTS, "")
    baseline_suffix = suffix if changes_results(baseline_overrides) else ""  # tuned baselines stay apart
    for dataset in args.datasets:
        run_dir = f"runs/bench-{dataset}"
        for model in args.baselines:
            folder = [f"run_dir={run_dir}/{model}{baseline_suffix}"] if baseline_suffix else []
            write_records(results, [evaluate(dataset, model, model + baseline_suffix,
                                             [*folder, *baseline_overrides], command)])
        for name in args.variants:
            variant = [override.format(dataset=dataset) for override in VARIANTS[name]]
            overrides = [f"run_dir={run_dir}/{name}{suffix}", *variant, *args.overrides]
            write_records(results, [evaluate(dataset, "llmrec", name + suffix, overrides, command)])
        if not args.no_cold:
            for model in args.cold_models:
                folder = f"cold{suffix}" if model == "llmrec" else f"cold{baseline_suffix}"
                overrides = [f"run_dir={run_dir}/{folder}", *COLD,
                             *(args.overrides if model == "llmrec" else baseline_overrides)]
                write_records(results, [evaluate(dataset, model, f"{model}-cold5pct{suffix}", overrides,
                                                 command)])


if __name__ == "__main__":
    main()
