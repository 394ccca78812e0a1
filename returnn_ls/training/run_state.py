"""What survives an epoch: checkpoints, ``learning_rate_file``, ``metrics.json``, and resuming from them.

After each epoch: the history entry, the scores into the learning-rate control, then (rank 0 only) the checkpoint
(every ``save_interval`` epochs and after the last), the ``learning_rate_file`` and ``metrics.json``, each written
atomically. A rerun of the same command resumes after the newest complete checkpoint: parameters, optimizer
state, learning-rate control, history, global step; the data order and random seeds of an epoch are functions of
the seed and the epoch. So the rerun ends with the results of an uninterrupted run, and the history has every
epoch once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from returnn_ls.training.checkpoints import (
    atomic_write,
    checkpoint_path,
    find_checkpoints,
    load_latest,
    save_checkpoint,
)
from returnn_ls.training.config import ConfigError
from returnn_ls.training.lr_file import read_lr_file, write_lr_file
from returnn_ls.training.setup import Setup

__all__ = ["OutputWriteError", "RunState", "write_json"]


class OutputWriteError(OSError):
    """A checkpoint, the ``learning_rate_file`` or ``metrics.json`` could not be written after an epoch (e.g. the
    disk is full); the message names the epoch, the file and the checkpoint a rerun resumes from."""


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, ``fsync``, rename)."""
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))


class RunState:
    """History, warnings and files of a training run (see the module docstring)."""

    def __init__(self, setup: Setup, out_dir: str, extra: dict, log: Callable[[str], None]):
        self.s, self.out_dir, self.log = setup, out_dir, log
        self.metrics: dict[str, Any] = {"backend": setup.backend, "device": setup.device,
                                        "config": setup.config.filename, **extra, "history": []}  # fmt: skip
        self.step = 0
        self.first_score: tuple[str, float] | None = None
        self.steps_estimate: int | None = None
        self.init_model: str | None = None

    @property
    def is_main(self) -> bool:
        return self.s.dist.is_main

    @property
    def diverged(self) -> bool:
        """:return: whether the run was reported as diverging (reported once per run)"""
        return any("training diverges" in w for w in self.metrics.get("warnings", ()))

    def warn(self, message: str) -> None:
        """Print a warning (once per run) and keep it in ``metrics.json``."""
        if message not in self.metrics.setdefault("warnings", []):
            self.metrics["warnings"].append(message)
            if self.is_main:
                print(f"returnn-ls: warning: {message}", file=sys.stderr)

    # -- resuming ----------------------------------------------------------------------------------------------

    def resume(self) -> int:
        """Restore the newest complete checkpoint at the ``model`` prefix; :return: the first epoch to train"""
        checkpoint = load_latest(self.s.model_prefix, self.warn)
        if checkpoint is None:
            self._fresh_start()
            return 1
        meta = checkpoint.meta
        if meta.get("backend") != self.s.backend:
            raise self._model_error(f"checkpoint {checkpoint.path} was written by the {meta.get('backend')} backend; "
                                    f"continue it with --backend {meta.get('backend')}")  # fmt: skip
        try:
            self.s.task.load(checkpoint.params, f"checkpoint {checkpoint.path}")
            self.s.trainer.load_optimizer_state(self.s.optimizer, [p for _, p in self.s.params], meta["optimizer"],
                                                checkpoint.optimizer)  # fmt: skip
        except ValueError as exc:
            raise self._model_error(
                f"{exc}; set another 'model' prefix (or delete the checkpoints) to start over"
            ) from None
        self.s.lr_control.load_state(meta["lr_control"])
        self.metrics = {**meta["metrics"], "backend": self.s.backend, "device": self.s.device,
                        "config": self.s.config.filename}
        self.step = int(meta["step"])
        self.first_score = tuple(meta["first_score"]) if meta.get("first_score") else None
        self.steps_estimate = meta.get("steps_estimate")
        if checkpoint.epoch >= self.s.num_epochs:
            self.log(f"all {self.s.num_epochs} epochs are trained already ({checkpoint.path}); nothing to do")
        else:
            self.log(f"resuming after epoch {checkpoint.epoch} from {checkpoint.path}")
        return checkpoint.epoch + 1

    def _model_error(self, message: str) -> ConfigError:
        return self.s.config.error(message, "model") if self.s.config.has("model") else ConfigError(message)

    def _fresh_start(self) -> None:
        if self.init_model:
            import numpy as np

            try:
                with np.load(self.init_model) as f:
                    arrays = {k: f[k] for k in f.files}
                self.s.task.load(arrays, f"--init-model {self.init_model}")
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot use --init-model {self.init_model!r}: {exc}") from None
        lr_file = self.s.lr_file
        if lr_file and os.path.exists(lr_file):
            try:
                self.s.lr_control.epoch_data = read_lr_file(lr_file)
            except (OSError, ValueError) as exc:
                raise self.s.config.error(str(exc), "learning_rate_file") from None
            self.log(f"learning rates and scores of {len(self.s.lr_control.epoch_data)} epochs read from {lr_file}")

    # -- after each epoch --------------------------------------------------------------------------------------

    def note_first_score(self, scores: dict[str, tuple[float, float]], errors: set[str]) -> None:
        """Remember the first step's first loss score (to notice a diverging training later)."""
        if self.first_score is None:
            name = next((n for n in scores if n not in errors), None)
            if name is not None and scores[name][1]:
                self.first_score = (name, scores[name][0] / scores[name][1])

    def end_epoch(self, epoch: int, lr: float, seconds: float, train: dict, dev: dict, extra: dict, *,
                  skipped: int, steps: int, step: int) -> None:  # fmt: skip
        """Add the history entry of ``epoch`` and give its scores to the learning-rate control."""
        entry: dict[str, Any] = {"epoch": epoch, "learning_rate": lr, "seconds": round(seconds, 3), "steps": steps,
                                 "train_scores": train, "dev_scores": dev}  # fmt: skip
        if skipped:
            entry["nonfinite_skipped"] = skipped
        if self.s.task.kind == "network" and extra:
            entry.update({"train_loss": next(iter(train.values()), float("nan")), "dev_loss": extra["dev_loss"],
                          "dev_error_rate": extra["dev_error_rate"], "dev_ece": extra["dev_ece"]})  # fmt: skip
            self.metrics["error_rate"] = "frame" if extra["frame_level"] else "label"
            if len(extra.get("dev_loss_terms", ())) > 1:  # the unsmoothed dev loss of several losses is their sum
                self.metrics["dev_loss_terms"] = extra["dev_loss_terms"]
            self.metrics["reliability"] = extra["reliability"]
        self.metrics["history"].append(entry)
        scores = {self.s.task.score_key("train", k): v for k, v in train.items()}
        scores.update({self.s.task.score_key("dev", k): v for k, v in dev.items()})
        self.s.lr_control.set_epoch_error(epoch, scores)
        self.step = step

    def save(self, epoch: int, step: int) -> None:
        """Write the checkpoint (when due), the ``learning_rate_file`` and ``metrics.json`` (rank 0 only).

        :raise OutputWriteError: if one cannot be written (e.g. the disk is full), naming the epoch and the file;
            each file is written atomically, so the previous checkpoint stays complete and a rerun resumes from it
        """
        if not self.is_main:
            return
        if epoch % self.s.save_interval == 0 or epoch == self.s.num_epochs:
            params = {n: self.s.trainer.to_numpy(v) for n, v in self.s.task.parameters().items()}
            opt_meta, opt_arrays = self.s.trainer.optimizer_state(self.s.optimizer, [p for _, p in self.s.params])
            meta = {"backend": self.s.backend, "step": step, "seed": self.s.seed, "config": self.s.config.filename,
                    "optimizer": opt_meta, "lr_control": self.s.lr_control.state(), "metrics": self.metrics,
                    "first_score": self.first_score, "steps_estimate": self.steps_estimate}  # fmt: skip
            path = checkpoint_path(self.s.model_prefix, epoch)
            self._guarded(epoch, f"the checkpoint {path}",
                          lambda: save_checkpoint(self.s.model_prefix, epoch, meta, params, opt_arrays))  # fmt: skip
        if self.s.lr_file:
            self._guarded(epoch, f"the learning_rate_file {self.s.lr_file}",
                          lambda: write_lr_file(self.s.lr_file, self.s.lr_control.epoch_data))  # fmt: skip
        self._guarded(epoch, f"{os.path.join(self.out_dir, 'metrics.json')}", self.write_metrics)

    def _guarded(self, epoch: int, what: str, write: Callable[[], Any]) -> None:
        """Run ``write``; an OSError becomes an :class:`OutputWriteError` naming ``epoch``, ``what`` and the newest
        complete checkpoint"""
        try:
            write()
        except OSError as exc:
            found = find_checkpoints(self.s.model_prefix)
            previous = next(((e, p) for e, p in found if e < epoch), None)
            resume = (f"the checkpoint of epoch {previous[0]} ({previous[1]}) is intact; a rerun of the same command "
                      "resumes after it" if previous else "no earlier checkpoint exists")  # fmt: skip
            reason = f"{exc.strerror or exc}" + (f" [errno {exc.errno}]" if exc.errno else "")
            raise OutputWriteError(f"epoch {epoch}: cannot write {what}: {reason}; {resume}") from exc

    def write_metrics(self) -> None:
        """Write ``metrics.json`` into the output folder (rank 0 only)."""
        if self.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
            write_json(os.path.join(self.out_dir, "metrics.json"), self.metrics)

    def finish(self) -> dict:
        """:return: the metrics (``metrics.json`` rewritten: a resumed run that had nothing to do still has one)"""
        self.write_metrics()
        return self.metrics
