"""The shape of an explanation as a GBNF grammar, for grammar-constrained decoding (llama.cpp).

    "<item> is <a few words> like <history title>[ and <history title>][, <a few words>]."

The item and the history titles are fixed strings (the neutralised text the prompt showed, so an instruction
hidden in a title is never forced into the output), and the free words are lowercase letters only, so the model
chooses the wording and which of the allowed titles to cite, but cannot name a title outside the list or copy a
line of the prompt. Without history titles the sentence is "<item> is <a few words>[, <a few words>]."
"""

from __future__ import annotations

from typing import Sequence

from llmrec.llm.gbnf import choice, literal, phrase_rule, word_rule

PHRASE_WORDS = 8
TAIL_WORDS = 12


def explanation_grammar(item: str, titles: Sequence[str]) -> str:
    """The GBNF grammar of one explanation of `item` that may cite `titles` (both as the prompt showed them)."""
    cited = [t for t in titles if t]
    like = ' " like " cited' if cited else ""
    rules = [
        f'root ::= item " is " phrase{like} ("." | ", " tail ".")',
        f"item ::= {literal(item)}",
        phrase_rule("phrase", PHRASE_WORDS),
        phrase_rule("tail", TAIL_WORDS),
        word_rule(),
    ]
    if cited:
        rules += ['cited ::= title (" and " title)?', f"title ::= {choice(cited)}"]
    return "\n".join(rules) + "\n"
