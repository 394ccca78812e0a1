"""RETURNN's own rf modules on given parameters and inputs, in a process of their own (see _returnn_reference.py).

``python _nn_returnn_reference.py IN.npz OUT.npz``: ``IN.npz`` holds the inputs (``x`` ``[B, T, 5]`` with garbage
at padding frames, ``lengths``, ``labels``, ``h0``/``c0``, ``targets``) and the parameters as ``<case>/<name>``
(our parameter names, which are RETURNN's). ``OUT.npz`` gets RETURNN's results by case name.
"""

from __future__ import annotations

import sys

import numpy as np
import returnn.frontend as rrf
import torch
from returnn.tensor import Dim
from returnn.util.basic import BehaviorVersion


def _copy_params(module, data: dict, case: str) -> None:
    for name, param in module.named_parameters():
        with torch.no_grad():
            param.raw_tensor.copy_(torch.tensor(data[f"{case}/{name}"]))


def _np(tensor, dims) -> np.ndarray:
    return tensor.copy_transpose(dims).raw_tensor.detach().numpy()


class DemoModel(rrf.Module):
    """The model of RETURNN's demos/demo-rf.config: three Conv1d (filter 5, "same"), relu between them."""

    def __init__(self, in_dim: Dim, out_dim: Dim):
        super().__init__()
        hidden, hidden2 = Dim(50, name="hidden"), Dim(100, name="hidden2")
        self.layers = rrf.ModuleList(
            rrf.Conv1d(in_dim, hidden, 5, padding="same"),
            rrf.Conv1d(hidden, hidden2, 5, padding="same"),
            rrf.Conv1d(hidden2, out_dim, 5, padding="same"),
        )

    def __call__(self, x, *, spatial_dim: Dim):
        for layer in self.layers[:-1]:
            x, _ = layer(x, in_spatial_dim=spatial_dim)
            x = rrf.relu(x)
        return self.layers[-1](x, in_spatial_dim=spatial_dim)[0]


def _layers(data: dict, x, dims) -> dict[str, np.ndarray]:
    batch, time, in_dim, out_dim, vocab = dims
    out = {}
    linear = rrf.Linear(in_dim, out_dim)
    _copy_params(linear, data, "linear")
    y = linear(x)
    out["linear"] = _np(y, [batch, time, out_dim])
    both = rrf.concat_features(x, y)
    out["concat_features"] = _np(both, [batch, time, both.feature_dim])
    embed = rrf.Embedding(vocab, Dim(3, name="embed"))
    _copy_params(embed, data, "embedding")
    labels = rrf.convert_to_tensor(torch.tensor(data["labels"]), dims=[batch, time], sparse_dim=vocab)
    out["embedding"] = _np(embed(labels), [batch, time, embed.out_dim])
    norm = rrf.LayerNorm(in_dim)
    _copy_params(norm, data, "layer_norm")
    out["layer_norm"] = _np(norm(x), [batch, time, in_dim])
    for case, kwargs in (("conv_same", {"padding": "same"}), ("conv_valid", {"padding": "valid"}),
                         ("conv_strided", {"padding": "same", "strides": 2})):  # fmt: skip
        conv = rrf.Conv1d(in_dim, out_dim, 4 if case == "conv_strided" else 3, **kwargs)
        _copy_params(conv, data, case)
        y, out_time = conv(x, in_spatial_dim=time)
        out[case] = _np(y, [batch, out_time, out_dim])
        out[f"{case}_lengths"] = out_time.dyn_size_ext.raw_tensor.numpy()
    lstm = rrf.LSTM(in_dim, Dim(6, name="lstm"))
    _copy_params(lstm, data, "lstm")
    state = rrf.LstmState(
        h=rrf.convert_to_tensor(torch.tensor(data["h0"]), dims=[batch, lstm.out_dim]),
        c=rrf.convert_to_tensor(torch.tensor(data["c0"]), dims=[batch, lstm.out_dim]),
    )
    y, new_state = lstm(x, state=state, spatial_dim=time)
    out["lstm"] = _np(y, [batch, time, lstm.out_dim])
    out["lstm_h"], out["lstm_c"] = (_np(new_state[k], [batch, lstm.out_dim]) for k in ("h", "c"))
    return out


def _functions(x, dims) -> dict[str, np.ndarray]:
    batch, time, in_dim, _, _ = dims
    out = {name: _np(getattr(rrf, name)(x), [batch, time, in_dim]) for name in
           ("gelu", "silu", "elu", "selu", "relu_square", "log_sigmoid")}  # fmt: skip
    packed, pack_dim = rrf.pack_padded(x, dims=[batch, time], enforce_sorted=False)
    out["pack_padded"] = _np(packed, [pack_dim, in_dim])
    out["argmax_time"] = _np(rrf.reduce_argmax(x, axis=time), [batch, in_dim])
    out["argmax_in"] = _np(rrf.reduce_argmax(x, axis=in_dim), [batch, time])
    return out


def _demo(data: dict, x, dims) -> dict[str, np.ndarray]:
    """The train_step of demo-rf.config: packed cross entropy and frame errors, and the parameter gradients of the
    cross entropy weighted with the random numbers of ``tests._nn_helpers.outputs_and_grads`` (seed 0)."""
    batch, time, in_dim, _, _ = dims
    classes = Dim(2, name="classes")
    model = DemoModel(in_dim, classes)
    _copy_params(model, data, "demo")
    logits = model(x, spatial_dim=time)
    logits_packed, pack_dim = rrf.pack_padded(logits, dims=(batch, time), enforce_sorted=False)
    targets = rrf.convert_to_tensor(torch.tensor(data["targets"]), dims=[batch, time], sparse_dim=classes)
    targets_packed, _ = rrf.pack_padded(targets, dims=(batch, time), enforce_sorted=False, out_dim=pack_dim)
    loss = rrf.cross_entropy(estimated=logits_packed, estimated_type="logits", target=targets_packed, axis=classes)
    frame_error = rrf.reduce_argmax(logits_packed, axis=classes) != targets_packed
    weights = np.random.default_rng(0).normal(size=loss.raw_tensor.shape).astype("float32")
    (loss.raw_tensor * torch.tensor(weights)).sum().backward()
    out = {"demo_logits": _np(logits, [batch, time, classes]), "demo_ce": _np(loss, [pack_dim]),
           "demo_fer": _np(frame_error, [pack_dim])}  # fmt: skip
    for name, param in model.named_parameters():
        out[f"demo_grad/{name}"] = param.raw_tensor.grad.numpy()
    return out


def main(src: str, dst: str) -> None:
    """Read inputs and parameters from ``src``, write RETURNN's results to ``dst``."""
    rrf.select_backend_torch()
    BehaviorVersion.set(24)  # padding frames masked before a convolution; consistent strided "same" padding
    data = dict(np.load(src))
    batch = Dim(data["x"].shape[0], name="batch")
    time = Dim(rrf.convert_to_tensor(torch.tensor(data["lengths"]), dims=[batch]), name="time")
    in_dim, out_dim, vocab = Dim(5, name="in"), Dim(4, name="out"), Dim(7, name="vocab")
    dims = (batch, time, in_dim, out_dim, vocab)
    x = rrf.convert_to_tensor(torch.tensor(data["x"]), dims=[batch, time, in_dim], feature_dim=in_dim)
    results = {**_layers(data, x, dims), **_functions(x, dims)}
    demo_x = rrf.convert_to_tensor(torch.tensor(data["demo_x"]), dims=[batch, time, Dim(9, name="demo_in")])
    results.update(_demo(data, demo_x, (batch, time, demo_x.dims[2], None, None)))
    np.savez(dst, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
