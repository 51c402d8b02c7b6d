"""Parsing delimited text into DataFrames with errors that name the file and the line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data.files import read_text
from llmrec.errors import DataError


def read_delimited(
    path: str | Path, sep: str, names: list[str] | None, encoding: str = "auto", header: bool = False,
    quoted: bool = False,
) -> pd.DataFrame:
    """Read a delimited text file as strings. Multi-character separators (MovieLens `::`) are supported;
    `quoted` honours CSV double quotes (MovieLens files have none: a quote there is part of a title)."""
    path = Path(path)
    text = read_text(path, encoding)
    if len(sep) > 1:
        if "\t" in text:
            raise DataError(f"{path}: contains tab characters, which a '{sep}'-separated file must not")
        text, sep = text.replace(sep, "\t"), "\t"
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=0 if header else None, names=names, dtype=str,
            keep_default_na=False, quoting=0 if quoted else 3, on_bad_lines="error", engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: malformed row: {str(exc).strip()}") from exc
    _check_field_counts(path, text, sep, frame.shape[1], quoted)
    return frame


def _check_field_counts(path: Path, text: str, sep: str, expected: int, quoted: bool) -> None:
    """pandas pads a short row with empty fields, and when every row has one field too many it silently turns
    the first into the index; so count every line's fields (blank lines are skipped, as pandas does)."""
    if "\r" in text:  # pandas also ends lines at \r\n and a lone \r
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if (quoted and '"' in text) or len(sep.encode("utf-8")) != 1:
        reader = csv.reader(io.StringIO(text), delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        for row in reader:
            if len(row) != expected and "".join(row).strip():
                raise DataError(f"{path}: malformed row: line {reader.line_num} has {len(row)} field(s), "
                                f"expected {expected}")
        return
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    line_ends = np.flatnonzero(data == ord("\n"))
    line_of_sep = np.searchsorted(line_ends, np.flatnonzero(data == ord(sep)))
    fields = np.bincount(line_of_sep, minlength=len(line_ends) + 1) + 1
    starts = np.concatenate([[0], line_ends + 1])
    ends = np.append(line_ends, len(data))
    for line in np.flatnonzero(fields != expected):
        if data[starts[line]:ends[line]].tobytes().strip():
            raise DataError(
                f"{path}: malformed row: line {line + 1} has {fields[line]} field(s), expected {expected}")


def to_numbers(frame: pd.DataFrame, columns: list[str], source: str, kind: str = "int64") -> pd.DataFrame:
    """Convert columns to numbers; a value that is not a number raises a DataError with its row."""
    converted = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & (frame[column].astype(str).str.strip() != "")
        if bad.any() or values.isna().any():
            rows = np.flatnonzero((bad | values.isna()).to_numpy())
            example = frame[column].iloc[rows[:1]].tolist()[0]  # a Python value: nan, not np.float64(nan)
            raise DataError(f"{source}: column {column!r} has {len(rows)} non-numeric value(s), e.g. {example!r} "
                            f"at data row {rows[0] + 1}")
        converted[column] = values.astype(kind)
    return frame.assign(**converted)
