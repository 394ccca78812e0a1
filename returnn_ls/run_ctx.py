"""The run context of a ``train_step`` or ``forward_step`` (as ``returnn.frontend.run_ctx``).

The training loop creates one per step (:func:`init_train_step_run_ctx`); model code reads ``get_run_ctx().epoch``,
``.step`` and ``.train_flag`` and reports losses with ``mark_as_loss``. Outside a step (e.g. while ``get_model``
builds the model) :func:`get_run_ctx` returns a context of stage ``"init"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RunCtx", "get_run_ctx", "init_forward_step_run_ctx", "init_train_step_run_ctx", "reset_run_ctx"]

_run_ctx: RunCtx | None = None


class RunCtx:
    """Where model code runs: ``stage`` is ``"init"``, ``"train_step"`` (training and evaluation) or
    ``"forward_step"``.

    :param train_flag: whether this step trains (dropout on); False when the same ``train_step`` evaluates
    :param step: the global training step, from 0, not reset per epoch
    :param epoch: the epoch, from 1
    """

    def __init__(self, *, stage: str, train_flag: bool = False, step: int = 0, epoch: int = 1):
        self.stage = stage
        self._train_flags = [train_flag]
        self.step = step
        self.epoch = epoch
        self.losses: dict[str, Any] = {}

    @property
    def train_flag(self) -> bool:
        """:return: whether the model trains in this step (e.g. dropout is applied)"""
        return self._train_flags[-1]

    @contextmanager
    def train_flag_ctx(self, train_flag: bool) -> Iterator[None]:
        """Set ``train_flag`` inside the ``with`` block (e.g. ``False`` to switch dropout off)."""
        self._train_flags.append(train_flag)
        try:
            yield
        finally:
            self._train_flags.pop()

    def __repr__(self) -> str:
        return f"RunCtx(stage={self.stage!r}, train_flag={self.train_flag}, epoch={self.epoch}, step={self.step})"


def get_run_ctx() -> RunCtx:
    """:return: the run context of the current step (stage ``"init"`` outside a step)"""
    return _run_ctx if _run_ctx is not None else RunCtx(stage="init")


def init_train_step_run_ctx(*, train_flag: bool = True, step: int = 0, epoch: int = 1) -> RunCtx:
    """Start the run context of a ``train_step`` call (also used for evaluation, with ``train_flag=False``)."""
    global _run_ctx
    _run_ctx = RunCtx(stage="train_step", train_flag=train_flag, step=step, epoch=epoch)
    return _run_ctx


def init_forward_step_run_ctx(*, step: int = 0, epoch: int = 1) -> RunCtx:
    """Start the run context of a ``forward_step`` call."""
    global _run_ctx
    _run_ctx = RunCtx(stage="forward_step", step=step, epoch=epoch)
    return _run_ctx


def reset_run_ctx() -> None:
    """End the current step's run context."""
    global _run_ctx
    _run_ctx = None
