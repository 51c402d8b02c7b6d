"""`llmrec` command line: data, embed, index, profile, train, rerank, evaluate, recommend, `run` for all of them,
`export` (the serving bundle of a trained run), `serve` (the HTTP API over a bundle or a trained run) and
`finetune` (adapt a trained interest model to a new domain).

Every command reads the same configuration: defaults < `--config FILE` (TOML or YAML) < `--set key=value`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer

from llmrec.config import MAX_K, load_config
from llmrec.errors import DataError, LlmrecError
from llmrec.shard import Shard
from llmrec.train.distributed import init_from_environment, is_main_process

if TYPE_CHECKING:
    from llmrec.experiment import Experiment

app = typer.Typer(
    help="LLM-augmented recommendation with text interest profiles. Each command works on one run folder "
    "(--set run_dir=...) built from a config file and overrides; `llmrec run` does everything in order.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="TOML or YAML config file.")]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config value, e.g. --set sasrec.epochs=5 (repeatable)."),
]
ModelOption = Annotated[
    Optional[list[str]], typer.Option("--model", "-m", help="Model name (repeatable); default: config `models`.")
]
HEADLINE = ["NDCG@10", "HR@10", "NDCG@5", "HR@5", "NDCG@20", "HR@20", "MRR", "Coverage@10",
            "NDCG@10-tail-users", "NDCG@10-tail-items", "HR@10-cold-items"]


def _experiment(config: str | None, overrides: list[str] | None):
    from llmrec.experiment import Experiment  # heavy imports only once a command runs

    experiment = Experiment(load_config(config, overrides))
    if is_main_process():
        experiment.save_config()
    return experiment


@app.command()
def data(config: ConfigOption = None, set_: SetOption = None,
         show: Annotated[int, typer.Option(help="Also print this many catalog rows.")] = 0) -> None:
    """Load and validate the dataset, and print its statistics and split sizes."""
    experiment = _experiment(config, set_)
    stats = experiment.dataset.stats()
    split = experiment.split
    stats.update({"split": split.protocol, "valid_cases": len(split.valid), "test_cases": len(split.test)})
    typer.echo(json.dumps(stats, indent=2))
    if show:
        typer.echo(experiment.dataset.catalog.items.head(show).to_string())


@app.command()
def embed(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Encode every catalog item's text (cached: a rerun encodes only new or changed items)."""
    experiment = _experiment(config, set_)
    started = time.perf_counter()
    vectors = experiment.item_vectors
    typer.echo(f"{len(vectors) - 1} item vectors of dimension {vectors.shape[1]} "
               f"({experiment.encoder.model_id}) in {time.perf_counter() - started:.1f}s")


@app.command()
def index(config: ConfigOption = None, set_: SetOption = None,
          rebuild: Annotated[bool, typer.Option(help="Drop and recreate the collection.")] = False) -> None:
    """Put the item vectors into ChromaDB and report its recall against exact search."""
    experiment = _experiment(config, set_)
    item_index = experiment.build_index(rebuild=rebuild)
    recall = experiment.index_recall()
    typer.echo(f"{item_index.count()} items indexed; ANN recall@{experiment.config.eval.ann_recall_n} "
               f"vs exact = {recall:.4f}")


@app.command()
def train(config: ConfigOption = None, set_: SetOption = None, model: ModelOption = None) -> None:
    """Train models (resuming from checkpoints) and save them under run_dir/models/. Under `torchrun
    --nproc_per_node N` the processes train one model together (data-parallel, DDP)."""
    init_from_environment()
    experiment = _experiment(config, set_)
    for name in model or experiment.config.models:
        experiment.train(name)
        if is_main_process():
            typer.echo(f"trained {name} -> {experiment.model_dir(name)}")


@app.command()
def evaluate(config: ConfigOption = None, set_: SetOption = None, model: ModelOption = None) -> None:
    """Full-ranking evaluation on the test split (models are trained first if missing)."""
    experiment = _experiment(config, set_)
    results = experiment.evaluate(model)
    typer.echo(format_table(results))
    typer.echo(f"\nfull results: {experiment.run_dir / 'results' / 'evaluation.json'}")


profile_app = typer.Typer(help="Interest profiles: write them (`llmrec profile`), or tune a writer for them "
                               "(`llmrec profile tune`).", no_args_is_help=False)
app.add_typer(profile_app, name="profile")


@profile_app.callback(invoke_without_command=True)
def profile(ctx: typer.Context, config: ConfigOption = None, set_: SetOption = None,
            user: Annotated[Optional[str], typer.Option(
                help="Print this user's interest summary, from their whole history (written if missing).")] = None,
            limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N users.")] = None,
            load: Annotated[Optional[str], typer.Option(help="First add the profiles of an export file.")] = None,
            export: Annotated[Optional[str], typer.Option(help="Then write all profiles to this .jsonl.gz.")] = None,
            ) -> None:
    """Write every user's long-term interest profile with the configured LLM (resumable: a rerun continues
    where it stopped and rewrites only users whose history, prompt or model changed). A tuned writer is used
    with `--set profile.adapter=<folder>`."""
    if ctx.invoked_subcommand is not None:
        return
    experiment = _experiment(config, set_)
    service = experiment.profiles
    if load:
        typer.echo(f"loaded {service.store.load_export(load)} profiles from {load}")
    if user is not None:
        typer.echo(json.dumps(service.summary(user).to_dict(), indent=2, ensure_ascii=False))
        return
    users = range(min(limit, experiment.split.num_users)) if limit else None
    report = service.write_all(users).to_dict()
    path = experiment.run_dir / "results" / "profiles.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    stats = report["writer"]
    typer.echo(f"{report['written']} profiles written, {report['skipped']} already stored "
               f"({report['users_per_min']:.1f} users/min, prompt {report['prompt_tok_per_s']:.0f} tok/s, "
               f"output {report['output_tok_per_s']:.0f} tok/s); by the LLM {stats['llm']}, "
               f"template fallbacks {stats['fallbacks']}, naming titles outside the history {stats['ungrounded']}")
    if export:
        count = service.store.export(export, experiment.dataset.name, (service.prompt_version, service.model_id))
        typer.echo(f"exported {count} profiles of this writer to {export}")


@profile_app.command()
def tune(config: ConfigOption = None, set_: SetOption = None,
         stage: Annotated[Literal["all", "sample", "train"], typer.Option(
             help="Run every stage, or only sampling (and scoring), or only training (and export).")] = "all",
         shard: Annotated[str, typer.Option(
             help="Sample only share K/N of the tuning users (every N-th from the K-th): start N processes, "
                  "K = 0..N-1, to sample on N cores; they append to the same samples file.")] = "0/1",
         ) -> None:
    """Tune a profile writer for ranking signal: sample profiles for the tuning users with the LLM, score each by
    how well its embedding ranks the user's next (training) items, train a LoRA adapter on each user's best sample
    (`profile_tune.method=sft`) or on best-vs-worst pairs (`dpo`), export it for llama.cpp. A later round samples
    from a tuned writer (`profile.adapter`) and may start from its adapter (`profile_tune.init_adapter`). Every
    stage resumes where it stopped; settings: `profile_tune.*`."""
    from llmrec.profiles.tuning import ProfileTuner

    share = Shard.parse(shard)
    experiment = _experiment(config, set_)
    settings = experiment.config.profile_tune
    out_dir = settings.out_dir or experiment.run_dir / "profile-tune"
    tuner = ProfileTuner(experiment.config, experiment.split, experiment.profiles, experiment.encoder,
                         experiment.item_vectors, out_dir)
    typer.echo(f"{len(tuner.groups.tuning)} tuning users, {len(tuner.groups.check)} check users set aside; "
               f"samples in {tuner.samples_path}")
    if stage in ("all", "sample"):
        rate = tuner.sample(shard=share)
        typer.echo(f"sampled {rate['users']} users ({rate['users_per_min']:.1f} users/min)")
    if stage in ("all", "train"):
        adapter = tuner.train()
        manifest = json.loads((adapter / "manifest.json").read_text())
        rewards = manifest["rewards"]
        typer.echo(f"adapter: {adapter} ({manifest['examples']} examples, {manifest['steps']} steps; reward of "
                   f"the chosen samples {rewards['chosen_mean']:.3f}, all accepted {rewards['accepted_mean']:.3f}, "
                   f"template {rewards['template_mean']:.3f})\nuse it: --set profile.adapter={adapter}")


@app.command()
def recommend(user: Annotated[Optional[str], typer.Option(
                  help="User id (their history includes events logged since).")] = None,
              interests: Annotated[Optional[str], typer.Option(
                  help="Instead of --user: what someone the data does not know likes, in their own words "
                       "(recommended by the run's trained `llmrec` model).")] = None,
              config: ConfigOption = None, set_: SetOption = None,
              run_dir: Annotated[Optional[str], typer.Option(
                  help="Trained run folder; default: the config's run_dir.")] = None,
              k: Annotated[int, typer.Option(min=1, max=MAX_K, help="How many items.")] = 10,
              exclude: Annotated[Optional[list[str]], typer.Option(
                  help="An item id never to return (repeatable); the user's history is always left out.")] = None,
              mode: Annotated[Literal["default", "hybrid"], typer.Option(
                  help="`hybrid` fills the list from the short-term, long-term and context interests and tags "
                       "each item.")] = "default") -> None:
    """Recommend k unseen items to a user, or to someone known only by their stated interests, with the served model (`Recommender.recommend`, as over HTTP: the
    interest model's retrieval, then the reranker where one is trained). Never trains: train first with
    `llmrec run` or `llmrec train -m llmrec`."""
    from llmrec.pipeline import Recommender

    if (user is None) == (interests is None):
        raise DataError("give exactly one of --user and --interests")
    recommender = Recommender.load(run_dir or load_config(config, set_).run_dir, set_)
    try:
        items = recommender.recommend(user, k, interests=interests, exclude=exclude or (), mode=mode)
    finally:
        recommender.close()
    for position, item in enumerate(items, 1):
        tag = f" <{item.tag}>" if item.tag else ""
        typer.echo(f"{position:>3}. [{item.item_id}] {item.text}  ({item.score:.3f}){tag}")


@app.command()
def rerank(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Train the reranker over the `llmrec` model's top-N candidates (if not trained yet) and compare retrieval
    alone with retrieval + rerank on the test split."""
    experiment = _experiment(config, set_)
    typer.echo(format_table(experiment.evaluate_rerank()))


@app.command()
def finetune(
    base: Annotated[str, typer.Option(help="Run folder of the trained base model (its config.yaml and "
                                           "models/llmrec/).")],
    config: ConfigOption = None, set_: SetOption = None,
    name: Annotated[Optional[str], typer.Option(
        help="Adapter name; it is saved as <target run_dir>/adapters/NAME. Default: from-<base dataset>, "
             "with -<N>pct when --fraction is below 1.")] = None,
    fraction: Annotated[float, typer.Option(
        help="Share of the target's training users to fine-tune on (0 < f <= 1, a seeded sample); validation "
             "and test cases are always all of them.")] = 1.0,
    zero_shot: Annotated[bool, typer.Option("--zero-shot", help="Only evaluate the transferred model.")] = False,
) -> None:
    """Adapt a trained interest model to a new domain. The --base run's network (text projection, sequence
    encoder, profile MLP, fusion) is transferred to the target run of --config/--set (its own data, profiles and
    split; items scored by their text), evaluated zero-shot, then LoRA adapters are trained on the target's
    training users and saved; prints NDCG@10 and HR@10 of both on the target's test split, the adapter's size
    and the training time. Serve it with `Recommender.load(run_dir, adapter=NAME)`."""
    from llmrec.eval.evaluator import FullRankingEvaluator
    from llmrec.transfer import BaseRun, adapt, check_fraction, transfer_to

    check_fraction(fraction)
    base_run = BaseRun.load(base)
    experiment = _experiment(config, set_)
    evaluator = FullRankingEvaluator(experiment.split, experiment.config.eval)
    results = {"zero-shot": evaluator.evaluate(transfer_to(base_run, experiment).model, desc="evaluate zero-shot")}
    if not zero_shot:
        default_name = f"from-{base_run.config.data.name}" + (f"-{fraction * 100:g}pct" if fraction < 1 else "")
        adapter = adapt(base_run, experiment, name or default_name, fraction)
        results["fine-tuned"] = evaluator.evaluate(adapter.model, desc="evaluate fine-tuned")
    typer.echo(format_table({row: {k: metrics[k] for k in ("NDCG@10", "HR@10")} for row, metrics in results.items()}))
    if not zero_shot:
        report = adapter.report
        typer.echo(f"\nadapter {adapter.folder}: {adapter.size_mb:.3f} MB, trained in {report.train_seconds:.1f}s "
                   f"({len(report.history)} epochs, best {report.best_epoch}) on {fraction:.0%} of the training users")


@app.command()
def run(config: ConfigOption = None, set_: SetOption = None,
        user: Annotated[Optional[str], typer.Option(help="Also recommend to this user.")] = None) -> None:
    """The whole job: data -> embed -> index -> profiles -> train -> rerank -> evaluate -> recommend, profile
    and explain through the online facade."""
    experiment = _experiment(config, set_)
    stats = experiment.dataset.stats()
    typer.echo(f"[1/7] data: {stats['users']} users, {stats['items_in_catalog']} items, "
               f"{stats['interactions']} interactions")
    _ = experiment.item_vectors
    typer.echo(f"[2/7] embedded {len(experiment.item_vectors) - 1} items with {experiment.encoder.model_id}")
    experiment.build_index()
    typer.echo(f"[3/7] indexed in ChromaDB; ANN recall@{experiment.config.eval.ann_recall_n} vs exact "
               f"= {experiment.index_recall():.4f}")
    report = experiment.profiles.write_all()
    experiment.profiles.release_llm()  # its idle threads would slow training down
    writer = report.writer
    written = (f"; of those written, {writer['llm']} by the LLM, template fallbacks {writer['fallbacks']}"
               if report.written else "")
    typer.echo(f"[4/7] profiles by {report.model_id}: {report.written} written, {report.skipped} already stored"
               f"{written}")
    for name in experiment.config.models:
        experiment.train(name)
    typer.echo(f"[5/7] trained {', '.join(experiment.config.models)}")
    results = experiment.evaluate()
    online = "llmrec" in experiment.config.models
    if online:
        experiment.reranker()
        results.update(experiment.evaluate_rerank())
        typer.echo("[6/7] trained the reranker over llmrec's top "
                   f"{experiment.config.rerank.candidates} candidates")
    typer.echo("[7/7] test metrics (leave-one-out, full ranking):\n" + format_table(results))
    user = user or str(experiment.split.user_ids[0])
    if online:
        from llmrec.serving.bundle import export_bundle

        bundle = export_bundle(experiment.run_dir)
        typer.echo(f"\nserving bundle: {bundle}")
        _show_online(bundle, user)
    else:
        _show_top(experiment, experiment.config.models[-1], user)
    typer.echo(f"\noutputs in {experiment.run_dir}")


def _show_top(experiment: Experiment, model: str, user_id: str, k: int = 5) -> None:
    """A trained model's top k for a known user: the exact ranking over the catalog (`llmrec.ranking.rank`),
    the user's history left out."""
    import numpy as np

    from llmrec.data.split import PADDING
    from llmrec.ranking import rank

    split = experiment.split
    user = split.user_index(user_id)
    top = rank(experiment.model(model), np.array([user]), [split.sequences[user]], k)
    texts = experiment.dataset.catalog.items.set_index("item_id")["text"]
    typer.echo(f"\ntop {k} for user {user_id} by {model}:")
    for position, item in enumerate((i for i in top.items[0].tolist() if i != PADDING), 1):
        typer.echo(f"{position:>3}. {texts[split.item_id(item)]}")


def _show_online(bundle: Path, user: str) -> None:
    """What the online facade answers for one user: profile, interest weights, list, explanation, update."""
    from llmrec.pipeline import Recommender

    recommender = Recommender.load(bundle)
    try:
        profile = recommender.profile(user)
        weights = profile["interest_weights"]
        text = profile["profile"]["text"] if profile["profile"] else "(none yet)"
        typer.echo(f"\nuser {user}'s long-term profile: {text}\ninterest weights: long-term "
                   f"{weights['long_term']:.2f} / short-term {weights['short_term']:.2f}")
        items = recommender.recommend(user, k=5)
        typer.echo(f"top 5 for user {user} (ChromaDB retrieval + rerank):")
        for rank, item in enumerate(items, 1):
            typer.echo(f"{rank:>3}. {item.text}")
        explanation = recommender.explain(user, items[0].item_id)
        typer.echo(f"why #1 ({explanation['source']}): {explanation['text']}")
        recommender.add_interaction(user, items[0].item_id)
        typer.echo(f"after user {user} takes #1, the new top 3: "
                   + "; ".join(item.text for item in recommender.recommend(user, k=3)))
    finally:
        recommender.close()


@app.command()
def export(run_dir: Annotated[str, typer.Argument(help="Trained run folder (its config.yaml and models/).")],
           out: Annotated[Optional[str], typer.Option(
               help="Bundle folder to write; default: RUN_DIR/bundle (an adapter's: its folder/bundle).")] = None,
           adapter: Annotated[Optional[str], typer.Option(
               help="Export the run's model adapted by this domain adapter (a name under RUN_DIR/adapters/ or a "
                    "folder, written by `llmrec finetune`), merged into its weights.")] = None) -> None:
    """Write the serving bundle of a trained run: model weights, user feature store, item ids, texts and vectors,
    the split's histories, the ChromaDB collection, reranker, profiles and config, with versions and checksums.
    `llmrec serve --run-dir BUNDLE` and `Recommender.load(BUNDLE)` load it from anywhere, without the raw data."""
    from llmrec.serving.bundle import export_bundle

    started = time.perf_counter()
    folder = export_bundle(run_dir, out, adapter)
    typer.echo(f"exported {folder} in {time.perf_counter() - started:.1f}s")


@app.command()
def serve(config: ConfigOption = None, set_: SetOption = None,
          run_dir: Annotated[Optional[str], typer.Option(
              help="Bundle (`llmrec export`) or trained run folder to serve (a run is served through its "
                   "bundle, exported when missing or stale); default: the config's run_dir.")] = None,
          host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the service to "
                                                 "the network.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
          adapter: Annotated[Optional[str], typer.Option(
              help="Serve the run with this domain adapter (a name under <run_dir>/adapters/ or a folder, "
                   "written by `llmrec finetune`) on top of its base model.")] = None,
          workers: Annotated[int, typer.Option(
              min=1, help="Worker processes, each with its own copy of the model (and LLM), sharing the run's "
                          "event log: an event one acknowledges is in every other's next answer.")] = 1) -> None:
    """Serve a trained run over HTTP: POST /recommend, GET /profile/{user_id}, GET /explain, POST /events,
    GET /healthz; interactive API docs at /docs."""
    import uvicorn

    from llmrec.pipeline import Recommender
    from llmrec.service import create_app
    from llmrec.service.workers import ServeTarget, run_workers

    folder = run_dir or load_config(config, set_).run_dir
    recommender = Recommender.load(folder, set_, adapter=adapter)  # checks the run, builds its item index once
    served = folder if adapter is None else f"{folder} with adapter {adapter}"
    typer.echo(f"serving {served} on http://{host}:{port} with {workers} worker process(es) (API docs at /docs)")
    if workers > 1:
        recommender.close()  # each worker loads its own
        target = ServeTarget(str(folder), list(set_ or []), adapter)
        target.sharing_cores(workers, recommender.config.llm.threads).export()
        run_workers(workers, host, port)
        return
    try:
        uvicorn.run(create_app(recommender), host=host, port=port, log_config=None)
    finally:
        recommender.close()  # finishes background profile refreshes


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table of the headline metrics, one row per model."""
    columns = [c for c in HEADLINE if any(c in r for r in results.values())]
    lines = [" | ".join(["model".ljust(12)] + [c.rjust(10) for c in columns])]
    for name, metrics in results.items():
        cells = [f"{metrics[c]:.4f}".rjust(max(10, len(c))) if c in metrics else "-".rjust(10) for c in columns]
        lines.append(" | ".join([name.ljust(12)] + cells))
    return "\n".join(lines)


def main() -> None:
    """Entry point: user-facing errors print one clear line and exit 2; `LLMREC_DEBUG=1` shows tracebacks."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    debug = os.environ.get("LLMREC_DEBUG", "") not in ("", "0")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted; training resumes from its last checkpoint when rerun", err=True)
        sys.exit(130)
    except (LlmrecError, OSError) as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for LLMREC_DEBUG=1
        if debug:
            raise
        typer.echo(f"internal error ({type(exc).__name__}: {exc}); rerun with LLMREC_DEBUG=1 for details "
                   "and please report it", err=True)
        sys.exit(1)
