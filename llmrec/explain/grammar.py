"""The shape of an explanation as a GBNF grammar, for grammar-constrained decoding (llama.cpp).

    "<item> is <a few words> like <history title>[ and <history title>][, <a few words>]."

The item and the history titles are fixed strings (the neutralised text the prompt showed, so an instruction
hidden in a title is never forced into the output), and the free words are lowercase letters only, so the model
chooses the wording and which of the allowed titles to cite, but cannot name a title outside the list or copy a
line of the prompt. Without history titles the sentence is "<item> is <a few words>[, <a few words>]."
"""

from __future__ import annotations

from typing import Sequence

PHRASE_WORDS = 8
TAIL_WORDS = 12
WORD_CHARS = 14


def explanation_grammar(item: str, titles: Sequence[str]) -> str:
    """The GBNF grammar of one explanation of `item` that may cite `titles` (both as the prompt showed them)."""
    cited = [t for t in dict.fromkeys(titles) if t]
    like = ' " like " cited' if cited else ""
    rules = [
        f'root ::= item " is " phrase{like} ("." | ", " tail ".")',
        f"item ::= {_literal(item)}",
        f"phrase ::= word (\" \" word){{0,{PHRASE_WORDS - 1}}}",
        f"tail ::= word (\" \" word){{0,{TAIL_WORDS - 1}}}",
        f"word ::= [a-z]{{1,{WORD_CHARS}}}",
    ]
    if cited:
        rules += ['cited ::= title (" and " title)?', "title ::= " + " | ".join(_literal(t) for t in cited)]
    return "\n".join(rules) + "\n"


def _literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{escaped}"'
