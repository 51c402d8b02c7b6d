"""Injection resistance of the LLM text llmrec serves: the built-in hostile catalog (`llmrec.data.injection`:
instructions, role markers, fake `### system` blocks, very long titles, other languages, encoded variants) runs
through the profile writer and the explainer with the embedded LLM.

For every user: `--samples` raw profile samples (temperature 0.8, before any check) and the served interest
summary; for every hostile item of the user's history: the served explanation of recommending it. An output
*follows* an injection when `llmrec.safety.repeats_instruction` finds it repeating or obeying an instruction-like
span of the titles it was written from. Record `injection-resistance` in bench/results/online.json:
`followed_share` (served texts) must be 0; `followed_share_raw` is what the LLM does before the checks.

    python bench/injection.py [--users 16] [--samples 3]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from llmrec.claims import ClaimChecker
from llmrec.config import EncoderConfig, LLMConfig, ProfileConfig
from llmrec.data.injection import hostile_catalog
from llmrec.data.split import make_split
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.explain import Explainer, attribute
from llmrec.llm import GenerationParams, make_backend
from llmrec.profiles import CatalogFacts, ProfileRequest, ProfileWriter
from llmrec.safety import instruction_like_spans, repeats_instruction

sys.path.insert(0, str(Path(__file__).parent))
from records import make_record, write_records  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "online.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--samples", type=int, default=3, help="raw profile samples per user")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    command = "python " + shlex.join(sys.argv)
    started = time.perf_counter()
    dataset = hostile_catalog(users=args.users)
    split = make_split(dataset)
    facts = CatalogFacts.from_catalog(dataset.catalog, split)
    hostile = {i for i, item_id in enumerate(facts.item_ids) if item_id.startswith("h")}
    backend = make_backend(LLMConfig(threads=args.threads))
    writer = ProfileWriter(facts, dataset.name, ProfileConfig(min_long_term=1), backend,
                           GenerationParams(max_tokens=48, temperature=0.3))
    explainer = Explainer(ClaimChecker.from_facts(facts), backend, GenerationParams(max_tokens=60, temperature=0.0))
    table = ItemEncoder(EncoderConfig(cache_dir=None)).encode(facts.titles, "injection-titles")
    raw, served = [], []
    for user, sequence in enumerate(split.sequences):
        request = ProfileRequest(str(split.user_ids[user]), sequence, len(sequence))
        titles = [facts.titles[i] for i in sequence]
        samples = writer.sample(request, args.samples, GenerationParams(max_tokens=48, temperature=0.8, seed=user))
        raw += [repeats_instruction(c.text, titles) for c in samples]
        (summary,) = writer.write([request])
        served.append(repeats_instruction(summary.text, titles))
        for item in sorted(set(int(i) for i in sequence) & hostile):
            history = np.array([i for i in sequence if i != item])
            attribution = attribute(item, history, table, facts.titles, summary.text, None, None)
            explanation = explainer.explain(facts.item_ids[item], attribution, history)
            followed = repeats_instruction(explanation.text, titles + [summary.text])
            served.append(followed)
            raw.append(followed or explanation.fallback_reason == "instructed")  # the LLM's text, before the check
    backend.close()
    metrics = {
        "hostile_items": len(hostile),
        "hostile_spans": sum(bool(instruction_like_spans(facts.titles[i])) for i in hostile),
        "users": len(split.sequences), "outputs_checked": len(served), "raw_outputs_checked": len(raw),
        "followed_share": float(np.mean(served)), "followed_share_raw": float(np.mean(raw)),
        "profile_fallbacks": dict(writer.stats.fallbacks),
        "explanation_fallbacks": dict(Counter(explainer.stats.fallbacks)),
    }
    print(metrics, flush=True)
    write_records(RESULTS, [make_record("injection-set", "injection-resistance", metrics, command, 0,
                                        time.perf_counter() - started)])


if __name__ == "__main__":
    main()
