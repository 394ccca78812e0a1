"""The engine's view of the data: the config's ``train``/``dev`` datasets and its batching keys.

The datasets are in :mod:`returnn_ls.training.datasets`, the batching rules in :mod:`returnn_ls.training.batching`;
this module reads the config keys (``train``, ``dev``, ``batching``, ``batch_size``, ``max_seqs``, ``chunking``)
and turns their errors into :class:`ConfigError` s that name the key and its line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from returnn_ls.training import batching as _batching
from returnn_ls.training import datasets
from returnn_ls.training.batching import Batch
from returnn_ls.training.config import Config
from returnn_ls.training.datasets import DataKey, Dataset

__all__ = ["Batch", "DataKey", "batch_options", "iterate_batches", "make_dataset"]


def _spec_dims(spec: dict) -> tuple[int | None, int | None]:
    """:return: the feature dim of ``data`` and the number of labels from ``extern_data`` (either style), where
    given (the synthetic dataset takes its dims from there)"""

    def size(key: str) -> int | None:
        opts = spec.get(key) or {}
        if "dim" in opts:
            return int(opts["dim"])
        dim = opts.get("sparse_dim") or (opts.get("dims") or [None])[-1]
        return getattr(dim, "dimension", None)

    labels = next((k for k in ("classes", "alignment") if k in spec), None)
    return size("data"), (size(labels) if labels else None)


def _parse(config: Config, key: str, parse: Any) -> Any:
    try:
        return parse(config.get(key))
    except ValueError as exc:
        raise config.error(str(exc), key) from None


def make_dataset(config: Config, name: str, extern_spec: dict) -> Dataset:
    """:return: the dataset of the config's ``name`` (``"train"``/``"dev"``); the train data is in the order of
    ``batching`` (the synthetic dataset of this project's own configs: ``"random"`` when ``batching`` is not set)

    Example: ``make_dataset(config, "train", extern_data_spec(config))``

    :raise ConfigError: for a missing or bad dataset dict, naming ``name`` and its line
    """
    opts = config.get(name)
    if opts is None:
        raise config.error(f"the config does not set {name!r}, e.g. {name} = {{'class': 'Task12AXDataset'}}")
    order = _parse(config, "batching", _batching.parse_batching)
    if config.get("batching") is None and isinstance(opts, dict) and opts.get("class") == "synthetic":
        order = "random"  # this project's synthetic configs have always shuffled their training data per epoch
    input_dim, num_labels = _spec_dims(extern_spec)
    try:
        return datasets.make_dataset(opts, name=name, batching=order, input_dim=input_dim, num_labels=num_labels)
    except (TypeError, ValueError) as exc:
        raise config.error(str(exc), name) from None


def batch_options(config: Config) -> dict[str, Any]:
    """:return: ``batch_size``, ``max_seqs`` and ``chunking`` of the config, checked (for :func:`iterate_batches`)

    :raise ConfigError: naming the key
    """
    return {
        "batch_size": _parse(config, "batch_size", _batching.parse_batch_size),
        "max_seqs": _parse(config, "max_seqs", _batching.parse_max_seqs),
        "chunking": _parse(config, "chunking", _batching.parse_chunking),
    }


def iterate_batches(dataset: Dataset, *, batch_size: int, max_seqs: int, chunking: Any, train: bool) -> Iterator[Batch]:
    """:return: the batches of the dataset's current epoch (call ``init_seq_order`` first); chunking applies to
    the training data only, as in RETURNN

    Example: ``dataset.init_seq_order(epoch); for batch in iterate_batches(dataset, **batch_options(config),
    train=True): ...``
    """
    return _batching.iterate_batches(
        dataset, batch_size=batch_size, max_seqs=max_seqs, chunking=chunking if train else None
    )
