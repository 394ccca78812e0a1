"""Helpers of the network-dict tests: batches, models with given parameters, and numpy references."""

from __future__ import annotations

from typing import Any

import numpy as np

import returnn_ls as rf
from returnn_ls.training.batching import Batch, iterate_batches
from returnn_ls.training.datasets import DataKey, make_dataset
from returnn_ls.training.extern_data import ExternData
from returnn_ls.training.network import Network
from returnn_ls.training.network_module import NetworkModule

#: extern_data of the synthetic task (6 features, 5 labels)
SYNTHETIC = {"data": {"dim": 6}, "classes": {"dim": 5, "sparse": True}, "alignment": {"dim": 5, "sparse": True}}


def synthetic_batch(num_seqs: int = 4, seed: int = 0) -> tuple[Batch, dict[str, DataKey]]:
    """:return: one batch of ``num_seqs`` sequences of the synthetic task, and the dataset's keys"""
    ds = make_dataset({"class": "synthetic", "num_seqs": num_seqs, "seed": seed}, name="train", input_dim=6,
                      num_labels=5)  # fmt: skip
    ds.init_seq_order(1)
    return next(iterate_batches(ds, batch_size=num_seqs)), ds.keys


def frame_batch(rng: np.random.Generator, lengths: list[int], num_inputs: int, num_classes: int) -> Batch:
    """:return: a batch of random features (garbage at padding frames) and frame labels (``classes``)"""
    frames = max(lengths)
    data = rng.normal(size=(len(lengths), frames, num_inputs)).astype("float32")
    classes = rng.integers(0, num_classes, size=(len(lengths), frames)).astype("int32")
    lens = np.array(lengths, dtype="int32")
    return Batch({"data": data, "classes": classes}, {"data": lens, "classes": lens}, [f"s{i}" for i in lengths])


def frame_keys(num_inputs: int, num_classes: int) -> dict[str, DataKey]:
    """:return: dataset keys with ``classes`` frame-aligned to ``data`` (as 12AX)"""
    return {"data": DataKey(num_inputs, False, "float32"),
            "classes": DataKey(num_classes, True, "int32", time_like="data")}  # fmt: skip


def build(network: dict, extern: dict, keys: dict[str, DataKey], seed: int = 0) -> tuple[NetworkModule, ExternData]:
    """:return: the model of ``network`` on the selected backend (parameters from ``seed``) and its extern data"""
    rf.set_random_seed(seed)
    extern_data = ExternData(extern, data_keys=keys)
    return NetworkModule(Network(network, extern_data)), extern_data


def set_params(model: NetworkModule, values: dict[str, np.ndarray]) -> None:
    """Assign numpy ``values`` (by parameter name) to the model's parameters."""
    for name, param in model.named_parameters():
        param.assign(values[name])


def random_params(model: NetworkModule, rng: np.random.Generator, scale: float = 0.5) -> dict[str, np.ndarray]:
    """:return: random values for every parameter of ``model`` (assigned to it)"""
    values = {name: (scale * rng.normal(size=[d.dimension for d in p.dims])).astype("float32")
              for name, p in model.named_parameters()}  # fmt: skip
    set_params(model, values)
    return values


def numpy_of(x: Any, dims: list) -> np.ndarray:
    """:return: the numpy value of Tensor ``x`` with its axes in the order ``dims``"""
    return x.copy_transpose(dims).numpy()


def lstm_numpy(x: np.ndarray, lengths: np.ndarray, ff: np.ndarray, rec: np.ndarray, bias: np.ndarray,
               reverse: bool = False) -> np.ndarray:  # fmt: skip
    """:return: ``[B, T, n]``: the LSTM (gates i, f, g, o of ``ff [4n, in]``, ``rec [4n, n]``, ``bias [4n]``) over
    each sequence's frames (backwards if ``reverse``), 0 at padding frames"""
    n = rec.shape[1]
    out = np.zeros(x.shape[:2] + (n,), dtype=np.float64)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for b, length in enumerate(lengths):
        h, c = np.zeros(n), np.zeros(n)
        frames = range(length - 1, -1, -1) if reverse else range(length)
        for t in frames:
            z = ff @ x[b, t] + rec @ h + bias
            i, f, g, o = sigmoid(z[:n]), sigmoid(z[n : 2 * n]), np.tanh(z[2 * n : 3 * n]), sigmoid(z[3 * n :])
            c = f * c + i * g
            h = o * np.tanh(c)
            out[b, t] = h
    return out


def tf_cell_variables(prefix: str, ff: np.ndarray, rec: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """:return: TensorFlow's ``LSTMCell``/``BasicLSTMCell`` variables (RETURNN's ``StandardLSTM``/``BasicLSTM``)
    with the same function as our LSTM parameters: one kernel ``[in + n, 4n]`` over ``[x, h]`` with the gate
    blocks ``i, j (= our g), f, o``, and a bias to which TF adds its ``forget_bias=1``"""
    n = rec.shape[1]
    blocks = [slice(k * n, (k + 1) * n) for k in (0, 2, 1, 3)]  # our i, g, f, o
    kernel = np.concatenate([ff.T, rec.T], axis=0)
    tf_bias = bias.copy()
    tf_bias[n : 2 * n] -= 1.0
    return {f"{prefix}/kernel": np.concatenate([kernel[:, s] for s in blocks], axis=1),
            f"{prefix}/bias": np.concatenate([tf_bias[s] for s in blocks])}  # fmt: skip
