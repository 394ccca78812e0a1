"""``HDFDataset``: RETURNN's HDF files (as RETURNN's ``SimpleHDFWriter`` writes them), read lazily with h5py.

The layout (one file; all sequences concatenated along the first axis of each array):

=========================  =====================================================================================
``inputs``                 the key ``data``: [sum T, dim] features, or [sum T] class indices (dim: the root
                           attribute ``inputPattSize``)
``seqLengths``             int [num_seqs, 1 + K]: per sequence the length of ``inputs``, then of each target key in
                           sorted order
``seqTags``                [num_seqs] sequence names (str)
``targets/data/<key>``     the other keys, e.g. ``classes`` [sum T] (class indices) or [sum T, dim]
``targets/size``           attribute ``<key>``: ``[dim, ndim]`` (or just ``dim``) of each target
=========================  =====================================================================================

A key is sparse when its values are ints of one axis (RETURNN's rule). A target whose lengths equal those of
``data`` in every sequence is frame-aligned with it (``time_like="data"``). String targets (such as raw
transcriptions) are left out of :attr:`HDFDataset.keys`. Several files concatenate; a file whose target keys are a
superset of the first file's contributes only the first file's keys (as in RETURNN).

The files are opened once; ``seqLengths`` is read at start (it gives the sequence order its lengths), everything
else one sequence at a time, so a file larger than memory trains.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from returnn_ls._optional import optional_import
from returnn_ls.training.datasets.base import DataKey, Dataset

__all__ = ["HDFDataset"]


class _HDFFile:
    """One open file: its h5py arrays per key, the start of every sequence in them, and the key descriptions.

    :param path: the file
    :raise ValueError: naming the file (and the sequence) if it is missing, not HDF5, or not RETURNN's layout
    """

    def __init__(self, path: str):
        h5py = optional_import("h5py", "HDFDataset")
        self.path = path
        if not os.path.isfile(path):
            raise ValueError(f"HDFDataset: file {path!r} does not exist")
        try:
            self.handle = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"HDFDataset: {path!r} is not a readable HDF5 file ({exc})") from None
        try:
            self._parse()
        except BaseException:
            self.handle.close()
            raise

    def _error(self, message: str) -> ValueError:
        return ValueError(f"HDFDataset: file {self.path!r}: {message}")

    def _parse(self) -> None:
        f = self.handle
        for name in ("seqLengths", "seqTags"):
            if not isinstance(f.get(name), _h5_dataset()):
                raise self._error(f"has no dataset {name!r}; not in RETURNN's HDF layout (see SimpleHDFWriter)")
        columns = (["data"] if "inputs" in f else []) + self._target_keys()
        lengths = np.asarray(f["seqLengths"][...])
        if lengths.ndim == 1:
            lengths = np.repeat(lengths[:, None], len(columns), axis=1)
        if lengths.ndim != 2 or lengths.shape[1] != len(columns) or lengths.dtype.kind not in "iu":
            raise self._error(f"seqLengths has shape {lengths.shape} ({lengths.dtype}), expected int "
                              f"[num_seqs, {len(columns)}] for the keys {columns}")  # fmt: skip
        self.num_seqs = len(lengths)
        self.order_lengths = lengths[:, 0].astype(np.int64)  # what sorted orders sort by, as in RETURNN
        self.tags = f["seqTags"]
        if self.tags.shape != (self.num_seqs,):
            raise self._error(f"seqTags has shape {self.tags.shape}, seqLengths has {self.num_seqs} sequences")
        if (lengths < 0).any():
            raise self._error(f"sequence {self._tag(int(np.argmax((lengths < 0).any(axis=1))))!r}: negative length")
        self.arrays: dict[str, Any] = {}
        self.keys: dict[str, DataKey] = {}
        self.lengths: dict[str, np.ndarray] = {}
        self.starts: dict[str, np.ndarray] = {}
        for column, key in enumerate(columns):
            array = f["inputs"] if key == "data" else f.get(f"targets/data/{key}")
            if array is None and "targets" not in f:
                continue  # RETURNN's placeholder column for a file without targets
            info = self._describe(key, array)
            if info is None:
                continue
            self._check_total(key, array, lengths[:, column])
            self.arrays[key], self.keys[key], self.lengths[key] = array, info, lengths[:, column].astype(np.int64)
            self.starts[key] = np.concatenate([[0], np.cumsum(self.lengths[key])])

    def _target_keys(self) -> list[str]:
        """:return: the target keys in column order (RETURNN: sorted; without targets one placeholder column)"""
        f = self.handle
        if "targets" not in f:
            return ["classes"]
        if "targets/data" not in f:
            raise self._error("has a group 'targets' without 'targets/data'")
        sizes = f["targets/size"].attrs.keys() if "targets/size" in f else []
        return sorted(set(f["targets/data"].keys()) | set(sizes))

    def _describe(self, key: str, array: Any) -> DataKey | None:
        """:return: the DataKey of ``array`` (None for strings, which are left out)"""
        if not isinstance(array, _h5_dataset()):
            raise self._error(f"targets/size names {key!r}, but there is no dataset targets/data/{key}")
        if array.dtype.kind in "OSU":
            return None
        if key == "data":
            if array.ndim == 1 and array.dtype.kind in "iu":
                return DataKey(dim=int(self.handle.attrs.get("inputPattSize", 1)), sparse=True, dtype="int32")
            if array.ndim != 2:
                raise self._error(f"inputs has shape {array.shape}; expected [frames, dim] or [frames]")
            return DataKey(dim=int(array.shape[1]), sparse=False, dtype=array.dtype.name)
        size = self.handle["targets/size"].attrs.get(key) if "targets/size" in self.handle else None
        size = np.atleast_1d(size) if size is not None else np.array([1 if array.ndim == 1 else array.shape[-1]])
        ndim = int(size[1]) if len(size) > 1 else array.ndim
        if array.dtype.kind in "iu" and ndim <= 1:
            if array.ndim != 1:
                raise self._error(f"targets/size says {key!r} has one axis, but it has shape {array.shape}")
            return DataKey(dim=int(size[0]), sparse=True, dtype="int32")
        if array.ndim != 2:
            raise self._error(f"targets/data/{key} has shape {array.shape}; expected [frames, dim] or [frames]")
        return DataKey(dim=int(array.shape[1]), sparse=False, dtype=array.dtype.name)

    def _check_total(self, key: str, array: Any, lengths: np.ndarray) -> None:
        """Check that the sequence lengths of ``key`` add up to its stored frames."""
        ends = np.cumsum(lengths, dtype=np.int64)
        stored = array.shape[0]
        if len(ends) and ends[-1] > stored:
            seq = int(np.argmax(ends > stored))
            raise self._error(f"sequence {self._tag(seq)!r}: seqLengths gives {key!r} {int(lengths[seq])} frames, "
                              f"but only {stored - int(ends[seq] - lengths[seq])} are stored")  # fmt: skip
        total = int(ends[-1]) if len(ends) else 0
        if total != stored:
            raise self._error(f"{key!r} stores {stored} frames, but seqLengths adds up to {total}")

    def _tag(self, index: int) -> str:
        tag = self.tags[index]
        tag = tag.decode("utf-8") if isinstance(tag, bytes) else str(tag)
        return tag.split("\0")[0]

    def read(self, index: int, keys: dict[str, DataKey]) -> dict[str, Any]:
        """:return: the arrays of sequence ``index`` (of this file) for ``keys``, and its ``seq_tag``"""
        seq: dict[str, Any] = {"seq_tag": self._tag(index)}
        for key, info in keys.items():
            start, end = self.starts[key][index], self.starts[key][index + 1]
            array = self.arrays[key][start:end]
            if len(array) != end - start:
                raise self._error(f"sequence {seq['seq_tag']!r}: {key!r} has {len(array)} frames, "
                                  f"seqLengths says {end - start}")  # fmt: skip
            seq[key] = array.astype(np.int32, copy=False) if info.sparse else array
        return seq


def _h5_dataset() -> type:
    return optional_import("h5py", "HDFDataset").Dataset


class HDFDataset(Dataset):
    """RETURNN's HDF files (see the module docstring), read lazily.

    Example: ``ds = HDFDataset(files=["train.hdf"], seq_ordering="random"); ds.init_seq_order(1); ds.get_seq(0)``
    gives ``{"data": [T, dim], "classes": int32 [T], "seq_tag": "..."}`` for a file with inputs and ``classes``.

    :param files: the HDF files; their sequences concatenate in this order
    :param cache_byte_size: RETURNN's cache size; accepted, without effect (nothing is cached here)
    :param base_opts: the shared options of :class:`~returnn_ls.training.datasets.base.Dataset`
    :raise ValueError: naming the file (and sequence tag) for a missing file, a file that is not HDF5, or data
        that does not fit RETURNN's layout
    """

    def __init__(self, *, files: list[str], cache_byte_size: int | None = None, **base_opts: Any):
        super().__init__("HDFDataset", **base_opts)
        if isinstance(files, (str, os.PathLike)) or not isinstance(files, (list, tuple)) or not files:
            raise ValueError(f"HDFDataset: files must be a non-empty list of file names, e.g. ['train.hdf'], "
                             f"got {files!r}")  # fmt: skip
        self._files: list[_HDFFile] = []
        try:
            for path in files:
                self._files.append(_HDFFile(os.fspath(path)))
            self.keys = self._common_keys()
        except BaseException:
            self.close()
            raise
        self._file_starts = np.cumsum([0] + [f.num_seqs for f in self._files])

    def _common_keys(self) -> dict[str, DataKey]:
        """:return: the first file's keys (checked against the other files), with ``time_like`` decided"""
        first = self._files[0]
        for other in self._files[1:]:
            missing = sorted(set(first.keys) - set(other.keys))
            if missing:
                raise other._error(f"has no {missing}, which {first.path!r} has")
            for key, info in first.keys.items():
                if other.keys[key] != info:
                    raise other._error(f"{key!r} is {other.keys[key]}, but in {first.path!r} {info}")
        keys = dict(first.keys)
        if not keys:
            raise first._error("has neither inputs nor numeric targets")
        for key, info in keys.items():
            if key != "data" and "data" in keys:
                if all(np.array_equal(f.lengths[key], f.lengths["data"]) for f in self._files):
                    keys[key] = DataKey(info.dim, info.sparse, info.dtype, time_like="data")
        return keys

    def _total_num_seqs(self) -> int:
        return int(self._file_starts[-1])

    def _corpus_seq_lens(self) -> np.ndarray:
        return np.concatenate([f.order_lengths for f in self._files])

    def _corpus_seq(self, corpus_index: int) -> dict[str, Any]:
        file_index = int(np.searchsorted(self._file_starts, corpus_index, side="right")) - 1
        index = corpus_index - int(self._file_starts[file_index])
        return self._files[file_index].read(index, self.keys)

    def close(self) -> None:
        """Close the files (reading afterwards fails)."""
        for f in self._files:
            f.handle.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit h5py may be gone already
            pass
