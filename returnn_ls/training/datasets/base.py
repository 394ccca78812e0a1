"""The dataset interface: :class:`DataKey`, :class:`Dataset` and the options every dataset class shares.

A dataset is a list of sequences. ``init_seq_order(epoch)`` fixes the epoch: which sequences it has (generating
datasets draw new ones per epoch) and in which order (``seq_ordering``); ``get_seq(index)`` then gives the
``index``-th sequence of that order as numpy arrays. Both are pure functions of the options and the epoch, so a
run resumed at an epoch boundary sees the data of an uninterrupted run.

The shared options are RETURNN's (``returnn.datasets.basic.Dataset``), with RETURNN's meanings:

=====================  ================================================================================
``seq_ordering``       the order of an epoch, see :mod:`returnn_ls.training.datasets.seq_order`
``fixed_random_seed``  the random seed of every epoch (else the epoch number, so each epoch differs)
``random_seed_offset`` added to the epoch's seed (ignored with ``fixed_random_seed``)
``partition_epoch``    split the corpus into N parts, one per epoch (the seed stays for N epochs)
``repeat_epoch``       repeat the epoch's order N times
``name``               a name for messages
=====================  ================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from returnn_ls.training.datasets.seq_order import check_seq_ordering, needs_seq_lens, seq_order_for_epoch

__all__ = ["BASE_OPTIONS", "DataKey", "Dataset", "NOOP_OPTIONS", "check_int"]

#: The options every dataset class takes, and their defaults.
BASE_OPTIONS: dict[str, Any] = {
    "seq_ordering": "default",
    "fixed_random_seed": None,
    "random_seed_offset": 0,
    "partition_epoch": 1,
    "repeat_epoch": 1,
    "name": None,
}
#: RETURNN dataset options accepted at the value that changes nothing here (anything else is not supported).
NOOP_OPTIONS: dict[str, Any] = {
    "window": 1,
    "context_window": None,
    "chunking": "0",
    "shuffle_frames_of_nseqs": 0,
    "estimated_num_seqs": None,
    "seq_list_filter_file": None,
    "seq_order_seq_lens_file": None,
    "unique_seq_tags": False,
    "min_chunk_size": 0,
    "chunking_variance": 0,
    "use_cache_manager": False,
}
_MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class DataKey:
    """What a dataset yields per sequence under one key.

    :param dim: feature size (dense) or number of classes (sparse)
    :param sparse: class indices [T] (int32) instead of features [T, dim]
    :param dtype: ``"float32"``, ``"int32"``, ...
    :param time_like: ``"data"``: this key's frames are the frames of ``data`` (same length in every sequence,
        e.g. 12AX ``classes``); None: its own length (e.g. a label sequence)
    """

    dim: int
    sparse: bool
    dtype: str
    time_like: str | None = None


def check_int(value: Any, option: str, *, low: int = 1, high: int | None = None, allow_none: bool = False) -> Any:
    """Check an int option.

    Example: ``check_int(3, "num_seqs")`` returns 3; ``check_int(0, "num_seqs")`` raises
    ``ValueError("num_seqs must be an int >= 1, got 0")``.

    :return: ``value`` if it is an int in ``[low, high]`` (or None with ``allow_none``)
    :raise ValueError: naming ``option``
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{option} must be an int >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{option} must be an int in [{low}, {high}], got {value!r}")
    return int(value)


class Dataset:
    """Base class: the shared options, the epoch's order, and the interface the batching uses.

    A subclass sets :attr:`keys` and implements :meth:`_total_num_seqs`, :meth:`_corpus_seq` and (for orders by
    length) :meth:`_corpus_seq_lens`.

    :param class_name: the dataset class for messages (``"HDFDataset"``)
    """

    #: What ``batch_size`` counts for this dataset: ``"frames"`` (RETURNN) or ``"seqs"``.
    batch_size_unit = "frames"
    #: Whether ``sorted`` orders keep the corpus order (RETURNN's generating datasets).
    sorted_means_default = False

    def __init__(
        self,
        class_name: str,
        *,
        seq_ordering: str = "default",
        fixed_random_seed: int | None = None,
        random_seed_offset: int = 0,
        partition_epoch: int = 1,
        repeat_epoch: int = 1,
        name: str | None = None,
    ):
        self.class_name = class_name
        self.name = name or class_name
        self.seq_ordering = check_seq_ordering(seq_ordering, f"{class_name}: seq_ordering")
        if self.sorted_means_default and seq_ordering in ("sorted", "sorted_reverse"):
            self.seq_ordering = "default"
        self.fixed_random_seed = check_int(fixed_random_seed, f"{class_name}: fixed_random_seed", low=0,
                                           high=_MAX_SEED, allow_none=True)  # fmt: skip
        self.random_seed_offset = check_int(random_seed_offset, f"{class_name}: random_seed_offset", low=0,
                                            high=_MAX_SEED)  # fmt: skip
        self.partition_epoch = check_int(partition_epoch, f"{class_name}: partition_epoch")
        self.repeat_epoch = check_int(repeat_epoch, f"{class_name}: repeat_epoch")
        if self.partition_epoch > 1 and self.repeat_epoch > 1:
            raise ValueError(f"{class_name}: partition_epoch and repeat_epoch cannot be combined")
        self.keys: dict[str, DataKey] = {}
        self.epoch: int | None = None
        self._order: np.ndarray | None = None

    def random_seed_for_epoch(self, epoch: int, num_epochs_fixed: int = 1) -> int:
        """RETURNN's seed of an epoch: ``fixed_random_seed``, else the epoch number (constant over the
        ``partition_epoch`` sub-epochs and over ``num_epochs_fixed`` epochs) plus ``random_seed_offset``.

        Example: with ``partition_epoch=2``, epochs 3 and 4 both have seed 2.
        """
        if self.fixed_random_seed is not None:
            return self.fixed_random_seed
        seed = (epoch - 1) // self.partition_epoch + 1
        seed = (seed - 1) // num_epochs_fixed + 1
        return seed + self.random_seed_offset

    def init_seq_order(self, epoch: int) -> None:
        """Fix the sequences and the order of ``epoch`` (1-based), as RETURNN does at the start of an epoch."""
        self.epoch = check_int(epoch, "epoch")
        lens = self._corpus_seq_lens() if needs_seq_lens(self.seq_ordering) else None
        order = seq_order_for_epoch(
            self.seq_ordering,
            num_seqs=self._total_num_seqs(),
            seed=lambda fixed: self.random_seed_for_epoch(self.epoch, fixed),
            seq_lens=lens,
        )
        if self.partition_epoch > 1:
            order = order[_partition_bounds(len(order), self.partition_epoch, (epoch - 1) % self.partition_epoch)]
        self._order = np.tile(order, self.repeat_epoch) if self.repeat_epoch > 1 else order

    @property
    def num_seqs(self) -> int:
        """:return: the number of sequences of the current epoch (after :meth:`init_seq_order`)"""
        return len(self._epoch_order())

    def get_seq(self, index: int) -> dict[str, Any]:
        """:return: the ``index``-th sequence of the epoch: one array per key of :attr:`keys` ([T, dim] dense,
        [T] int32 sparse) and ``"seq_tag"`` (str)
        """
        order = self._epoch_order()
        if not 0 <= index < len(order):
            raise IndexError(f"{self.name}: sequence index {index} out of range [0, {len(order)})")
        return self._corpus_seq(int(order[index]))

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            raise RuntimeError(f"{self.name}: call init_seq_order(epoch) before reading sequences")
        return self._order

    def _total_num_seqs(self) -> int:
        raise NotImplementedError

    def _corpus_seq(self, corpus_index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _corpus_seq_lens(self) -> np.ndarray:
        raise NotImplementedError(f"{self.class_name} cannot order by length")


def _partition_bounds(total: int, parts: int, index: int) -> slice:
    """:return: RETURNN's ``index``-th of ``parts`` partitions of ``total`` (the first ``total % parts`` get one
    more)"""
    size, extra = divmod(total, parts)
    start = index * size + min(index, extra)
    return slice(start, start + size + (1 if index < extra else 0))
