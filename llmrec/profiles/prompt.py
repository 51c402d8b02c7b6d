"""Chat prompts from versioned templates in `prompts/`: `### system` / `### user` / `### assistant` sections, the
last one holding `{placeholders}`. Values are inserted as quoted data, never as instructions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmrec.errors import ConfigError
from llmrec.llm.base import Message
from llmrec.profiles.digest import HistoryDigest, digest_line
from llmrec.profiles.facts import CatalogFacts
from llmrec.text import Template, load_template

_SECTION = re.compile(r"^### (system|user|assistant)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ChatTemplate:
    """A template split into chat turns; `key` (e.g. `profile/llm.v1`) versions everything written with it."""

    key: str
    turns: tuple[tuple[str, str], ...]

    @classmethod
    def load(cls, kind: str, name: str, version: int | None = None) -> "ChatTemplate":
        return cls.parse(load_template(kind, name, version))

    @classmethod
    def parse(cls, template: Template) -> "ChatTemplate":
        parts = _SECTION.split(template.body)
        if parts[0].strip() or len(parts) < 3:
            raise ConfigError(f"{template.key}: expected `### system|user|assistant` sections")
        turns = tuple((role, text.strip()) for role, text in zip(parts[1::2], parts[2::2]))
        if turns[-1][0] != "user":
            raise ConfigError(f"{template.key}: the last section must be `### user`")
        return cls(template.key, turns)

    @property
    def examples(self) -> list[str]:
        """The example answers (few-shot `### assistant` turns) the template shows the model."""
        return [text for role, text in self.turns if role == "assistant"]

    def render(self, values: dict[str, str]) -> list[Message]:
        """The chat with the last turn's placeholders filled (earlier turns are fixed, so they form a shared,
        cacheable prefix)."""
        *fixed, (role, last) = self.turns
        try:
            filled = last.format(**values)
        except KeyError as exc:
            raise ConfigError(f"{self.key}: no value for placeholder {exc}") from exc
        filled = "\n".join(line for line in filled.splitlines() if line.strip())
        return [{"role": r, "content": t} for r, t in fixed] + [{"role": role, "content": filled}]


def digest_values(digest: HistoryDigest, facts: CatalogFacts) -> dict[str, str]:
    """The placeholder values for a digest: `items` (one quoted line each), `categories`, `shift`."""
    categories = ", ".join(f"{name} {share:.0%}" for name, share in digest.top_categories) or "unknown"
    shift = []
    if digest.rising:
        shift.append("Lately more: " + ", ".join(digest.rising))
    if digest.fading:
        shift.append("Lately less: " + ", ".join(digest.fading))
    return {"items": "\n".join("- " + digest_line(i, facts) for i in digest.representative),
            "categories": categories, "shift": "\n".join(shift)}
