"""Item text is data, never instructions.

Catalog text (titles above all) is written by whoever lists an item, and it reaches LLM prompts. This module finds
the parts of such text that read as instructions to a model or as chat-format markers, neutralises them before a
prompt is built, and tells when an LLM's output repeated or followed such an instruction anyway.

The rule
--------
Text is first normalised: invisible format characters (zero-width spaces and joiners, bidi controls) are deleted,
so they cannot split a word, then `clean_text` applies NFKC (full-width letters become ASCII), strips ANSI escapes
and control characters and collapses whitespace. Matching runs on a folded copy of the same length: lower case,
and in words written only with Latin letters and look-alikes, Cyrillic/Greek homoglyphs and leetspeak digits read
as Latin letters (`1gn0re` and `іgnоrе` with Cyrillic letters both read `ignore`; an all-Cyrillic word stays
Cyrillic, so Russian phrases can be matched too).

1. Format markers are removed: chat special tokens (`<|im_end|>`, `<|eot_id|>`), tags (`</s>`, `[/INST]`),
   markdown headings and code fences. A role marker opens a fake chat turn, and the turn (the marker and everything
   after it) becomes `[text removed]`: `<|im_start|>`, `<|system|>`, `[INST]`, `<<SYS>>`, `<system>`,
   `### system`, `### Instruction:`, or a role label (`system:`, `assistant:`, `user:`) opening the text or a
   sentence, or anywhere in a text that addresses the model (see 2); "Ghost in the System: A Novel" is kept.
2. Instruction-like spans become `[text removed]`. A span runs from its trigger phrase to the end of its sentence.
   - Strong triggers always count: "ignore/disregard/forget/override ... instructions/prompt" and
     "... previous/prior/above rules/messages" (also in French, German, Spanish, Italian, Portuguese, Russian,
     Chinese, Japanese and Korean), "system prompt", "as an AI", "you are (now) an AI/assistant/...",
     "respond/reply/answer with", "new/hidden instructions", "your task is", "pretend to be", "developer mode".
   - Weak triggers ("say that", "tell the user", "you are/must/should", "from now on", "always recommend") count
     only in a text that addresses the model: one with a strong trigger, a marker, a hidden blob (below), or a
     mention of the user/the model/the assistant/the AI.
   - A base64-looking blob (20 or more characters) that decodes to readable text is replaced: hidden text is
     never item data.

So "Say Anything... (1989)", "You've Got Mail (1998)", "Forget Paris (1995)", "System of a Down T-Shirt" and
"Ignore the Noise Eye Cream" stay as they are: none holds a strong trigger, and none addresses the model.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from llmrec.text import clean_text

REMOVED = "[text removed]"
"""What an instruction-like span becomes."""
RUN_WORDS = 4
"""An output repeats an instruction when it shares this many consecutive words with it (or all of a shorter one)."""
SCAN_CHARS = 4096
"""Text is scanned, and can be shown, up to this length: nothing past it reaches a prompt unscanned."""

_LOOKALIKES = {
    # Cyrillic and Greek letters drawn like Latin ones
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "і": "i", "ј": "j", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "У": "y",
    "Х": "x", "І": "i", "Ј": "j", "Ѕ": "s",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p",
    "Τ": "t", "Υ": "y", "Χ": "x",
    # leetspeak
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
}
_TO_LATIN = str.maketrans(_LOOKALIKES)
_TOKEN = re.compile(r"\S+")
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|[。！？；]")
_REPEATED_REMOVED = re.compile(r"(?:" + re.escape(REMOVED) + r"[\s.,;:!?'\"-]*)+(?=" + re.escape(REMOVED) + r")")
_BLOB = re.compile(r"(?<![\w+/=])[A-Za-z0-9+/]{20,}={0,2}(?![\w+/=])")
_READABLE_SHARE = 0.9


def _words(*alternatives: str) -> str:
    """A regex alternation of phrases whose words may be separated by any non-word characters."""
    return "(?:" + "|".join(a.replace(" ", r"\W+") for a in alternatives) + ")"


_ROLE = _words("system", "assistant", "user", "human", "developer", "instructions?", "response", "input")
_LABEL = _words("system", "assistant", "user")
_HEADING = r"(?:(?:^|(?<=\s))#{2,6}|^#(?=\s))"  # a markdown heading: `#` only at the start ("C#", "We're #1")
_SENTENCE_START = r"(?:^|(?<=[.!?;:>\]|`\"'])|(?<=[.!?;:>\]|`\"']\s))"
_TURN = re.compile("|".join([  # markers that open a (fake) chat turn
    r"<\|\s*(?:im_start|start_header_id|" + _ROLE + r")\s*\|>",
    r"<<\s*sys\s*>>|\[\s*(?:inst|sys|system|user|assistant)\s*\]",
    r"<\s*(?:sys|inst|system|user|assistant|human|start_of_turn)\s*>",
    _HEADING + r"\s*" + _ROLE + r"\b\s*:?",  # ### system, ### Instruction:
    _SENTENCE_START + _LABEL + r"\s*:",  # "system: ..." opening the text or a sentence
]))
_LABEL_ANYWHERE = re.compile(r"(?<!\S)" + _LABEL + r"\s*:")
_MARKER = re.compile("|".join([  # other format markers
    r"<\|[^|<>]{1,40}\|>",  # special tokens: <|im_end|>, <|eot_id|>
    r"<<\s*/\s*sys\s*>>|\[\s*/\s*(?:inst|sys|system|user|assistant)\s*\]",
    r"</?\s*(?:s|sys|inst|system|user|assistant|human|im_start|im_end|start_of_turn|end_of_turn)\s*>",
    _HEADING,
    r"`{3,}\w*|~{3,}\w*",  # code fences
]))

_OVERRIDE = _words(
    "ignore", "disregard", "forget", "override", "bypass",
    "ignorez", "ignorer", "oublie", "oubliez",  # French
    "ignoriere", "ignorieren", "vergiss", "vergessen",  # German
    "ignora", "olvida", "olvide",  # Spanish, Italian
    "dimentica", "esqueça", "esqueca",  # Italian, Portuguese
    "игнорируй", "игнорируйте", "забудь", "забудьте",  # Russian
)
_INSTRUCTIONS = _words(
    "instructions?", "prompts?", "directives?", "guidelines", "guardrails", "programming",
    "instrucciones", "anweisungen", "instruktionen", "befehle", "istruzioni", "instruções", "instrucoes",
    "инструкции", "инструкций", "указания",
)
_EARLIER = _words("previous", "prior", "above", "earlier", "preceding", "original", "initial", "system", "your")
_THINGS = _words("rules", "messages?", "text", "commands", "directions", "orders", "context", "conversation",
                 "everything", "constraints")
_MACHINE = _words("ai", "assistant", "language model", "large language model", "llm", "chatbot", "bot",
                  "recommender", "dan")
_STRONG = re.compile("|".join([
    r"\b" + _OVERRIDE + r"\b(?:\W+\w+){0,5}?\W+" + _INSTRUCTIONS + r"\b",
    r"\b" + _OVERRIDE + r"\b(?:\W+\w+){0,3}?\W+" + _EARLIER + r"\W+(?:\w+\W+)?" + _THINGS + r"\b",
    r"\bne\W+(?:tiens|tenez)\W+pas\W+compte\b",
    r"\bsystem\W+(?:prompt|message|instructions?)\b",
    r"\bas\W+an?\W+" + _MACHINE + r"\b",
    r"\byou\W+are\W+(?:now\W+)?(?:(?:an?|the|my|our)\W+)?(?:\w+\W+){0,2}?" + _MACHINE + r"\b",
    r"\b(?:respond|reply|answer)\W+(?:only\W+)?with\b|\b(?:respond|reply|answer)\W+only\b",
    r"\b(?:new|updated|real|hidden|secret|following)\W+instructions?\b",
    r"\byour\W+(?:new\W+|real\W+|true\W+)?(?:task|instructions?|role|goal|job|objective)\W+(?:is|are|now)\b",
    r"\bpretend\W+(?:to\W+be|you\W+are|that\W+you)\b",
    r"\b(?:developer|god|dan|jailbreak)\W+mode\b",
    r"\b(?:follow|obey)\W+(?:(?:these|my|the|only|new|following)\W+)*(?:instructions?|commands)\b",
    r"(?:忽略|无视|無視|忽视|忽視|忘记|忘記|不要理会|不要理會)[^。！？.!?]{0,12}?(?:指令|指示|说明|說明|提示|规则|規則|命令)",
    r"(?:(?:以前|上記|これまで)の)?(?:指示|命令|指令|지시|명령|지침)[^。！？.!?]{0,8}?(?:無視|忘れ|무시)",  # ja, ko
]))
_WEAK = re.compile("|".join([
    r"\b(?:say|state|claim|write|declare|conclude|mention|output|print)\W+(?:that|only|exactly)\b",
    r"\bsay\s*[:\"']",
    r"\btell\W+(?:the\W+user|them|everyone|people)\b",
    r"\byou\W+(?:are|must|should|will|need\W+to|have\W+to)\b",
    r"\b(?:always|only)\W+recommend\b",
    r"\bfrom\W+now\W+on\b",
]))
_ADDRESSED = re.compile(r"\b(?:this|the)\W+(?:user|model|assistant|ai|llm|chatbot|recommender)\b")
_PAYLOAD = re.compile(r"\b(?:say|respond\W+with|reply\W+with|answer\W+with|output|print|write)\W+"
                      r"(?:(?:that|only|exactly)\W+)*(?P<payload>\w.*)")


@dataclass(frozen=True)
class _Scan:
    """What scanning one text found."""

    text: str
    """The normalised text the positions refer to."""
    edits: tuple[tuple[int, int, str], ...]
    """Disjoint (start, end, replacement) in order: markers become a space, instruction-like spans `REMOVED`."""
    spans: tuple[str, ...]
    """The instruction-like spans as they read in `text`."""
    hidden: tuple[str, ...]
    """What the base64 blobs among the spans decode to."""


def neutralise_item_text(text: str, max_chars: int) -> str:
    """`text` with markers removed and instruction-like spans replaced by `[text removed]` (see the module's
    rule), cleaned like `clean_text` and cut to `max_chars`."""
    scan = _scan(text)
    pieces, last = [], 0
    for start, end, replacement in scan.edits:
        pieces += [scan.text[last:start], replacement]
        last = end
    pieces.append(scan.text[last:])
    return clean_text(_REPEATED_REMOVED.sub("", "".join(pieces)), max_chars)


def instruction_like_spans(text: str) -> list[str]:
    """The instruction-like spans of `text`, in order, as they read after normalisation."""
    return list(_scan(text).spans)


def repeats_instruction(output: str, inputs: Iterable[str]) -> bool:
    """True when an LLM `output` repeats or follows an instruction-like span of its `inputs`: it holds a strong
    instruction phrase itself, or shares `RUN_WORDS` consecutive words with a span of an input, with what a hidden
    blob says, or with what a say/respond-style instruction asked for (all of it when it is shorter)."""
    folded = _fold(_normalise(output))
    if _STRONG.search(folded):
        return True
    words = _WORD.findall(folded)
    for text in inputs:
        scan = _scan(text)
        for said in scan.spans + scan.hidden:
            instruction = _fold(_normalise(said))
            targets = [instruction] + [m["payload"] for m in _PAYLOAD.finditer(instruction)]
            if any(_shares_run(words, _WORD.findall(target)) for target in targets):
                return True
    return False


@lru_cache(maxsize=8192)
def _scan(text: str) -> _Scan:
    """Markers, fake turns, hidden blobs and instruction-like spans of `text`, by the module's rule."""
    normal = _normalise(text)
    folded = _fold(normal)
    markers = [m.span() for m in _MARKER.finditer(folded)]
    turns = [m.start() for m in _TURN.finditer(folded)]
    blobs = [(m.span(), hidden) for m in _BLOB.finditer(normal) if (hidden := _decoded(m[0])) is not None]
    strong = [m.span() for m in _STRONG.finditer(folded)]
    addressed = bool(strong or markers or turns or blobs or _ADDRESSED.search(folded))
    weak = [m.span() for m in _WEAK.finditer(folded)] if addressed else []
    turns += [m.start() for m in _LABEL_ANYWHERE.finditer(folded)] if addressed else []
    fake_turn = [(min(turns), len(normal))] if turns else []
    instructions = _merge([(start, _sentence_end(normal, end)) for start, end in strong + weak]
                          + [span for span, _ in blobs] + fake_turn)
    edits = []
    for start, end in _merge(markers + instructions):
        inside = any(start <= s and e <= end for s, e in instructions)
        edits.append((start, end, f" {REMOVED} " if inside else " "))
    return _Scan(
        text=normal,
        edits=tuple(edits),
        spans=tuple(normal[s:e].strip() for s, e in instructions),
        hidden=tuple(hidden for _, hidden in blobs),
    )


def _normalise(text: str) -> str:
    """`clean_text` after deleting every format character, bidi controls too (which `clean_text` turns into
    spaces), so none can split a word."""
    visible = "".join(c for c in str(text) if unicodedata.category(c) != "Cf")
    return clean_text(visible, SCAN_CHARS)


def _fold(text: str) -> str:
    """A copy of `text` of the same length for matching: lower case, look-alikes read as Latin letters."""
    return _TOKEN.sub(_fold_token, text)


def _fold_token(match: re.Match[str]) -> str:
    """A token read as Latin when it is written only with ASCII and look-alikes; otherwise just in lower case."""
    token = match[0]
    if any(c.isalpha() for c in token) and all(c.isascii() or c in _LOOKALIKES for c in token):
        return token.translate(_TO_LATIN).lower()
    return "".join(low if len(low := c.lower()) == 1 else c for c in token)


def _decoded(blob: str) -> str | None:
    """The readable text a base64 blob hides (a blob cut short included), or None when it decodes to bytes that
    are not text."""
    whole = blob.rstrip("=")
    try:
        raw = base64.b64decode(whole[: len(whole) // 4 * 4], validate=True)
    except binascii.Error:
        return None
    text = raw.decode("utf-8", errors="replace")
    readable = sum((c.isprintable() or c.isspace()) and c != "\ufffd" for c in text)
    return text if readable >= _READABLE_SHARE * len(text) and any(c.isalpha() for c in text) else None


def _sentence_end(text: str, position: int) -> int:
    """The end of the sentence around `position`, its closing punctuation included."""
    end = _SENTENCE_END.search(text, position)
    return end.end() if end else len(text)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching (start, end) spans joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _shares_run(words: list[str], target: list[str]) -> bool:
    """Whether `words` holds `RUN_WORDS` consecutive words of `target` (all of it, when it is shorter)."""
    n = min(RUN_WORDS, len(target))
    if n == 0:
        return False
    runs = {tuple(target[i:i + n]) for i in range(len(target) - n + 1)}
    return any(tuple(words[i:i + n]) in runs for i in range(len(words) - n + 1))
