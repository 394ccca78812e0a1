"""``Task12AXDataset``: RETURNN's 12AX memory task, with RETURNN's sequences.

Inputs are the 9 symbols ``1 2 3 A B C X Y Z`` (one-hot features ``data`` [T, 9]); the target ``classes`` [T] is
``R`` (1) at an ``X`` that closes ``A X`` while the last digit was ``1``, or a ``Y`` that closes ``B Y`` while the
last digit was ``2``, and ``L`` (0) everywhere else. A sequence has 10-99 symbols.

Like RETURNN's ``GeneratingDataset``, sequence ``i`` of an epoch is drawn from ``numpy.random.RandomState`` seeded
with ``(epoch seed, i)``, where the epoch seed is ``fixed_random_seed`` or else the epoch number: a training run
sees new sequences every epoch, and a dev set with ``fixed_random_seed`` the same ones. The draws (sequence
length, then symbols) are the ones RETURNN makes, so the same options and epoch give RETURNN's sequences; the test
suite compares them with RETURNN itself. ``sorted`` orders mean ``default`` here, as in RETURNN (the lengths are
not known before the sequences are drawn); orders by length (``laplace``, ``sort_bin_shuffle``) are not
supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_ls.training.datasets.base import DataKey, Dataset, check_int
from returnn_ls.training.datasets.seq_order import needs_seq_lens

__all__ = ["SYMBOLS", "Task12AXDataset", "targets_12ax"]

#: The input symbols, in the order of the one-hot features.
SYMBOLS = "123ABCXYZ"
_ONE_HOT = np.eye(len(SYMBOLS), dtype=np.float32)
_PAIRS = ([SYMBOLS.index("A"), SYMBOLS.index("X")], [SYMBOLS.index("B"), SYMBOLS.index("Y")])
#: Cached sequences of a dataset with ``fixed_random_seed`` (the same every epoch), at most this many.
_MAX_CACHED_SEQS = 100_000


def targets_12ax(symbols: list[int] | np.ndarray) -> np.ndarray:
    """The 12AX targets of a symbol sequence (indices into :data:`SYMBOLS`).

    Example: ``targets_12ax([SYMBOLS.index(c) for c in "1AX2AX"])`` is ``[0, 0, 1, 0, 0, 0]``.

    :return: int32 [T]: 1 (``R``) where the sequence closes ``1 A X`` or ``2 B Y``, else 0 (``L``)
    """
    out = np.zeros(len(symbols), dtype=np.int32)
    digit, letter = "", ""
    for t, index in enumerate(symbols):
        symbol = SYMBOLS[index]
        if symbol in "12":
            digit = symbol
        elif symbol in "AB":
            letter = symbol
        elif symbol in "XY":
            out[t] = digit + letter + symbol in ("1AX", "2BY")
            letter = ""
    return out


def _draw_symbols(rng: np.random.RandomState, length: int) -> list[int]:
    """Draw ``length`` symbols the way RETURNN's ``Task12AXDataset.generate_input_seq`` does (the same calls on
    the same generator): a start of nothing, 1 or 2, then repeatedly maybe a digit, likely ``AX`` or ``BY``, and
    a geometric number of random symbols."""
    symbols = [[], [0], [1]][rng.randint(0, 3)]
    while len(symbols) < length:
        if rng.random_sample() < 0.5:
            symbols.append(rng.randint(0, 2))
        if rng.random_sample() < 0.9:
            symbols += _PAIRS[rng.randint(0, 2)]
        while rng.random_sample() < 0.5:
            symbols.append(rng.randint(0, len(SYMBOLS)))
    return symbols[:length]


class Task12AXDataset(Dataset):
    """The 12AX task (keys ``data``: 9 float features, ``classes``: 2 classes, frame-aligned with ``data``).

    Example: ``ds = Task12AXDataset(num_seqs=100, fixed_random_seed=1); ds.init_seq_order(1); ds.get_seq(0)``
    gives ``{"data": float32 [T, 9], "classes": int32 [T], "seq_tag": "seq-0"}``.

    :param num_seqs: sequences per epoch (before ``partition_epoch``)
    :param base_opts: the shared options of :class:`~returnn_ls.training.datasets.base.Dataset`
    """

    sorted_means_default = True

    def __init__(self, *, num_seqs: int, **base_opts: Any):
        super().__init__("Task12AXDataset", **base_opts)
        if needs_seq_lens(self.seq_ordering):
            raise ValueError(
                f"Task12AXDataset: seq_ordering {self.seq_ordering!r} needs the sequence lengths before the epoch, "
                "which a generating dataset does not have (as in RETURNN); use 'default', 'random' or 'random:N'"
            )
        self._num_corpus_seqs = check_int(num_seqs, "Task12AXDataset: num_seqs")
        self.keys = {
            "data": DataKey(dim=len(SYMBOLS), sparse=False, dtype="float32"),
            "classes": DataKey(dim=2, sparse=True, dtype="int32", time_like="data"),
        }
        self._rng = np.random.RandomState()
        self._cache: dict[int, dict[str, Any]] = {}
        self._cache_enabled = self.fixed_random_seed is not None and self._num_corpus_seqs <= _MAX_CACHED_SEQS

    def _total_num_seqs(self) -> int:
        return self._num_corpus_seqs

    def _corpus_seq(self, corpus_index: int) -> dict[str, Any]:
        cached = self._cache.get(corpus_index)
        if cached is not None:
            return dict(cached)
        self._rng.seed((self.random_seed_for_epoch(self.epoch), corpus_index))
        symbols = _draw_symbols(self._rng, self._rng.randint(10, 100))
        seq = {"data": _ONE_HOT[symbols], "classes": targets_12ax(symbols), "seq_tag": f"seq-{corpus_index}"}
        if self._cache_enabled:
            for array in (seq["data"], seq["classes"]):
                array.flags.writeable = False  # shared by every epoch: nobody may change them
            self._cache[corpus_index] = seq
        return dict(seq)
