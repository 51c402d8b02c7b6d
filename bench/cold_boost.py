"""The cold paths on the cold-item protocol, compared on one trained cold model: items without an ID embedding
scored by their text alone or with their text neighbours' ID parts (`interest.new_item_neighbours`), each with the
new-item offset fit on the validation cases (`interest.calibrate_new_items`, also for models trained before it
existed) under each NDCG budget (`interest.new_item_ndcg_budget`; 1 = the likelihood's offset, uncapped), ranked
with the offset plus each boost (`interest.new_item_boost`) on the validation and test cases, so the trade-off
between overall accuracy and cold items reached is one table. Writes bench/results/cold_boost.json, records
`llmrec-cold5pct<@tag>+no-cold-path` (text alone, no offset: the model without a cold path),
`llmrec-cold5pct<@tag>[+neighboursK]+offset[+ndcgbudgetX][+boostB]`.

    LLMREC_DATA_DIR=../shared/datasets python bench/cold_boost.py amazon-beauty --tag idd30 \\
        --set interest.id_dropout=0.3 --neighbours 0 10 --budgets 1 0.01 --boosts 0 1 2 3

The model is the one `bench/interest.py <dataset> --cold-models llmrec [--tag T --set ...]` trained (same tag and
overrides, so the same folder and config); neighbours, offset and boost change only the ranking, never the network.
With `--warm`, the standard split's model (`--variants llmrec --no-cold`) instead: records `llmrec<@tag>...`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from llmrec.experiment import Experiment
from llmrec.models.interest import InterestModel
from llmrec.models.new_item_offset import NewItemOffset

sys.path.insert(0, str(Path(__file__).parent))
from interest import COLD, bench_config  # noqa: E402
from records import make_record, training_metrics, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cold_boost.json"
TEST_METRICS = ["NDCG@10", "HR@10", "NDCG@10-cold-items", "HR@10-cold-items", "cases-cold-items",
                "HR@10-tail-items", "Coverage@10", "novelty@10"]
VALID_METRICS = ["NDCG@10", "HR@10-cold-items"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--tag", help="the tuning run's tag in bench/interest.py (its cold folder is cold@TAG)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="the config overrides the cold model was trained with")
    parser.add_argument("--boosts", nargs="+", type=float, default=[0, 0.5, 1, 1.5, 2, 2.5, 3, 4])
    parser.add_argument("--neighbours", nargs="+", type=int, default=[0, 10],
                        help="interest.new_item_neighbours values to compare (0 = text alone)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[1.0, 0.01],
                        help="interest.new_item_ndcg_budget values to compare (1 = the likelihood's offset)")
    parser.add_argument("--temperature", type=float, help="interest.new_item_temperature (default: the config's)")
    parser.add_argument("--warm", action="store_true",
                        help="the standard split's model instead (bench/interest.py --variants llmrec --no-cold "
                             "[--tag T]); records `llmrec<@tag>...`")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    suffix = f"@{args.tag}" if args.tag else ""
    run = [f"run_dir=runs/bench-{args.dataset}/llmrec{suffix}"] if args.warm else [
        f"run_dir=runs/bench-{args.dataset}/cold{suffix}", *COLD]
    config = bench_config(args.dataset, [*run, *args.overrides])
    experiment = Experiment(config)
    model_dir = experiment.model_dir(InterestModel.name)
    if not (model_dir / "model.json").is_file():
        models = "llmrec --baselines --no-cold" if args.warm else "--baselines --cold-models llmrec"
        sys.exit(f"no trained model in {model_dir}: run bench/interest.py {args.dataset} --variants {models} "
                 f"{'--tag ' + args.tag if args.tag else ''} (same --set) first")
    model = experiment.model(InterestModel.name)
    evaluator = experiment.evaluator()
    cost = training_metrics(model_dir)[0]

    def record(name: str, fit: NewItemOffset | None = None, budget: float | None = None) -> None:
        started = time.perf_counter()
        test = evaluator.evaluate(model, desc=f"test, {name}")
        valid = evaluator.evaluate(model, experiment.split.valid, desc=f"valid, {name}")
        metrics = {k: test[k] for k in TEST_METRICS if k in test}
        metrics.update({f"valid-{k}": valid[k] for k in VALID_METRICS if k in valid})
        metrics.update(cost, new_item_offset=model.new_item_offset,
                       new_item_neighbours=model.config.new_item_neighbours,
                       new_item_temperature=model.config.new_item_temperature)
        if fit:
            metrics.update(new_item_ndcg_budget=budget,
                           likelihood_offset=fit.likelihood, budget_cap=fit.budget_cap)
        cold = f" HR@10-cold-items {metrics['HR@10-cold-items']:.4f}" if "HR@10-cold-items" in metrics else ""
        print(f"{name}: NDCG@10 {metrics['NDCG@10']:.4f}{cold} valid NDCG@10 {metrics['valid-NDCG@10']:.4f}",
              flush=True)
        write_records(RESULTS, [make_record(args.dataset, name, metrics, command, config.seed,
                                            time.perf_counter() - started)])

    name = f"llmrec{'' if args.warm else '-cold5pct'}{suffix}"
    model.set_new_item_neighbours(0)
    model.new_item_offset = 0.0
    model.set_new_item_boost(0.0)
    record(f"{name}+no-cold-path")
    for neighbours in args.neighbours:
        model.set_new_item_neighbours(neighbours, args.temperature)
        for budget in args.budgets:
            fit = model.calibrate_new_items(experiment.split.valid, budget)
            print(f"{neighbours} text neighbours, NDCG budget {budget:g}: new-item offset fit on the validation "
                  f"cases: {fit}", flush=True)
            path = (f"{name}+neighbours{neighbours}" if neighbours else name) + "+offset"
            path += f"+ndcgbudget{budget:g}" if budget < 1 else ""
            for boost in args.boosts:
                model.set_new_item_boost(boost)
                record(path + (f"+boost{boost:g}" if boost else ""), fit, budget)


if __name__ == "__main__":
    main()
