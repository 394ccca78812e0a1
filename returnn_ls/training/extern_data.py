"""``extern_data``: the dims of the dataset's keys, and numpy batches turned into Tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.dim import Dim
from returnn_ls.tensor import Tensor
from returnn_ls.training.config import Config, ConfigError, suggest
from returnn_ls.training.layers import Node

__all__ = ["DATASET_KEYS", "ExternData", "error_factory"]

#: The keys the synthetic dataset yields.
DATASET_KEYS = ("data", "classes", "alignment")


class ExternData:
    """The dims of ``extern_data``; turns numpy batches of the dataset into Tensors."""

    def __init__(self, spec: Any, config: Config | None = None):
        err = error_factory(config, "extern_data")
        if not isinstance(spec, dict) or "data" not in spec:
            raise err(None, "extern_data must be a dict with at least a 'data' entry, e.g. {'data': {'dim': 16}}")
        self.nodes: dict[str, Node] = {}
        for key, opts in spec.items():
            if key not in DATASET_KEYS:
                raise err(key, f"extern_data key {key!r} is not yielded by the dataset {list(DATASET_KEYS)}")
            if not isinstance(opts, dict) or not isinstance(opts.get("dim"), int) or opts["dim"] < 1:
                raise err(key, f"extern_data[{key!r}] needs a positive int 'dim', got {opts!r}")
            bad = [k for k in opts if k not in ("dim", "sparse")]
            if bad:
                raise err(key, f"extern_data[{key!r}]: unknown option {bad[0]!r}{suggest(bad[0], ['dim', 'sparse'])}")
            sparse = bool(opts.get("sparse", False))
            if sparse != (key != "data"):
                raise err(key, f"extern_data[{key!r}] must {'not ' if key == 'data' else ''}be sparse")
            self.nodes[key] = Node(Dim(opts["dim"], name=key), "sparse" if sparse else "dense")

    @property
    def num_labels(self) -> int:
        """:return: the label vocabulary size (of ``classes``, else ``alignment``)"""
        node = self.nodes.get("classes") or self.nodes.get("alignment")
        if node is None:
            raise ConfigError("extern_data needs a sparse 'classes' or 'alignment' entry for the targets")
        return node.dim.dimension

    def tensors(self, batch: dict[str, np.ndarray]) -> dict[str, Tensor]:
        """:return: Tensors on the selected backend for a padded numpy batch of the synthetic dataset"""
        batch_dim = Dim(len(batch["data_len"]), name="batch")
        time = Dim(rf.convert_to_tensor(batch["data_len"], dims=[batch_dim]), name="time")
        labels = Dim(rf.convert_to_tensor(batch["classes_len"], dims=[batch_dim]), name="labels")
        out = {}
        for key, node in self.nodes.items():
            if key == "data":
                out[key] = rf.convert_to_tensor(batch[key], dims=[batch_dim, time, node.dim], feature_dim=node.dim)
            else:
                spatial = labels if key == "classes" else time
                out[key] = rf.convert_to_tensor(batch[key], dims=[batch_dim, spatial], sparse_dim=node.dim)
        return out


def error_factory(config: Config | None, name: str) -> Callable[[str | None, str], ConfigError]:
    """:return: ``err(key, message)`` making a :class:`ConfigError` at the config's ``name`` (and dict key)"""

    def err(key: str | None, message: str) -> ConfigError:
        return config.error(message, name, key) if config else ConfigError(message)

    return err
