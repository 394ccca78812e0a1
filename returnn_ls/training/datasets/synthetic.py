"""The built-in ``synthetic`` dataset: a seeded sequence task with dynamic lengths, in numpy.

Each sequence is a label sequence (labels ``1 .. K-1``; ``0`` is the blank) stretched into a frame-level
alignment: every label is repeated for 1-3 frames, and 0-2 blank frames go before each label and after the
last one (at least one blank separates two equal neighbours). The features of a frame are the fixed
prototype vector of its alignment label plus Gaussian noise, so a frame-wise model can learn both frame-level
cross entropy (target ``alignment``) and CTC (target ``classes``) within seconds. The prototypes depend only on
``task_seed``, so the train and dev sets of one config (different ``seed``) describe the same task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["DATASET_OPTIONS", "SyntheticDataset", "make_dataset"]

#: Options of a ``{"class": "synthetic", ...}`` dict and their defaults.
DATASET_OPTIONS: dict[str, Any] = {
    "num_seqs": 64,
    "seed": 0,
    "task_seed": 0,
    "min_labels": 2,
    "max_labels": 6,
    "noise": 1.0,
}


class SyntheticDataset:
    """The synthetic sequence task.

    :param input_dim: feature dim of ``data``
    :param num_labels: K, the size of the label vocabulary including the blank 0
    :param num_seqs: number of sequences
    :param seed: seed of the sequences
    :param task_seed: seed of the label prototypes (shared by train and dev)
    :param min_labels: shortest label sequence
    :param max_labels: longest label sequence
    :param noise: standard deviation of the feature noise (the prototypes have unit-variance entries)
    """

    def __init__(
        self,
        *,
        input_dim: int,
        num_labels: int,
        num_seqs: int = 64,
        seed: int = 0,
        task_seed: int = 0,
        min_labels: int = 2,
        max_labels: int = 6,
        noise: float = 1.0,
    ):
        if num_labels < 3:
            raise ValueError(f"synthetic: needs at least 3 labels (blank + 2), got {num_labels}")
        if not 1 <= min_labels <= max_labels:
            raise ValueError(f"synthetic: need 1 <= min_labels <= max_labels, got {min_labels}, {max_labels}")
        if num_seqs < 1:
            raise ValueError(f"synthetic: num_seqs must be >= 1, got {num_seqs}")
        self.input_dim, self.num_labels = input_dim, num_labels
        prototypes = np.random.default_rng(task_seed).normal(size=(num_labels, input_dim))
        rng = np.random.default_rng(seed)
        self.seqs = [self._make_seq(rng, prototypes, min_labels, max_labels, noise) for _ in range(num_seqs)]

    def _make_seq(self, rng, prototypes, min_labels, max_labels, noise) -> dict[str, np.ndarray]:
        labels = rng.integers(1, self.num_labels, size=rng.integers(min_labels, max_labels + 1))
        alignment: list[int] = []
        for i, label in enumerate(labels):
            blanks = rng.integers(0, 3)
            if i > 0 and label == labels[i - 1]:
                blanks = max(blanks, 1)
            alignment += [0] * blanks + [int(label)] * int(rng.integers(1, 4))
        alignment += [0] * int(rng.integers(0, 3))
        align = np.array(alignment, dtype=np.int32)
        features = prototypes[align] + noise * rng.normal(size=(len(align), self.input_dim))
        return {"data": features.astype(np.float32), "classes": labels.astype(np.int32), "alignment": align}

    def __len__(self) -> int:
        return len(self.seqs)

    def batches(self, batch_size: int, *, shuffle_seed: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield padded batches: ``data`` [B, T, D], ``alignment`` [B, T], ``classes`` [B, L] and the lengths
        ``data_len`` [B] and ``classes_len`` [B] (padding is 0).

        :param shuffle_seed: shuffle the sequence order with this seed; None keeps the order
        """
        order = np.arange(len(self.seqs))
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        for start in range(0, len(order), batch_size):
            yield collate([self.seqs[i] for i in order[start : start + batch_size]])

    def num_batches(self, batch_size: int) -> int:
        """:return: the number of batches of :meth:`batches`"""
        return -(-len(self.seqs) // batch_size)


def collate(seqs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """:return: the padded batch of ``seqs`` (see :meth:`SyntheticDataset.batches`)"""
    out: dict[str, np.ndarray] = {}
    for key, len_key in (("data", "data_len"), ("alignment", "data_len"), ("classes", "classes_len")):
        lens = np.array([len(s[key]) for s in seqs], dtype=np.int32)
        shape = (len(seqs), int(lens.max())) + seqs[0][key].shape[1:]
        padded = np.zeros(shape, dtype=seqs[0][key].dtype)
        for i, s in enumerate(seqs):
            padded[i, : len(s[key])] = s[key]
        out[key], out[len_key] = padded, lens
    return out


def make_dataset(opts: dict[str, Any], *, input_dim: int, num_labels: int) -> SyntheticDataset:
    """Create a dataset from a config dict such as ``{"class": "synthetic", "num_seqs": 64, "seed": 3}``.

    :raise ValueError: for an unknown class or option (with the closest known name)
    """
    from returnn_ls.training.config import suggest

    if not isinstance(opts, dict):
        raise ValueError(f"a dataset must be a dict like {{'class': 'synthetic'}}, got {type(opts).__name__}")
    cls = opts.get("class")
    if cls != "synthetic":
        raise ValueError(f"unknown dataset class {cls!r}; known: ['synthetic']{suggest(cls, ['synthetic'])}")
    unknown = [k for k in opts if k != "class" and k not in DATASET_OPTIONS]
    if unknown:
        raise ValueError(
            f"unknown synthetic dataset option {unknown[0]!r}; known: {sorted(DATASET_OPTIONS)}"
            f"{suggest(unknown[0], DATASET_OPTIONS)}"
        )
    kwargs = {k: v for k, v in opts.items() if k != "class"}
    return SyntheticDataset(input_dim=input_dim, num_labels=num_labels, **kwargs)
