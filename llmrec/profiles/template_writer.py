"""The deterministic profile: sentences built from the digest by a template, no LLM. It is the ablation baseline
and the fallback whenever the LLM's output is rejected or the history is too short. It always says something
about the user's own items: a history of one item gives a sentence about that item, never a placeholder."""

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
        """The profile of a non-empty digest (ValueError for an empty one: there is nothing to say)."""
        if not digest.representative:
            raise ValueError("a template profile needs at least one item")
        categories = _join([f"{name} ({share:.0%})" for name, share in digest.top_categories[:3]])
        items = [quote_title(facts.titles[i]) for i in digest.representative[-TEMPLATE_ITEMS:]]
        shift = ""
        if digest.rising:
            shift += f"Lately more {_join(digest.rising)}. "
        if digest.fading:
            shift += f"Lately less {_join(digest.fading)}."
        values = {"interests": f"Enjoys {categories}." if categories else "", "items": ", ".join(items),
                  "shift": shift}
        return self.template.render(values, max_chars)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""
