"""RETURNN's sequence orders (the dataset option ``seq_ordering``, the config key ``batching``), in numpy.

The order of an epoch is a pure function of the method, the epoch's random seed and the sequence lengths, so a run
resumed at an epoch boundary sees the order of an uninterrupted run. The methods and their random draws are
RETURNN's (``Dataset.get_seq_order_for_epoch``), so the same options give the same order as in RETURNN:

======================================  ===============================================================
``default``                             corpus order
``reverse``                             corpus order, backwards
``default_every_n:N``                   corpus order interleaved in N strides
``sorted`` / ``sorted_reverse``         by length, shortest / longest first (stable)
``random`` / ``random:N``               a random permutation; ``N``: the same for N epochs
``random_sample`` / ``random_sample:N`` drawn with replacement
``laplace:B`` / ``laplace:.S``          random bins (B bins, or bins of about S sequences), sorted up and
                                        down alternately (``laplace:B:N``: the same for N epochs)
``sort_bin_shuffle:B`` (``_x2``)        sorted by length, cut into B bins (or ``.S``), bins shuffled
                                        (``_x2``: also within each bin)
======================================  ===============================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

__all__ = ["check_seq_ordering", "needs_seq_lens", "seq_order_for_epoch"]

_PATTERNS = {
    "default": r"default",
    "reverse": r"reverse",
    "sorted": r"sorted(_reverse)?",
    "default_every_n": r"default_every_n:[1-9]\d*",
    "random": r"random(:[1-9]\d*)?",
    "random_sample": r"random_sample(:[1-9]\d*)?",
    "laplace": r"laplace(:(\.?[1-9]\d*)(:[1-9]\d*)?)?",
    "sort_bin_shuffle": r"sort_bin_shuffle(_x2)?(:(\.?[1-9]\d*)(:[1-9]\d*)?)?",
}
#: The accepted forms, for messages.
SEQ_ORDERINGS = (
    "default", "reverse", "sorted", "sorted_reverse", "default_every_n:N", "random", "random:N", "random_sample",
    "random_sample:N", "laplace:B", "laplace:.S", "laplace:B:N", "sort_bin_shuffle:B", "sort_bin_shuffle_x2:B",
)  # fmt: skip


def check_seq_ordering(value: object, option: str) -> str:
    """Check a ``seq_ordering`` / ``batching`` value.

    Example: ``check_seq_ordering("laplace:.100", "batching")`` returns ``"laplace:.100"``.

    :param value: the value from the config
    :param option: the name the user wrote, for the message
    :return: ``value``
    :raise ValueError: naming ``option`` and the accepted forms
    """
    if callable(value):
        raise ValueError(f"{option}: a function as sequence order is not supported; use one of {list(SEQ_ORDERINGS)}")
    if not isinstance(value, str) or not any(re.fullmatch(p, value) for p in _PATTERNS.values()):
        raise ValueError(f"{option} must be one of {list(SEQ_ORDERINGS)} (N, B, S positive ints), got {value!r}")
    return value


def needs_seq_lens(method: str) -> bool:
    """:return: whether ``method`` orders by sequence length (``sorted``, ``laplace``, ``sort_bin_shuffle``)"""
    return method.startswith(("sorted", "laplace", "sort_bin_shuffle"))


def seq_order_for_epoch(
    method: str, *, num_seqs: int, seed: Callable[[int], int], seq_lens: np.ndarray | None = None
) -> np.ndarray:
    """The corpus indices of one epoch in the order of ``method`` (checked by :func:`check_seq_ordering`).

    Example: ``seq_order_for_epoch("random", num_seqs=5, seed=lambda n: 1)`` is
    ``np.random.RandomState(1).permutation(5)``.

    :param num_seqs: number of sequences of the corpus
    :param seed: ``seed(num_epochs_fixed)``: the random seed of the epoch, constant over ``num_epochs_fixed``
        epochs (RETURNN's ``_get_random_seed_for_epoch``)
    :param seq_lens: [num_seqs] lengths, needed where :func:`needs_seq_lens`
    :return: int64 [num_seqs] (``random_sample``: with repeats)
    """
    name, *args = method.split(":")
    if needs_seq_lens(method) and (seq_lens is None or len(seq_lens) != num_seqs):
        raise ValueError(f"seq_ordering {method!r} needs the sequence lengths")
    if name == "default":
        return np.arange(num_seqs)
    if name == "reverse":
        return np.arange(num_seqs)[::-1].copy()
    if name == "default_every_n":
        every = int(args[0])
        order = np.arange(num_seqs // every).repeat(every)
        for i in range(1, every):
            order[i::every] += i * (num_seqs // every)
        return order
    if name in ("sorted", "sorted_reverse"):
        return np.argsort(-seq_lens if name == "sorted_reverse" else seq_lens, kind="stable")
    if name in ("random", "random_sample"):
        rng = np.random.RandomState(seed(int(args[0]) if args else 1))
        return rng.permutation(num_seqs) if name == "random" else rng.randint(0, num_seqs, size=num_seqs)
    bins = 2 if not args else (max(num_seqs // int(args[0][1:]), 2) if args[0][0] == "." else int(args[0]))
    rng = np.random.RandomState(seed(int(args[1]) if len(args) > 1 else 1))
    if name == "laplace":
        return _laplace(rng.permutation(num_seqs), seq_lens, bins)
    return _sort_bin_shuffle(rng, seq_lens, bins, within=name.endswith("_x2"))


def _bin_bounds(total: int, bins: int) -> list[tuple[int, int]]:
    return [(i * total // bins, (i + 1) * total // bins) for i in range(bins)]


def _laplace(perm: np.ndarray, seq_lens: np.ndarray, bins: int) -> np.ndarray:
    """Bins of the permutation, sorted by length up, down, up, ... (so neighbouring batches have similar lengths)."""
    parts = []
    for i, (start, end) in enumerate(_bin_bounds(len(perm), bins)):
        part = perm[start:end]
        lens = seq_lens[part]
        parts.append(part[np.argsort(-lens if i % 2 else lens, kind="stable")])
    return np.concatenate(parts)


def _sort_bin_shuffle(rng: np.random.RandomState, seq_lens: np.ndarray, bins: int, within: bool) -> np.ndarray:
    """Shuffle, sort by length (stable), cut into bins, shuffle the bins (and, ``within``, each bin)."""
    perm = rng.permutation(len(seq_lens))
    order = perm[np.argsort(seq_lens[perm], kind="stable")]
    bounds = _bin_bounds(len(order), bins)
    parts = []
    for i in rng.permutation(bins):
        part = order[bounds[i][0] : bounds[i][1]].tolist()
        if within:
            rng.shuffle(part)
        parts.append(np.asarray(part, dtype=np.int64))
    return np.concatenate(parts)
