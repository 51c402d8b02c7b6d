"""Your own data: CSV/TSV, JSONL, Parquet or a Hugging Face `datasets` dataset, with a column mapping.

Configured under `[data.generic]`:

    interactions = "events.csv"          # or "hf:owner/name" / "hf:/path/to/saved_dataset"
    items = "items.jsonl"
    columns = {user_id = "uid", item_id = "iid", timestamp = "ts"}   # our name = your column
    item_columns = {item_id = "id"}
    text_template = "{title}. {description}"   # item fields to text
    context_columns = ["device", "platform"]
    encoding = "auto"
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.data.files import read_text
from llmrec.data.schema import Catalog, Dataset, Interactions
from llmrec.data.tables import read_delimited
from llmrec.errors import DataError
from llmrec.text import Template

HF_PREFIX = "hf:"
_KNOWN_KEYS = {"interactions", "items", "columns", "item_columns", "text_template", "context_columns",
               "encoding", "hf_split", "users"}


def load_generic(options: dict[str, Any], base: str | Path | None = None, name: str = "generic") -> Dataset:
    """Build a Dataset from the `[data.generic]` options; relative paths resolve against `base`."""
    unknown = set(options) - _KNOWN_KEYS
    if unknown:
        raise DataError(f"data.generic: unknown option(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(sorted(_KNOWN_KEYS))}")
    for key in ("interactions", "items"):
        if not options.get(key):
            raise DataError(f"data.generic.{key} is required (a file path or hf:<dataset>)")
    encoding = options.get("encoding", "auto")
    split = options.get("hf_split", "train")
    events = read_table(options["interactions"], base, encoding, split)
    events = _rename(events, options.get("columns", {}), "data.generic.columns", options["interactions"])
    items = read_table(options["items"], base, encoding, split)
    items = _rename(items, options.get("item_columns", {}), "data.generic.item_columns", options["items"])
    template = Template("item_text", "generic-inline", 0, options.get("text_template", "{title}"))
    missing = [f for f in template.fields if f not in items.columns]
    if missing:
        raise DataError(f"text_template uses field(s) {', '.join(missing)} that {options['items']} lacks; "
                        f"columns: {', '.join(map(str, items.columns))}")
    items = items.assign(text=[template.render(r) for r in items.to_dict("records")])
    if (items["text"] == "").all():
        raise DataError(f"{options['items']}: every item text is empty after applying {template.body!r}")
    context = tuple(options.get("context_columns", ()))
    return Dataset(name, Catalog(items, source=str(options["items"]), text_template=_template_key(template)),
                   Interactions(events, context_columns=context, source=str(options["interactions"])))


def read_table(spec: str | Path, base: str | Path | None = None, encoding: str = "auto",
               hf_split: str = "train") -> pd.DataFrame:
    """Read a table from a file (by suffix) or from Hugging Face `datasets` (`hf:<name or saved folder>`)."""
    if str(spec).startswith(HF_PREFIX):
        return _read_hf(str(spec)[len(HF_PREFIX):], hf_split)
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in (".csv", ".tsv"):
        return read_delimited(path, "\t" if suffix == ".tsv" else ",", None, encoding, header=True, quoted=True)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, encoding)
    if suffix == ".parquet":
        if not path.is_file():
            raise DataError(f"file not found: {path}")
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from exc
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv, .jsonl, .parquet or hf:")


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    rows = []
    for line_no, line in enumerate(read_text(path, encoding).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {line_no} is not valid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {line_no} is not a JSON object")
        rows.append(record)
    if not rows:
        raise DataError(f"{path}: no records")
    return pd.DataFrame(rows)


def _read_hf(name: str, split: str) -> pd.DataFrame:
    import datasets  # heavy import, only for this path

    try:
        if Path(name).is_dir():
            loaded = datasets.load_from_disk(name)
            table = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            table = datasets.load_dataset(name, split=split)
    except (FileNotFoundError, ValueError, KeyError, ConnectionError) as exc:
        raise DataError(f"cannot load Hugging Face dataset {name!r} (split {split!r}): {exc}") from exc
    return table.to_pandas()


def _rename(frame: pd.DataFrame, mapping: dict[str, str], option: str, source: str) -> pd.DataFrame:
    missing = [theirs for theirs in mapping.values() if theirs not in frame.columns]
    if missing:
        raise DataError(f"{option} names column(s) {', '.join(missing)} that {source} lacks; "
                        f"columns: {', '.join(map(str, frame.columns))}")
    return frame.rename(columns={theirs: ours for ours, theirs in mapping.items()})


def _template_key(template: Template) -> str:
    """Inline templates are keyed by their text, so editing one invalidates cached embeddings."""
    return "item_text/inline-" + hashlib.sha256(template.body.encode()).hexdigest()[:12]
