"""The serving bundle: everything an online deployment reads, exported from a trained run into one folder that
loads from anywhere without the raw data, the training code path or the text encoder.

    bundle.json               format version, library versions, model ids, creation time and the SHA-256 of every
                              file below (checked on every load)
    config.yaml               the run's configuration as served; relative paths are relative to the bundle
    model/                    the interest model: model.json, weights.pt (the network and item side) and
                              users.safetensors (the user feature store)
    rerank/                   the reranker, when the run trained one
    graph/                    the long-term LightGCN, for the `graph` and `graph+profile` profile sources
    split.npz                 id maps, every user's history, the training sequences and the evaluation cases
    catalog.parquet           per item: id, text, title and categories (what profiles and explanations cite)
    item_vectors.npy          the items' text vectors [items + 1, dim] (row 0 padding)
    index/                    the ChromaDB collection of the model's retrieval vectors (embedded index only)
    profiles/*.jsonl.gz       the run's long-term profiles and interest summaries (profile store exports)
    profile-adapter/          the tuned profile writer's adapter (`profile.adapter`), when one is set
    state/                    not part of the bundle: what serving writes (`llmrec.serving.state`)

    path = export_bundle("runs/beauty")          # -> runs/beauty/bundle
    bundle = Bundle.load(path)                   # verified, then loaded
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from filelock import FileLock

import llmrec
from llmrec.config import RunConfig, load_config, save_config, with_overrides
from llmrec.data.schema import ITEM_ID, TEXT
from llmrec.data.split import Split, load_split, save_split
from llmrec.encoders.item_encoder import encoder_model_id
from llmrec.errors import ConfigError, DataError
from llmrec.experiment import LONG_TERM_GRAPH, Experiment, collection_name
from llmrec.index.chroma_index import CollectionMissingError, ItemIndex
from llmrec.models.interest import InterestModel
from llmrec.models.lightgcn import LightGCN
from llmrec.models.long_term import GRAPH_SOURCES
from llmrec.profiles.facts import CatalogFacts, popularity_percentiles
from llmrec.profiles.service import ProfileService
from llmrec.rerank.reranker import Reranker
from llmrec.serving.state import ServingState

log = logging.getLogger(__name__)

FORMAT = "llmrec-bundle"
FORMAT_VERSION = 1
"""Raised whenever the layout changes; a bundle of a newer format is refused with a clear message."""
MANIFEST = "bundle.json"
CONFIG = "config.yaml"
MODEL = "model"
RERANKER = "rerank"
GRAPH = "graph"
SPLIT = "split.npz"
CATALOG = "catalog.parquet"
ITEM_VECTORS = "item_vectors.npy"
INDEX = "index"
PROFILES = "profiles/long-term.jsonl.gz"
SUMMARIES = "profiles/summaries.jsonl.gz"
PROFILE_ADAPTER = "profile-adapter"
STATE = "state"
DEFAULT_FOLDER = "bundle"
"""A run's bundle is `<run_dir>/bundle` (an adapter's, `<adapter folder>/bundle`) unless told otherwise."""
VERSIONED = ("torch", "transformers", "sentence-transformers", "chromadb", "numpy")
"""Libraries whose versions the manifest records beside llmrec's and Python's."""
_RUN_MODELS = (InterestModel.name, Reranker.name, LONG_TERM_GRAPH)
"""Model folders of a run whose change makes its bundle stale."""


class BundleError(DataError):
    """A bundle is missing, incomplete, corrupted or of a format this llmrec cannot read; the message names the
    folder and the file."""


@dataclass
class Bundle:
    """A verified bundle, loaded: what the online facade (`llmrec.pipeline.Recommender`) is composed of."""

    path: Path
    manifest: dict[str, Any]
    config: RunConfig
    """The bundle's configuration with relative paths resolved against it, and the load's overrides applied."""
    split: Split
    facts: CatalogFacts
    texts: list[str]
    """Each item's text, indexed like the split's items (index 0 = padding)."""
    popularity: np.ndarray
    """Training interactions per item index."""
    item_vectors: np.ndarray
    model: InterestModel
    reranker: Reranker | None
    """None when the run has none or `online.rerank` is off."""
    state: ServingState

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "Bundle":
        """Check every file against the manifest's checksums, then load the bundle; `overrides` are
        `section.key=value` strings as on the command line (paths in them are relative to the working
        directory). BundleError names a missing, corrupted or truncated file."""
        folder = Path(path).expanduser().resolve()
        manifest = read_manifest(folder)
        verify_files(folder, manifest)
        config = with_overrides(_resolved_config(folder), overrides or [])
        split = load_split(folder / SPLIT)
        catalog = pd.read_parquet(folder / CATALOG)
        popularity = split.train_popularity()
        facts = CatalogFacts([""] + catalog[ITEM_ID].tolist(), [""] + catalog["title"].tolist(),
                             [()] + [tuple(c) for c in catalog["categories"]], popularity_percentiles(popularity),
                             config.profile.title_chars)
        item_vectors = np.load(folder / ITEM_VECTORS)
        model = InterestModel.load(folder / MODEL)
        model.set_new_item_boost(config.interest.new_item_boost)
        trained_reranker = (folder / RERANKER / "model.json").is_file()
        reranker = (Reranker.load(folder / RERANKER, model, item_vectors, popularity)
                    if config.online.rerank and trained_reranker else None)
        state = ServingState(config.online.state_dir or folder / STATE)
        return cls(folder, manifest, config, split, facts, [""] + catalog[TEXT].tolist(), popularity, item_vectors,
                   model, reranker, state)

    @cached_property
    def long_term_graph(self) -> LightGCN:
        """The LightGCN over long-term interactions that the graph profile sources fold new users into."""
        if not (self.path / GRAPH / "model.json").is_file():
            raise BundleError(f"bundle {self.path} holds no long-term graph ({GRAPH}/), which profile source "
                              f"{self.config.interest.profile_source!r} needs; re-export it from its run")
        return LightGCN.load(self.path / GRAPH)

    def profile_service(self) -> ProfileService:
        """The profile writer over the state folder's stores, seeded once with the bundle's profiles and
        summaries (profiles written while serving are kept over the bundle's)."""
        service = ProfileService(self.config, self.split, self.facts, self.state.folder)
        for name, store in ((PROFILES, service.store), (SUMMARIES, service.summaries)):
            digest = self.manifest["files"].get(name)
            if digest is not None:
                self.state.seed(name, digest, lambda name=name, store=store: store.load_export(self.path / name,
                                                                                               replace=False))
        return service

    def item_index(self, table: torch.Tensor, added_ids: Sequence[str] = ()) -> ItemIndex:
        """The ChromaDB collection of the retrieval vectors `table` (the catalog's rows, then those of the items
        `added_ids` added while serving): the bundle's own, copied into the state folder (Chroma writes to the
        folder it opens), or on the configured Chroma server; rebuilt there when it does not hold exactly these
        catalog vectors (e.g. after an `interest.new_item_boost` override), the added items upserted into it."""
        digest = _folder_digest(self.manifest, INDEX)
        folder = self.state.index(digest or "built")
        if self.config.index.host is None and digest is not None:
            self.state.seed(INDEX, digest, lambda: _copy_folder(self.path / INDEX, folder))
        return retrieval_index(self.config, folder, self.split, table, added_ids)


def export_bundle(run_dir: str | Path, out_dir: str | Path | None = None, adapter: str | Path | None = None) -> Path:
    """Write the serving bundle of a trained run folder (see the module docstring) to `out_dir` (default
    `<run_dir>/bundle`) and return its path. With `adapter` (a folder, or a name under `<run_dir>/adapters/`,
    written by `llmrec finetune`) the served model is the base run's transferred, adapted and merged model
    (default folder `<adapter folder>/bundle`; no reranker). An existing bundle there is replaced; its `state/`
    folder is kept."""
    run = Path(run_dir).expanduser().resolve()
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not an llmrec run folder (no config.yaml); train a model there first")
    experiment = Experiment(load_config(run / "config.yaml", [f"run_dir={run}"]))
    out = Path(out_dir).expanduser().resolve() if out_dir is not None else default_folder(run, adapter)
    model = _served_model(experiment, adapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write_bundle(staging, experiment, model, adapter)
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported the serving bundle of %s to %s", run, out)
    return out


def served_bundle(path: str | Path, adapter: str | Path | None = None) -> Path:
    """The bundle to serve for `path`: the folder itself when it is a bundle; for a run folder, its bundle
    (`export_bundle`'s default folder), exported first when it is missing, of an older format, or older than the
    run's configuration, models or adapter."""
    folder = Path(path).expanduser()
    if (folder / MANIFEST).is_file():
        if adapter is not None:
            raise ConfigError(f"{folder} is a bundle: export the adapted model into a bundle of its own "
                              "(`llmrec export RUN_DIR --adapter NAME`) and serve that")
        return folder
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"{folder} is neither an llmrec bundle (no {MANIFEST}) nor a run folder (no config.yaml); "
                          "train a model there first")
    bundle = default_folder(folder, adapter)
    with FileLock(str(folder / ".export.lock")):  # server processes starting together export once
        reason = _export_reason(folder, bundle, adapter)
        if reason is not None:
            log.info("exporting the serving bundle %s: %s", bundle, reason)
            export_bundle(folder, bundle, adapter)
    return bundle


def default_folder(run_dir: Path, adapter: str | Path | None = None) -> Path:
    """Where a run's bundle goes by default: `<run_dir>/bundle`, or `<adapter folder>/bundle`."""
    if adapter is None:
        return run_dir.resolve() / DEFAULT_FOLDER
    from llmrec.transfer import adapter_folder  # peft is imported only for adapters

    return adapter_folder(run_dir, adapter).resolve() / DEFAULT_FOLDER


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's `bundle.json`; BundleError when there is none or its format is unknown or newer."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder} is not an llmrec bundle (no {MANIFEST}); export one with "
                          "`llmrec export RUN_DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {folder}: {MANIFEST} is corrupted ({exc}); re-export the bundle") from None
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT
            and isinstance(manifest.get("format_version"), int) and isinstance(manifest.get("files"), dict)):
        raise BundleError(f"bundle {folder}: {MANIFEST} is not an llmrec bundle manifest; re-export the bundle")
    version = manifest["format_version"]
    if version > FORMAT_VERSION:
        raise BundleError(f"bundle {folder} has format {version}; llmrec {llmrec.__version__} reads format "
                          f"{FORMAT_VERSION} at most: upgrade llmrec, or export the run with this version")
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """BundleError naming the first file of the manifest that is missing or whose SHA-256 differs."""
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"bundle {folder}: file {name} is missing; re-export the bundle")
        if _sha256(path) != expected:
            raise BundleError(f"bundle {folder}: file {name} is corrupted or truncated (its SHA-256 differs from "
                              f"{MANIFEST}); re-export the bundle (`llmrec export RUN_DIR`)")


def retrieval_index(config: RunConfig, folder: Path, split: Split, table: torch.Tensor,
                    added_ids: Sequence[str] = ()) -> ItemIndex:
    """The ChromaDB collection (inner product) of an interest model's retrieval vectors `table`
    [items + 1, width]: the split's items, then the items `added_ids` added while serving. It is named by the
    digest of the split items' rows, in `folder` (or on the configured Chroma server), and built there unless it
    already holds a vector for every row; the added items are upserted again when it does (a change logged just
    before a crash reaches the collection)."""
    vectors = table[1:].numpy()
    catalog = len(split.item_ids)
    if len(vectors) != catalog + len(added_ids):
        raise ValueError(f"{len(vectors)} retrieval rows for {catalog} catalog and {len(added_ids)} added items")
    digest = hashlib.sha256(vectors[:catalog].tobytes()).hexdigest()[:12]
    settings = dataclasses.replace(config.index, space="ip", collection=None)
    index = ItemIndex(settings, folder, collection_name(split.dataset, f"llmrec-{digest}"))
    try:
        complete = index.count() == len(vectors)
    except CollectionMissingError:
        complete = False
    if not complete:
        log.info("building the retrieval collection %s in %s", index.name, index.location)
        index.rebuild([str(i) for i in split.item_ids] + list(added_ids), vectors)
    elif added_ids:
        index.upsert(list(added_ids), vectors[catalog:])
    return index


def _served_model(experiment: Experiment, adapter: str | Path | None) -> InterestModel:
    """The run's interest model, or the adapter's (merged into its weights)."""
    if adapter is not None:
        from llmrec.transfer import load_adapter  # peft is imported only for adapters

        return load_adapter(experiment, adapter, merge=True)
    folder = experiment.model_dir(InterestModel.name)
    if not (folder / "model.json").is_file():
        raise ConfigError(f"no trained interest model in {folder}; run `llmrec train -m llmrec` first")
    model = experiment.model(InterestModel.name)
    if not isinstance(model, InterestModel):
        raise ConfigError(f"{folder} holds no interest model")
    return model


def _write_bundle(folder: Path, experiment: Experiment, model: InterestModel, adapter: str | Path | None) -> None:
    """Every file of the bundle, the manifest last."""
    config, split, profiles = experiment.config, experiment.split, experiment.profiles
    model.save(folder / MODEL)
    if adapter is None:  # the run's reranker was trained over the run's own model
        _copy_saved_model(experiment.model_dir(Reranker.name), folder / RERANKER)
    if config.interest.profile_source in GRAPH_SOURCES:
        _copy_saved_model(experiment.model_dir(LONG_TERM_GRAPH), folder / GRAPH)
    save_split(split, folder / SPLIT)
    texts = experiment.dataset.catalog.items.set_index(ITEM_ID).reindex(split.item_ids)[TEXT].fillna("")
    facts = profiles.facts
    pd.DataFrame({ITEM_ID: facts.item_ids[1:], TEXT: texts.astype(str).tolist(), "title": facts.titles[1:],
                  "categories": [list(c) for c in facts.categories[1:]]}).to_parquet(folder / CATALOG, index=False)
    np.save(folder / ITEM_VECTORS, experiment.item_vectors)
    if config.index.host is None:
        retrieval_index(config, folder / INDEX, split, model.retrieval_table())
    profiles.store.export(folder / PROFILES, split.dataset)
    profiles.summaries.export(folder / SUMMARIES, split.dataset)
    profile_adapter = config.profile.writer == "llm" and config.profile.adapter is not None
    if profile_adapter:
        shutil.copytree(Path(config.profile.adapter).expanduser(), folder / PROFILE_ADAPTER)
    save_config(_bundle_config(config, profile_adapter), folder / CONFIG)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "source": {"run_dir": str(experiment.run_dir), "adapter": None if adapter is None else str(adapter)},
                "dataset": split.dataset, "versions": _versions(),
                "models": {"encoder": encoder_model_id(config.encoder),
                           "llm": f"{config.llm.backend}:{config.llm.model}", "profile_writer": profiles.model_id,
                           "interest_adapter": None if adapter is None else str(adapter)},
                "files": {name: _sha256(folder / name) for name in _files(folder)}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _bundle_config(config: RunConfig, profile_adapter: bool) -> RunConfig:
    """The run's configuration as the bundle serves it: `run_dir` is the bundle, the profile adapter its copy;
    paths to what the bundle does not hold are absolute; the training-time stores and caches are left out (the
    stores' profiles are in the bundle, serving writes to `online.state_dir`)."""
    replace = dataclasses.replace
    return replace(
        config, run_dir=".",
        data=replace(config.data, path=_absolute_if_local(config.data.path)),
        encoder=replace(config.encoder, model=_absolute_if_local(config.encoder.model), cache_dir=None),
        llm=replace(config.llm, model=_absolute_if_local(config.llm.model)),
        online=replace(config.online, events=_absolute(config.online.events),
                       state_dir=_absolute(config.online.state_dir)),
        profile=replace(config.profile, store=None, preload=None,
                        adapter=PROFILE_ADAPTER if profile_adapter else None),
        profile_tune=replace(config.profile_tune, out_dir=None))


def _resolved_config(folder: Path) -> RunConfig:
    """The bundle's configuration with its relative paths (`run_dir`, `profile.adapter`) made absolute."""
    config = load_config(folder / CONFIG)
    adapter = config.profile.adapter
    return dataclasses.replace(
        config, run_dir=str((folder / config.run_dir).resolve()),
        profile=dataclasses.replace(config.profile, adapter=None if adapter is None else str(folder / adapter)))


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _absolute_if_local(value: str | None) -> str | None:
    """A model or data path that exists here, made absolute; anything else (a hub name) as it is."""
    return _absolute(value) if value is not None and Path(value).expanduser().exists() else value


def _copy_saved_model(source: Path, target: Path) -> None:
    """A saved model's `model.json` and `weights.pt` (not its checkpoints), when it was trained."""
    if (source / "model.json").is_file():
        target.mkdir(parents=True)
        for name in ("model.json", "weights.pt"):
            shutil.copy2(source / name, target / name)


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished bundle `staging` to `out`, replacing a bundle there but keeping its `state/`."""
    if not out.exists():
        staging.rename(out)
        return
    if not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not an llmrec bundle; export to a new or empty folder")
    old = out.with_name(f".{out.name}-replaced-{os.getpid()}")
    out.rename(old)
    staging.rename(out)
    if (old / STATE).is_dir():
        (old / STATE).rename(out / STATE)
    shutil.rmtree(old)


def _export_reason(run: Path, bundle: Path, adapter: str | Path | None) -> str | None:
    """Why the run's bundle must be exported again (None when it is up to date)."""
    manifest = bundle / MANIFEST
    if not manifest.is_file():
        return "none exported yet"
    exported = manifest.stat().st_mtime
    sources = [run / "config.yaml"] + [path for name in _RUN_MODELS if (run / "models" / name).is_dir()
                                       for path in (run / "models" / name).iterdir() if path.is_file()]
    if adapter is not None:
        sources += [path for path in bundle.parent.iterdir() if path.is_file()]
    changed = [path for path in sources if path.stat().st_mtime > exported]
    if changed:
        return f"{changed[0]} changed since it was exported"
    version = json.loads(manifest.read_text(encoding="utf-8")).get("format_version")
    return None if version == FORMAT_VERSION else f"it has format {version}, this llmrec writes {FORMAT_VERSION}"


def _files(folder: Path) -> list[str]:
    """Every file under `folder` as a sorted relative POSIX path."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def _folder_digest(manifest: dict[str, Any], prefix: str) -> str | None:
    """One SHA-256 over the manifest's checksums of the files under `prefix/` (None when there are none)."""
    entries = sorted(f"{name}:{digest}" for name, digest in manifest["files"].items()
                     if name.startswith(prefix + "/"))
    return hashlib.sha256("\n".join(entries).encode()).hexdigest() if entries else None


def _copy_folder(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _versions() -> dict[str, str]:
    """Python's, llmrec's and the VERSIONED libraries' versions."""
    return {"python": platform.python_version(), "llmrec": llmrec.__version__,
            **{package: metadata.version(package) for package in VERSIONED}}
