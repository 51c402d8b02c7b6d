"""`llmrec profile tune`: a profile writer tuned for ranking signal (expert iteration on a retrieval reward).

1. Users: `profile_tune.check_users` of the users old enough for an LLM profile are set aside for the intrinsic
   check (`bench/profiles.py`); `profile_tune.users` others, drawn with the run's seed, are the tuning users.
2. Sample: the base LLM answers the configured profile prompt `profile_tune.samples` times per tuning user
   (under the profile grammar with `profile.grammar`, and the tuned writer then decodes with it too); each answer
   is cleaned and checked like any profile (`samples.jsonl`, one line a user: resumable).
3. Score: `RetrievalReward` — how well the answer's embedding ranks the user's next training items (the first
   `profile_tune.target_items` after the long-term cut-off; never a validation or test item) in the catalog,
   measured by `profile_tune.reward`. Samples scored by another reward are scored again when training reads
   them, so one set of samples serves every reward.
4. Train a LoRA adapter (`llmrec.llm.lora`) to answer the tuned prompt (no few-shot prefix): with
   `profile_tune.method=sft` on each user's best accepted answer (expert iteration), with `dpo` on each user's
   best vs worst accepted answer; optionally from an earlier adapter (`profile_tune.init_adapter`, also DPO's
   reference). Exported to GGUF so llama.cpp loads it (`profile.adapter`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from tqdm.auto import tqdm

from llmrec.config import RunConfig
from llmrec.data.split import Split
from llmrec.encoders.item_encoder import ItemEncoder
from llmrec.llm import GenerationParams
from llmrec.llm.adapter import AdapterManifest, LoRAAdapter, file_sha256
from llmrec.llm.base import Message
from llmrec.profiles.job import long_term_request
from llmrec.profiles.prompt import ChatTemplate, digest_values
from llmrec.profiles.reward import RetrievalReward
from llmrec.profiles.service import ProfileService
from llmrec.profiles.writer import ProfileRequest
from llmrec.shard import Shard

if TYPE_CHECKING:  # torch and peft load only when training
    from llmrec.llm.lora import Example, Pair

log = logging.getLogger(__name__)
SAMPLES_FILE = "samples.jsonl"
_SENTENCE_ENDS = (".", "!", "?")


@dataclass(frozen=True)
class UserGroups:
    """User indices set aside for the intrinsic check and those the writer is tuned on (disjoint); `held_out`:
    every eligible user who is not a tuning user (the check users included)."""

    check: np.ndarray
    tuning: np.ndarray
    held_out: np.ndarray


def user_groups(config: RunConfig, split: Split) -> UserGroups:
    """Check and tuning users among those with an LLM-length long-term part and at least one later training
    item (the reward's target), drawn with `config.seed`."""
    settings, tune = config.profile, config.profile_tune
    long_terms = [len(long_term_request(split, u, settings.recent_items).long_term) for u in range(split.num_users)]
    eligible = [u for u, n in enumerate(long_terms) if settings.min_long_term <= n < len(split.train[u])]
    order = np.random.default_rng(config.seed).permutation(np.array(eligible, dtype=np.int64))
    check = np.sort(order[:tune.check_users])
    tuning = np.sort(order[tune.check_users:tune.check_users + tune.users])
    return UserGroups(check, tuning, np.setdiff1d(order, tuning))


@dataclass(frozen=True)
class ScoredUser:
    """One sampled user's accepted samples (`{"text", "reason", "reward"}`, best first) under the configured
    reward, the tuned prompt for the user's history, and the template profile with its reward."""

    request: ProfileRequest
    prompt: list[Message]
    answers: list[dict[str, Any]]
    template: str
    template_reward: float


def reward_targets(split: Split, user: int, request: ProfileRequest, count: int) -> np.ndarray:
    """The user's first `count` training items after the long-term cut-off (never validation or test)."""
    return np.asarray(split.train[user][request.cutoff:request.cutoff + count], dtype=np.int64)


class ProfileTuner:
    """Runs the stages of the module docstring over one run's data; every stage resumes where it stopped."""

    def __init__(self, config: RunConfig, split: Split, profiles: ProfileService, encoder: ItemEncoder,
                 item_vectors: np.ndarray, out_dir: Path) -> None:
        self.config = config
        self.split = split
        self.profiles = profiles
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.reward = RetrievalReward(encoder, item_vectors, config.profile_tune.reward)
        self.groups = user_groups(config, split)

    @property
    def reward_name(self) -> str:
        """The reward's name in samples files, checkpoint folders and adapter manifests: measure and number of
        targets, e.g. `retrieval-auc@5`."""
        tune = self.config.profile_tune
        return f"retrieval-{tune.reward}@{tune.target_items}"

    @property
    def samples_path(self) -> Path:
        return self.out_dir / SAMPLES_FILE

    def sample(self, progress: bool = True, shard: Shard = Shard()) -> dict[str, float]:
        """Stage 2 and 3 for the shard's tuning users not yet in `samples.jsonl`; returns the sampler's
        throughput. Each user is one line written by one system call, so shards may append side by side."""
        tune = self.config.profile_tune
        done = {line["user_id"] for line in self.read_samples()}
        todo = [u for u in shard.of(self.groups.tuning) if str(self.split.user_ids[u]) not in done]
        params = GenerationParams(max_tokens=self.config.profile.max_tokens, temperature=tune.temperature,
                                  top_p=tune.top_p, seed=self.config.seed)
        writer, template = self.profiles.writer, self.profiles.with_writer("template").writer
        started = time.perf_counter()
        self._end_last_line()
        with open(self.samples_path, "ab", buffering=0) as out, \
                tqdm(total=len(todo), unit="user", desc="sampling profiles", disable=not progress) as bar:
            for user in todo:
                request = long_term_request(self.split, int(user), self.config.profile.recent_items)
                candidates = writer.sample(request, tune.samples, params)
                (template_profile,) = template.write([request])
                texts = [c.text for c in candidates] + [template_profile.text]
                rewards = self._score(texts, request)
                out.write(json.dumps({
                    "user_id": request.user_id, "cutoff": request.cutoff, "history_hash": request.history_hash,
                    "scored_by": self.reward_name,
                    "samples": [{"text": c.text, "reason": c.reason, "reward": float(r)}
                                for c, r in zip(candidates, rewards)],
                    "template": template_profile.text, "template_reward": float(rewards[-1]),
                }, ensure_ascii=False).encode("utf-8") + b"\n")
                bar.update(1)
        stats = writer.stats
        seconds = time.perf_counter() - started
        return {"users": len(todo), "seconds": seconds,
                "users_per_min": 60 * len(todo) / seconds if todo else 0.0,
                "prompt_tok_per_s": stats.prompt_tokens / stats.llm_seconds if stats.llm_seconds else 0.0,
                "output_tok_per_s": stats.output_tokens / stats.llm_seconds if stats.llm_seconds else 0.0}

    def _score(self, texts: list[str], request: ProfileRequest) -> np.ndarray:
        """The configured reward of each text for the request's user."""
        targets = reward_targets(self.split, self.split.user_index(request.user_id), request,
                                 self.config.profile_tune.target_items)
        return self.reward(texts, [targets] * len(texts), [request.long_term] * len(texts))

    def _end_last_line(self) -> None:
        """Close a line a kill cut short, so the next sample starts on a line of its own."""
        if self.samples_path.is_file() and self.samples_path.stat().st_size:
            with open(self.samples_path, "rb+") as stream:
                stream.seek(-1, 2)
                if stream.read(1) != b"\n":
                    stream.write(b"\n")

    def read_samples(self) -> Iterator[dict[str, Any]]:
        """The lines of `samples.jsonl` (a line cut short by a kill is skipped)."""
        if not self.samples_path.is_file():
            return
        with open(self.samples_path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    log.warning("skipping a truncated line of %s", self.samples_path)

    def scored_users(self) -> Iterator[ScoredUser]:
        """Every sampled user whose history is unchanged and who has an accepted sample, under the configured
        reward (a line scored by another is scored again). Samples are checked again with the writer's checks of
        today (`ProfileWriter.rejection`); a sample cut off by the token limit (not ending a sentence) is never
        accepted: the tuned writer should learn to finish."""
        student = ChatTemplate.load("profile", self.config.profile_tune.prompt)
        writer = self.profiles.writer
        for line in self.read_samples():
            user = self.split.user_index(line["user_id"])
            request = long_term_request(self.split, user, self.config.profile.recent_items)
            digest = writer.digest(request.long_term)
            accepted = [s for s in line["samples"] if s["text"].endswith(_SENTENCE_ENDS)
                        and writer.rejection(s["text"], digest) is None]  # today's checks, not the sampler's
            if request.history_hash != line["history_hash"] or not accepted:
                continue
            template_reward = line["template_reward"]
            if line.get("scored_by") != self.reward_name:
                *rewards, template_reward = self._score([s["text"] for s in accepted] + [line["template"]], request)
                accepted = [{**s, "reward": float(r)} for s, r in zip(accepted, rewards)]
            yield ScoredUser(request, student.render(digest_values(digest, writer.facts)),
                             sorted(accepted, key=lambda s: -s["reward"]), line["template"], float(template_reward))

    def training_examples(self) -> tuple[list[Example], dict[str, float]]:
        """(tuned prompt, best accepted sample) per user of `scored_users`, and the mean rewards of all
        accepted samples, the chosen ones and the template profile."""
        examples, chosen, accepted, template = [], [], [], []
        for user in self.scored_users():
            examples.append((user.prompt, user.answers[0]["text"]))
            chosen.append(user.answers[0]["reward"])
            accepted.extend(s["reward"] for s in user.answers)
            template.append(user.template_reward)
        return examples, _means(accepted=accepted, chosen=chosen, template=template)

    def preference_pairs(self) -> tuple[list[Pair], dict[str, float]]:
        """(tuned prompt, best, worst accepted sample) per user of `scored_users` whose best and worst differ
        by at least `profile_tune.dpo_min_gap` reward, and the mean rewards of all accepted samples, the
        preferred and the rejected ones and the template profile."""
        pairs, chosen, rejected, accepted, template = [], [], [], [], []
        for user in self.scored_users():
            best, worst = user.answers[0], user.answers[-1]
            if len(user.answers) < 2 or best["reward"] - worst["reward"] < self.config.profile_tune.dpo_min_gap:
                continue
            pairs.append((user.prompt, best["text"], worst["text"]))
            chosen.append(best["reward"])
            rejected.append(worst["reward"])
            accepted.extend(s["reward"] for s in user.answers)
            template.append(user.template_reward)
        return pairs, _means(accepted=accepted, chosen=chosen, rejected=rejected, template=template)

    def train(self, progress: bool = True) -> Path:
        """Stage 4: train (or resume) the LoRA adapter (`profile_tune.method`) and export it; returns its folder."""
        from llmrec.llm.embedded import resolve_gguf
        from llmrec.llm.ids import model_id_for
        from llmrec.llm.lora import export_gguf, load_gguf_model, train_dpo, train_lora

        tune = self.config.profile_tune
        sft = tune.method == "sft"
        examples, rewards = self.training_examples() if sft else self.preference_pairs()
        if not examples:
            raise ValueError(f"no usable samples in {self.samples_path} (for dpo: none whose best and worst "
                             f"differ by profile_tune.dpo_min_gap); run the sampling stage first")
        init = LoRAAdapter.load(tune.init_adapter) if tune.init_adapter else None
        init_weights = init.peft_weights.parent if init else None  # ConfigError before the model loads
        self.profiles.release_llm()  # llama.cpp's idle threads would slow training several-fold
        gguf = resolve_gguf(self.config.llm.model)
        tokenizer, model = load_gguf_model(gguf, tune.device)
        adapter_dir = self.out_dir / "adapter"
        trainer = train_lora if sft else train_dpo
        checkpoints = self.out_dir / f"checkpoint-{tune.method}-{self.reward_name}"  # other rewards, other examples
        adapted, steps = trainer(model, tokenizer, examples, tune, checkpoints,
                                 self.config.seed, progress, init_weights)
        lora = adapted.peft_config["default"]  # the init adapter's shape when training started from one
        manifest = AdapterManifest(
            base_model=model_id_for(self.config.llm), base_sha256=file_sha256(gguf),
            dataset=self.profiles.dataset_name,
            prompt=ChatTemplate.load("profile", tune.prompt).key, reward=self.reward_name,
            teacher_prompt=self.profiles.prompt_version, teacher_model=self.profiles.model_id,
            tuning_users=len({line["user_id"] for line in self.read_samples()}),  # sampled, maybe not all drawn
            check_users=len(self.groups.check),
            samples_per_user=tune.samples, examples=len(examples), steps=steps,
            lora={"r": lora.r, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout,
                  "target_modules": sorted(lora.target_modules), "lr": tune.lr, "epochs": tune.epochs,
                  **({} if sft else {"dpo_beta": tune.dpo_beta, "dpo_min_gap": tune.dpo_min_gap})},
            method=tune.method, init_adapter=init.model_id(model_id_for(self.config.llm)) if init else "",
            rewards=rewards, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            grammar=self.profiles.settings.grammar)
        export_gguf(adapted, adapter_dir, manifest)
        return adapter_dir


def _means(**rewards: list[float]) -> dict[str, float]:
    """`<name>_mean` of each reward list (0 for an empty one)."""
    return {f"{name}_mean": float(np.mean(values)) if values else 0.0 for name, values in rewards.items()}
