"""Text hygiene and versioned templates from `prompts/`."""

from __future__ import annotations

import os
import re
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from llmrec.errors import ConfigError, DataError

_ANSI = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, hyperlinks; ends with BEL or ESC backslash
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b[ -/]*[0-~]"  # other escapes
    r"|\[[0-9;]*m(?![^\[]*\])"  # the residue of a colour code whose ESC was lost (`[31m`), not `[5m]`
)
"""ANSI/VT100 escape sequences, removed before control characters so that no `[31m` residue is left."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SPACES = re.compile(r"\s+")
_TEMPLATE_NAME = re.compile(r"^(?P<name>[\w-]+)\.v(?P<version>\d+)\.txt$")


def clean_text(value: Any, max_chars: int = 512) -> str:
    """Unicode-normalise, drop ANSI escape sequences, control and format characters, collapse whitespace and cap
    the length."""
    if value is None:
        return ""
    text = _ANSI.sub("", unicodedata.normalize("NFKC", str(value)))
    text = "".join(_format_character(c) if unicodedata.category(c) == "Cf" else c for c in text)
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def clean_input_text(value: Any, name: str, max_chars: int) -> str:
    """Free text a client sent (an item's text, stated interests), cleaned like catalog text (`clean_text`).
    DataError when it is not a string, longer than `max_chars` characters, or empty once cleaned."""
    if not isinstance(value, str):
        raise DataError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise DataError(f"{name} has {len(value)} characters; at most {max_chars} are allowed")
    text = clean_text(value, max_chars)
    if not text:
        raise DataError(f"{name} is empty (after removing control characters and extra spaces)")
    return text


def _format_character(c: str) -> str:
    """What an invisible format character becomes: a bidi control a space, so it cannot join or reorder words;
    anything else (zero-width spaces and joiners, soft hyphens, tag characters) nothing, as it shows nothing and
    must not split a word (a zero-width space inside "Ignore" still reads "Ignore")."""
    return " " if c in _BIDI_CONTROLS else ""


def prompts_dir() -> Path:
    """The folder holding the templates: $LLMREC_PROMPTS_DIR, else `prompts/` beside the package."""
    configured = os.environ.get("LLMREC_PROMPTS_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parent.parent / "prompts"
    if not path.is_dir():
        raise ConfigError(f"prompt templates not found at {path}; set LLMREC_PROMPTS_DIR")
    return path


@dataclass(frozen=True)
class Template:
    """A versioned text template; `key` (e.g. `item_text/movielens.v1`) goes into cache keys."""

    kind: str
    name: str
    version: int
    body: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}.v{self.version}"

    @property
    def fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.body) if f]

    def render(self, values: Mapping[str, Any], max_chars: int = 512) -> str:
        """Fill the placeholders; lists are joined with ", ", missing values become empty."""
        filled = {f: _format_field(values.get(f)) for f in self.fields}
        return clean_text(self.body.format(**filled), max_chars)


def load_template(kind: str, name: str, version: int | None = None) -> Template:
    """Load `prompts/<kind>/<name>.v<version>.txt`; the newest version when `version` is None."""
    return _load_template(kind, name, version)


@lru_cache(maxsize=64)
def _load_template(kind: str, name: str, version: int | None) -> Template:
    folder = prompts_dir() / kind
    versions = {}
    for path in folder.glob(f"{name}.v*.txt"):
        match = _TEMPLATE_NAME.match(path.name)
        if match and match["name"] == name:
            versions[int(match["version"])] = path
    if not versions:
        raise ConfigError(f"no template {kind}/{name}.v*.txt in {prompts_dir()}")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise ConfigError(f"template {kind}/{name} has versions {sorted(versions)}, not {chosen}")
    return Template(kind, name, chosen, versions[chosen].read_text(encoding="utf-8").strip())


def _format_field(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_field(v) for v in value if _format_field(v))
    return clean_text(value)
