"""Interest profiles on the benchmark datasets: what each writer says and how much ranking signal it carries.

Writers: `template` (no LLM), `llm` (the embedded SmolLM2 with the few-shot prompt) and, with --adapter,
`llm-tuned` (the same model with a LoRA adapter from `llmrec profile tune`, no few-shot prefix). On the check
users (`profile_tune.check_users` of the users old enough for an LLM profile, drawn with the seed; never tuning
users):

- `profile-quality-<writer>`: placeholder and few-shot copy shares, distinct ratio, grounded rate, category
  precision/recall, words per profile, fallbacks (`llmrec.profiles.quality.profile_quality`);
- `profile-template`, `profile-llm`, `profile-llm-tuned`, `profile-mean-items`: the intrinsic check, each user's
  test item retrieved from the profile embedding alone (full ranking; same users and input history for all),
  with a 95 % bootstrap interval of HR@10 over the users and the AUC of the test item (the tuning reward,
  `llmrec.profiles.reward.retrieval_reward`: far less noisy than HR@10 on a few hundred users), and under
  `minus` each writer's HR@10 and AUC minus every other's on the same users, with paired bootstrap intervals;
- `profile-writer-llm`, `profile-writer-llm-tuned` (with --adapter): throughput of both writers in one run;
- bench/results/profile_examples.json: the same seeded users' profiles from every writer.

    LLMREC_DATA_DIR=../shared/datasets python bench/profiles.py movielens-1m amazon-beauty \
        --adapter 'bench/adapters/{dataset}' --set profile_tune.check_users=500
    ... --write-store [--minutes 60] [--shard 0/2]   write every user's profile with the default writer into
                                                     bench/profiles/<dataset>.jsonl.gz (resumable; stored texts
                                                     that fail today's checks are written again)
    ... --write-store --set profile.adapter=bench/adapters/<dataset>   the same with the tuned writer, into
                                                     bench/profiles/<dataset>.tuned.jsonl.gz (the store of the
                                                     `llmrec-tuned-profile` variant of bench/interest.py)
    ... --adapter runs/.../adapter --writers llm-tuned --tag dpo
                                                     a trial writer: records `profile-llm-tuned-dpo` and
                                                     `profile-quality-llm-tuned-dpo` (naming the adapter), no
                                                     examples or throughput; checked beside the template and
                                                     base LLM (`REFERENCE_WRITERS`, unrecorded)
    ... --adapter 'bench/adapters/{dataset}' --writers template llm llm-tuned --held-out
                                                     the intrinsic check on every user but the tuning users
                                                     (`<record>-held-out`; from the committed stores)
    ... --store-quality                              profile-store-quality: the committed store, measured
                                                     (-tuned: the tuned writer's, with --set profile.adapter=...)
    ... --measure-limit                              first measure llama.cpp's raw speed (idle machine!)

Stored profiles (the committed stores are preloaded) are reused when their history, prompt and model match and
they pass today's output checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from llmrec.config import LLMConfig, load_config
from llmrec.errors import ConfigError
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.eval.metrics import bootstrap_interval, hit_rate
from llmrec.experiment import Experiment
from llmrec.llm import GenerationParams
from llmrec.llm.adapter import LoRAAdapter
from llmrec.llm.llamacpp import LlamaCppBackend
from llmrec.models.text_knn import TextKNN
from llmrec.profiles import CatalogFacts, Profile, ProfileService, long_term_request
from llmrec.profiles.prompt import ChatTemplate
from llmrec.profiles.quality import UserVectorScorer, profile_quality, profile_text_vectors
from llmrec.profiles.reward import retrieval_reward
from llmrec.profiles.tuning import user_groups
from llmrec.shard import Shard

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
CHUNK_USERS = 200
MIN_THROUGHPUT_USERS = 100
"""A `--write-store` run that asks the LLM about fewer users (a top-up) records no throughput."""
EXAMPLES = 10


def export_path(dataset: str, tuned: bool = False) -> Path:
    """The committed store of the default writer, or of the tuned writer (`profile.adapter`)."""
    return BENCH / "profiles" / f"{dataset}{'.tuned' if tuned else ''}.jsonl.gz"


def write_llm_profiles(experiment: Experiment, minutes: float | None,
                       shard: Shard = Shard()) -> dict[str, float] | None:
    """Write missing LLM profiles chunk by chunk into the run's store, exporting after each (the tuned writer's
    into its own file); returns the throughput of this run (None when nothing needed writing). Rates count users
    the LLM was asked about (not short histories). `shard` restricts the run to its share of the users."""
    service = experiment.profiles
    path = export_path(experiment.dataset.name, tuned=service.adapter is not None)
    deadline = time.monotonic() + 60 * minutes if minutes else None
    users = shard.of(np.arange(experiment.split.num_users))
    for start in range(0, len(users), CHUNK_USERS):
        if deadline and time.monotonic() > deadline:
            logging.info("time budget spent; rerun to continue")
            break
        if service.write_all(users[start:start + CHUNK_USERS], recheck=True).written:
            export_store(service, path)
    export_store(service, path)
    stats = service.writer.stats
    if not stats.llm_seconds:
        return None
    asked = stats.profiles - stats.fallbacks.get("short-history", 0)
    return {"users_per_min": 60 * asked / stats.llm_seconds, "users_written": asked,
            "threads": experiment.config.llm.threads or len(os.sched_getaffinity(0)),
            "prompt_tok_per_s": stats.prompt_tokens / stats.llm_seconds,
            "output_tok_per_s": stats.output_tokens / stats.llm_seconds,
            "tok_per_s": (stats.prompt_tokens + stats.output_tokens) / stats.llm_seconds,
            "output_tokens_per_user": stats.output_tokens / max(1, asked + stats.retries)}


def export_store(service: ProfileService, path: Path) -> None:
    """The service's writer's profiles (only: check users' profiles by other writers share the run's store)."""
    service.store.export(path, service.dataset_name, (service.prompt_version, service.model_id))


def llamacpp_limit(config: LLMConfig) -> dict[str, float]:
    """What llama.cpp does on this machine without prefix reuse: prompt evaluation and generation tokens/s."""
    backend = LlamaCppBackend(config)
    filler = " ".join(f"item {i} is a film about love, war and family;" for i in range(60))
    prompt = [{"role": "user", "content": f"Summarise: {filler}"}]
    started = time.perf_counter()
    (evaluated,) = backend.generate([prompt], GenerationParams(max_tokens=1, temperature=0.0))
    prompt_seconds = time.perf_counter() - started
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
    started = time.perf_counter()
    (written,) = backend.generate([story], GenerationParams(max_tokens=128, temperature=0.0))
    seconds = time.perf_counter() - started
    backend.close()  # an idle llama.cpp context keeps its threads polling, which would slow the writer ~10x
    return {"prompt_tok_per_s": evaluated.prompt_tokens / prompt_seconds,
            "output_tok_per_s": written.output_tokens / seconds, "prompt_tokens": evaluated.prompt_tokens,
            "output_tokens": written.output_tokens}


WRITERS = {"template": "profile-template", "llm": "profile-llm", "llm-grammar": "profile-llm-grammar",
           "llm-tuned": "profile-llm-tuned"}
"""Writer name -> the name of its intrinsic-check record (its quality record is `profile-quality-<writer>`)."""
REFERENCE_WRITERS = ("template", "llm")
"""A trial writer (--tag) is checked beside these (their stored profiles), for its paired differences."""


def writer_services(experiment: Experiment, adapter: Path | None,
                    writers: Sequence[str] = tuple(WRITERS)) -> dict[str, ProfileService]:
    """The writers compared (of `writers`): template, the base LLM without and with the profile grammar, and the
    tuned LLM when an adapter is given."""
    profiles = experiment.profiles
    services = {"template": profiles.with_writer("template"), "llm": profiles.with_writer("llm"),
                "llm-grammar": profiles.with_writer("llm", grammar=True)}
    services = {writer: service for writer, service in services.items() if writer in writers}
    if adapter is not None and "llm-tuned" in writers:
        services["llm-tuned"] = experiment.profiles.with_writer("llm", str(adapter))
        tuned_with = services["llm-tuned"].adapter.manifest.check_users
        if tuned_with != experiment.config.profile_tune.check_users:
            raise SystemExit(f"{adapter} was tuned with {tuned_with} check users set aside: run with --set "
                             f"profile_tune.check_users={tuned_with}, so check and tuning users stay disjoint")
    return services


def check_profiles(service: ProfileService, users: np.ndarray) -> list[Profile]:
    """Every check user's profile by this writer: stored ones are re-checked with today's output checks (a
    stored LLM text that would now be rejected is written again), missing ones are written."""
    requests = [service.request(str(service.split.user_ids[u])) for u in users]
    service.write_all(users, recheck=True)
    found = service.stored(requests)
    service.release_llm()
    return [p for p in found if p is not None]


def evaluate_writers(experiment: Experiment, adapter: Path | None, writers: Sequence[str], command: str,
                     held_out: bool = False) -> tuple[list[dict], list[dict]]:
    """Quality and intrinsic-check records of every writer, and their example profiles, on the check users (with
    `held_out`: on every user who is not a tuning user, records named `<record>-held-out`, no examples)."""
    split, config = experiment.split, experiment.config
    groups = user_groups(config, split)
    users = groups.held_out if held_out else groups.check
    suffix = "-held-out" if held_out else ""
    user_set = (f"held-out users: all {len(users)} users old enough for an LLM profile except the "
                f"{len(groups.tuning)} tuning users" if held_out else
                f"check users: {len(users)} drawn with seed {config.seed} (llmrec.profiles.tuning.user_groups), "
                "disjoint from the tuning users")
    requests = [long_term_request(split, int(u), config.profile.recent_items) for u in users]
    services = writer_services(experiment, adapter, writers)
    teacher_examples = ChatTemplate.load("profile", config.profile.prompt, config.profile.prompt_version).examples
    facts = experiment.profiles.with_writer("template").writer.facts
    records, examples = [], []
    evaluator = FullRankingEvaluator(split, config.eval)
    cases = split.test.subset(np.flatnonzero(np.isin(split.test.users, users)))
    long_terms = [r.long_term for r in requests]
    vectors = {"profile-mean-items": TextKNN(experiment.item_vectors).user_vectors(long_terms).numpy()}
    for writer, service in services.items():
        started = time.perf_counter()
        profiles = check_profiles(service, users)
        quality = profile_quality(profiles, long_terms, facts, teacher_examples)
        quality.update(fallbacks=dict(Counter(p.fallback_reason for p in profiles if p.fallback_reason)),
                       model_id=service.model_id, prompt=service.prompt_version)
        records.append(make_record(experiment.dataset.name, f"profile-quality-{writer}{suffix}", quality, command,
                                   config.seed, time.perf_counter() - started))
        vectors[WRITERS[writer]] = profile_text_vectors([p.text for p in profiles], experiment.encoder,
                                                        service.prompt_version)
        if not held_out:
            examples += example_profiles(experiment, writer, profiles, facts)
    per_user: dict[str, dict[str, np.ndarray]] = {}
    for name, user_vectors in vectors.items():
        started = time.perf_counter()
        table = np.zeros((split.num_users, experiment.item_vectors.shape[1]), dtype=np.float32)
        table[users] = user_vectors
        ranked = evaluator.rank(UserVectorScorer(table, experiment.item_vectors), cases, desc=name)
        metrics = evaluator.summarise(ranked, cases)
        per_user[name] = {"HR@10": hit_rate(ranked.ranks, 10).astype(np.float64),
                          "AUC": np.array([retrieval_reward(experiment.item_vectors, table[u], t, h)
                                           for u, t, h in zip(cases.users, cases.targets, cases.histories)])}
        kept = {k: metrics[k] for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "NDCG@10-tail-items")}
        kept["HR@10-ci95"] = bootstrap_interval(per_user[name]["HR@10"], config.seed)
        kept["AUC"] = float(per_user[name]["AUC"].mean())
        kept.update(users=len(cases), user_set=user_set)
        records.append(make_record(experiment.dataset.name, name + suffix, kept, command, config.seed,
                                   time.perf_counter() - started))
        print(f"{experiment.dataset.name} {name}{suffix}: HR@10 {kept['HR@10']:.4f} {kept['HR@10-ci95']} "
              f"AUC {kept['AUC']:.4f} NDCG@10 {kept['NDCG@10']:.4f} ({len(cases)} users)", flush=True)
    for record in records:
        name = record["model"].removesuffix(suffix)
        if name in per_user and name != "profile-mean-items":
            record["metrics"]["minus"] = paired_differences(per_user, name, config.seed)
    return records, examples


def paired_differences(per_user: dict[str, dict[str, np.ndarray]], name: str, seed: int) -> dict[str, dict]:
    """Per other writer checked on the same users: `name`'s HR@10 and AUC minus that writer's, each with a 95 %
    paired bootstrap interval (users resampled together, so what every writer shares about them cancels)."""
    differences = {}
    for other in per_user:
        if other == name:
            continue
        differences[other] = {}
        for metric, values in per_user[name].items():
            gaps = values - per_user[other][metric]
            differences[other].update({metric: float(gaps.mean()), f"{metric}-ci95": bootstrap_interval(gaps, seed)})
    return differences


def store_quality(experiment: Experiment, command: str) -> dict:
    """`profile-store-quality` (`profile-store-quality-tuned` with `profile.adapter`): `profile_quality` over
    every profile of the committed store of this dataset's default (tuned) writer."""
    started = time.perf_counter()
    service = experiment.profiles
    facts = service.with_writer("template").writer.facts
    key = (service.prompt_version, service.model_id)
    profiles = [p for p in service.store.profiles(experiment.dataset.name)
                if (p.provenance.prompt_version, p.provenance.model_id) == key]
    histories = [long_term_request(experiment.split, experiment.split.user_index(p.user_id),
                                   experiment.config.profile.recent_items).long_term for p in profiles]
    examples = ChatTemplate.load("profile", service.settings.prompt, service.settings.prompt_version).examples
    quality = profile_quality(profiles, histories, facts, examples)
    tuned = service.adapter is not None
    quality.update(users=experiment.split.num_users, model_id=service.model_id, prompt=service.prompt_version,
                   store=str(export_path(experiment.dataset.name, tuned).relative_to(BENCH.parent)))
    return make_record(experiment.dataset.name, "profile-store-quality" + ("-tuned" if tuned else ""), quality,
                       command, experiment.config.seed, time.perf_counter() - started)


def writer_throughput(experiment: Experiment, adapter: Path, users: int, command: str) -> list[dict]:
    """Base and tuned writer on the same users, one after the other in this run, nothing stored."""
    split, config = experiment.split, experiment.config
    chosen = user_groups(config, split).check[:users]
    requests = [long_term_request(split, int(u), config.profile.recent_items) for u in chosen]
    records = []
    for writer, service in writer_services(experiment, adapter).items():
        if writer == "template":
            continue
        started = time.perf_counter()
        service.writer.write(requests)
        stats, seconds = service.writer.stats, time.perf_counter() - started
        service.release_llm()
        records.append(make_record(experiment.dataset.name, f"profile-writer-{writer}", {
            "users": len(requests), "users_per_min": 60 * len(requests) / seconds,
            "prompt_tok_per_s": stats.prompt_tokens / stats.llm_seconds,
            "output_tok_per_s": stats.output_tokens / stats.llm_seconds,
            "prompt_tokens_per_user": stats.prompt_tokens / len(requests),
            "output_tokens_per_user": stats.output_tokens / len(requests),
            "threads": config.llm.threads or len(os.sched_getaffinity(0)), "model_id": service.model_id,
        }, command, config.seed, seconds))
    return records


def example_profiles(experiment: Experiment, writer: str, profiles: list[Profile],
                     facts: CatalogFacts) -> list[dict]:
    """`EXAMPLES` profiles of this writer, for users drawn with the run's seed (the same users for every writer)."""
    rng = np.random.default_rng(experiment.config.seed)
    by_user = {p.user_id: p for p in profiles}
    chosen = rng.choice(sorted(by_user), size=min(EXAMPLES, len(by_user)), replace=False)
    out = []
    for user in sorted(chosen):
        profile = by_user[user]
        shown = [facts.titles[experiment.split.item_index(i)] for i in profile.representative_items]
        out.append({"dataset": experiment.dataset.name, "writer": writer, "user": user,
                    "long_term_items": profile.n_long_term, "shown_titles": shown,
                    "top_categories": profile.top_categories, "profile": profile.text, "source": profile.source,
                    "fallback_reason": profile.fallback_reason})
    return out


def trial_record(record: dict, tag: str, adapter: Path | None) -> dict:
    """`record` of a trial writer: its name ends in `-<tag>` and its metrics name the adapter."""
    return {**record, "model": f"{record['model']}-{tag}",
            "metrics": {**record["metrics"], "adapter": str(adapter)}}


def parse_shard(text: str) -> Shard:
    """`K/N` -> Shard(K, N), or argparse's error."""
    try:
        return Shard.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", choices=[p.stem for p in (BENCH / "configs").glob("*.yaml")])
    parser.add_argument("--write-store", action="store_true",
                        help="write the default writer's profiles of every user into bench/profiles/ (resumable)")
    parser.add_argument("--minutes", type=float, help="with --write-store: stop writing after this long")
    parser.add_argument("--shard", type=parse_shard, default=Shard(), metavar="K/N",
                        help="with --write-store: only users whose index is K modulo N")
    parser.add_argument("--adapter", metavar="DIR",
                        help="also check the tuned writer of this adapter folder ({dataset} is filled in)")
    parser.add_argument("--writers", nargs="+", choices=list(WRITERS), default=list(WRITERS),
                        help="the writers to check (default: all; llm-tuned needs --adapter)")
    parser.add_argument("--throughput-users", type=int, default=40,
                        help="users the base and tuned writers each write, unstored, for the throughput records")
    parser.add_argument("--store-quality", action="store_true",
                        help="only measure the committed store (profile-store-quality), no writing")
    parser.add_argument("--measure-limit", action="store_true",
                        help="first measure llama.cpp's raw prompt and generation speed (run on an idle machine)")
    parser.add_argument("--tag", help="a trial writer's records: names end in -TAG (see above)")
    parser.add_argument("--held-out", action="store_true",
                        help="check on every user who is not a tuning user instead (records <name>-held-out; "
                             "reads the committed stores, so write them first)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = "LLMREC_DATA_DIR=../shared/datasets python " + shlex.join(sys.argv)
    if args.measure_limit:
        config = load_config(None, args.overrides)
        started = time.perf_counter()
        limit = llamacpp_limit(config.llm)
        print(f"llama.cpp on this machine: {limit}", flush=True)
        write_records(RESULTS / "profiles.json", [make_record(
            "none", "llamacpp-limit", limit, command, config.seed, time.perf_counter() - started)])
    for dataset in args.datasets:
        adapter = Path(args.adapter.format(dataset=dataset)) if args.adapter else None
        overrides = list(args.overrides)
        if args.held_out and adapter is not None:  # the users the tuned writer learnt from stay out
            overrides.append(f"profile_tune.users={LoRAAdapter.load(adapter).manifest.tuning_users}")
        config = load_config(BENCH / "configs" / f"{dataset}.yaml", overrides)
        store = export_path(dataset, tuned=config.profile.adapter is not None)
        if store.is_file():
            config = load_config(BENCH / "configs" / f"{dataset}.yaml", [f"profile.preload={store}", *overrides])
        experiment = Experiment(config)
        started = time.perf_counter()
        if args.store_quality:
            write_records(RESULTS / "profiles.json", [store_quality(experiment, command)])
            continue
        if args.write_store:
            throughput = write_llm_profiles(experiment, args.minutes, args.shard)
            default_writer = config.profile.adapter is None
            if throughput and throughput["users_written"] < MIN_THROUGHPUT_USERS:
                logging.info("%d profiles written: a top-up, not a throughput measurement (no record)",
                             throughput["users_written"])
            elif throughput and args.shard.index == 0 and default_writer:  # the default writer's, first shard's
                throughput["writers_side_by_side"] = args.shard.count
                write_records(RESULTS / "profiles.json", [make_record(
                    dataset, "profile-writer-llamacpp", throughput, command, config.seed,
                    time.perf_counter() - started)])
            continue
        tuned_store = export_path(dataset, tuned=True)
        if adapter is not None and config.profile.adapter is None and tuned_store.is_file():
            experiment.profiles.store.load_export(tuned_store, replace=False)  # the tuned writer's, if this one's
        writers = list(dict.fromkeys([*args.writers, *REFERENCE_WRITERS])) if args.tag else args.writers
        records, examples = evaluate_writers(experiment, adapter, writers, command, args.held_out)
        if args.held_out:
            write_records(RESULTS / "profiles.json", records)
            continue
        if args.tag:
            tagged = {WRITERS[w] for w in args.writers} | {f"profile-quality-{w}" for w in args.writers}
            write_records(RESULTS / "profiles.json", [trial_record(r, args.tag, adapter) for r in records
                                                      if r["model"] in tagged])
            continue
        if adapter is not None and args.throughput_users:
            records += writer_throughput(experiment, adapter, args.throughput_users, command)
        write_records(RESULTS / "profiles.json", records)
        path = RESULTS / "profile_examples.json"
        stored = [e for e in (json.loads(path.read_text()) if path.is_file() else [])
                  if (e["dataset"], e["writer"]) not in {(x["dataset"], x["writer"]) for x in examples}]
        path.write_text(json.dumps(stored + examples, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
