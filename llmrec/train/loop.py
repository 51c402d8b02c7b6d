"""A small training loop for any torch model: epochs of batches, validation with early stopping, atomic
checkpoints every epoch, resumption after a kill (same batches, same random state), and data-parallel training
over several processes (torch DDP, see `llmrec.train.distributed`)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from llmrec.config import TrainingConfig
from llmrec.train.distributed import rank_and_world

if TYPE_CHECKING:
    from llmrec.data.split import Split

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    seconds: float
    valid: float | None = None


@dataclass
class TrainingReport:
    """What happened: the learning curve, the best validation score and when, and the cost."""

    history: list[EpochRecord] = field(default_factory=list)
    best_valid: float = -1.0
    best_epoch: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def epoch_seconds(self) -> float:
        times = [r.seconds for r in self.history]
        return float(np.mean(times)) if times else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "history"},
                "epoch_s": self.epoch_seconds, "epochs_run": len(self.history),
                "learning_curve": [asdict(r) for r in self.history]}


SCHEDULE_ONLY = {"epochs", "patience", "threads", "device"}
"""Training settings that change how long, how fast or where a model trains, not what it learns."""


def checkpoint_fingerprint(model: str, config: TrainingConfig, seed: int, split: "Split", *extra: Any) -> str:
    """Identifies what a checkpoint can continue: the model, its settings except the schedule, the seed, the
    data (dataset, protocol, sizes) and any `extra` JSON-able inputs."""
    settings = {k: v for k, v in asdict(config).items() if k not in SCHEDULE_ONLY}
    key = json.dumps([model, settings, seed, split.dataset, split.protocol, split.num_items,
                      sum(len(s) for s in split.train), *extra], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Train `model` by minimising `loss_fn(module, batch)` over `batches(epoch)`; keep the weights with the best
    `validate()` score (higher is better) and stop after `patience` validations without improvement.

    `module` is `model`, or its DistributedDataParallel wrapper when a process group is running: each process
    then takes every world-size-th batch and DDP averages the gradients. Every process validates (so all take
    the same early-stopping decisions); only rank 0 writes checkpoints. With `checkpoint_dir`, the full
    training state is written after every epoch to `last.pt` (atomically) and a later `fit` with the same
    `fingerprint` continues from it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[Any], torch.Tensor],
        batches: Callable[[int], Iterable[Any]],
        validate: Callable[[], float],
        schedule: TrainingConfig,
        checkpoint_dir: str | Path | None = None,
        fingerprint: str = "",
        validate_first: bool = False,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.validate = validate
        self.schedule = schedule
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.fingerprint = fingerprint
        self.validate_first = validate_first
        """Validate the starting weights too, so they are kept when no epoch beats them (fine-tuning)."""
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
        self.rank, self.world = rank_and_world()
        self.module: torch.nn.Module = (
            DistributedDataParallel(model, find_unused_parameters=True) if self.world > 1 else model
        )
        if self.world > 1:
            log.info("data-parallel training: rank %d of %d processes", self.rank, self.world)

    def fit(self) -> TrainingReport:
        report, best_state, start_epoch, waited = self._resume()
        if self.validate_first and start_epoch == 1:
            self.model.eval()
            report.best_valid, report.best_epoch = float(self.validate()), 0
            best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        started = time.perf_counter() - report.train_seconds
        for epoch in range(start_epoch, self.schedule.epochs + 1):
            t0 = time.perf_counter()
            loss = self._train_epoch(epoch)
            record = EpochRecord(epoch, loss, time.perf_counter() - t0)
            if epoch % self.schedule.eval_every == 0 or epoch == self.schedule.epochs:
                self.model.eval()
                record.valid = float(self.validate())
                if record.valid > report.best_valid:
                    report.best_valid, report.best_epoch, waited = record.valid, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    waited += 1
            report.history.append(record)
            report.train_seconds = time.perf_counter() - started
            report.peak_rss_mb = peak_rss_mb()
            log.info("epoch %d loss %.4f valid %s (best %.4f @ %d) %.1fs", epoch, loss, record.valid,
                     report.best_valid, report.best_epoch, record.seconds)
            if waited >= self.schedule.patience:
                report.stopped_early = True
            self._checkpoint(epoch, report, best_state, waited)
            if report.stopped_early:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return report

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        total, count = 0.0, 0
        batches: Iterable[Any] = self.batches(epoch)
        if self.world > 1:  # every process must run the same number of steps
            all_batches = list(batches)
            batches = all_batches[self.rank:len(all_batches) - len(all_batches) % self.world:self.world]
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=self.rank > 0 or None)
        for batch in bar:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.module, batch)
            loss.backward()
            self.optimizer.step()
            total, count = total + loss.item(), count + 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        return total / max(count, 1)

    def _checkpoint(self, epoch: int, report: TrainingReport, best_state: dict | None, waited: int) -> None:
        if self.checkpoint_dir is None or self.rank > 0:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "fingerprint": self.fingerprint, "epoch": epoch, "waited": waited, "report": report,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "best_state": best_state,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }
        tmp = self.checkpoint_dir / "last.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_dir / "last.pt")

    def _resume(self) -> tuple[TrainingReport, dict | None, int, int]:
        path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        if path is None or not path.is_file():
            return TrainingReport(), None, 1, 0
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to another configuration; starting over", path)
            return TrainingReport(), None, 1, 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        report: TrainingReport = state["report"]
        log.info("resuming from %s after epoch %d", path, state["epoch"])
        start = self.schedule.epochs + 1 if report.stopped_early else state["epoch"] + 1
        return report, state["best_state"], start, state["waited"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
