"""One process's share of a job's users, so that several processes (one per core or machine) split the job:
shard `K/N` takes every N-th user from the K-th."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

from llmrec.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share `index` of `count` (0 <= index < count); `Shard()` is the whole job."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(f"a shard is K/N with 0 <= K < N, got {self}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"K/N"` -> Shard(K, N); anything else is a ConfigError."""
        index, _, count = text.partition("/")
        if not (index.isdigit() and count.isdigit()):
            raise ConfigError(f"a shard is K/N with 0 <= K < N, got {text!r}")
        return cls(int(index), int(count))

    def of(self, users: Sequence[T]) -> Sequence[T]:
        """This shard's users: every `count`-th from the `index`-th."""
        return users[self.index::self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
