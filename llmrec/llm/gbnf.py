"""Building blocks of GBNF grammars (llama.cpp's grammar-constrained decoding): fixed strings and free words."""

from __future__ import annotations

from typing import Sequence

WORD_CHARS = 14
"""Letters in one free word at most."""


def literal(text: str) -> str:
    """`text` as a GBNF string literal (one line)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{escaped}"'


def choice(texts: Sequence[str]) -> str:
    """A rule body matching exactly one of `texts` (distinct, non-empty)."""
    options = [t for t in dict.fromkeys(texts) if t]
    if not options:
        raise ValueError("a choice needs at least one non-empty text")
    return " | ".join(literal(t) for t in options)


def phrase_rule(name: str, max_words: int) -> str:
    """`name ::=` one to `max_words` lowercase words separated by single spaces (needs `word_rule()`)."""
    return f'{name} ::= word (" " word){{0,{max_words - 1}}}'


def word_rule() -> str:
    """`word ::=` one lowercase word of at most `WORD_CHARS` letters."""
    return f"word ::= [a-z]{{1,{WORD_CHARS}}}"
