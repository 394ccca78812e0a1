"""The one training loop: rf-style configs and network dicts, torch and TensorFlow.

Per epoch: the learning rate of the epoch (learning-rate control), the epoch's random seed, the train dataset's
order of the epoch; per batch: the ``extern_data`` :class:`~returnn_ls.TensorDict`, a fresh run context,
``train_step``, the total loss, its gradient, clipping and the optimizer's step (skipped, or training stopped,
when the loss or the gradient is not finite); then the dev set with the same ``train_step`` and
``train_flag=False``, without gradients. Then the scores go to the learning-rate control, and a checkpoint,
the ``learning_rate_file`` and ``metrics.json`` are written (see :mod:`returnn_ls.training.run_state`).

On TensorFlow the step runs in ``tf.function`` (one trace for all batch shapes); if the ``train_step`` reads
``get_run_ctx().epoch`` it is traced once per epoch, if it reads ``.step`` or cannot be traced, it runs eagerly.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls import _backend
from returnn_ls.training.config import ConfigError
from returnn_ls.training.config_names import warn_once
from returnn_ls.training.data import iterate_batches
from returnn_ls.training.run_state import RunState
from returnn_ls.training.scores import ScoreAccumulator, progress_bar, summary_line
from returnn_ls.training.setup import Setup, seed_everything

__all__ = ["Engine", "NonFiniteLossError"]

#: A train score this many times the first step's score means the training diverges (a warning).
EXPLOSION_FACTOR = 100.0


class NonFiniteLossError(FloatingPointError):
    """Training stopped: a loss or gradient was NaN or infinite (the message names epoch, step and sequences)."""


class Engine:
    """Trains a :class:`~returnn_ls.training.setup.Setup` (see the module docstring).

    Example: ``Engine(build_setup(config, "torch", out_dir="out"), "out").run()`` (what ``train()`` does)

    :param out_dir: where ``metrics.json`` goes
    :param progress: show a progress bar per epoch on a terminal
    :param log: prints the summary line of each epoch
    """

    def __init__(self, setup: Setup, out_dir: str, *, progress: bool = True, log: Callable[[str], None] = print,
                 extra: dict | None = None):  # fmt: skip
        self.s = setup
        self.log = log if setup.dist.is_main else (lambda _: None)
        self.progress = progress and setup.dist.is_main
        self.state = RunState(setup, out_dir, extra or {}, self.log)
        self.backend = _backend.selected_backend()
        self.compiled = setup.trainer.compiles_step is not None
        self.epoch, self.step = 1, 0
        self._fns: dict[tuple, Callable] = {}
        self._traced: set[str] = set()
        self._accessed: set[str] = set()
        self._error_names: set[str] = set()
        self._weight = 1.0
        if self.compiled:
            setup.trainer.set_input_signature(self._signature())

    def run(self) -> dict:
        """Train the remaining epochs (resuming after the last complete checkpoint); :return: ``metrics.json``"""
        start = self.state.resume()
        self.step = self.state.step
        if start <= self.s.num_epochs:
            self.log(f"training on {self.s.backend}, device {self.s.device}")
            if self.s.task.kind != "network" and self.s.dev_data is not None:
                self.log("note: the dev ECE and the unsmoothed dev loss are computed for network dicts only; this "
                         "rf-style config reports the losses its train_step marks")  # fmt: skip
        for epoch in range(start, self.s.num_epochs + 1):
            self.epoch = epoch
            self._epoch(epoch)
        return self.state.finish()

    def _epoch(self, epoch: int) -> None:
        begin = time.perf_counter()
        lr = self.s.lr_control.learning_rate(epoch)
        self.s.trainer.set_learning_rate(self.s.optimizer, lr)
        seed_everything(int(np.random.SeedSequence([self.s.seed, epoch]).generate_state(1)[0]), self.s.trainer)
        train, skipped, steps = self._train_epoch(epoch)
        dev = self._eval_epoch(epoch) if self.s.dev_data is not None else {}
        extra = self.s.task.dev_metrics() if self.s.dev_data is not None else {}
        seconds = time.perf_counter() - begin
        self.state.end_epoch(epoch, lr, seconds, train, dev, extra, skipped=skipped, steps=steps, step=self.step)
        self._check_explosion(epoch, train, lr)
        shown = {"dev_ece": extra["dev_ece"]} if "dev_ece" in extra else {}
        if getattr(self.s.task, "eval_network", None) is not None and "dev_loss" in extra:
            shown["dev_score_unsmoothed"] = extra["dev_loss"]
        self.log(summary_line(epoch, train, seconds, dev, shown, backend=self.s.backend))
        self.state.save(epoch, self.step)

    # -- epochs ------------------------------------------------------------------------------------------------

    def _batches(self, dataset: Any, epoch: int) -> Iterator[Any]:
        """Yield the batches of ``epoch``; a data error (a bad file, a bad sequence) becomes a :class:`ConfigError`"""
        name = "train" if dataset is self.s.train_data else "dev"
        try:
            dataset.init_seq_order(epoch)
            yield from iterate_batches(dataset, **self.s.batching, train=name == "train")
        except (ValueError, OSError, KeyError) as exc:
            raise ConfigError(f"{name} data: {exc}", self.s.config.filename, self.s.config.line_of(name)) from exc

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], int, int]:
        scores, skipped, steps = ScoreAccumulator(), 0, 0
        self.s.task.set_train_flag(True)
        with progress_bar(epoch, self.state.steps_estimate, self.progress) as bar:
            for batch in self._batches(self.s.train_data, epoch):
                result = self._run("train", batch)
                step_scores = self._step_scores(result, train=True)
                bad = not result.finite or not all(np.isfinite(v[0]) for k, v in step_scores.items()
                                                   if k not in self._error_names)  # fmt: skip
                if bad:
                    self._nonfinite(epoch, steps, batch, step_scores)
                    skipped += 1
                else:
                    scores.add(step_scores)
                    self.state.note_first_score(step_scores, self._error_names)
                self.step, steps = self.step + 1, steps + 1
                bar.update(1)
                bar.set_postfix_str(" ".join(f"{k} {v[0] / max(v[1], 1e-30):.4g}" for k, v in step_scores.items()))
        self.state.steps_estimate = steps
        return self._ordered(scores.result()), skipped, steps

    def _eval_epoch(self, epoch: int) -> dict[str, float]:
        scores = ScoreAccumulator()
        self.s.task.set_train_flag(False)
        self.s.task.start_dev()
        for batch in self._batches(self.s.dev_data, epoch):
            result = self._run("eval", batch)
            scores.add(self._step_scores(result, train=False))
        return self._ordered(scores.result())

    def _ordered(self, scores: dict[str, float]) -> dict[str, float]:
        """:return: the scores, losses before errors (RETURNN's order: ``score`` then ``error``)"""
        return dict(sorted(scores.items(), key=lambda kv: kv[0] in self._error_names))

    def _step_scores(self, result: Any, train: bool) -> dict[str, tuple[float, float]]:
        scores = {**ScoreAccumulator.step_scores(result.outputs), **self.s.task.host_scores(result.outputs, train)}
        self._error_names |= {k for k in scores if k.startswith("error")} if self.s.task.kind == "network" else set()
        if train and self.s.dist.active:
            names = list(scores)
            flat = np.array([v for n in names for v in scores[n]], dtype=np.float64)
            flat = self.s.trainer.to_numpy(self.s.trainer.all_reduce_sum(self.backend.convert(flat)))
            scores = {n: (float(flat[2 * i]), float(flat[2 * i + 1])) for i, n in enumerate(names)}
        return scores

    def _nonfinite(self, epoch: int, steps: int, batch: Any, scores: dict) -> None:
        values = ", ".join(f"{k} {v[0]:.4g}" for k, v in scores.items())
        where = f"epoch {epoch}, step {steps} (global step {self.step}): the training loss or its gradient is not " \
                f"finite ({values}) for the batch of the sequences {list(batch.seq_tags)}"  # fmt: skip
        if self.s.stop_on_nonfinite:
            raise NonFiniteLossError(f"{where}; training stopped, no checkpoint written for this epoch (set "
                                     "stop_on_nonfinite_train_score = False to skip such batches)")  # fmt: skip
        warn_once(f"{where}; the batch is skipped (stop_on_nonfinite_train_score = False)")

    def _check_explosion(self, epoch: int, train: dict[str, float], lr: float) -> None:
        reference = self.state.first_score
        if reference is None or reference[1] <= 0:
            return
        name, first = reference
        value = train.get(name, float("nan"))
        if np.isfinite(value) and value > EXPLOSION_FACTOR * first and not self.state.diverged:
            self.state.warn(
                f"epoch {epoch}: the train score {name!r} is {value:.4g}, {value / first:.3g} times the score of the "
                f"first step ({first:.4g}): training diverges; the learning rate {lr:g} is probably too large "
                "(config key learning_rate)"
            )

    # -- steps -------------------------------------------------------------------------------------------------

    def _inputs(self, batch: Any, train: bool) -> dict[str, np.ndarray]:
        """:return: the arrays of ``batch`` (in training: this worker's shard) by ``extern_data`` key"""
        batch, self._weight = self.s.dist.shard(batch) if train else (batch, 1.0)
        inputs = {}
        for key, entry in self.s.extern.entries.items():
            inputs[key] = np.asarray(batch.data[key], dtype=entry.dtype)
            if entry.time_dim is not None:
                inputs[f"{key}:seq_len"] = np.asarray(batch.lengths[key], dtype=np.int32)
        return inputs

    def _signature(self) -> dict[str, tuple[int | None, ...]]:
        out = {}
        for key, entry in self.s.extern.entries.items():
            out[key] = tuple(None if d.dimension is None else d.dimension for d in entry.dims)
            if entry.time_dim is not None:
                out[f"{key}:seq_len"] = (None,)
        return out

    def _run(self, mode: str, batch: Any) -> Any:
        inputs = self._inputs(batch, mode == "train")
        trainer = self.s.trainer
        while True:
            fn = self._fn(mode)
            try:
                if mode == "train":
                    params = [p for _, p in self.s.params]
                    result = trainer.train_step(
                        fn, inputs, params, self.s.optimizer, self.s.step_options, self.compiled
                    )
                else:
                    result = trainer.eval_step(fn, inputs, self.compiled)
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - a trace failure falls back to eager; user errors are reported
                if self.compiled and mode not in self._traced:
                    warn_once(f"the train_step cannot be compiled with {self.s.trainer.compiles_step} "
                              f"({type(exc).__name__}: {exc}); it runs eagerly (slower)")  # fmt: skip
                    self.compiled = False
                    continue
                raise self._user_error(exc) from exc
            self._traced.add(mode)
            if self.compiled and "step" in self._accessed:
                warn_once(f"the train_step reads get_run_ctx().step, so it runs eagerly, not compiled with "
                          f"{self.s.trainer.compiles_step} (slower)")  # fmt: skip
                self.compiled = False
            return result

    def _fn(self, mode: str) -> Callable:
        key = (mode, self.epoch if "epoch" in self._accessed and self.compiled else None, self.compiled)
        if key not in self._fns:
            self._fns[key] = self._make_fn(mode == "train")
        return self._fns[key]

    def _make_fn(self, train: bool) -> Callable:
        def fn(raw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            extern = self.s.extern.tensor_dict(raw, self.backend)
            ctx = rf.init_train_step_run_ctx(train_flag=train, step=self.step, epoch=self.epoch)
            try:
                self.s.task.train_step(model=self.s.task.model, extern_data=extern)
                if not ctx.losses:
                    raise ConfigError("train_step marked no loss: call loss.mark_as_loss(name) or "
                                      "rf.get_run_ctx().mark_as_loss(loss, name)", self.s.config.filename)  # fmt: skip
                total, outputs = self._losses(ctx, train)
                outputs.update(self.s.task.extras(train))
                self._accessed |= ctx.accessed
                self._error_names |= {n for n, loss in ctx.losses.items() if loss.as_error}
                return total, outputs
            finally:
                rf.reset_run_ctx()

        return fn

    def _losses(self, ctx: Any, train: bool) -> tuple[Any, dict[str, Any]]:
        """:return: the total loss (raw) and per loss its summed loss and inverse norm factor (raw)"""
        outputs, total = {}, None
        for name, loss in ctx.losses.items():
            summed = loss.get_summed_loss()
            summed = summed * self._weight if self._weight != 1.0 else summed
            norm = rf.convert_to_tensor(loss.get_inv_norm_factor(), dims=(), dtype="float32")
            norm = rf.cast(norm, "float32") * self._weight if self._weight != 1.0 else rf.cast(norm, "float32")
            outputs[f"loss:{name}:sum"], outputs[f"loss:{name}:norm"] = summed.raw_tensor, norm.raw_tensor
            if loss.as_error or loss.scale == 0.0:
                continue
            if loss.use_normalized_loss:
                global_norm = norm
                if self.s.dist.active:
                    global_norm = rf.convert_to_tensor(self.s.trainer.all_reduce_sum(norm.raw_tensor), dims=())
                summed = summed / global_norm
            term = summed * loss.scale if loss.scale != 1.0 else summed
            total = term if total is None else total + term
        if total is None:
            if train:
                raise ConfigError("train_step marked only errors (as_error=True) or losses with scale 0: "
                                  "nothing to optimize", self.s.config.filename)  # fmt: skip
            total = rf.convert_to_tensor(0.0, dims=())
        return total.raw_tensor, outputs

    def _user_error(self, exc: Exception) -> Exception:
        """:return: a :class:`ConfigError` at the config's line if ``exc`` was raised in the config's code"""
        filename = self.s.config.filename
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
        if not frames:
            return exc
        return ConfigError(f"train_step raised {type(exc).__name__}: {exc}", filename, frames[-1].lineno)
