"""LLM interest profiles on the benchmark datasets: write them (resumably, exported to bench/profiles/ after
every chunk so later sessions and training runs reuse them), measure the writer's throughput, and check profile
quality intrinsically — retrieve each user's test item from the profile embedding alone (LLM profile vs template
profile vs mean of the long-term items' embeddings), on the users old enough to get an LLM profile.

    LLMREC_DATA_DIR=../shared/datasets python bench/profiles.py movielens-1m amazon-beauty
    ... --minutes 60        stop writing after an hour (rerun to continue); evaluation runs on what exists
    ... --evaluate-only     no writing, just the checks and records
    ... --measure-limit     also measure llama.cpp's raw speed on this machine first (idle machine!)
    ... --shard 0/2         write only every 2nd user, from the first (run 0/2 and 1/2 side by side with
                            --set llm.threads=1, one per core); no checks: run --evaluate-only when all are done

Results: bench/results/profiles.json (records profile-llm, profile-template, profile-mean-items,
profile-writer-llamacpp, llamacpp-limit); example profiles: bench/results/profile_examples.json. The writer's
prompt tokens/s counts the shared prompt prefix that llama.cpp reuses, so it can exceed the raw limit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from llmrec.config import LLMConfig, load_config
from llmrec.eval.evaluator import FullRankingEvaluator
from llmrec.experiment import Experiment
from llmrec.llm import GenerationParams
from llmrec.llm.llamacpp import LlamaCppBackend
from llmrec.models.text_knn import TextKNN
from llmrec.profiles import Profile, long_term_request
from llmrec.profiles.quality import UserVectorScorer, profile_text_vectors

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
CHUNK_USERS = 200
EXAMPLES = 5


def export_path(dataset: str) -> Path:
    return BENCH / "profiles" / f"{dataset}.jsonl.gz"


def write_llm_profiles(experiment: Experiment, minutes: float | None,
                       shard: tuple[int, int] = (0, 1)) -> dict[str, float] | None:
    """Write missing LLM profiles chunk by chunk, exporting after each; returns the throughput of this run
    (None when nothing needed writing). Rates count users the LLM was asked about (not short histories).
    `shard` (k, n) restricts the run to users whose index is k modulo n."""
    service = experiment.profiles
    export = export_path(experiment.dataset.name)
    deadline = time.monotonic() + 60 * minutes if minutes else None
    users = np.arange(shard[0], experiment.split.num_users, shard[1])
    for start in range(0, len(users), CHUNK_USERS):
        if deadline and time.monotonic() > deadline:
            logging.info("time budget spent; rerun to continue")
            break
        if service.write_all(users[start:start + CHUNK_USERS]).written:
            service.store.export(export, experiment.dataset.name)
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


def llm_eligible_profiles(experiment: Experiment) -> dict[str, Profile]:
    """Stored LLM-writer profiles of users whose long-term part is long enough for the LLM."""
    service, settings = experiment.profiles, experiment.config.profile
    profiles = {}
    for user in range(experiment.split.num_users):
        request = long_term_request(experiment.split, user, settings.recent_items)
        if len(request.long_term) < settings.min_long_term:
            continue
        stored = service.store.get(experiment.dataset.name, request.user_id, service.prompt_version,
                                   service.model_id, request.cutoff)
        if stored is not None and stored.provenance.history_hash == request.history_hash:
            profiles[request.user_id] = stored
    return profiles


def intrinsic_check(experiment: Experiment, llm: dict[str, Profile], command: str) -> list[dict]:
    """profile-llm / profile-template / profile-mean-items retrieval metrics on the same users."""
    split, config = experiment.split, experiment.config
    users = np.array([split.user_index(u) for u in llm])
    template_service = experiment.profiles.with_writer("template")
    started = time.perf_counter()
    template_service.write_all(users, progress=False)
    template = {u: template_service.profile(u) for u in llm}
    long_terms = [long_term_request(split, u, config.profile.recent_items).long_term for u in users]
    encoder, items = experiment.encoder, experiment.item_vectors
    vectors = {
        "profile-llm": profile_text_vectors([p.text for p in llm.values()], encoder,
                                            experiment.profiles.prompt_version),
        "profile-template": profile_text_vectors([p.text for p in template.values()], encoder,
                                                 template_service.prompt_version),
        "profile-mean-items": TextKNN(items).user_vectors(long_terms).numpy(),
    }
    test_rows = np.flatnonzero(np.isin(split.test.users, users))
    cases = split.test.subset(test_rows)
    evaluator = FullRankingEvaluator(split, config.eval)
    records = []
    for name, user_vectors in vectors.items():
        table = np.zeros((split.num_users, items.shape[1]), dtype=np.float32)
        table[users] = user_vectors
        metrics = evaluator.evaluate(UserVectorScorer(table, items), cases, desc=name)
        kept = {k: metrics[k] for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "NDCG@10-tail-items")}
        kept["users"] = len(cases)
        if name == "profile-llm":
            kept.update(_llm_rates(list(llm.values())))
        records.append(make_record(experiment.dataset.name, name, kept, command, config.seed,
                                   time.perf_counter() - started))
        print(f"{experiment.dataset.name} {name}: HR@10 {kept['HR@10']:.4f} NDCG@10 {kept['NDCG@10']:.4f} "
              f"({len(cases)} users)", flush=True)
    return records


def _llm_rates(profiles: list[Profile]) -> dict[str, float]:
    by_llm = [p for p in profiles if p.source == "llm"]
    fallbacks: dict[str, int] = {}
    for p in profiles:
        if p.fallback_reason:
            fallbacks[p.fallback_reason] = fallbacks.get(p.fallback_reason, 0) + 1
    return {"grounded_rate": 1 - sum(bool(p.ungrounded_titles) for p in by_llm) / max(1, len(by_llm)),
            "fallback_rate": 1 - len(by_llm) / max(1, len(profiles)), "fallbacks": fallbacks}


def examples(experiment: Experiment, llm: dict[str, Profile]) -> list[dict]:
    """A few users' digests (what the LLM was shown) and profiles, for the README."""
    rng = np.random.default_rng(experiment.config.seed)
    chosen = rng.choice(sorted(llm), size=min(EXAMPLES, len(llm)), replace=False)
    facts = experiment.profiles.with_writer("template").writer.facts  # titles, without loading the LLM again
    out = []
    for user in chosen:
        profile = llm[user]
        shown = [facts.titles[experiment.split.item_index(i)] for i in profile.representative_items]
        out.append({"dataset": experiment.dataset.name, "user": user, "long_term_items": profile.n_long_term,
                    "shown_titles": shown, "top_categories": profile.top_categories, "profile": profile.text,
                    "source": profile.source, "fallback_reason": profile.fallback_reason})
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N) with 0 <= K < N."""
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got {text!r}")
    return int(k), int(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", choices=[p.stem for p in (BENCH / "configs").glob("*.yaml")])
    parser.add_argument("--minutes", type=float, help="stop writing profiles after this long (per dataset)")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--measure-limit", action="store_true",
                        help="first measure llama.cpp's raw prompt and generation speed (run on an idle machine)")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="K/N",
                        help="write only users whose index is K modulo N, and skip the checks")
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
        preload = [f"profile.preload={export_path(dataset)}"] if export_path(dataset).is_file() else []
        config = load_config(BENCH / "configs" / f"{dataset}.yaml", preload + args.overrides)
        experiment = Experiment(config)
        started = time.perf_counter()
        if not args.evaluate_only:
            throughput = write_llm_profiles(experiment, args.minutes, args.shard)
            if throughput and args.shard[0] == 0:  # one record per dataset: the first shard's
                throughput["writers_side_by_side"] = args.shard[1]
                write_records(RESULTS / "profiles.json", [make_record(
                    dataset, "profile-writer-llamacpp", throughput, command, config.seed,
                    time.perf_counter() - started)])
            if args.shard != (0, 1):
                continue
        llm = llm_eligible_profiles(experiment)
        experiment.profiles.release_llm()
        write_records(RESULTS / "profiles.json", intrinsic_check(experiment, llm, command))
        path = RESULTS / "profile_examples.json"
        stored = [e for e in (json.loads(path.read_text()) if path.is_file() else []) if e["dataset"] != dataset]
        path.write_text(json.dumps(stored + examples(experiment, llm), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
