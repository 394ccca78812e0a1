"""The engine's view of the data: datasets (``make_dataset``), batches (``iterate_batches``) and their options.

The engine codes against this interface (datasets and batching have their own modules):

- a dataset has ``keys`` (``{key: DataKey}``), ``init_seq_order(epoch)``, ``num_seqs``, ``get_seq(index)``
  (``{key: array [T, D] or [T], "seq_tag": str}``) and ``batch_size_unit`` (``"frames"``, RETURNN's meaning of
  ``batch_size``, or ``"seqs"`` for the built-in synthetic dataset);
- ``iterate_batches(dataset, batch_size=, max_seqs=, batch_size_unit=, chunking=)`` yields :class:`Batch` es.

Where ``returnn_ls.training.datasets`` / ``returnn_ls.training.batching`` provide these, they are used; otherwise
the built-in synthetic dataset is wrapped (:class:`SyntheticAdapter`) and batched by a small stand-in
(:func:`simple_batches`, no chunking).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from returnn_ls.training.config import Config

__all__ = ["Batch", "DataKey", "SyntheticAdapter", "batch_options", "iterate_batches", "make_dataset"]

try:  # the datasets package defines the interface types once it provides them
    from returnn_ls.training.datasets import DataKey  # type: ignore[attr-defined]
except ImportError:

    @dataclass(frozen=True)
    class DataKey:  # type: ignore[no-redef]
        """What a dataset yields per sequence for one key."""

        dim: int
        sparse: bool
        dtype: str
        time_like: str | None = None


try:
    from returnn_ls.training.batching import Batch  # type: ignore[attr-defined]
except ImportError:

    @dataclass
    class Batch:  # type: ignore[no-redef]
        """Padded arrays ``[B, T, ...]`` per key, their lengths ``[B]`` and the sequence tags."""

        data: dict[str, np.ndarray]
        lengths: dict[str, np.ndarray]
        seq_tags: list[str]


class SyntheticAdapter:
    """The built-in synthetic dataset behind the dataset interface; the train set is shuffled per epoch with the
    config's ``seed`` (``None``: the order of the sequences)."""

    batch_size_unit = "seqs"

    def __init__(self, dataset: Any, shuffle_seed: int | None):
        self.dataset, self.shuffle_seed = dataset, shuffle_seed
        k = dataset.num_labels
        self.keys = {"data": DataKey(dataset.input_dim, False, "float32"), "classes": DataKey(k, True, "int32"),
                     "alignment": DataKey(k, True, "int32", time_like="data")}  # fmt: skip
        self.order = np.arange(len(dataset))

    def init_seq_order(self, epoch: int) -> None:
        """Fix the order of ``epoch`` (a function of the seed and the epoch)."""
        self.order = np.arange(len(self.dataset))
        if self.shuffle_seed is not None:
            np.random.default_rng(self.shuffle_seed * 1000 + epoch).shuffle(self.order)

    @property
    def num_seqs(self) -> int:
        """:return: the number of sequences of an epoch"""
        return len(self.order)

    def get_seq(self, index: int) -> dict[str, Any]:
        """:return: the ``index``-th sequence of the epoch's order"""
        i = int(self.order[index])
        return {**self.dataset.seqs[i], "seq_tag": f"synthetic-{i}"}


def _spec_dims(spec: dict) -> tuple[int, int]:
    """:return: the feature dim of ``data`` and the number of labels, from ``extern_data`` (either style)"""

    def size(key: str) -> int:
        opts = spec.get(key) or {}
        if "dim" in opts:
            return int(opts["dim"])
        dim = opts.get("sparse_dim") or (opts.get("dims") or [None])[-1]
        return int(dim.dimension)

    labels = next((k for k in ("classes", "alignment") if k in spec), None)
    if "data" not in spec or labels is None:
        raise ValueError("the synthetic dataset needs extern_data entries 'data' and 'classes' or 'alignment'")
    return size("data"), size(labels)


def make_dataset(config: Config, name: str, extern_spec: dict) -> Any:
    """:return: the dataset of the config's ``name`` (``"train"``/``"dev"``)

    Example: ``make_dataset(config, "train", extern_data_spec(config))``

    :raise ConfigError: for a missing or bad dataset dict, naming ``name`` and its line
    """
    from returnn_ls.training import datasets

    opts = config.get(name)
    if opts is None:
        raise config.error(f"the config does not set {name!r}, e.g. {name} = {{'class': 'Task12AXDataset'}}")
    try:
        params = inspect.signature(datasets.make_dataset).parameters
        if "name" in params:
            kwargs = {"extern_data": extern_spec} if "extern_data" in params else {}
            return datasets.make_dataset(opts, name=name, **kwargs)
        input_dim, num_labels = _spec_dims(extern_spec)
        base = datasets.make_dataset(opts, input_dim=input_dim, num_labels=num_labels)
        return SyntheticAdapter(base, config.get("seed") if name == "train" else None)
    except (TypeError, ValueError) as exc:
        raise config.error(f"{name}: {exc}", name) from None


def batch_options(config: Config) -> dict[str, Any]:
    """:return: ``batch_size``, ``max_seqs`` and ``chunking`` of the config, checked

    :raise ConfigError: naming the key
    """
    batch_size, max_seqs = config.get("batch_size"), config.get("max_seqs")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise config.error(f"batch_size must be a positive int, got {batch_size!r}", "batch_size")
    if max_seqs is not None and (isinstance(max_seqs, bool) or not isinstance(max_seqs, int) or max_seqs == 0):
        raise config.error(f"max_seqs must be a positive int (or -1: no limit), got {max_seqs!r}", "max_seqs")
    batching = config.get("batching")
    orders = ("default", "random", "sorted", "sorted_reverse")
    if batching is not None and batching not in orders and not str(batching).startswith("laplace:"):
        raise config.error(f"batching = {batching!r}: choose one of {list(orders)} or 'laplace:N'", "batching")
    chunking = config.get("chunking")
    if chunking not in (None, 0, "0", "", False):
        try:
            from returnn_ls.training.batching import parse_chunking  # type: ignore[attr-defined]
        except ImportError:
            raise config.error(f"chunking = {chunking!r} is not supported yet (use '0')", "chunking") from None
        chunking = parse_chunking(chunking)
    else:
        chunking = None
    return {"batch_size": batch_size, "max_seqs": max_seqs if max_seqs and max_seqs > 0 else None,
            "chunking": chunking}  # fmt: skip


def iterate_batches(dataset: Any, *, batch_size: int, max_seqs: int | None, chunking: Any) -> Iterator[Any]:
    """:return: the batches of the dataset's current epoch (``init_seq_order`` first)

    Example: ``dataset.init_seq_order(epoch); for batch in iterate_batches(dataset, **batch_options(config)): ...``
    """
    unit = getattr(dataset, "batch_size_unit", "frames")
    try:
        from returnn_ls.training.batching import iterate_batches as batches  # type: ignore[attr-defined]
    except ImportError:
        return simple_batches(dataset, batch_size=batch_size, max_seqs=max_seqs, batch_size_unit=unit)
    return batches(dataset, batch_size=batch_size, max_seqs=max_seqs or -1, batch_size_unit=unit, chunking=chunking)


def simple_batches(dataset: Any, *, batch_size: int, max_seqs: int | None, batch_size_unit: str) -> Iterator[Batch]:
    """Sequences in order, a batch full when the next would exceed ``batch_size`` (sequences, or padded frames
    ``max length * count``) or ``max_seqs``."""
    seqs: list[dict] = []
    longest = 0
    for index in range(dataset.num_seqs):
        seq = dataset.get_seq(index)
        length = len(seq["data"]) if "data" in seq else 1
        count = len(seqs) + 1
        size = count if batch_size_unit == "seqs" else max(longest, length) * count
        if seqs and (size > batch_size or (max_seqs is not None and count > max_seqs)):
            yield collate(seqs)
            seqs, longest = [], 0
        seqs.append(seq)
        longest = max(longest, length)
    if seqs:
        yield collate(seqs)


def collate(seqs: list[dict[str, Any]]) -> Batch:
    """:return: the padded :class:`Batch` of ``seqs`` (padding 0)"""
    data, lengths = {}, {}
    for key in (k for k in seqs[0] if k != "seq_tag"):
        lens = np.array([len(s[key]) for s in seqs], dtype=np.int32)
        padded = np.zeros((len(seqs), int(lens.max()), *seqs[0][key].shape[1:]), dtype=seqs[0][key].dtype)
        for i, s in enumerate(seqs):
            padded[i, : len(s[key])] = s[key]
        data[key], lengths[key] = padded, lens
    return Batch(data, lengths, [str(s.get("seq_tag", i)) for i, s in enumerate(seqs)])
