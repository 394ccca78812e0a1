"""Float-or-scalar-Tensor arguments (``smoothing``, ``label_prob``, ``alpha``, ``label_smoothing``) accept raw framework
scalars (``torch.Tensor``, ``tf.Tensor``, ``tf.Variable``) with the numbers of the float, eagerly and compiled
(``torch.compile``, ``tf.function`` with and without XLA, a variable assigned between calls as a schedule); wrong
types and shapes are reported naming the raw type and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, K = 2, 4, 5
SMOOTHING = 0.2


def _inputs(backend):
    rng = np.random.default_rng(0)
    batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
    time = Dim(rf.convert_to_tensor(backend.raw(np.array([4, 3], "int32")), dims=[batch]), name="time")
    logits = rf.convert_to_tensor(backend.raw(rng.normal(size=(B, T, K)).astype("float32")),
                                  dims=[batch, time, vocab], feature_dim=vocab)  # fmt: skip
    labels = rf.convert_to_tensor(backend.raw(rng.integers(1, K, size=(B, T)).astype("int32")), dims=[batch, time],
                                  sparse_dim=vocab)  # fmt: skip
    return batch, time, vocab, logits, labels


def _all_functions(backend, value):
    """:return: the result of every function with a fraction argument, given ``value`` for that argument"""
    batch, time, vocab, logits, labels = _inputs(backend)
    targets_dim = Dim(rf.convert_to_tensor(backend.raw(np.array([2, 1], "int32")), dims=[batch]), name="labels")
    short = rf.convert_to_tensor(backend.raw(np.array([[1, 2], [3, 0]], "int32")), dims=[batch, targets_dim],
                                 sparse_dim=vocab)  # fmt: skip
    probs = rf.softmax(logits, axis=vocab)
    return {
        "label_smoothing": rf.label_smoothing(probs, value, axis=vocab),
        "smooth_one_hot": rf.smooth_one_hot(labels, label_prob=value),
        "label_smoothed_cross_entropy": rf.label_smoothed_cross_entropy(logits=logits, targets=labels, axis=vocab,
                                                                        smoothing=value),  # fmt: skip
        "label_relaxation_loss": rf.label_relaxation_loss(logits=logits, targets=labels, axis=vocab, alpha=value),
        "ctc_loss": rf.ctc_loss(logits=logits, targets=short, input_spatial_dim=time, targets_spatial_dim=targets_dim,
                                blank_index=0, label_smoothing=value),  # fmt: skip
    }


def test_raw_scalars_and_variables_give_the_numbers_of_the_float(backend):
    expected = {k: backend.numpy(v) for k, v in _all_functions(backend, SMOOTHING).items()}
    raw = backend.raw(np.float32(SMOOTHING))
    variable = backend.trainer.variables({"s": np.array(SMOOTHING, "float32")})["s"]  # tf.Variable / leaf tensor
    for given in (raw, variable, np.array(SMOOTHING, "float32")):
        got = _all_functions(backend, given)
        assert set(got) == set(expected)
        for name, value in got.items():
            np.testing.assert_allclose(backend.numpy(value), expected[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_raw_scalar_out_of_range_or_not_a_scalar_names_the_type_and_the_fix(backend):
    _, _, vocab, logits, labels = _inputs(backend)

    def call(value):
        return rf.label_smoothed_cross_entropy(logits=logits, targets=labels, axis=vocab, smoothing=value)

    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\], got 1.5"):
        call(backend.raw(np.float32(1.5)))
    with pytest.raises(ValueError, match=r"smoothing must be a scalar, got a \w+\.\w+ of shape \(2,\) \(reduce it"):
        call(backend.raw(np.array([0.1, 0.2], "float32")))
    with pytest.raises(TypeError, match=r"0-d torch.Tensor, tf.Tensor or tf.Variable\), got str"):
        call("0.1")
    with pytest.raises(TypeError, match="smoothing must have a float dtype"):
        call(backend.raw(np.int32(0)))
    with pytest.raises(ValueError, match=r"got a numpy.ndarray of shape \(2,\)"):
        call(np.array([0.1, 0.2]))


def test_torch_compile_takes_a_tensor_smoothing_as_an_input(select):
    torch = pytest.importorskip("torch")
    select("torch")
    _, _, vocab, logits, labels = _inputs(_Torch())

    def loss(raw_logits, smoothing):
        x = rf.convert_to_tensor(raw_logits, dims=logits.dims, feature_dim=vocab)
        return rf.label_smoothed_cross_entropy(logits=x, targets=labels, axis=vocab, smoothing=smoothing).raw_tensor

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    for value in (0.0, SMOOTHING, 0.5):  # one compiled graph: the value is data
        expected = rf.label_smoothed_cross_entropy(logits=logits, targets=labels, axis=vocab, smoothing=value)
        got = compiled(logits.raw_tensor, torch.tensor(value))
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_tf_function_reads_a_variable_smoothing_each_call(select, jit):
    tf = pytest.importorskip("tensorflow")
    select("tensorflow")
    _, _, vocab, logits, labels = _inputs(_Tf())
    smoothing = tf.Variable(0.0)

    @tf.function(jit_compile=jit)
    def loss():
        out = rf.label_smoothed_cross_entropy(logits=logits, targets=labels, axis=vocab, smoothing=smoothing)
        return out.raw_tensor

    for value in (0.0, SMOOTHING, 0.5):  # a schedule assigns the variable; the traced function reads it
        smoothing.assign(value)
        expected = rf.label_smoothed_cross_entropy(logits=logits, targets=labels, axis=vocab, smoothing=value)
        np.testing.assert_allclose(loss().numpy(), expected.numpy(), rtol=1e-6)
    assert loss.experimental_get_tracing_count() == 1


class _Torch:
    @staticmethod
    def raw(array):
        import torch

        return torch.as_tensor(np.asarray(array))


class _Tf:
    @staticmethod
    def raw(array):
        import tensorflow as tf

        return tf.constant(np.asarray(array))
