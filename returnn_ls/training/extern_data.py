"""``extern_data``: the dims of the dataset's keys, and each batch as a :class:`~returnn_ls.TensorDict`.

Both of RETURNN's styles are read:

- old style: ``{"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}}`` (also built from ``num_inputs`` /
  ``num_outputs``): each key gets ``[batch_dim, time, feature]`` (dense) or ``[batch_dim, time]`` (sparse), with
  a time dim of its own, except keys whose frames are the frames of ``data`` (the dataset says so, e.g. 12AX
  ``classes``): those share the time dim of ``data``;
- ``dims`` style: ``{"data": {"dims": (batch_dim, time_dim, in_dim), "dtype": "float32"},
  "classes": {"dims": (batch_dim, time_dim), "sparse_dim": out_dim}}``: the config's own Dims are used; keys
  with the same time Dim share it.

Per batch, :meth:`ExternData.tensor_dict` sets ``batch_dim.dyn_size_ext`` (the number of sequences) and each time
dim's ``dyn_size_ext`` (the lengths) and wraps the padded arrays. It works on raw tensors, so it also runs inside
a compiled step (``tf.function``), where the sizes are symbolic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from returnn_ls.dim import Dim, batch_dim
from returnn_ls.tensor import Tensor
from returnn_ls.tensor_dict import TensorDict
from returnn_ls.training.config import Config, ConfigError
from returnn_ls.training.config_names import suggest
from returnn_ls.training.layers import Node

__all__ = ["DataEntry", "ExternData", "error_factory", "extern_data_spec"]

_OLD_OPTIONS = ("dim", "sparse", "dtype", "shape", "available_for_inference")
_NEW_OPTIONS = ("dims", "dtype", "sparse_dim", "feature_dim", "sparse", "available_for_inference", "vocab")
#: Keys whose frames are those of ``data`` when no dataset says otherwise (the built-in synthetic task).
_DEFAULT_TIME_LIKE = {"alignment": "data"}


@dataclass
class DataEntry:
    """One ``extern_data`` key: its dims (batch first), dtype, and which dims are sparse/feature/time."""

    name: str
    dims: tuple[Dim, ...]
    dtype: str
    sparse_dim: Dim | None = None
    feature_dim: Dim | None = None
    time_dim: Dim | None = None


def extern_data_spec(config: Config) -> dict:
    """:return: the config's ``extern_data``, or the one RETURNN builds from ``num_inputs`` / ``num_outputs``

    :raise ConfigError: if neither is set
    """
    spec = config.get("extern_data")
    if spec is not None:
        return spec
    num_inputs, num_outputs = config.get("num_inputs"), config.get("num_outputs")
    if num_inputs is None or num_outputs is None:
        raise ConfigError(
            "the config sets neither 'extern_data' nor 'num_inputs' and 'num_outputs', e.g. "
            "extern_data = {'data': {'dim': 9}, 'classes': {'dim': 2, 'sparse': True}}", config.filename
        )  # fmt: skip
    return {"data": {"dim": num_inputs}, "classes": {"dim": num_outputs, "sparse": True}}


class ExternData:
    """The dims of ``extern_data``; turns padded batches into a :class:`TensorDict`.

    :param spec: the ``extern_data`` dict (either style)
    :param config: for file and line in error messages
    :param data_keys: what the dataset yields (``{key: DataKey}``), to check dims and find keys that share the
        frames of ``data`` (``time_like``); None: the built-in synthetic task's keys

    Example: ``ExternData({"data": {"dim": 9}, "classes": {"dim": 2, "sparse": True}}, data_keys=train.keys)``;
    per batch ``extern.tensor_dict({"data": x, "data:seq_len": lens, "classes": y}, backend)``.
    """

    def __init__(self, spec: Any, config: Config | None = None, *, data_keys: Mapping[str, Any] | None = None):
        self._err = error_factory(config, "extern_data")
        if not isinstance(spec, dict) or not spec:
            raise self._err(None, "extern_data must be a dict with an entry per data key, e.g. {'data': {'dim': 16}}")
        self.data_keys = data_keys
        self.entries: dict[str, DataEntry] = {}
        for key in sorted(spec, key=lambda k: self._time_like(k) is not None):  # keys sharing a time dim last
            self.entries[key] = self._parse(key, spec[key])
        self.entries = {key: self.entries[key] for key in spec}
        self.nodes = {
            k: Node(e.sparse_dim, "sparse", e.time_dim) if e.sparse_dim is not None
            else Node(e.feature_dim, "dense", e.time_dim)
            for k, e in self.entries.items()
        }  # fmt: skip

    def _parse(self, key: str, opts: Any) -> DataEntry:
        if self.data_keys is not None and key not in self.data_keys:
            known = sorted(self.data_keys)
            raise self._err(key, f"extern_data key {key!r} is not yielded by the dataset {known}{suggest(key, known)}")
        if not isinstance(opts, dict):
            raise self._err(key, f"extern_data[{key!r}] must be a dict such as {{'dim': 16}}, got {opts!r}")
        allowed = _NEW_OPTIONS if "dims" in opts else _OLD_OPTIONS
        bad = [k for k in opts if k not in allowed]
        if bad:
            raise self._err(key, f"extern_data[{key!r}]: unknown option {bad[0]!r}{suggest(bad[0], allowed)}")
        entry = self._parse_dims(key, opts) if "dims" in opts else self._parse_old(key, opts)
        self._check_dataset(entry)
        return entry

    def _parse_old(self, key: str, opts: dict) -> DataEntry:
        dim = opts.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise self._err(key, f"extern_data[{key!r}] needs a positive int 'dim', got {dim!r}")
        sparse = bool(opts.get("sparse", False))
        shape = opts.get("shape")
        has_time = shape is None or None in tuple(shape)
        time = self._shared_time(key) if has_time else None
        feature = Dim(dim, name=f"{key}:sparse" if sparse else f"{key}:feature")
        spatial = (time,) if time is not None else ()
        if sparse:
            return DataEntry(key, (batch_dim, *spatial), opts.get("dtype", "int32"), sparse_dim=feature, time_dim=time)
        return DataEntry(key, (batch_dim, *spatial, feature), opts.get("dtype", "float32"), feature_dim=feature,
                         time_dim=time)  # fmt: skip

    def _time_like(self, key: str) -> str | None:
        """:return: the key whose frames ``key``'s frames are (the dataset's ``time_like``), or None"""
        if self.data_keys is None:
            return _DEFAULT_TIME_LIKE.get(key)
        return getattr(self.data_keys.get(key), "time_like", None)

    def _shared_time(self, key: str) -> Dim:
        like = self._time_like(key)
        if like is not None and like in self.entries and self.entries[like].time_dim is not None:
            return self.entries[like].time_dim
        return Dim(None, name=f"{key}:time")

    def _parse_dims(self, key: str, opts: dict) -> DataEntry:
        dims = tuple(opts["dims"])
        if not dims or not all(isinstance(d, Dim) for d in dims) or dims[0] is not batch_dim:
            raise self._err(key, f"extern_data[{key!r}]['dims'] must be Dims starting with batch_dim, got {dims}")
        dynamic = [d for d in dims[1:] if d.dimension is None]
        if len(dynamic) > 1:
            raise self._err(key, f"extern_data[{key!r}]: at most one dynamic dim besides batch_dim, got {dynamic}")
        sparse_dim = opts.get("sparse_dim")
        if sparse_dim is not None and not isinstance(sparse_dim, Dim):
            raise self._err(key, f"extern_data[{key!r}]['sparse_dim'] must be a Dim, got {sparse_dim!r}")
        feature = opts.get("feature_dim")
        if feature is None and sparse_dim is None and dims[-1].dimension is not None and len(dims) > 1:
            feature = dims[-1]
        dtype = opts.get("dtype", "int32" if sparse_dim is not None else "float32")
        time = dynamic[0] if dynamic else None
        return DataEntry(key, dims, dtype, sparse_dim=sparse_dim, feature_dim=feature, time_dim=time)

    def _check_dataset(self, entry: DataEntry) -> None:
        data_key = self.data_keys.get(entry.name) if self.data_keys is not None else None
        if data_key is None:
            return
        ours = entry.sparse_dim or entry.feature_dim
        if ours is not None and ours.dimension != data_key.dim:
            kind = "classes" if data_key.sparse else "features"
            raise self._err(entry.name, f"extern_data[{entry.name!r}] has dim {ours.dimension}, but the dataset "
                            f"yields {data_key.dim} {kind} for {entry.name!r}")  # fmt: skip
        if (entry.sparse_dim is not None) != bool(data_key.sparse):
            what = "sparse (class indices)" if data_key.sparse else "dense (features)"
            raise self._err(entry.name, f"extern_data[{entry.name!r}]: the dataset yields {what} for this key")

    @property
    def num_labels(self) -> int:
        """:return: the label vocabulary size (of ``classes``, else ``alignment``)"""
        node = self.nodes.get("classes") or self.nodes.get("alignment")
        if node is None or node.kind != "sparse":
            raise ConfigError("extern_data needs a sparse 'classes' or 'alignment' entry for the targets")
        return node.dim.dimension

    def length_keys(self) -> dict[str, str]:
        """:return: for every key with a time dim, the key whose lengths set that dim (the first that has it)"""
        owner: dict[int, str] = {}
        out = {}
        for key, entry in self.entries.items():
            if entry.time_dim is not None:
                out[key] = owner.setdefault(id(entry.time_dim), key)
        return out

    def tensor_dict(self, raw: Mapping[str, Any], backend: Any) -> TensorDict:
        """Set the sizes of ``batch_dim`` and the time dims and wrap the raw arrays of one batch.

        :param raw: ``raw[key]`` (padded, batch first) and ``raw[key + ":seq_len"]`` per key with a time dim
        :param backend: the backend (:mod:`frontend_backends`) the raw tensors live on
        """
        first = next(iter(self.entries))
        size = backend.axis_size(raw[first], 0)
        batch_dim.dyn_size_ext = Tensor(_scalar(size, backend), (), backend=backend)
        for key, owner in self.length_keys().items():
            if key == owner:
                entry = self.entries[key]
                lens = backend.cast(raw[f"{key}:seq_len"], "int32")
                entry.time_dim.dyn_size_ext = Tensor(lens, (batch_dim,), backend=backend)
        out = TensorDict()
        for key, entry in self.entries.items():
            out[key] = Tensor(raw[key], entry.dims, feature_dim=entry.feature_dim, sparse_dim=entry.sparse_dim,
                              backend=backend)  # fmt: skip
        return out

    def tensors(self, batch: Any) -> dict[str, Tensor]:
        """:return: Tensors on the selected backend of a padded :class:`~returnn_ls.training.batching.Batch` (for
        scripts and tests; the engine builds its batches with :meth:`tensor_dict` inside the step)

        Example: ``extern.tensors(next(iterate_batches(dataset, batch_size=8)))["data"]``
        """
        from returnn_ls import _backend

        backend = _backend.selected_backend()
        raw = {}
        for key, entry in self.entries.items():
            raw[key] = backend.convert(np.asarray(batch.data[key], dtype=entry.dtype))
            if entry.time_dim is not None:
                raw[f"{key}:seq_len"] = backend.convert(np.asarray(batch.lengths[key], dtype=np.int32))
        return dict(self.tensor_dict(raw, backend).items())


def _scalar(size: Any, backend: Any) -> Any:
    """:return: a raw int32 scalar of ``size`` (a Python int when known, else a raw scalar tensor)"""
    if isinstance(size, (int, np.integer)):
        return backend.convert(np.asarray(size, dtype=np.int32))
    return backend.cast(size, "int32")


def error_factory(config: Config | None, name: str) -> Callable[[str | None, str], ConfigError]:
    """:return: ``err(key, message)`` making a :class:`ConfigError` at the config's ``name`` (and dict key)"""

    def err(key: str | None, message: str) -> ConfigError:
        return config.error(message, name, key) if config else ConfigError(message)

    return err
