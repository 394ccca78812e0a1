"""The same numbers as RETURNN's own rf modules (``returnn.frontend`` on its torch backend) for the same parameters.

RETURNN runs in a subprocess (``_nn_returnn_reference.py``), once for all tests here. The parameters are copied by
name, so the tests also check that our parameter names and shapes are RETURNN's. The last test runs the model and
train step of RETURNN's ``demos/demo-rf.config`` (three ``Conv1d``, ``pack_padded``, ``cross_entropy``,
``reduce_argmax``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim, _backend
from tests._nn_helpers import (
    outputs_and_grads,
    restore_global_state,  # noqa: F401 (an autouse fixture)
    time_mask,
)

LENGTHS = np.array([7, 3, 5], "int32")
IN, OUT, VOCAB, EMBED, LSTM = (Dim(n, name=name) for n, name in [(5, "in"), (4, "out"), (7, "vocab"), (3, "embed"),
                                                                   (6, "lstm")])  # fmt: skip
CLASSES = Dim(2, name="classes")


class DemoModel(rf.Module):
    """The model of RETURNN's demos/demo-rf.config (as there, with returnn_ls as rf)."""

    def __init__(self, in_dim: Dim, out_dim: Dim):
        hidden, hidden2 = Dim(50, name="hidden"), Dim(100, name="hidden2")
        self.layers = rf.ModuleList(
            rf.Conv1d(in_dim, hidden, 5, padding="same"),
            rf.Conv1d(hidden, hidden2, 5, padding="same"),
            rf.Conv1d(hidden2, out_dim, 5, padding="same"),
        )

    def __call__(self, x, *, spatial_dim: Dim):
        for layer in self.layers[:-1]:
            x, _ = layer(x, in_spatial_dim=spatial_dim)
            x = rf.relu(x)
        return self.layers[-1](x, in_spatial_dim=spatial_dim)[0]


def _modules() -> dict[str, rf.Module]:
    return {
        "linear": rf.Linear(IN, OUT),
        "embedding": rf.Embedding(VOCAB, EMBED),
        "layer_norm": rf.LayerNorm(IN),
        "conv_same": rf.Conv1d(IN, OUT, 3, padding="same"),
        "conv_valid": rf.Conv1d(IN, OUT, 3, padding="valid"),
        "conv_strided": rf.Conv1d(IN, OUT, 4, padding="same", strides=2),
        "lstm": rf.LSTM(IN, LSTM),
        "demo": DemoModel(Dim(9, name="demo_in"), CLASSES),
    }


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs and parameters (random, no zeros), and RETURNN's results on them."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    x[~time_mask(LENGTHS, 7)] = 30.0  # garbage at padding frames: masked by both or a mismatch
    data = {
        "x": x, "lengths": LENGTHS, "labels": rng.integers(0, 7, size=(3, 7)).astype("int32"),
        "h0": rng.normal(size=(3, 6)).astype("float32"), "c0": rng.normal(size=(3, 6)).astype("float32"),
        "demo_x": rng.normal(size=(3, 7, 9)).astype("float32"), "targets": rng.integers(0, 2, (3, 7)).astype("int32"),
    }  # fmt: skip
    previous = _backend._selected
    rf.select_backend("torch")
    for case_name, module in _modules().items():
        for name, param in module.named_parameters():
            data[f"{case_name}/{name}"] = rng.normal(scale=0.3, size=param.numpy().shape).astype("float32")
    _backend._selected = previous
    folder = tmp_path_factory.mktemp("returnn_nn")
    np.savez(folder / "in.npz", **data)
    script = Path(__file__).with_name("_nn_returnn_reference.py")
    subprocess.run([sys.executable, str(script), str(folder / "in.npz"), str(folder / "out.npz")], check=True,
                   timeout=300, capture_output=True)  # fmt: skip
    return data, dict(np.load(folder / "out.npz"))


def _load(module: rf.Module, data: dict, case_name: str) -> rf.Module:
    """Copy the parameters by name; RETURNN's names and shapes must be ours."""
    names = {k.split("/", 1)[1] for k in data if k.startswith(f"{case_name}/")}
    assert {name for name, _ in module.named_parameters()} == names
    for name, param in module.named_parameters():
        param.assign(data[f"{case_name}/{name}"])
    return module


def _inputs(data: dict, key: str = "x", feature: Dim = IN):
    batch = Dim(3, name="batch")
    time = Dim(rf.convert_to_tensor(data["lengths"], dims=[batch]), name="time")
    x = rf.convert_to_tensor(data[key], dims=[batch, time, feature], feature_dim=feature)
    return x, batch, time


def _close(ours: rf.Tensor | np.ndarray, theirs: np.ndarray, dims=None, atol: float = 1e-5) -> None:
    value = ours.copy_transpose(dims).numpy() if dims is not None else np.asarray(ours)
    np.testing.assert_allclose(value, theirs, rtol=1e-5, atol=atol)


def test_layers_equal_returnn(backend, case):
    data, ref = case
    modules = {name: _load(module, data, name) for name, module in _modules().items() if name != "demo"}
    x, batch, time = _inputs(data)
    y = modules["linear"](x)
    _close(y, ref["linear"], [batch, time, OUT])
    both = rf.concat_features(x, y)
    _close(both, ref["concat_features"], [batch, time, both.feature_dim])
    labels = rf.convert_to_tensor(data["labels"], dims=[batch, time], sparse_dim=VOCAB)
    _close(modules["embedding"](labels), ref["embedding"], [batch, time, EMBED])
    _close(modules["layer_norm"](x), ref["layer_norm"], [batch, time, IN])
    for name in ("conv_same", "conv_valid", "conv_strided"):
        out, out_time = modules[name](x, in_spatial_dim=time)
        _close(out, ref[name], [batch, out_time, OUT])
        np.testing.assert_array_equal(out_time.dyn_size_ext.numpy(), ref[f"{name}_lengths"])
    state = rf.LstmState(h=rf.convert_to_tensor(data["h0"], dims=[batch, LSTM]),
                         c=rf.convert_to_tensor(data["c0"], dims=[batch, LSTM]))  # fmt: skip
    out, new_state = modules["lstm"](x, state=state, spatial_dim=time)
    _close(out, ref["lstm"], [batch, time, LSTM])
    _close(new_state.h, ref["lstm_h"], [batch, LSTM])
    _close(new_state.c, ref["lstm_c"], [batch, LSTM])


def test_functions_equal_returnn(backend, case):
    data, ref = case
    x, batch, time = _inputs(data)
    for name in ("gelu", "silu", "elu", "selu", "relu_square", "log_sigmoid"):
        _close(getattr(rf, name)(x), ref[name], [batch, time, IN])
    packed, pack_dim = rf.pack_padded(x, dims=[batch, time], enforce_sorted=False)
    _close(packed, ref["pack_padded"], [pack_dim, IN])
    np.testing.assert_array_equal(rf.reduce_argmax(x, axis=time).copy_transpose([batch, IN]).numpy(),
                                  ref["argmax_time"])  # fmt: skip
    np.testing.assert_array_equal(rf.reduce_argmax(x, axis=IN).numpy(), ref["argmax_in"])


def test_demo_rf_config_model_and_train_step_equal_returnn(backend, case):
    data, ref = case
    model = _load(_modules()["demo"], data, "demo")
    demo_in = model.layers[0].in_dim

    def train_step(raw_x):
        x, batch, time = _inputs({**data, "demo_x": raw_x}, "demo_x", demo_in)
        logits = model(x, spatial_dim=time)
        logits_packed, pack_dim = rf.pack_padded(logits, dims=(batch, time), enforce_sorted=False)
        targets = rf.convert_to_tensor(data["targets"], dims=[batch, time], sparse_dim=CLASSES)
        targets_packed, _ = rf.pack_padded(targets, dims=(batch, time), enforce_sorted=False, out_dim=pack_dim)
        loss = rf.cross_entropy(estimated=logits_packed, estimated_type="logits", target=targets_packed, axis=CLASSES)
        frame_error = rf.reduce_argmax(logits_packed, axis=CLASSES) != targets_packed
        train_step.extra = (logits.copy_transpose([batch, time, CLASSES]).numpy(), frame_error.numpy())
        return [loss]

    (ce,), _, grads = outputs_and_grads(backend.name, train_step, [data["demo_x"]], model)
    logits, frame_error = train_step.extra
    _close(logits, ref["demo_logits"])
    _close(ce, ref["demo_ce"])
    np.testing.assert_array_equal(frame_error, ref["demo_fer"])
    assert ce.shape == (LENGTHS.sum(),) and len(grads) == 6
    for name, value in grads.items():  # both: the gradient of the CE weighted with the same random numbers
        np.testing.assert_allclose(value, ref[f"demo_grad/{name}"], rtol=1e-4, atol=1e-5)


def test_demo_train_step_inside_tf_function_equals_returnn(case):
    """The engine may wrap a TensorFlow step in tf.function: time length and sizes unknown while tracing."""
    import tensorflow as tf

    data, ref = case
    rf.select_backend("tensorflow")
    model = _load(_modules()["demo"], data, "demo")
    demo_in, batch, time = model.layers[0].in_dim, Dim(3, name="batch"), Dim(None, name="time")

    @tf.function(
        input_signature=[tf.TensorSpec([3, None, 9]), tf.TensorSpec([3], tf.int32), tf.TensorSpec([3, None], tf.int32)]
    )
    def train_step(raw_x, lengths, raw_targets):
        time.dyn_size_ext = rf.convert_to_tensor(lengths, dims=[batch])
        logits = model(rf.convert_to_tensor(raw_x, dims=[batch, time, demo_in]), spatial_dim=time)
        logits_packed, pack_dim = rf.pack_padded(logits, dims=(batch, time), enforce_sorted=False)
        targets = rf.convert_to_tensor(raw_targets, dims=[batch, time], sparse_dim=CLASSES)
        targets_packed, _ = rf.pack_padded(targets, dims=(batch, time), out_dim=pack_dim)
        loss = rf.cross_entropy(estimated=logits_packed, estimated_type="logits", target=targets_packed, axis=CLASSES)
        return loss.raw_tensor, (rf.reduce_argmax(logits_packed, axis=CLASSES) != targets_packed).raw_tensor

    ce, frame_error = train_step(tf.constant(data["demo_x"]), tf.constant(LENGTHS), tf.constant(data["targets"]))
    _close(ce.numpy(), ref["demo_ce"])
    np.testing.assert_array_equal(frame_error.numpy(), ref["demo_fer"])
