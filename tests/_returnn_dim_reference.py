"""Sizes of derived dims from RETURNN's own dim arithmetic, computed in a process of their own (RETURNN switches an
already imported TensorFlow to graph mode):

``python _returnn_dim_reference.py EXPRESSIONS_JSON LENS_JSON LENS2_JSON OUT.npz``

Each expression is over ``t`` (sizes LENS over a batch dim), ``t2`` (sizes LENS2) and ``s`` (static 7).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import returnn.frontend as rrf
import torch
from returnn.tensor import Dim, Tensor


def main(expressions: list[str], lens: list[int], lens2: list[int], dst: str) -> None:
    """Write the sizes of each expression (``sizes{i}``) and the dimension of ``s + 1`` (``static``) to ``dst``."""
    rrf.select_backend_torch()
    batch = Dim(len(lens), name="batch")

    def sizes(values: list[int], name: str) -> Tensor:
        return Tensor(name, dims=[batch], dtype="int32", raw_tensor=torch.tensor(values, dtype=torch.int32))

    names = {"t": Dim(sizes(lens, "t"), name="time"), "t2": Dim(sizes(lens2, "t2"), name="t2"), "s": Dim(7, name="s")}
    out = {"static": np.array((names["s"] + 1).dimension)}
    for i, expr in enumerate(expressions):
        dim = eval(expr, {}, dict(names))
        out[f"sizes{i}"] = dim.dyn_size_ext.raw_tensor.numpy()
    np.savez(dst, **out)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4])
