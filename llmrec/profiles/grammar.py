"""The shape of an LLM profile as a GBNF grammar, for grammar-constrained decoding (llama.cpp).

    "This user likes <a few words>, such as <title>[, <title>, ...][ and <title>].[ They also like <a few words>.]"

The titles are distinct fixed strings chosen from the items the prompt showed, in the prompt's order and quoted as
the prompt quoted them, and the free words are lowercase letters only: the model chooses what to say about the
person and which of their items stand for it, but cannot name an item outside the history, copy a prompt line or an
example answer, or be forced to repeat an instruction hidden in a title. What gives a profile its ranking signal is
that it names real items the person chose (the template profile does the same); the LLM's part is the choice and
the description.

Exactly `max_cited(len(titles))` titles are cited: one fewer than the writer's `echo` check (copying back half of
the list it was shown) rejects. The grammar bounds the length, so decoding under it may use up to `MAX_TOKENS`.
Left free to cite fewer, the base model names one title in nine of ten samples, and its profiles then retrieve the
user's next items worse than the template's three titles do.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

from llmrec.llm.gbnf import literal, phrase_rule, word_rule

PHRASE_WORDS = 10
MAX_TOKENS = 192
"""Output tokens of the longest grammatical profile (two phrases and up to four titles of a prompt's length)."""
GRAMMAR_KEY = "grammar.v3"
"""Versions the shape: it is part of the prompt version of every profile written with it."""


def prompt_key(template_key: str, grammar: bool) -> str:
    """The prompt version of profiles written from `template_key` (`+grammar.vN` when decoding follows it)."""
    return f"{template_key}+{GRAMMAR_KEY}" if grammar else template_key


def max_cited(shown: int) -> int:
    """Titles a profile of a user shown `shown` titles may cite: one fewer than the writer's echo threshold."""
    return max(2, math.ceil(shown / 2)) - 1


def profile_grammar(titles: Sequence[str]) -> str:
    """The GBNF grammar of one profile that may cite `titles` (as the prompt showed them, quotes included)."""
    shown = [t for t in dict.fromkeys(titles) if t]
    if not shown:
        raise ValueError("a profile grammar needs at least one title")
    names = [f"t{i}" for i in range(len(shown))]
    cited = [_listing(list(chosen)) for chosen in combinations(names, max_cited(len(shown)))]
    return "\n".join([
        'root ::= "This user likes " phrase ", such as " cited "." (" They also like " phrase ".")?',
        "cited ::= " + " | ".join(cited),
        *(f"{name} ::= {literal(title)}" for name, title in zip(names, shown)),
        phrase_rule("phrase", PHRASE_WORDS),
        word_rule(),
    ]) + "\n"


def _listing(names: list[str]) -> str:
    """`a`, `a " and " b`, `a ", " b " and " c`: a GBNF sequence naming the rules `names` as an English list."""
    if len(names) == 1:
        return names[0]
    return ' ", " '.join(names[:-1]) + ' " and " ' + names[-1]
