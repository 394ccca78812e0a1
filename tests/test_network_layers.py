"""RETURNN's layer classes in network dicts (``rec``, ``conv``, ``layer_norm``, ``linear`` activations, ``copy``,
``dropout``, ``"from"`` lists) on both backends, against numpy formulas computed from the layer's parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _network_helpers import build, frame_batch, frame_keys, lstm_numpy, numpy_of, random_params, synthetic_batch

from returnn_ls import batch_dim

NUM_INPUTS, NUM_CLASSES, LENGTHS = 4, 3, [7, 3, 5]
EXTERN = {"data": {"dim": NUM_INPUTS}, "classes": {"dim": NUM_CLASSES, "sparse": True}}
#: the loss every network needs (the layers under test are computed whether or not a loss depends on them)
OUTPUT = {"class": "softmax", "from": "data", "loss": "ce"}


def _outputs(network: dict, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], object, object]:
    """:return: the outputs (batch major, numpy) of a model of ``network`` with random parameters, the parameters,
    the batch and the output's time dims"""
    model, extern = build(network, EXTERN, frame_keys(NUM_INPUTS, NUM_CLASSES))
    params = random_params(model, np.random.default_rng(seed))
    batch = frame_batch(np.random.default_rng(seed + 1), LENGTHS, NUM_INPUTS, NUM_CLASSES)
    out = model(extern.tensors(batch))
    values = {}
    for name, x in out.outputs.items():
        if x.feature_dim is not None:
            time = next(d for d in x.dims if d not in (batch_dim, x.feature_dim))
            values[name] = numpy_of(x, [batch_dim, time, x.feature_dim])
    return values, params, batch, model


def _valid(x: np.ndarray, lengths) -> np.ndarray:
    return np.concatenate([x[b, :n] for b, n in enumerate(lengths)])


def test_rec_layers_over_concatenated_inputs_forward_and_backward(backend):
    network = {
        "proj": {"class": "linear", "n_out": 2, "activation": "tanh"},
        "fw": {"class": "rec", "unit": "NativeLstm2", "n_out": 3},
        "x": {"class": "rec", "unit": "lstmblockfused", "n_out": 5, "from": "fw"},
        "y": {"class": "rec", "n_out": 4, "from": ["fw", "x"]},  # LSTMs of three sizes in one process (eager TF)
        "bw": {"class": "rec", "unit": "LSTMBlock", "n_out": 3, "from": ["data", "proj"], "direction": -1},
        "out": OUTPUT,
    }
    values, p, batch, _ = _outputs(network)
    x, lengths = batch.data["data"], batch.lengths["data"]
    expected = {"fw": lstm_numpy(x, lengths, p["fw.ff_weight"], p["fw.rec_weight"], p["fw.bias"])}
    expected["x"] = lstm_numpy(expected["fw"], lengths, p["x.ff_weight"], p["x.rec_weight"], p["x.bias"])
    fw_x = np.concatenate([expected["fw"], expected["x"]], -1)
    expected["y"] = lstm_numpy(fw_x, lengths, p["y.ff_weight"], p["y.rec_weight"], p["y.bias"])
    x_proj = np.concatenate([x, np.tanh(x @ p["proj.weight"] + p["proj.bias"])], -1)
    expected["bw"] = lstm_numpy(x_proj, lengths, p["bw.ff_weight"], p["bw.rec_weight"], p["bw.bias"], reverse=True)
    for name, value in expected.items():
        np.testing.assert_allclose(_valid(values[name], lengths), _valid(value, lengths), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("unit", ["lstm", "NativeLSTM", "BasicLSTM", "StandardLSTM", "CudnnLSTM", "LSTMBlock"])
def test_rec_initialisation_follows_returnn_per_unit(backend, unit):
    n_in, n_out = NUM_INPUTS, 6
    model, _ = build({"x": {"class": "rec", "unit": unit, "n_out": n_out}, "out": OUTPUT}, EXTERN,
                     frame_keys(NUM_INPUTS, NUM_CLASSES))  # fmt: skip
    params = {name: backend.numpy(p) for name, p in model.named_parameters()}
    tf_cell = unit.lower() in ("basiclstm", "standardlstm")
    fans = ((n_in + 5 * n_out,) * 2) if tf_cell else (n_in + 4 * n_out, 5 * n_out)  # TF cells: one kernel
    for name, fan in zip(("x.ff_weight", "x.rec_weight"), fans):
        limit = math.sqrt(6 / fan)
        assert limit * 0.8 < np.abs(params[name]).max() <= limit
    forget_bias = np.zeros(4 * n_out)
    forget_bias[n_out : 2 * n_out] = 1.0 if tf_cell else 0.0  # TF's forget_bias=1
    np.testing.assert_array_equal(params["x.bias"], forget_bias)


def _conv_numpy(x, lengths, filt, bias, padding, stride, dilation) -> np.ndarray:
    """:return: TF's/RETURNN's 1-D convolution of the padded batch (padding frames zeroed first)"""
    frames = x.shape[1]
    x = x * (np.arange(frames)[None, :] < np.asarray(lengths)[:, None])[..., None]
    taps = (filt.shape[2] - 1) * dilation + 1
    if padding == "same":
        n_out = -(-frames // stride)
        pad = max((n_out - 1) * stride + taps - frames, 0)
        x = np.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
    else:
        n_out = (frames - taps) // stride + 1
    windows = [x[:, t * stride : t * stride + taps : dilation] for t in range(n_out)]  # each [B, filter, in]
    return np.stack([np.einsum("bki,oik->bo", w, filt) for w in windows], axis=1) + bias


@pytest.mark.parametrize(
    "padding, strides, dilation",
    [("same", 1, 1), ("valid", 1, 1), ("same", 2, 1), ("same", 4, 1), ("valid", (1,), (2,))],  # stride 4: TF's SAME
)
def test_conv_layer_equals_numpy_convolution(backend, padding, strides, dilation):
    conv = {"class": "conv", "n_out": 5, "filter_size": (3,), "padding": padding.upper(), "strides": strides,
            "dilation_rate": dilation, "activation": "relu"}  # fmt: skip
    values, p, batch, _ = _outputs({"x": conv, "out": OUTPUT})
    stride, rate = (s[0] if isinstance(s, tuple) else s for s in (strides, dilation))
    expected = np.maximum(_conv_numpy(batch.data["data"], LENGTHS, p["x.filter"], p["x.bias"], padding, stride,
                                      rate), 0)  # fmt: skip
    taps = 2 * rate + 1
    lengths = [-(-n // stride) if padding == "same" else max((n - taps) // stride + 1, 0) for n in LENGTHS]
    np.testing.assert_allclose(_valid(values["x"], lengths), _valid(expected, lengths), rtol=1e-5, atol=1e-5)


def test_rec_over_a_strided_conv_runs_on_the_conv_output_lengths(backend):
    network = {"conv": {"class": "conv", "n_out": 4, "filter_size": (2,), "padding": "valid", "strides": 2},
               "x": {"class": "rec", "n_out": 3, "from": "conv"}, "out": OUTPUT}  # fmt: skip
    values, p, batch, model = _outputs(network)
    lengths = [(n - 2) // 2 + 1 for n in LENGTHS]
    assert list(backend.numpy(model.network.layers["conv"].node.time.dyn_size_ext)) == lengths
    conv = _conv_numpy(batch.data["data"], LENGTHS, p["conv.filter"], p["conv.bias"], "valid", 2, 1)
    expected = lstm_numpy(conv, lengths, p["x.ff_weight"], p["x.rec_weight"], p["x.bias"])
    np.testing.assert_allclose(_valid(values["x"], lengths), _valid(expected, lengths), rtol=1e-4, atol=1e-5)


def test_layer_norm_copy_and_dropout_layers(backend):
    network = {"norm": {"class": "layer_norm", "epsilon": 0.01, "dropout": 0.3},
               "cat": {"class": "copy", "from": ["norm", "data"]},
               "x": {"class": "dropout", "from": "cat", "dropout": 0.5}, "out": OUTPUT}  # fmt: skip
    values, p, batch, _ = _outputs(network)
    x = batch.data["data"]
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    norm = (x - mean) / np.sqrt(var + 0.01) * p["norm.scale"] + p["norm.bias"]
    np.testing.assert_allclose(_valid(values["norm"], LENGTHS), _valid(norm, LENGTHS), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(values["x"], np.concatenate([values["norm"], x], -1), rtol=1e-6)  # no dropout


ACTIVATIONS = {
    "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "elu": lambda v: np.where(v > 0, v, np.exp(v) - 1), "softplus": lambda v: np.log1p(np.exp(v)),
    "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
    "swish": lambda v: v / (1 + np.exp(-v)), "leaky_relu": lambda v: np.where(v > 0, v, 0.2 * v),
    "log_sigmoid": lambda v: -np.log1p(np.exp(-v)), None: lambda v: v, "identity": lambda v: v,
    "softmax": lambda v: np.exp(v) / np.exp(v).sum(-1, keepdims=True),
    "log_softmax": lambda v: v - np.log(np.exp(v).sum(-1, keepdims=True)),
}  # fmt: skip


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_linear_layer_takes_returnn_s_activation_names(backend, activation):
    values, p, batch, _ = _outputs({"x": {"class": "linear", "n_out": 4, "activation": activation}, "out": OUTPUT})
    expected = ACTIVATIONS[activation](batch.data["data"] @ p["x.weight"] + p["x.bias"])
    np.testing.assert_allclose(_valid(values["x"], LENGTHS), _valid(expected, LENGTHS), rtol=1e-4, atol=1e-5)


def test_layer_without_bias(backend):
    batch, keys = synthetic_batch()
    model, _ = build({"x": {"class": "linear", "n_out": 4, "with_bias": False},
                      "c": {"class": "conv", "from": "x", "n_out": 2, "filter_size": [2], "padding": "same",
                            "with_bias": False},
                      "out": {"class": "softmax", "from": "c", "target": "alignment", "loss": "ce"}},
                     {"data": {"dim": 6}, "alignment": {"dim": 5, "sparse": True}}, keys)  # fmt: skip
    assert [n for n, _ in model.named_parameters()] == ["x.weight", "c.filter", "out.weight", "out.bias"]
