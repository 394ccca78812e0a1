"""The built-in ``synthetic`` dataset: a seeded sequence task with dynamic lengths, in numpy.

Each sequence is a label sequence (labels ``1 .. K-1``; ``0`` is the blank) stretched into a frame-level
alignment: every label is repeated for 1-3 frames, and 0-2 blank frames go before each label and after the
last one (at least one blank separates two equal neighbours). The features of a frame are the fixed
prototype vector of its alignment label plus Gaussian noise, so a frame-wise model can learn both frame-level
cross entropy (target ``alignment``) and CTC (target ``classes``) within seconds. The prototypes depend only on
``task_seed``, so the train and dev sets of one config (different ``seed``) describe the same task.

The sequences are drawn once (from ``seed``) and are the same every epoch; ``seq_ordering`` and the other shared
options of :class:`~returnn_ls.training.datasets.base.Dataset` order them per epoch. Unlike RETURNN's datasets,
``batch_size`` counts sequences for this one (:attr:`SyntheticDataset.batch_size_unit` is ``"seqs"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_ls.training.datasets.base import DataKey, Dataset, check_int

__all__ = ["DATASET_OPTIONS", "SyntheticDataset"]

#: Options of a ``{"class": "synthetic", ...}`` dict and their defaults.
DATASET_OPTIONS: dict[str, Any] = {
    "num_seqs": 64,
    "seed": 0,
    "task_seed": 0,
    "min_labels": 2,
    "max_labels": 6,
    "noise": 1.0,
    "input_dim": None,
    "num_labels": None,
}


class SyntheticDataset(Dataset):
    """The synthetic sequence task: keys ``data`` (float [T, input_dim]), ``classes`` (the label sequence, sparse,
    its own length) and ``alignment`` (one label per frame of ``data``, sparse).

    Example: ``ds = SyntheticDataset(input_dim=4, num_labels=6, num_seqs=8); ds.init_seq_order(1); ds.get_seq(0)``.

    :param input_dim: feature dim of ``data``
    :param num_labels: K, the size of the label vocabulary including the blank 0
    :param num_seqs: number of sequences
    :param seed: seed of the sequences
    :param task_seed: seed of the label prototypes (shared by train and dev)
    :param min_labels: shortest label sequence
    :param max_labels: longest label sequence
    :param noise: standard deviation of the feature noise (the prototypes have unit-variance entries)
    :param base_opts: the shared dataset options (``seq_ordering``, ...)
    """

    batch_size_unit = "seqs"

    def __init__(
        self,
        *,
        input_dim: int | None = None,
        num_labels: int | None = None,
        num_seqs: int = 64,
        seed: int = 0,
        task_seed: int = 0,
        min_labels: int = 2,
        max_labels: int = 6,
        noise: float = 1.0,
        **base_opts: Any,
    ):
        super().__init__("synthetic", **base_opts)
        input_dim = check_int(input_dim, "synthetic: input_dim (the dim of extern_data 'data')")
        num_labels = check_int(num_labels, "synthetic: num_labels (blank + at least 2 labels)", low=3)
        num_seqs = check_int(num_seqs, "synthetic: num_seqs")
        seed, task_seed = check_int(seed, "synthetic: seed", low=0), check_int(task_seed, "synthetic: task_seed", low=0)
        if not 1 <= check_int(min_labels, "synthetic: min_labels") <= check_int(max_labels, "synthetic: max_labels"):
            raise ValueError(f"synthetic: need 1 <= min_labels <= max_labels, got {min_labels}, {max_labels}")
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
            raise ValueError(f"synthetic: noise must be a float >= 0, got {noise!r}")
        self.input_dim, self.num_labels = input_dim, num_labels
        prototypes = np.random.default_rng(task_seed).normal(size=(num_labels, input_dim))
        rng = np.random.default_rng(seed)
        self.seqs = [self._make_seq(rng, prototypes, min_labels, max_labels, noise) for _ in range(num_seqs)]
        for seq in self.seqs:
            for array in seq.values():
                array.flags.writeable = False
        self.keys = {
            "data": DataKey(dim=input_dim, sparse=False, dtype="float32"),
            "classes": DataKey(dim=num_labels, sparse=True, dtype="int32"),
            "alignment": DataKey(dim=num_labels, sparse=True, dtype="int32", time_like="data"),
        }

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

    def _total_num_seqs(self) -> int:
        return len(self.seqs)

    def _corpus_seq(self, corpus_index: int) -> dict[str, Any]:
        return {**self.seqs[corpus_index], "seq_tag": f"seq-{corpus_index}"}

    def _corpus_seq_lens(self) -> np.ndarray:
        return np.array([len(seq["data"]) for seq in self.seqs])
