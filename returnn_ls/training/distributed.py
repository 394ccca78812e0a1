"""Data-parallel training: ``torch_distributed = {}`` under ``torchrun`` (the key is the trainer's
:attr:`~frontend_backends.train_base.Trainer.distributed_key`; the torch trainer joins a gloo process group).

Every worker reads the same global batches and trains on its shard of each (a contiguous part of the
sequences). Each worker's loss is normalised with the inverse norm factors summed over the workers, and the
gradients are summed over the workers, so every worker takes the step of the whole global batch and the
parameters stay the same everywhere. Train scores are summed over the workers; every worker evaluates the whole
dev set (same parameters, same numbers); only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from frontend_backends.train_base import Trainer
from returnn_ls.training.config import Config

__all__ = ["Distributed", "setup_distributed"]


@dataclass
class Distributed:
    """The worker's place among the data-parallel workers (``rank`` 0 of 1 without ``torch_distributed``)."""

    rank: int = 0
    world: int = 1
    trainer: Trainer | None = None

    @property
    def active(self) -> bool:
        """:return: whether there is more than one worker"""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """:return: whether this worker writes the outputs (rank 0)"""
        return self.rank == 0

    def finish(self) -> None:
        """End data-parallel training: wait for every worker, then release the process group. Without this, the
        gloo threads still alive at interpreter exit abort a worker now and then ("terminate called without an
        active exception", exit code -6) after training succeeded."""
        if self.active and self.trainer is not None:
            self.trainer.finish_distributed()

    def shard(self, batch: Any) -> tuple[Any, float]:
        """:return: this worker's part of the global ``batch`` and its weight (0 for a stand-in sequence when the
        batch has fewer sequences than workers: the worker then contributes nothing but joins the collectives)"""
        if not self.active:
            return batch, 1.0
        size = len(batch.seq_tags)
        lo, hi = self.rank * size // self.world, (self.rank + 1) * size // self.world
        weight = 1.0
        if lo == hi:
            lo, hi, weight = 0, 1, 0.0
        part = type(batch)({k: v[lo:hi] for k, v in batch.data.items()},
                           {k: v[lo:hi] for k, v in batch.lengths.items()}, batch.seq_tags[lo:hi])  # fmt: skip
        return part, weight


#: RETURNN's config keys of data-parallel training; a trainer supports at most one (its ``distributed_key``).
DISTRIBUTED_KEYS = ("torch_distributed",)


def setup_distributed(config: Config, trainer: Trainer) -> Distributed:
    """Join the data-parallel workers when the config sets the trainer's distributed key (``torch_distributed``)
    and the launcher (``torchrun``) started several; :return: the worker's :class:`Distributed`

    :raise ConfigError: for a data-parallel key the backend does not support, or with options
    """
    for key in DISTRIBUTED_KEYS:
        if config.get(key) is not None and key != trainer.distributed_key:
            instead = f"; its trainer's key is {trainer.distributed_key!r}" if trainer.distributed_key else ""
            raise config.error(f"{key} is not supported by the backend {trainer.name!r}{instead}", key)
    key = trainer.distributed_key
    opts = config.get(key) if key else None
    if opts is None:
        return Distributed()
    if not isinstance(opts, dict):
        raise config.error(f"{key} must be a dict (e.g. {{}}), got {opts!r}", key)
    if opts:
        raise config.error(f"{key} options {sorted(opts)} are not supported here; use {{}} (the gradients "
                           "are summed over the workers every step)", key)  # fmt: skip
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Distributed()
    rank, world = trainer.init_distributed()
    return Distributed(rank, world, trainer)
