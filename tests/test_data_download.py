"""Downloading built-in datasets from a real HTTP server on 127.0.0.1 (a mirror set by base_url or
LLMREC_DOWNLOAD_BASE_URL), with atomic writes, SHA-256 checks and clear errors."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from llmrec.config import DataConfig
from llmrec.data.files import download
from llmrec.data.registry import DATA_DIR_ENV, DOWNLOAD_BASE_ENV, SHA256, dataset_folder, fetch_dataset, load_dataset
from llmrec.errors import DataError


class FileServer:
    """Serves `files` (URL path -> bytes); `truncate` paths announce more bytes than they send."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: dict[str, bytes] = {}
        self.monkeypatch = monkeypatch
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:  # the connection drops half-way
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def publish(self, path: str, body: bytes) -> None:
        """Serve `body` at `path` as the published file of that name: its SHA-256 is pinned for this test (the
        fixtures are small stand-ins for the GroupLens archives, whose real hashes are pinned in llmrec)."""
        self.files[path] = body
        self.monkeypatch.setitem(SHA256, path.rsplit("/", 1)[-1], hashlib.sha256(body).hexdigest())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch):
    srv = FileServer(monkeypatch)
    yield srv
    srv.close()


def _zip_folder(folder: Path, top: str) -> bytes:
    archive = folder.parent / f"{top}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{top}/{path.name}")
    return archive.read_bytes()


@pytest.fixture
def ml100k_zip(write_ml100k, tmp_path) -> bytes:
    return _zip_folder(write_ml100k(tmp_path / "zip-src" / "ml-100k"), "ml-100k")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith("tmp"))


def test_fetch_dataset_with_base_url(server, ml100k_zip, tmp_path):
    server.publish("/mirror/ml-100k.zip", ml100k_zip)
    folder = fetch_dataset("movielens-100k", tmp_path / "data", base_url=server.url + "/mirror/")
    assert server.requests == ["/mirror/ml-100k.zip"]
    # the zip's top-level ml-100k/ folder is dropped and the archive removed
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.genre", "u.item", "u.user"]
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "data" / "ml-100k").exists()


def test_load_dataset_downloads_into_data_dir_once(server, ml100k_zip, tmp_path, monkeypatch):
    server.publish("/ml/ml-100k.zip", ml100k_zip)
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, server.url + "/ml")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "cache"))
    dataset = load_dataset(DataConfig(name="movielens-100k", k_core=0))
    assert (tmp_path / "cache" / "movielens-100k" / "u.data").is_file()
    assert dataset.stats()["interactions"] == 10 and dataset.stats()["users"] == 3
    assert dataset.catalog.items.set_index("item_id").loc["3", "title"] == "Misérables, Les (1995)"
    again = load_dataset(DataConfig(name="movielens-100k", k_core=0))
    assert server.requests == ["/ml/ml-100k.zip"]  # the second load reads the files already there
    assert again.stats() == dataset.stats()


def test_ml1m_download_reads_ratings_dat(server, write_ml1m, tmp_path, monkeypatch):
    server.publish("/ml-1m.zip", _zip_folder(write_ml1m(tmp_path / "src" / "ml-1m"), "ml-1m"))
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, server.url)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "cache"))
    dataset = load_dataset(DataConfig(name="movielens-1m", k_core=0))
    assert dataset.interactions.source == "ratings.dat" and len(dataset.interactions) == 7
    load_dataset(DataConfig(name="movielens-1m", k_core=0))
    assert server.requests == ["/ml-1m.zip"]


def test_amazon_download_is_not_repeated(server, write_amazon_original, tmp_path, monkeypatch):
    """The original Amazon files are read as downloaded (no items.jsonl): they must count as present."""
    source = write_amazon_original(tmp_path / "src")
    for name in ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"):
        server.files[f"/amazon/{name}"] = (source / name).read_bytes()
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, server.url + "/amazon")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "cache"))
    first = load_dataset(DataConfig(name="amazon-beauty", k_core=0))
    second = load_dataset(DataConfig(name="amazon-beauty", k_core=0))
    assert len(first.interactions) == len(second.interactions) == 6
    assert sorted(server.requests) == ["/amazon/meta_Beauty.json.gz", "/amazon/reviews_Beauty_5.json.gz"]


def test_user_folder_in_another_layout_is_not_downloaded_into(server, write_ml1m, tmp_path, monkeypatch):
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, server.url)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::1\n")
    assert dataset_folder("movielens-1m", str(folder)) == folder
    with pytest.raises(DataError, match=r"mine: missing file\(s\) movies\.dat, users\.dat"):
        load_dataset(DataConfig(name="movielens-1m", path=str(folder)))
    assert server.requests == []


def test_404_names_the_url(server, tmp_path):
    with pytest.raises(DataError, match=rf"cannot download {server.url}/nowhere/ml-100k\.zip: HTTP Error 404"):
        fetch_dataset("movielens-100k", tmp_path / "data", base_url=server.url + "/nowhere")
    assert not (tmp_path / "data" / "ml-100k.zip").exists()
    assert _leftovers(tmp_path) == []


def test_404_through_load_dataset(server, tmp_path, monkeypatch):
    monkeypatch.setenv(DOWNLOAD_BASE_ENV, server.url)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"cannot download .*/ml-100k\.zip: HTTP Error 404.*set data\.path"):
        load_dataset(DataConfig(name="movielens-100k"))


def test_partial_download_never_takes_the_final_name(server, ml100k_zip, tmp_path):
    server.publish("/ml-100k.zip", ml100k_zip)
    server.truncate.add("/ml-100k.zip")
    dest = tmp_path / "dl" / "ml-100k.zip"
    with pytest.raises(DataError, match=rf"cannot download {server.url}/ml-100k\.zip: connection closed after "
                                        rf"{len(ml100k_zip) // 2} of {len(ml100k_zip)} bytes"):
        download(server.url + "/ml-100k.zip", dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file under any name
    with pytest.raises(DataError, match="connection closed after"):
        fetch_dataset("movielens-100k", tmp_path / "data", base_url=server.url)
    assert not (tmp_path / "data" / "u.data").exists() and _leftovers(tmp_path) == []


def test_download_replaces_atomically(server, tmp_path):
    server.files["/f.bin"] = b"new content" * 1000
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    assert download(server.url + "/f.bin", dest) == dest
    assert dest.read_bytes() == b"new content" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_unreachable_server(tmp_path):
    probe = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens on this port now
    with pytest.raises(DataError, match=rf"cannot download http://127\.0\.0\.1:{port}/ml-100k\.zip: .*"
                                        r"Download it yourself and set data\.path"):
        fetch_dataset("movielens-100k", tmp_path, base_url=f"http://127.0.0.1:{port}")
    assert _leftovers(tmp_path) == []


def test_bad_zip(server, tmp_path):
    server.publish("/ml-100k.zip", b"this is not a zip archive")
    with pytest.raises(DataError, match=r"ml-100k\.zip is not a valid zip archive"):
        fetch_dataset("movielens-100k", tmp_path / "data", base_url=server.url)


def test_corrupted_download_is_refused_and_leaves_nothing(server, ml100k_zip, tmp_path):
    """A mirror serving other bytes than the published archive: nothing is written, the message names both hashes."""
    server.files["/ml-100k.zip"] = ml100k_zip  # not GroupLens' archive: its hash differs from the pinned one
    got = hashlib.sha256(ml100k_zip).hexdigest()
    with pytest.raises(DataError, match=rf"cannot download {server.url}/ml-100k\.zip: SHA256 hash .* does not match"
                                        rf" .*expected sha256:{SHA256['ml-100k.zip']} but got {got}") as info:
        fetch_dataset("movielens-100k", tmp_path / "data", base_url=server.url)
    assert "\n" not in str(info.value)
    assert list((tmp_path / "data").iterdir()) == []


def test_download_checks_the_given_hash_and_keeps_the_old_file_on_mismatch(server, tmp_path):
    server.files["/f.bin"] = b"new content"
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DataError, match="does not match the known hash"):
        download(server.url + "/f.bin", dest, sha256=hashlib.sha256(b"other content").hexdigest())
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    assert download(server.url + "/f.bin", dest, sha256=hashlib.sha256(b"new content").hexdigest()) == dest
    assert dest.read_bytes() == b"new content" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
