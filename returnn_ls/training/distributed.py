"""Data-parallel training with ``torch_distributed = {}`` under ``torchrun`` (gloo).

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

from returnn_ls.training.config import Config

__all__ = ["Distributed", "setup_distributed"]


@dataclass
class Distributed:
    """The worker's place among the data-parallel workers (``rank`` 0 of 1 without ``torch_distributed``)."""

    rank: int = 0
    world: int = 1

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
        if self.active:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()

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


def setup_distributed(config: Config, backend: str, trainer: Any) -> Distributed:
    """Initialise ``torch.distributed`` (gloo) when the config sets ``torch_distributed`` and ``torchrun``
    started several workers; :return: the worker's :class:`Distributed`

    :raise ConfigError: for ``torch_distributed`` on another backend or with options
    """
    opts = config.get("torch_distributed")
    if opts is None:
        return Distributed()
    if backend != "torch":
        raise config.error(f"torch_distributed needs backend 'torch', not {backend!r}", "torch_distributed")
    if not isinstance(opts, dict):
        raise config.error(f"torch_distributed must be a dict (e.g. {{}}), got {opts!r}", "torch_distributed")
    if opts:
        raise config.error(f"torch_distributed options {sorted(opts)} are not supported here; use {{}} (the gradients "
                           "are summed over the workers every step)", "torch_distributed")  # fmt: skip
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    trainer.distributed = True
    return Distributed(dist.get_rank(), dist.get_world_size())
