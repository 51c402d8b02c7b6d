"""Reading raw files: encoding detection with clear errors, and atomic downloads with a progress bar."""

from __future__ import annotations

import http.client
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from llmrec.errors import DataError

log = logging.getLogger(__name__)


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


def download(url: str, dest: str | Path, timeout_s: float = 60.0) -> Path:
    """Download `url` to `dest` atomically (a partial file never takes the final name)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    part = None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
                part = Path(tmp.name)
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                    while chunk := response.read(1 << 20):
                        tmp.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if total is not None and received != total:  # urllib returns a cut-off body without an error
                raise DataError(f"cannot download {url}: connection closed after {received} of {total} bytes. "
                                f"Try again, or download it yourself and set data.path.")
        part.replace(dest)
        part = None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        raise DataError(f"cannot download {url}: {exc}. Download it yourself and set data.path.") from exc
    finally:
        if part is not None:
            part.unlink(missing_ok=True)
    return dest


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
