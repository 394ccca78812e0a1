"""Batches of a dataset's epoch, with RETURNN's config keys ``batching``, ``batch_size``, ``max_seqs``, ``chunking``.

The engine parses each key with its ``parse_*`` function (a ValueError names the key and what is allowed), calls
``dataset.init_seq_order(epoch)`` and iterates :func:`iterate_batches`. The rules are RETURNN's (its TF engine's
``Dataset._generate_batches`` and its PyTorch engine's ``BatchingIterDataPipe`` agree on them):

- Sequences are taken in the epoch's order. A batch grows while ``max_len * num_seqs <= batch_size``, where
  ``max_len`` is the longest sequence in the batch including the new one (the padded size; for a sequence the
  length of its longest key), and while it has fewer than ``max_seqs`` sequences. A sequence longer than
  ``batch_size`` still forms a batch of its own.
- With ``chunking = "size:step"`` (training only) every sequence is first cut into chunks ``[0, size)``,
  ``[step, step + size)``, ... of all keys, and the chunks are batched as sequences.
- For a dataset with ``batch_size_unit == "seqs"`` (the built-in ``synthetic``) ``batch_size`` counts sequences.

The order and content of an epoch are a pure function of the dataset options and the epoch, so a run resumed at
an epoch boundary sees the batches of an uninterrupted run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from returnn_ls.training.datasets.base import DataKey, Dataset
from returnn_ls.training.datasets.seq_order import check_seq_ordering

__all__ = [
    "Batch",
    "Chunking",
    "chunk_seq",
    "collate_batch",
    "iterate_batches",
    "parse_batch_size",
    "parse_batching",
    "parse_chunking",
    "parse_max_seqs",
]

#: ``(size, step)``: ints for all keys, or dicts key -> int for some keys (the others stay whole in each chunk).
Chunking = tuple[Any, Any]


@dataclass
class Batch:
    """A padded batch (padding is 0).

    :param data: per key ``[B, T, dim]`` (dense) or ``[B, T]`` (sparse)
    :param lengths: per key int32 ``[B]``
    :param seq_tags: the ``B`` sequence tags
    """

    data: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    seq_tags: list[str]

    @property
    def num_seqs(self) -> int:
        """:return: B"""
        return len(self.seq_tags)


def parse_batching(value: Any) -> str:
    """The config key ``batching``: the training data's sequence order (RETURNN's ``seq_ordering``).

    Example: ``parse_batching("random")`` returns ``"random"``; ``parse_batching(None)`` returns ``"default"``.

    :raise ValueError: naming ``batching`` and the accepted orders
    """
    return "default" if value is None else check_seq_ordering(value, "batching")


def parse_batch_size(value: Any) -> int:
    """The config key ``batch_size``: frames per batch, padding included (sequences for ``synthetic``).

    Example: ``parse_batch_size(5000)`` returns 5000.

    :raise ValueError: naming ``batch_size``
    """
    if isinstance(value, dict):
        raise ValueError(f"batch_size per data key ({value!r}) is not supported by returnn-ls; use one int")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"batch_size must be a positive int (frames per batch, padding included), got {value!r}")
    return int(value)


def parse_max_seqs(value: Any) -> int:
    """The config key ``max_seqs``: at most this many sequences (or chunks) per batch; -1 or None: no limit.

    Example: ``parse_max_seqs(10)`` returns 10; ``parse_max_seqs(None)`` returns -1.

    :raise ValueError: naming ``max_seqs``
    """
    if value is None or (not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value == -1):
        return -1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"max_seqs must be a positive int, or -1 for no limit, got {value!r}")
    return int(value)


def parse_chunking(value: Any) -> Chunking | None:
    """The config key ``chunking``, in RETURNN's forms: ``"0"``/``0``/None (off), ``"size:step"``, ``"size"``,
    ``size``, ``(size, step)``, ``{"data": size, ...}`` or ``({"data": size, ...}, {"data": step, ...})`` (a step
    of 0 or None means the size).

    Example: ``parse_chunking("200:100")`` returns ``(200, 100)``; ``parse_chunking("0")`` returns None.

    :return: ``(size, step)`` (ints, or dicts with the same keys), or None for no chunking
    :raise ValueError: naming ``chunking`` and the accepted forms
    """
    forms = "'0', 'size:step', 'size', size, (size, step), {'data': size}, ({'data': size}, {'data': step})"
    if callable(value):
        raise ValueError(f"chunking: a custom chunking function is not supported by returnn-ls; use one of {forms}")
    if isinstance(value, str):
        if not re.fullmatch(r"\d+(:\d+)?", value.strip()):
            raise ValueError(f"chunking must be one of {forms}, got {value!r}")
        value = tuple(int(part) for part in value.split(":")) if ":" in value else int(value)
    size, step = value if isinstance(value, (tuple, list)) and len(value) == 2 else (value, None)
    if size is None or (_is_int(size) and size == 0):
        return None
    step = size if step is None or (_is_int(step) and step == 0) else step
    if _is_int(size) and _is_int(step) and size > 0 and step > 0:
        return int(size), int(step)
    if isinstance(size, dict) and isinstance(step, dict) and size and sorted(size) == sorted(step):
        if all(_is_int(v) and v > 0 for v in [*size.values(), *step.values()]):
            return {k: int(v) for k, v in size.items()}, {k: int(v) for k, v in step.items()}
    raise ValueError(f"chunking must be one of {forms} with positive ints (dicts with the same keys), got {value!r}")


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def iterate_batches(
    dataset: Dataset,
    *,
    batch_size: int,
    max_seqs: int = -1,
    batch_size_unit: str | None = None,
    chunking: Chunking | None = None,
) -> Iterator[Batch]:
    """The padded batches of the dataset's current epoch (call ``dataset.init_seq_order(epoch)`` first).

    Example::

        ds = make_dataset({"class": "Task12AXDataset", "num_seqs": 1000}, name="train", batching="random")
        ds.init_seq_order(epoch=1)
        for batch in iterate_batches(ds, batch_size=5000, max_seqs=10):
            batch.data["data"]  # float32 [B, T, 9]

    :param batch_size: frames per batch, padding included (``max_len * num_seqs``), or sequences (see below)
    :param max_seqs: at most this many sequences (chunks) per batch; -1: no limit
    :param batch_size_unit: ``"frames"`` or ``"seqs"``; None: the dataset's :attr:`Dataset.batch_size_unit`
    :param chunking: from :func:`parse_chunking` (training only); None: whole sequences
    """
    batch_size, max_seqs = parse_batch_size(batch_size), parse_max_seqs(max_seqs)
    unit = batch_size_unit or dataset.batch_size_unit
    if unit not in ("frames", "seqs"):
        raise ValueError(f"batch_size_unit must be 'frames' or 'seqs', got {unit!r}")
    if chunking is not None:
        chunking = parse_chunking(chunking)
    keys = dataset.keys
    items: list[dict[str, Any]] = []
    max_len = 0
    for index in range(dataset.num_seqs):
        seq = dataset.get_seq(index)
        for item in chunk_seq(seq, keys, chunking) if chunking else (seq,):
            length = max(len(item[key]) for key in keys)
            grown = max(max_len, length)
            cost = grown * (len(items) + 1) if unit == "frames" else len(items) + 1
            if items and (len(items) == max_seqs or cost > batch_size):
                yield collate_batch(items, keys)
                items, grown = [], length
            items.append(item)
            max_len = grown
    if items:
        yield collate_batch(items, keys)


def collate_batch(seqs: list[dict[str, Any]], keys: dict[str, DataKey]) -> Batch:
    """Pad sequences (dicts from ``Dataset.get_seq``) into a :class:`Batch`.

    Example: ``collate_batch([ds.get_seq(0), ds.get_seq(1)], ds.keys).data["data"].shape`` is ``(2, T, dim)``.
    """
    data, lengths = {}, {}
    for key in keys:
        arrays = [seq[key] for seq in seqs]
        lens = np.fromiter((len(a) for a in arrays), dtype=np.int32, count=len(arrays))
        padded = np.zeros((len(arrays), int(lens.max())) + arrays[0].shape[1:], dtype=arrays[0].dtype)
        for i, array in enumerate(arrays):
            padded[i, : len(array)] = array
        data[key], lengths[key] = padded, lens
    return Batch(data, lengths, [seq["seq_tag"] for seq in seqs])


def chunk_seq(seq: dict[str, Any], keys: dict[str, DataKey], chunking: Chunking) -> list[dict[str, Any]]:
    """Cut one sequence into RETURNN's chunks: ``[0, size)``, ``[step, step + size)``, ... while the start is
    inside the sequence (the last chunk may be shorter; a sequence of length 0 gives none).

    The chunked keys are all keys (int ``chunking``) or those of the dict; the others stay whole in every chunk.
    Every chunked key must give as many chunks as the reference key (``data``, else the first), as in RETURNN's
    PyTorch engine: keys of one length with one step, or per-key steps that fit.

    Example: ``chunk_seq(seq, keys, (4, 2))`` for 6 frames gives frames ``[0:4], [2:6], [4:6]``.

    :raise ValueError: naming the sequence and keys, if the keys do not give the same number of chunks
    """
    size, step = chunking
    chunked = [key for key in keys if isinstance(size, int) or key in size]
    missing = [key for key in (size if isinstance(size, dict) else {}) if key not in keys]
    if missing:
        raise ValueError(f"chunking names {missing[0]!r}, which the dataset does not have (it has {list(keys)})")
    sizes = {key: size if isinstance(size, int) else size[key] for key in chunked}
    steps = {key: step if isinstance(step, int) else step[key] for key in chunked}
    ref = "data" if "data" in chunked else chunked[0]
    num_chunks = len(range(0, len(seq[ref]), steps[ref]))
    starts: dict[str, range] = {}
    for key in chunked:
        length = len(seq[key])
        starts[key] = range(0, length, steps[key])
        if len(starts[key]) != num_chunks:
            raise ValueError(
                f"chunking: sequence {seq['seq_tag']!r}: {key!r} has {length} frames and {ref!r} "
                f"{len(seq[ref])}, which give different numbers of chunks; chunk only keys of one length, "
                f"e.g. chunking = ({{{ref!r}: {sizes[ref]}}}, {{{ref!r}: {steps[ref]}}})"
            )
    return [
        {**seq, **{key: seq[key][r[i] : r[i] + sizes[key]] for key, r in starts.items()}} for i in range(num_chunks)
    ]
