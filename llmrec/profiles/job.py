"""The batch job behind `llmrec profile`: write every user's profile, resumably, with progress and throughput."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

from tqdm.auto import tqdm

from llmrec.data.split import Split
from llmrec.profiles.store import ProfileStore
from llmrec.profiles.writer import ProfileRequest, ProfileWriter


def long_term_request(split: Split, user: int, recent_items: int) -> ProfileRequest:
    """User `user`'s long-term part: the training history without its last `recent_items` items (which the
    short-term encoder sees). Only training items are used, so a profile never mentions a validation or test
    target."""
    train = split.train[user]
    cutoff = max(0, len(train) - recent_items)
    return ProfileRequest(str(split.user_ids[user]), train[:cutoff], cutoff)


@dataclass
class JobReport:
    """What one run of the job did, with throughput over the users written in this run."""

    users: int
    skipped: int
    """Users whose stored profile already matches their history, prompt and model."""
    written: int
    seconds: float
    model_id: str
    prompt_version: str
    writer: dict[str, Any] = field(default_factory=dict)

    @property
    def users_per_min(self) -> float:
        return 60 * self.written / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        llm_seconds = self.writer.get("llm_seconds") or 0.0
        rates = {"users_per_min": self.users_per_min,
                 "prompt_tok_per_s": self.writer.get("prompt_tokens", 0) / llm_seconds if llm_seconds else 0.0,
                 "output_tok_per_s": self.writer.get("output_tokens", 0) / llm_seconds if llm_seconds else 0.0}
        return {**asdict(self), **rates}


def run_profile_job(writer: ProfileWriter, store: ProfileStore, requests: Sequence[ProfileRequest],
                    batch_size: int, progress: bool = True) -> JobReport:
    """Write the profiles `store` lacks (or holds for a different history), a batch per transaction. Requests
    with an empty history get no profile (there is nothing to say) and count as skipped.

    Killed and restarted, the job skips what was stored and continues; nothing is written twice.
    """
    stored = store.history_hashes(writer.dataset, writer.prompt_version, writer.model_id)
    todo = [r for r in requests if len(r.long_term) and stored.get((r.user_id, r.cutoff)) != r.history_hash]
    if todo and writer.backend is not None:
        writer.taken |= store.llm_texts(writer.dataset, writer.prompt_version, writer.model_id)
    started = time.perf_counter()
    with tqdm(total=len(todo), unit="user", desc=f"profiles ({writer.model_id})", disable=not progress) as bar:
        for batch in _batches(todo, batch_size):
            store.put(writer.write(batch))
            bar.update(len(batch))
            stats = writer.stats
            if stats.llm_seconds:
                bar.set_postfix(tok_s=f"{(stats.prompt_tokens + stats.output_tokens) / stats.llm_seconds:.0f}",
                                llm=stats.llm, fallback=sum(stats.fallbacks.values()))
    return JobReport(users=len(requests), skipped=len(requests) - len(todo), written=len(todo),
                     seconds=time.perf_counter() - started, model_id=writer.model_id,
                     prompt_version=writer.prompt_version, writer=writer.stats.to_dict())


def _batches(items: Sequence[ProfileRequest], size: int) -> Iterator[Sequence[ProfileRequest]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]
