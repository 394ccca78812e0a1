"""Helpers of the dataset and batching tests: RETURNN in a subprocess, and an HDF writer on plain h5py."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_SCRIPT = Path(__file__).with_name("_returnn_data_reference.py")


def run_returnn(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run the jobs of ``spec`` in RETURNN (see ``_returnn_data_reference.py``) and return its results."""
    src, dst = folder / "returnn_spec.pkl", folder / "returnn_out.pkl"
    src.write_bytes(pickle.dumps(spec))
    subprocess.run([sys.executable, str(REFERENCE_SCRIPT), str(src), str(dst)], check=True, timeout=300)
    return pickle.loads(dst.read_bytes())


def write_hdf_h5py(
    path: Path,
    inputs: list[np.ndarray] | None,
    tags: list[str],
    targets: dict[str, list[np.ndarray]] | None = None,
    *,
    sizes: dict[str, Any] | None = None,
    fixed_length_tags: bool = False,
) -> None:
    """Write RETURNN's HDF layout with plain h5py (independently of RETURNN's writer).

    :param inputs: per sequence [T, dim] features or [T] class indices; None: a file of targets only
    :param targets: key -> per sequence arrays; written to ``targets/data/<key>``, lengths into ``seqLengths``
    :param sizes: ``targets/size`` attributes (e.g. ``{"classes": [5, 1]}`` or ``{"classes": 5}``); None: no
        ``targets/size`` group
    :param fixed_length_tags: store the tags as fixed-length bytes (``S<n>``, 0-padded) instead of vlen str
    """
    import h5py

    targets = targets or {}
    keys = sorted(targets)
    with h5py.File(path, "w") as f:
        if inputs is not None:
            f.create_dataset("inputs", data=np.concatenate(inputs))
            f.attrs["inputPattSize"] = inputs[0].shape[1] if inputs[0].ndim == 2 else int(max(map(np.max, inputs))) + 1
        # without targets, RETURNN's layout keeps a second, unused column (as SimpleHDFWriter writes it)
        lengths = [([len(inputs[i])] if inputs is not None else []) + ([len(targets[k][i]) for k in keys] or [0])
                   for i in range(len(tags))]  # fmt: skip
        f.create_dataset("seqLengths", data=np.array(lengths, dtype="int32"))
        if fixed_length_tags:
            f.create_dataset("seqTags", data=np.array([t.encode() for t in tags], dtype=f"S{max(map(len, tags))}"))
        else:
            f.create_dataset("seqTags", data=tags, dtype=h5py.string_dtype())
        if keys:
            for key in keys:
                f.create_dataset(f"targets/data/{key}", data=np.concatenate(targets[key]))
                f.create_dataset(f"targets/labels/{key}", data=[b"label"])  # RETURNN's reader wants the group
            if sizes is not None:
                group = f.create_group("targets/size")
                for key, value in sizes.items():
                    group.attrs[key] = value


def random_seqs(rng: np.random.Generator, num: int, dim: int, num_classes: int) -> dict[str, list[np.ndarray]]:
    """:return: ``inputs`` (float32 [T, dim]), frame-aligned ``classes`` and label sequences ``words`` of
    ``num`` sequences with random lengths"""
    lens = rng.integers(1, 30, size=num)
    return {
        "inputs": [rng.normal(size=(n, dim)).astype("float32") for n in lens],
        "classes": [rng.integers(0, num_classes, size=n).astype("int32") for n in lens],
        "words": [rng.integers(0, 7, size=rng.integers(1, 6)).astype("int32") for _ in lens],
    }
