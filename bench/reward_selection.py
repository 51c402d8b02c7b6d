"""Which tuning reward picks the sample worth learning from.

`llmrec profile tune` keeps each tuning user's best sample by its reward (`profile_tune.reward`) on the user's
next `profile_tune.target_items` training items. A good reward picks samples that also retrieve what the reward
never saw. For every tuning user of a samples file, this script takes the sample each reward scores best, with
each number of targets (`--targets`, the next N training items after the long-term cut-off), and judges it on
the user's later items: the training items after the largest number of targets and the validation item (never
a test item), the same items for every rule. Beside them: a random sample (the mean over the user's samples), the
template profile, and the best sample by those later items themselves (an oracle: what choosing among the
samples could reach).

    LLMREC_DATA_DIR=../shared/datasets python bench/reward_selection.py movielens-1m \\
        --samples runs/bench-movielens-1m/profile-tune-rank --targets 5 25 --set profile.grammar=true \\
        --set profile_tune.check_users=500 --set profile_tune.users=150

Record `profile-reward-selection` in bench/results/profiles.json: per rule (`<reward>@<targets>`, `random`,
`template`, `oracle`), the later items' HR@10, NDCG@10 and AUC (means over the users; `users`,
`samples_per_user`, `targets`).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import get_args

import numpy as np

from llmrec.config import RewardMeasure, load_config
from llmrec.experiment import Experiment
from llmrec.profiles.reward import MEASURES, PROFILE_TEXT_KEY, target_places
from llmrec.profiles.tuning import ProfileTuner, reward_targets

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

BENCH = Path(__file__).parent


def later_quality(above: np.ndarray, pool: int) -> dict[str, float]:
    """HR@10, NDCG@10 and AUC of items with `above` candidates scored above each, of `pool`."""
    hits = above < 10
    return {"HR@10": float(hits.mean()), "NDCG@10": float(np.mean(hits / np.log2(above + 2.0))),
            "AUC": MEASURES["auc"](above, pool)}


def selection_metrics(tuner: ProfileTuner, experiment: Experiment, target_counts: list[int]) -> dict[str, object]:
    """Per selection rule, the mean `later_quality` of the sample it picks (see the module docstring)."""
    split = experiment.split
    valid_target = dict(zip(split.valid.users.tolist(), split.valid.targets))
    rules = [f"{measure}@{count}" for count in target_counts for measure in get_args(RewardMeasure)]
    picked: dict[str, list[dict[str, float]]] = {rule: [] for rule in [*rules, "random", "template", "oracle"]}
    samples_per_user = []
    for user in tuner.scored_users():
        index = split.user_index(user.request.user_id)
        start = user.request.cutoff + max(target_counts)
        later = np.concatenate([split.train[index][start:], valid_target.get(index, [])]).astype(np.int64)
        if not len(later):
            continue
        texts = [answer["text"] for answer in user.answers]
        vectors = experiment.encoder.encode(texts + [user.template], PROFILE_TEXT_KEY)
        seen = user.request.long_term
        judged = [later_quality(*target_places(experiment.item_vectors, v, later, seen)) for v in vectors]
        for count in target_counts:
            targets = reward_targets(split, index, user.request, count)
            on_targets = [target_places(experiment.item_vectors, v, targets, seen) for v in vectors[:-1]]
            for measure in get_args(RewardMeasure):
                best = int(np.argmax([MEASURES[measure](*places) for places in on_targets]))
                picked[f"{measure}@{count}"].append(judged[best])
        picked["random"].append({k: float(np.mean([j[k] for j in judged[:-1]])) for k in judged[0]})
        picked["template"].append(judged[-1])
        picked["oracle"].append(max(judged[:-1], key=lambda j: j["NDCG@10"]))
        samples_per_user.append(len(texts))
    if not samples_per_user:
        raise SystemExit(f"no usable samples in {tuner.samples_path}")
    metrics: dict[str, object] = {rule: {k: float(np.mean([p[k] for p in values])) for k in values[0]}
                                  for rule, values in picked.items()}
    metrics.update(users=len(samples_per_user), samples_per_user=float(np.mean(samples_per_user)),
                   targets=target_counts, judged_on=f"the training items after the first {max(target_counts)} "
                                                    f"after the long-term cut-off, and the validation item")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=[p.stem for p in (BENCH / "configs").glob("*.yaml")])
    parser.add_argument("--samples", required=True, metavar="DIR",
                        help="the `profile_tune.out_dir` whose samples.jsonl is read")
    parser.add_argument("--targets", type=int, nargs="+", default=[5], metavar="N",
                        help="numbers of next training items the rewards rank (default: 5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    started = time.perf_counter()
    config = load_config(BENCH / "configs" / f"{args.dataset}.yaml", args.overrides)
    experiment = Experiment(config)
    tuner = ProfileTuner(config, experiment.split, experiment.profiles, experiment.encoder, experiment.item_vectors,
                         Path(args.samples))
    metrics = selection_metrics(tuner, experiment, sorted(set(args.targets)))
    for rule, values in metrics.items():
        if isinstance(values, dict):
            print(f"{rule:>12}: " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    write_records(BENCH / "results" / "profiles.json", [make_record(
        args.dataset, "profile-reward-selection", metrics, command, config.seed, time.perf_counter() - started)])


if __name__ == "__main__":
    main()
