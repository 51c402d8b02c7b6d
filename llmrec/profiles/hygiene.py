"""Checks on LLM output: cleaning, rejection of empty/echoed/degenerate text, and grounding (which catalog
titles a text names, so titles outside the user's history can be counted)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Sequence

from llmrec.text import clean_text

_LABEL = re.compile(r"^(profile|answer|summary|assistant)\s*:\s*", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")
_PERCENT = re.compile(r"\d+\s*%")
_QUOTED = re.compile(r'"[^"]+"')
MIN_WORDS = 5
COPY_WORDS = 6
"""A run of this many words shared with an example answer of the prompt makes a text a few-shot copy."""
MIN_DISTINCT_WORD_RATIO = 0.5
_CHARACTER_LOOP = re.compile(r"(.{2,12}?)\1{2,}")
"""A unit of 2-12 characters three or more times in a row ("E.E.S.E.E.S.E.E.S."): a decoding loop."""


def words(text: str) -> list[str]:
    """The lower-cased words of `text`."""
    return _WORD.findall(text.lower())


def split_sentences(text: str) -> list[str]:
    """The non-blank sentences of `text` (split after `.`, `!` or `?` followed by whitespace), stripped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def clean_output(text: str, max_chars: int, max_sentences: int | None = None) -> str:
    """Strip labels, wrapping quotes and control characters; keep the first `max_sentences` sentences, dropping
    a last one the token limit cut short when a finished one comes before it; cap at `max_chars`, cutting at a
    sentence end when one is available."""
    text = _LABEL.sub("", clean_text(text, 10 * max_chars)).strip().strip('"').strip()
    sentences = _SENTENCE_END.split(text)[:max_sentences]
    if len(sentences) > 1 and not sentences[-1].endswith((".", "!", "?")):
        sentences.pop()
    text = " ".join(sentences)
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    sentence_ends = [m.start() for m in _SENTENCE_END.finditer(cut + " ")]
    return cut[: sentence_ends[-1]] if sentence_ends else cut[: max_chars - 1].rstrip() + "…"


def rejection_reason(text: str, shown_titles: Sequence[str], examples: Sequence[str] = ()) -> str | None:
    """Why `text` is not a usable profile (`empty`, `too-short`, `few-shot-copy`, `echo`, `repetitive`), or None
    when it is.

    `few-shot-copy`: the text shares a run of `COPY_WORDS` words with one of the prompt's example answers
    (`examples`), so it describes the example's person, not this one; `echo`: the text copies back half or
    more of the titles it was shown (at least two), or the category shares, instead of describing the person;
    `repetitive`: a repeated sentence or quoted title, a low share of distinct words, or a character loop (a
    short unit with a letter repeated three times in a row).
    """
    words = _WORD.findall(text.lower())
    if not words:
        return "empty"
    if len(words) < MIN_WORDS:
        return "too-short"
    if any(copies_example(words, example) for example in examples):
        return "few-shot-copy"
    lowered = text.lower()
    copied = sum(1 for t in shown_titles if t and t.lower() in lowered)
    if copied >= max(2, math.ceil(len(shown_titles) / 2)) or len(_PERCENT.findall(text)) >= 2:
        return "echo"
    sentences = [s.lower() for s in split_sentences(text)]
    quoted = _QUOTED.findall(lowered)
    if len(sentences) != len(set(sentences)) or len(quoted) != len(set(quoted)):
        return "repetitive"
    if len(words) >= 16 and len(set(words)) / len(words) < MIN_DISTINCT_WORD_RATIO:
        return "repetitive"
    if any(any(c.isalpha() for c in loop.group(1)) for loop in _CHARACTER_LOOP.finditer(text)):
        return "repetitive"  # a unit with a letter: "1,000,000,000" is not a loop
    return None


def copies_example(words: Sequence[str], example: str) -> bool:
    """Whether the lower-cased `words` contain a run of `COPY_WORDS` consecutive words of `example`."""
    example_words = _WORD.findall(example.lower())
    runs = {tuple(example_words[i:i + COPY_WORDS]) for i in range(len(example_words) - COPY_WORDS + 1)}
    return any(tuple(words[i:i + COPY_WORDS]) in runs for i in range(len(words) - COPY_WORDS + 1))


class TitleMatcher:
    """Finds catalog titles named in a text (whole words, case-insensitive, a trailing `(1995)` optional).

    Titles of one word are ignored: `Heat` or `Babe` are ordinary words far more often than titles.
    """

    def __init__(self, titles: list[str]) -> None:
        self._by_first_word: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        for index, title in enumerate(titles):
            words = tuple(_WORD.findall(_YEAR_SUFFIX.sub("", title).lower()))
            if len(words) >= 2:
                self._by_first_word[words[0]].append((words, index))

    def find(self, text: str) -> set[int]:
        """Indices (into the titles given) of every title named in `text`."""
        return {index for _, _, index in self.spans(text)}

    def spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, title index) of every title named in `text`, by character positions."""
        matches = list(_WORD.finditer(text.lower()))
        words = [m.group() for m in matches]
        found = []
        for start, word in enumerate(words):
            for title_words, index in self._by_first_word.get(word, ()):
                end = start + len(title_words)
                if tuple(words[start:end]) == title_words:
                    found.append((matches[start].start(), matches[end - 1].end(), index))
        return found

    def named(self, text: str, allowed: set[int]) -> tuple[set[int], list[tuple[int, int]]]:
        """The titles `text` names, and the character spans of those in `allowed`. A title found inside the span
        of a named allowed title is part of it, not a title of its own (`Toy Story` inside `Toy Story 2`)."""
        found = self.spans(text)
        cited = [(start, end) for start, end, index in found if index in allowed]
        titles = {index for start, end, index in found
                  if index in allowed or not any(s <= start and end <= e for s, e in cited)}
        return titles, cited
