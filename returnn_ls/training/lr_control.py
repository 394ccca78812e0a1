"""Learning-rate control with RETURNN's rules and config names, and RETURNN's ``learning_rate_file`` format.

``learning_rate_control``:

- ``"constant"`` (default): ``learning_rate`` every epoch (or ``learning_rates``: a list, epoch 1 first, or a dict
  ``{epoch: lr}``; epochs without an entry keep the last learning rate).
- ``"newbob"`` (also ``"newbob_rel"``, ``"newbob_relative"``): after each epoch, the relative change of the error
  measure ``(new - old) / |new|`` (``/ |old|`` with ``newbob_relative_error_div_by_old``) is compared with
  ``newbob_relative_error_threshold`` (default -0.01): above it, the learning rate is multiplied by
  ``learning_rate_decay`` (alias ``newbob_learning_rate_decay``, default 0.5), else by ``learning_rate_growth``
  (default 1), never below ``min_learning_rate``.
- ``"newbob_abs"``: the same with the absolute change ``new - old`` against ``newbob_error_threshold``.
- ``"newbob_multi_epoch"``: the mean relative change over the last ``newbob_multi_num_epochs`` (default 5) epochs,
  checked every ``newbob_multi_update_interval`` epochs; decay above ``newbob_relative_error_threshold``, growth
  below ``newbob_relative_error_grow_threshold``.

The error measure is ``learning_rate_control_error_measure`` if set, else ``dev_score`` (network dicts), else the
first dev score by name (``dev_loss_ce`` for an rf-style loss ``"ce"``), else the train score: RETURNN's choice.
``learning_rate_control_relative_error_relative_lr`` and ``learning_rate_control_min_num_epochs_per_new_lr`` work
as in RETURNN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from returnn_ls.training.config import Config
from returnn_ls.training.lr_file import EpochData, read_lr_file, write_lr_file

__all__ = ["EpochData", "LearningRateControl", "lr_control_from_config", "read_lr_file", "write_lr_file"]

KINDS = {"constant": "constant", "newbob": "relative", "newbob_rel": "relative", "newbob_relative": "relative",
         "newbob_abs": "absolute", "newbob_multi_epoch": "multi"}  # fmt: skip


@dataclass
class LearningRateControl:
    """The learning rate of each epoch, from the scores of the epochs before (RETURNN's rules, see the module).

    Example::

        control = LearningRateControl("relative", 0.01, decay=0.9, threshold=0.0)   # learning_rate_control = "newbob"
        lr = control.learning_rate(epoch)            # before the epoch
        control.set_epoch_error(epoch, {"train_score": 0.3, "dev_score": 0.25})     # after it
    """

    kind: str
    default_learning_rate: float
    min_learning_rate: float = 0.0
    fixed: dict[int, float] = field(default_factory=dict)
    error_measure_key: str | list[str] | None = None
    relative_to_lr: bool = False
    min_epochs_per_new_lr: int = 0
    div_by_old: bool = False
    decay: Any = 0.5
    growth: Any = 1.0
    threshold: float = -0.01
    grow_threshold: float = -0.01
    abs_threshold: float = -0.01
    multi_num_epochs: int = 5
    multi_update_interval: int = 5
    epoch_data: dict[int, EpochData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for epoch, lr in self.fixed.items():
            self.epoch_data.setdefault(epoch, EpochData(float(lr)))

    # -- the learning rate of an epoch ------------------------------------------------------------------------

    def learning_rate(self, epoch: int) -> float:
        """:return: the learning rate of ``epoch`` (computed once, then stored with the epoch's data)"""
        if epoch in self.epoch_data:
            return self.epoch_data[epoch].learning_rate
        lr = self._new_learning_rate(epoch)
        self.epoch_data[epoch] = EpochData(lr)
        return lr

    def _new_learning_rate(self, epoch: int) -> float:
        if self.min_epochs_per_new_lr > 1:
            recent = [self.epoch_data[e].learning_rate for e in self._before(epoch)[-self.min_epochs_per_new_lr :]]
            if len(set(recent)) >= 2 or 0 < len(recent) < self.min_epochs_per_new_lr:
                return recent[-1]
        return {"constant": self._constant, "relative": self._relative, "absolute": self._absolute,
                "multi": self._multi}[self.kind](epoch)  # fmt: skip

    def _before(self, epoch: int) -> list[int]:
        return sorted(e for e in self.epoch_data if e < epoch)

    def _constant(self, epoch: int) -> float:
        before = self._before(epoch)
        return self.epoch_data[before[-1]].learning_rate if before else self.default_learning_rate

    def _update(self, lr: float, decay: bool, grow: bool) -> float:
        """:return: ``lr`` decayed (not below ``min_learning_rate``) or grown; a factor or a function of ``lr``"""
        if decay:
            lr = max(self.decay(lr) if callable(self.decay) else lr * self.decay, self.min_learning_rate)
        if grow:
            lr = self.growth(lr) if callable(self.growth) else lr * self.growth
        return float(lr)

    def _last(self, epoch: int) -> tuple[float, tuple[int, int] | None]:
        """:return: the learning rate of the last epoch before ``epoch`` (the default if there is none) and the last
        two epochs before ``epoch`` (None if there are fewer)"""
        before = self._before(epoch)
        if not before:
            return self.default_learning_rate, None
        return self.epoch_data[before[-1]].learning_rate, (before[-2], before[-1]) if len(before) >= 2 else None

    def _relative(self, epoch: int) -> float:
        lr, last_two = self._last(epoch)
        change = None if last_two is None else self.relative_error(*last_two)
        if change is None:
            return lr
        return self._update(lr, change > self.threshold, not change > self.threshold)

    def _absolute(self, epoch: int) -> float:
        lr, last_two = self._last(epoch)
        if last_two is None:
            return lr
        (old_key, old), (new_key, new) = (self.error_of(e) for e in last_two)
        if old is None or new is None or old_key != new_key:
            return lr
        return self._update(lr, new - old > self.abs_threshold, not new - old > self.abs_threshold)

    def _multi(self, epoch: int) -> float:
        before = self._before(epoch)
        lr = self.epoch_data[before[-1]].learning_rate if before else self.default_learning_rate
        if self.multi_update_interval > 1 and epoch % self.multi_update_interval != 1:
            return lr
        last = before[-(self.multi_num_epochs + 1) :]
        if len(last) <= 1:
            return lr
        changes = [self.relative_error(a, b) for a, b in zip(last, last[1:])]
        if any(c is None for c in changes):
            return lr
        mean = math.fsum(changes) / len(changes)
        return self._update(lr, mean > self.threshold, mean < self.grow_threshold)

    # -- scores ----------------------------------------------------------------------------------------------

    def set_epoch_error(self, epoch: int, scores: dict[str, float]) -> None:
        """Store the scores of ``epoch`` (e.g. ``{"train_score": .., "dev_score": .., "dev_error": ..}``)."""
        self.learning_rate(epoch)
        self.epoch_data[epoch].error.update({k: float(v) for k, v in scores.items()})

    def error_key(self, epoch: int) -> str | None:
        """:return: the score that drives the learning rate, for the scores stored for ``epoch`` (RETURNN's order)"""
        error = self.epoch_data[epoch].error if epoch in self.epoch_data else {}
        if not error:
            return None
        wanted = [self.error_measure_key] if isinstance(self.error_measure_key, str) else self.error_measure_key or []
        for key in [k for w in wanted for k in (w, f"{w}_output")] + ["dev_score", "dev_score_output"]:
            if key in error:
                return key
        for prefix in ("dev_score_output/", "dev_"):
            keys = sorted(k for k in error if k.startswith(prefix))
            if keys:
                return keys[0]
        return next((k for k in ("train_score", "train_score_output") if k in error), min(error))

    def error_of(self, epoch: int) -> tuple[str | None, float | None]:
        """:return: the error key and value of ``epoch`` (None, None without scores)"""
        key = self.error_key(epoch)
        if key is None:
            return None, None
        return key, self.epoch_data[epoch].error[key]

    def relative_error(self, old_epoch: int, new_epoch: int) -> float | None:
        """:return: the relative change of the error measure from ``old_epoch`` to ``new_epoch``, or None"""
        (old_key, old), (new_key, new) = self.error_of(old_epoch), self.error_of(new_epoch)
        if old is None or new is None or old_key != new_key:
            return None
        change = (new - old) / abs(old if self.div_by_old else new)
        if self.relative_to_lr:
            lr = self._recent_learning_rate(new_epoch)
            if lr > 0:
                change /= lr / self.default_learning_rate
        return change

    def _recent_learning_rate(self, epoch: int) -> float:
        epochs = sorted(e for e in self.epoch_data if e <= epoch)
        return self.epoch_data[epochs[-1]].learning_rate if epochs else self.default_learning_rate

    # -- checkpoint state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """:return: the epoch data as JSON-able dict (for checkpoints)"""
        return {str(e): {"learning_rate": d.learning_rate, "error": d.error} for e, d in self.epoch_data.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`."""
        self.epoch_data = {int(e): EpochData(float(d["learning_rate"]), dict(d["error"])) for e, d in state.items()}


def _opt(config: Config, *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config.get(name)
    return default


def lr_control_from_config(config: Config) -> LearningRateControl:
    """:return: the learning-rate control the config describes (see the module docstring)

    Example: ``lr_control_from_config(load_config_text("learning_rate = 0.01\nlearning_rate_control = 'newbob'\n"))``

    :raise ConfigError: for an unknown ``learning_rate_control`` or bad ``learning_rates``
    """
    name = config.get("learning_rate_control")
    if name not in KINDS:
        from returnn_ls.training.config_names import suggest

        raise config.error(f"learning_rate_control = {name!r}: choose one of {sorted(KINDS)}{suggest(name, KINDS)}",
                           "learning_rate_control")  # fmt: skip
    fixed = config.get("learning_rates") or {}
    if isinstance(fixed, (list, tuple)):
        fixed = {i + 1: lr for i, lr in enumerate(fixed)}
    if not isinstance(fixed, dict):
        raise config.error(f"learning_rates must be a list or a dict {{epoch: lr}}, got {fixed!r}", "learning_rates")
    threshold = float(_opt(config, "newbob_relative_error_threshold", default=-0.01))
    decay = _opt(config, "learning_rate_decay", "newbob_learning_rate_decay", default=0.5)
    growth = _opt(config, "learning_rate_growth", "newbob_learning_rate_growth", default=1.0)
    return LearningRateControl(
        KINDS[name],
        float(config.get("learning_rate")),
        min_learning_rate=float(_opt(config, "min_learning_rate", default=0.0)),
        fixed=fixed,
        error_measure_key=config.get("learning_rate_control_error_measure"),
        relative_to_lr=bool(_opt(config, "learning_rate_control_relative_error_relative_lr", default=False)),
        min_epochs_per_new_lr=int(_opt(config, "learning_rate_control_min_num_epochs_per_new_lr", default=0)),
        div_by_old=bool(_opt(config, "newbob_relative_error_div_by_old", default=False)),
        decay=decay if callable(decay) else float(decay),
        growth=growth if callable(growth) else float(growth),
        threshold=threshold,
        grow_threshold=float(_opt(config, "newbob_relative_error_grow_threshold", default=threshold)),
        abs_threshold=float(_opt(config, "newbob_error_threshold", default=-0.01)),
        multi_num_epochs=int(_opt(config, "newbob_multi_num_epochs", default=5)),
        multi_update_interval=int(_opt(config, "newbob_multi_update_interval", "newbob_multi_num_epochs", default=5)),
    )
