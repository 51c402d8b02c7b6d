"""The deterministic profile: a sentence built from the digest by a template, no LLM. It is the ablation baseline
and the fallback whenever the LLM's output is rejected or the history is too short."""

from __future__ import annotations

from llmrec.profiles.digest import HistoryDigest, quote_title
from llmrec.profiles.facts import CatalogFacts
from llmrec.text import Template, load_template

TEMPLATE_ITEMS = 3


class TemplateProfileText:
    """Renders `prompts/profile/template.vN.txt` from a digest."""

    def __init__(self, template: Template | None = None) -> None:
        self.template = template or load_template("profile", "template")

    @property
    def key(self) -> str:
        return self.template.key

    def render(self, digest: HistoryDigest, facts: CatalogFacts, max_chars: int = 400) -> str:
        categories = _join([f"{name} ({share:.0%})" for name, share in digest.top_categories[:3]])
        items = [quote_title(facts.titles[i]) for i in digest.representative[-TEMPLATE_ITEMS:]]
        shift = ""
        if digest.rising:
            shift += f"Lately more {_join(digest.rising)}. "
        if digest.fading:
            shift += f"Lately less {_join(digest.fading)}."
        values = {"categories": categories or "a mix of items", "items": ", ".join(items) or "none yet",
                  "shift": shift}
        return self.template.render(values, max_chars)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""
