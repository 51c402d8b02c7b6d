"""Reading raw files: encoding detection with clear errors, and atomic, checksummed downloads with a progress
bar."""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import httpx
import pooch
from tqdm.auto import tqdm

from llmrec.errors import DataError

log = logging.getLogger(__name__)
pooch.get_logger().setLevel(logging.WARNING)  # pooch prints each download to stderr itself; llmrec logs them here


def read_text(path: str | Path, encoding: str = "auto") -> str:
    """Read a text file. `auto`: UTF-8 when the bytes are valid UTF-8, else Latin-1 (as MovieLens publishes).

    An explicit encoding that does not fit the bytes raises a DataError naming the byte offset.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if encoding == "auto":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            log.info("%s is not UTF-8; reading it as Latin-1", path.name)
            return raw.decode("latin-1")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not valid {encoding} at byte {exc.start} ({raw[exc.start:exc.start + 4]!r}); "
            f"set the encoding (e.g. latin-1) or use encoding=auto"
        ) from exc
    except LookupError as exc:
        raise DataError(f"unknown encoding {encoding!r} for {path}") from exc


def download(url: str, dest: str | Path, sha256: str | None = None, timeout_s: float = 60.0) -> Path:
    """Download `url` to `dest`, replacing it atomically: pooch streams the file to a temporary name, checks its
    SHA-256 when `sha256` is known, and only a complete, matching file takes the final name."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    try:
        # a private folder: pooch would keep an existing file of that name instead of downloading it again
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            fetched = pooch.retrieve(url, f"sha256:{sha256}" if sha256 else None, fname=dest.name, path=tmp,
                                     downloader=partial(_http_get, timeout_s=timeout_s))
            if sha256 is None:
                log.info("%s has SHA-256 %s (no published hash to check)", dest.name, pooch.file_hash(fetched))
            Path(fetched).replace(dest)
    except ValueError as exc:  # pooch: the hash does not match
        raise DataError(f"cannot download {url}: {exc} Try again, or download it yourself and set data.path.") from None
    except httpx.HTTPStatusError as exc:
        raise DataError(f"cannot download {url}: HTTP Error {exc.response.status_code} "
                        f"({exc.response.reason_phrase}). Download it yourself and set data.path.") from None
    except (httpx.HTTPError, OSError) as exc:
        raise DataError(f"cannot download {url}: {type(exc).__name__}: {exc}. "
                        f"Download it yourself and set data.path.") from None
    return dest


def _http_get(url: str, output_file: str, _pooch: object, timeout_s: float) -> None:
    """Stream `url` into `output_file` with a progress bar (pooch's downloader interface); DataError when the
    connection closes before the length the server announced."""
    received, total = 0, None
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length") or 0) or None
            name = url.rsplit("/", 1)[-1]
            with open(output_file, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except httpx.RemoteProtocolError:
        if total is None or received >= total:
            raise
    if total is not None and received != total:
        raise DataError(f"cannot download {url}: connection closed after {received} of {total} bytes. "
                        f"Try again, or download it yourself and set data.path.")


def extract_zip(archive: str | Path, dest: str | Path, strip_top_folder: bool = True) -> None:
    """Extract a zip into `dest`, optionally dropping its single top-level folder (ml-100k/u.data -> u.data)."""
    dest = Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            zf.extractall(tmp)
            root = Path(tmp)
            entries = list(root.iterdir())
            if strip_top_folder and len(entries) == 1 and entries[0].is_dir():
                root = entries[0]
            dest.mkdir(parents=True, exist_ok=True)
            for entry in root.iterdir():
                shutil.move(str(entry), dest / entry.name)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a valid zip archive: {exc}") from exc
