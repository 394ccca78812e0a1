"""Every public function answers a bad argument with a ValueError/TypeError that names the argument, in eager
mode and inside compiled code, and never modifies its inputs."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim


class Inputs:
    """Small valid inputs on the selected backend: dims batch(2) x vocab(4), a scalar Tensor smoothing."""

    def __init__(self):
        self.batch, self.vocab, self.one = Dim(2, name="batch"), Dim(4, name="vocab"), Dim(1, name="one")
        uniform = np.full((2, 4), 0.25, np.float32)
        self.prob = rf.convert_to_tensor(uniform, dims=[self.batch, self.vocab])
        self.dense = rf.convert_to_tensor(uniform, dims=[self.batch, self.vocab], feature_dim=self.vocab)
        self.labels = rf.convert_to_tensor(np.array([0, 3]), dims=[self.batch], sparse_dim=self.vocab)
        self.ints = rf.convert_to_tensor(np.ones((2, 4), np.int64), dims=[self.batch, self.vocab])
        self.size_one = rf.convert_to_tensor(np.ones((2, 1), np.float32), dims=[self.batch, self.one])

    def ctc(self, **kwargs) -> rf.Tensor:
        """:return: ``rf.ctc_loss`` of valid inputs (logits [batch, time, vocab], 1 label each), some replaced"""
        time, labels = Dim(3, name="time"), Dim(1, name="labels")
        args = dict(
            logits=rf.convert_to_tensor(np.zeros((2, 3, 4), np.float32), dims=[self.batch, time, self.vocab],
                                        feature_dim=self.vocab),
            targets=rf.convert_to_tensor(np.array([[1], [2]]), dims=[self.batch, labels], sparse_dim=self.vocab),
            input_spatial_dim=time, targets_spatial_dim=labels, blank_index=0,
        )  # fmt: skip
        return rf.ctc_loss(**{**args, **kwargs})

    def tensor(self, value) -> rf.Tensor:
        return rf.convert_to_tensor(np.float32(value))


LS, SOH, LSG = rf.label_smoothing, rf.smooth_one_hot, rf.label_smoothed_log_prob_gradient

#: (id, call with Inputs, error type, regex the message must match: the argument's name and what is allowed)
BAD_CALLS = [
    ("smoothing_negative", lambda i: LS(i.dense, -0.1), ValueError, r"smoothing must be in \[0, 1\]"),
    ("smoothing_above_one", lambda i: LS(i.dense, 1.5), ValueError, r"smoothing must be in \[0, 1\]"),
    ("smoothing_nan", lambda i: LS(i.dense, float("nan")), ValueError, r"smoothing must be in \[0, 1\], got nan"),
    ("smoothing_tensor_above_one", lambda i: LS(i.dense, i.tensor(1.5)), ValueError, r"smoothing must be in"),
    ("smoothing_tensor_nan", lambda i: LSG(i.dense, i.tensor(np.nan)), ValueError, r"smoothing must be in"),
    ("smoothing_string", lambda i: LS(i.dense, "0.1"), TypeError, r"smoothing must be a float"),
    ("smoothing_with_dims", lambda i: LS(i.dense, i.prob), ValueError, r"smoothing must be a float or a scalar"),
    ("axis_of_size_one", lambda i: LS(i.size_one, 0.1, axis=i.one), ValueError, r"axis .* at least 2 labels"),
    ("axis_not_in_dims", lambda i: LS(i.dense, 0.1, axis=Dim(4)), ValueError, r"axis .* not one of the tensor's"),
    ("axis_not_a_dim", lambda i: LS(i.dense, 0.1, axis=1), TypeError, r"axis must be a Dim"),
    ("no_axis_no_feature_dim", lambda i: LS(i.prob, 0.1), ValueError, r"no axis given .* no feature_dim"),
    ("lsg_no_axis_no_feature_dim", lambda i: LSG(i.prob, 0.1), ValueError, r"no axis given"),
    ("prob_not_a_tensor", lambda i: LS(np.ones(4), 0.1), TypeError, r"prob must be a returnn_ls.Tensor"),
    ("prob_integer", lambda i: LS(i.ints, 0.1, axis=i.vocab), TypeError, r"prob must have a float dtype"),
    ("smooth_one_hot_of_dense", lambda i: SOH(i.dense, label_prob=0.9), TypeError, r"source must be sparse"),
    ("label_prob_above_one", lambda i: SOH(i.labels, label_prob=1.2), ValueError, r"label_prob must be in \[0, 1\]"),
    ("label_prob_negative", lambda i: SOH(i.labels, label_prob=-0.2), ValueError, r"label_prob must be in"),
    ("exclude_out_of_range", lambda i: LSG(i.dense, 0.1, exclude_labels=[4]), ValueError, r"exclude_labels .* range"),
    ("exclude_negative", lambda i: LSG(i.dense, 0.1, exclude_labels=[-1]), ValueError, r"exclude_labels .* range"),
    ("exclude_duplicated", lambda i: LSG(i.dense, 0.1, exclude_labels=[1, 1]), ValueError, r"exclude_labels .* dup"),
    ("exclude_leaves_one", lambda i: LSG(i.dense, 0.1, exclude_labels=[0, 1, 2]), ValueError, r"exclude_labels .* 2"),
    ("exclude_not_ints", lambda i: LSG(i.dense, 0.1, exclude_labels=[0.5]), TypeError, r"exclude_labels must hold"),
    ("exclude_a_string", lambda i: LSG(i.dense, 0.1, exclude_labels="0"), TypeError, r"exclude_labels must be a seq"),
    ("integer_log_probs", lambda i: LSG(i.ints, 0.1, axis=i.vocab), TypeError, r"log_prob must have a float dtype"),
    ("sparse_log_probs", lambda i: LSG(i.labels, 0.1), TypeError, r"log_prob must be dense"),
    ("returnn_compat_not_bool", lambda i: LSG(i.dense, 0.1, returnn_compat="yes"), TypeError, r"returnn_compat must"),
    ("scale_string", lambda i: rf.scaled_gradient_ext(i.dense, scale="2"), TypeError, r"scale must be a float"),
    ("scale_extra_dims", lambda i: rf.scaled_gradient(i.labels * 1.0, i.dense), ValueError, r"dims of scale"),
    ("sum_axis_not_in_dims", lambda i: rf.scaled_gradient_ext(i.dense, shift=0.1, scale_shift_by_sum_over_axis=i.one),
     ValueError, r"scale_shift_by_sum_over_axis must be one of"),
    ("scaled_gradient_integer", lambda i: rf.scaled_gradient(i.ints, 2.0), TypeError, r"source must have a float"),
    ("stop_gradient_raw", lambda i: rf.stop_gradient(i.prob.raw_tensor), TypeError, r"source must be a returnn_ls"),
    ("ce_estimated_type", lambda i: rf.cross_entropy(estimated=i.dense, target=i.labels, axis=i.vocab,
     estimated_type="logprobs"), ValueError, r"estimated_type must be one of"),
    ("ce_target_out_of_range", lambda i: rf.cross_entropy(estimated=i.dense, axis=i.vocab, estimated_type="probs",
     target=rf.convert_to_tensor(np.array([0, 4]), dims=[i.batch], sparse_dim=i.vocab)), ValueError, r"target has"),
    ("ce_integer_estimated", lambda i: rf.cross_entropy(estimated=i.ints, target=i.labels, axis=i.vocab,
     estimated_type="logits"), TypeError, r"estimated must have a float dtype"),
    ("raw_shape_mismatch", lambda i: rf.convert_to_tensor(np.ones((2, 3), np.float32), dims=[i.batch, i.vocab]),
     ValueError, r"shape \[2, 3\].*does not match dims"),
    ("raw_rank_mismatch", lambda i: rf.convert_to_tensor(np.ones(2), dims=[i.batch, i.vocab]), ValueError,
     r"does not match dims"),
    ("sparse_dim_on_float_data", lambda i: rf.convert_to_tensor(np.ones(2, np.float32), dims=[i.batch],
     sparse_dim=i.vocab), TypeError, r"sparse_dim needs integer"),
    ("feature_dim_not_in_dims", lambda i: rf.convert_to_tensor(np.ones(2, np.float32), dims=[i.batch],
     feature_dim=i.vocab), ValueError, r"feature_dim .* not one of dims"),
    ("unknown_backend", lambda i: rf.select_backend("jax"), ValueError, r"unknown backend 'jax'.*torch"),
    ("backend_not_a_string", lambda i: rf.select_backend(None), TypeError, r"name must be a str"),
    ("negative_dim_size", lambda i: Dim(-1, name="time"), ValueError, r"dimension must be >= 0"),
    ("dim_size_float", lambda i: Dim(2.5, name="time"), TypeError, r"dimension must be an int"),
    ("negative_dynamic_sizes", lambda i: Dim(rf.convert_to_tensor(np.array([2, -1]), dims=[i.batch])), ValueError,
     r"sizes must be >= 0"),
]  # fmt: skip

LSCE = rf.label_smoothed_cross_entropy
BAD_CALLS += [
    (
        "fused_smoothing_above_one",
        lambda i: LSCE(logits=i.dense, targets=i.labels, axis=i.vocab, smoothing=1.5),
        ValueError,
        r"smoothing must be in \[0, 1\]",
    ),
    (
        "fused_convention",
        lambda i: LSCE(logits=i.dense, targets=i.labels, axis=i.vocab, smoothing=0.1, convention="szegedy"),
        ValueError,
        r"convention must be one of .*returnn",
    ),
    (
        "fused_dense_targets",
        lambda i: LSCE(logits=i.dense, targets=i.dense, axis=i.vocab, smoothing=0.1),
        TypeError,
        r"targets must hold integer",
    ),
    (
        "fused_exclude_duplicated",
        lambda i: LSCE(logits=i.dense, targets=i.labels, axis=i.vocab, smoothing=0.1, exclude_labels=[2, 2]),
        ValueError,
        r"exclude_labels .* dup",
    ),
    (
        "fused_weight_wrong_dims",
        lambda i: LSCE(logits=i.dense, targets=i.labels, axis=i.vocab, smoothing=0.1, weight=i.dense),
        ValueError,
        r"weight must have exactly the dims",
    ),
]
BAD_CALLS += [
    ("ctc_blank_out_of_range", lambda i: i.ctc(blank_index=7), ValueError, r"blank_index 7 is out of range"),
    ("ctc_blank_not_int", lambda i: i.ctc(blank_index=0.0), TypeError, r"blank_index must be an int"),
    ("ctc_label_smoothing_nan", lambda i: i.ctc(label_smoothing=float("nan")), ValueError, r"label_smoothing must"),
    ("ctc_time_not_in_logits", lambda i: i.ctc(input_spatial_dim=i.one), ValueError, r"input_spatial_dim"),
    ("ctc_targets_float", lambda i: i.ctc(targets=i.dense), (TypeError, ValueError), r"targets"),
]
BAD_CALLS += [
    ("relaxation_alpha_negative", lambda i: rf.label_relaxation_loss(logits=i.dense, targets=i.labels,
     axis=i.vocab, alpha=-0.1), ValueError, r"alpha must be in"),
]  # fmt: skip


@pytest.mark.parametrize("call, error, message", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_argument_raises_error_naming_it(backend, call, error, message):
    with pytest.raises(error, match=message):
        call(Inputs())


def test_mixing_backends_is_a_type_error(restore_backend):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    import tensorflow as tf
    import torch

    vocab = Dim(3, name="vocab")
    a = rf.convert_to_tensor(torch.zeros(3), dims=[vocab])
    b = rf.convert_to_tensor(tf.zeros(3), dims=[vocab])
    with pytest.raises(TypeError, match="cannot mix"):
        a + b
    with pytest.raises(TypeError, match="cannot mix|scale is on"):
        rf.scaled_gradient(a, b)


def _snapshot(t: rf.Tensor):
    raw = t.raw_tensor
    return (t.numpy().copy(), t.dims, t.feature_dim, t.sparse_dim, t.dtype, raw, getattr(raw, "_version", None))


def test_inputs_are_never_mutated(backend):
    i = Inputs()
    batch, vocab = i.batch, i.vocab
    time = Dim(rf.convert_to_tensor(np.array([2, 1]), dims=[batch]), name="time")
    logits = rf.convert_to_tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7, dims=[batch, time, vocab])
    labels = rf.convert_to_tensor(np.array([[1, 2, 9], [0, 9, 9]]), dims=[batch, time], sparse_dim=vocab)
    smoothing, scale = i.tensor(0.2), rf.convert_to_tensor(np.array([1.0, 2.0], np.float32), dims=[batch])
    inputs = [i.dense, i.labels, logits, labels, smoothing, scale, time.dyn_size_ext]
    before = [_snapshot(t) for t in inputs]
    rf.label_smoothing(i.dense, smoothing)
    rf.label_smoothing(i.labels, 0.1)
    rf.smooth_one_hot(i.labels, label_prob=smoothing)
    rf.label_smoothed_log_prob_gradient(logits, smoothing, axis=vocab, exclude_labels=[0])
    rf.scaled_gradient_ext(logits, scale=scale, shift=scale, scale_shift_by_sum_over_axis=vocab)
    rf.cross_entropy(estimated=logits, target=labels, axis=vocab, estimated_type="logits")
    rf.cross_entropy(estimated=i.dense, target=rf.label_smoothing(i.dense, 0.1), axis=vocab, estimated_type="probs")
    logits.copy_transpose([vocab, time, batch])
    for t, (value, dims, feature, sparse, dtype, raw, version) in zip(inputs, before):
        np.testing.assert_array_equal(t.numpy(), value)
        assert (t.dims, t.feature_dim, t.sparse_dim, t.dtype) == (dims, feature, sparse, dtype)
        assert t.raw_tensor is raw and getattr(raw, "_version", None) == version


def test_exclude_labels_list_is_not_mutated(backend):
    i = Inputs()
    exclude = [3, 0]
    rf.label_smoothed_log_prob_gradient(i.dense, 0.1, exclude_labels=exclude)
    assert exclude == [3, 0]


STATIC_BAD_CALLS = ["smoothing_nan", "axis_of_size_one", "axis_not_in_dims", "exclude_duplicated", "integer_log_probs"]


@pytest.mark.parametrize("case_id", STATIC_BAD_CALLS)
def test_errors_inside_tf_function_are_as_clear_as_eager(restore_backend, case_id):
    tf = pytest.importorskip("tensorflow")
    _, call, error, message = next(c for c in BAD_CALLS if c[0] == case_id)
    rf.select_backend("tensorflow")

    @tf.function(jit_compile=True)
    def compiled():
        return call(Inputs()).raw_tensor

    with pytest.raises(error, match=message):
        compiled()


@pytest.mark.parametrize("case_id", STATIC_BAD_CALLS)
def test_errors_inside_torch_compile_are_as_clear_as_eager(restore_backend, case_id):
    torch = pytest.importorskip("torch")
    _, call, error, message = next(c for c in BAD_CALLS if c[0] == case_id)
    rf.select_backend("torch")
    batch, vocab = Dim(2, name="batch"), Dim(4, name="vocab")

    @torch.compile(backend="eager", fullgraph=False)
    def compiled(x):
        i = Inputs()
        i.dense = rf.convert_to_tensor(x, dims=[batch, vocab], feature_dim=vocab)
        return call(i).raw_tensor

    with pytest.raises(error, match=message):
        compiled(torch.full((2, 4), 0.25))
