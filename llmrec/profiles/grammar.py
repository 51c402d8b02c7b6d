"""The shape of an LLM profile as a GBNF grammar, for grammar-constrained decoding (llama.cpp).

    "This user likes <a few words>, such as <title>[, <title>][ and <title>].[ They also like <a few words>.]"

The titles are fixed strings chosen from the items the prompt showed (quoted as the prompt quoted them), and the
free words are lowercase letters only: the model chooses what to say about the person and which of their items
stand for it, but cannot name an item outside the history, copy a prompt line or an example answer, or be forced to
repeat an instruction hidden in a title. What gives a profile its ranking signal is that it names real items the
person chose (the template profile does the same); the LLM's part is the choice and the description.

At most `max_cited(len(titles))` titles are cited, which keeps every grammatical profile clear of the writer's
`echo` check (copying back half of the list it was shown).
"""

from __future__ import annotations

import math
from typing import Sequence

from llmrec.llm.gbnf import choice, phrase_rule, word_rule

PHRASE_WORDS = 10
GRAMMAR_KEY = "grammar.v1"
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
    more = max_cited(len(shown)) - 1
    cited = 'title' + (f' (", " title){{0,{more - 1}}} (" and " title)?' if more > 1
                       else ' (" and " title)?' if more == 1 else "")
    return "\n".join([
        'root ::= "This user likes " phrase ", such as " cited "." (" They also like " phrase ".")?',
        f"cited ::= {cited}",
        f"title ::= {choice(shown)}",
        phrase_rule("phrase", PHRASE_WORDS),
        word_rule(),
    ]) + "\n"
