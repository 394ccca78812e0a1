"""Property-based tests (hypothesis) of label smoothing on both backends.

Each example draws a small problem (batch, dynamic time lengths, K labels, smoothing, excluded labels, a dim
order) and the data from a seed; the properties hold for every draw. In CI (env var ``CI`` set) every
property runs 200 examples per backend.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import BackendHelper, _installed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import returnn_ls as rf
from returnn_ls import Dim, _backend

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ATOL = 1e-5


@dataclass
class Case:
    """One drawn problem: arrays in the canonical order [batch, time, vocab]."""

    k: int
    lens: np.ndarray  # [batch] int64, <= time
    logits: np.ndarray  # [batch, time, vocab] float32
    labels: np.ndarray  # [batch, time] int64
    q: np.ndarray  # [batch, time, vocab] float32, a distribution over vocab
    smoothing: float
    exclude: list[int]
    perm: tuple[int, ...]  # a dim order of (batch, time, vocab)
    smoothing_as_tensor: bool

    def dims(self) -> tuple[Dim, Dim, Dim]:
        """:return: fresh (batch, time, vocab) dims; time is dynamic with sizes on the selected backend"""
        batch = Dim(len(self.lens), name="batch")
        time = Dim(rf.convert_to_tensor(self.lens, dims=[batch]), name="time")
        return batch, time, Dim(self.k, name="vocab")

    def smoothing_value(self):
        """:return: the smoothing as a float or a scalar Tensor on the selected backend"""
        return rf.convert_to_tensor(np.float32(self.smoothing)) if self.smoothing_as_tensor else self.smoothing


@st.composite
def cases(draw, max_smoothing: float = 1.0) -> Case:
    k = draw(st.integers(2, 6))
    batch, time = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    lens = np.array(draw(st.lists(st.integers(0, time), min_size=batch, max_size=batch)), dtype=np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = (rng.standard_normal((batch, time, k)) * draw(st.sampled_from([0.1, 1.0, 5.0]))).astype(np.float32)
    q = rng.dirichlet(np.full(k, draw(st.sampled_from([0.1, 1.0]))), size=(batch, time)).astype(np.float32)
    exclude = draw(st.lists(st.integers(0, k - 1), unique=True, max_size=k - 2))
    return Case(
        k=k,
        lens=lens,
        logits=logits,
        labels=rng.integers(0, k, size=(batch, time)),
        q=q / q.sum(-1, keepdims=True),
        smoothing=draw(st.floats(0.0, max_smoothing, allow_nan=False)),
        exclude=exclude,
        perm=tuple(draw(st.permutations(range(3)))),
        smoothing_as_tensor=draw(st.booleans()),
    )


def _ce_against_smoothed_targets(case: Case, logits_raw) -> rf.Tensor:
    """Reference: per-frame CE ``[batch, time]`` of the logits against ``label_smoothing(labels)``, 0 on padding."""
    batch, time, vocab = case.dims()
    z = rf.convert_to_tensor(logits_raw, dims=[batch, time, vocab], feature_dim=vocab)
    y = rf.convert_to_tensor(case.labels, dims=[batch, time], sparse_dim=vocab)
    target = rf.label_smoothing(y, case.smoothing_value())
    ce = rf.cross_entropy(estimated=z, target=target, axis=vocab, estimated_type="logits")
    return rf.where(rf.sequence_mask(time, ce), ce, 0.0).copy_transpose([batch, time])


def _ce_with_smoothed_gradient(case: Case, logits_raw, exclude, perm=(0, 1, 2)) -> rf.Tensor:
    """Per-sequence loss sum_t CE(label_smoothed_log_prob_gradient(log_softmax(z)), labels), masked by length."""
    dims = case.dims()
    z = rf.convert_to_tensor(logits_raw, dims=[dims[i] for i in perm], feature_dim=dims[2])
    label_order = [i for i in perm if i < 2]
    labels = rf.convert_to_tensor(
        np.transpose(case.labels, label_order), dims=[dims[i] for i in label_order], sparse_dim=dims[2]
    )
    log_prob = rf.label_smoothed_log_prob_gradient(
        rf.log_softmax(z, axis=dims[2]), case.smoothing_value(), axis=dims[2], exclude_labels=exclude
    )
    ce = rf.cross_entropy(estimated=log_prob, target=labels, axis=dims[2], estimated_type="log-probs")
    return rf.reduce_sum(ce, axis=dims[1]).copy_transpose([dims[0]])


@given(case=cases())
@PROPERTY
def test_smoothed_targets_are_nonnegative_and_sum_to_one_dense_and_sparse_alike(backend, case):
    batch, time, vocab = case.dims()
    dense = rf.convert_to_tensor(case.q, dims=[batch, time, vocab], feature_dim=vocab)
    sparse = rf.convert_to_tensor(case.labels, dims=[batch, time], sparse_dim=vocab)
    one_hot = rf.convert_to_tensor(np.eye(case.k, dtype=np.float32)[case.labels], dims=[batch, time, vocab])
    values = [
        rf.label_smoothing(x, case.smoothing_value(), axis=vocab).copy_transpose([batch, time, vocab]).numpy()
        for x in (dense, sparse, one_hot)
    ]
    for value in values:
        assert value.min() >= -1e-7
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=ATOL)
    np.testing.assert_allclose(values[2], values[1], atol=1e-6)  # dense one-hot and sparse labels agree


@given(case=cases(), fraction=st.floats(0.0, 0.999))
@PROPERTY
def test_smoothing_keeps_the_argmax_below_critical_smoothing(backend, case, fraction):
    batch, time, vocab = case.dims()
    smoothing = fraction * (case.k - 1) / case.k  # below (K-1)/K, where all labels would become equal
    q = case.q.copy()
    top = q.argmax(-1)
    np.put_along_axis(q, top[..., None], np.take_along_axis(q, top[..., None], -1) + 0.05, -1)  # a clear argmax
    q /= q.sum(-1, keepdims=True)
    dense = rf.convert_to_tensor(q, dims=[batch, time, vocab], feature_dim=vocab)
    sparse = rf.convert_to_tensor(case.labels, dims=[batch, time], sparse_dim=vocab)
    np.testing.assert_array_equal(rf.label_smoothing(dense, smoothing).numpy().argmax(-1), top)
    np.testing.assert_array_equal(rf.label_smoothing(sparse, smoothing).numpy().argmax(-1), case.labels)


@given(case=cases(), use_exclude=st.booleans())
@PROPERTY
def test_smoothed_gradient_keeps_total_mass(backend, case, use_exclude):
    exclude = case.exclude if use_exclude else None
    weight = np.abs(case.logits[..., :1]) + 0.1  # a positive loss scale per frame

    def loss(log_prob_raw):
        batch, time, vocab = case.dims()
        log_prob = rf.convert_to_tensor(log_prob_raw, dims=[batch, time, vocab], feature_dim=vocab)
        smoothed = rf.label_smoothed_log_prob_gradient(log_prob, case.smoothing_value(), exclude_labels=exclude)
        target = rf.convert_to_tensor(case.q * weight, dims=[batch, time, vocab])
        return -rf.reduce_sum(target * smoothed, axis=vocab, use_mask=False)

    _, (grad,) = backend.value_and_grad(loss, case.logits)
    np.testing.assert_allclose(-grad.sum(-1), weight[..., 0], rtol=ATOL, atol=ATOL)
    assert (-grad).min() >= -1e-6, "the smoothed negative gradient is a (scaled) distribution"
    if exclude:
        np.testing.assert_allclose(grad[..., exclude], -(case.q * weight)[..., exclude], rtol=1e-6, atol=1e-7)


@given(case=cases(), use_exclude=st.booleans())
@PROPERTY
def test_gradient_smoothing_of_ce_equals_ce_against_smoothed_targets(backend, case, use_exclude):
    exclude = case.exclude if use_exclude else []
    value, (grad,) = backend.value_and_grad(lambda z: _ce_with_smoothed_gradient(case, z, exclude), case.logits)

    log_softmax = case.logits - np.log(np.exp(case.logits).sum(-1, keepdims=True))
    inside = np.arange(case.logits.shape[1])[None, :] < case.lens[:, None]
    plain_ce = -np.take_along_axis(log_softmax, case.labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(value, np.where(inside, plain_ce, 0).sum(1), rtol=ATOL, atol=ATOL)  # not smoothed
    if not exclude:

        def ce_against_smoothed_targets(z_raw):
            ce = _ce_against_smoothed_targets(case, z_raw)
            return rf.reduce_sum(ce, axis=ce.dims[1])

        _, (ref_grad,) = backend.value_and_grad(ce_against_smoothed_targets, case.logits)
        np.testing.assert_allclose(grad, ref_grad, atol=ATOL)
        return
    # With excluded labels the target of an included label is smoothed over the K-E included labels only;
    # an excluded target label stays one-hot (no gradient on the included labels, so nothing to smooth).
    k, e = case.k, len(exclude)
    included = ~np.isin(np.arange(k), exclude)
    floor = case.smoothing / (k - e - 1)
    one_hot = np.eye(k)[case.labels]
    target = np.where(included, one_hot * (1 - (k - e) * floor) + floor, one_hot)
    target = np.where(included[case.labels][..., None], target, one_hot)
    np.testing.assert_allclose(grad, np.where(inside[..., None], np.exp(log_softmax) - target, 0.0), atol=ATOL)


@given(case=cases())
@PROPERTY
def test_padded_frames_get_zero_gradient(backend, case):
    _, (grad,) = backend.value_and_grad(lambda z: _ce_with_smoothed_gradient(case, z, case.exclude), case.logits)
    padding = np.arange(case.logits.shape[1])[None, :] >= case.lens[:, None]
    assert np.all(grad[padding] == 0.0)
    if case.smoothing < 1.0:  # a non-trivial problem: some frame inside the sequences gets gradient
        assert case.lens.sum() == 0 or np.abs(grad[~padding]).max() > 0


@contextlib.contextmanager
def _selected(name: str):
    previous = _backend._selected
    rf.select_backend(name)
    try:
        yield BackendHelper(name)
    finally:
        _backend._selected = previous


@pytest.mark.skipif(not (_installed("torch") and _installed("tensorflow")), reason="needs both frameworks")
@given(case=cases())
@PROPERTY
def test_torch_and_tensorflow_agree(case):
    results = []
    for name in ("torch", "tensorflow"):
        with _selected(name) as helper:
            batch, time, vocab = case.dims()
            sparse = rf.convert_to_tensor(case.labels, dims=[batch, time], sparse_dim=vocab)
            dense = rf.convert_to_tensor(case.q, dims=[batch, time, vocab], feature_dim=vocab)
            value, (grad,) = helper.value_and_grad(
                lambda z: _ce_with_smoothed_gradient(case, z, case.exclude), case.logits
            )
            smoothed = [rf.label_smoothing(x, case.smoothing_value()).numpy() for x in (dense, sparse)]
            results.append([value, grad, *smoothed])
    for torch_value, tf_value in zip(*results):
        np.testing.assert_allclose(torch_value, tf_value, rtol=ATOL, atol=ATOL)


@given(case=cases())
@PROPERTY
def test_results_do_not_depend_on_dim_order(backend, case):
    inverse = np.argsort(case.perm)
    value, (grad,) = backend.value_and_grad(lambda z: _ce_with_smoothed_gradient(case, z, case.exclude), case.logits)
    value_p, (grad_p,) = backend.value_and_grad(
        lambda z: _ce_with_smoothed_gradient(case, z, case.exclude, case.perm), np.transpose(case.logits, case.perm)
    )
    np.testing.assert_allclose(value_p, value, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.transpose(grad_p, inverse), grad, rtol=1e-6, atol=1e-6)
    batch, time, vocab = dims = case.dims()
    q = rf.convert_to_tensor(np.transpose(case.q, case.perm), dims=[dims[i] for i in case.perm], feature_dim=vocab)
    smoothed = rf.label_smoothing(q, case.smoothing_value()).copy_transpose([batch, time, vocab])
    canonical = rf.label_smoothing(rf.convert_to_tensor(case.q, dims=dims, feature_dim=vocab), case.smoothing_value())
    np.testing.assert_allclose(smoothed.numpy(), canonical.numpy(), atol=1e-7)


@given(case=cases())
@PROPERTY
def test_fused_loss_equals_ce_against_smoothed_targets_in_any_dim_order(backend, case):
    def fused(z_raw):
        batch, time, vocab = dims = case.dims()
        z = rf.convert_to_tensor(z_raw, dims=[dims[i] for i in case.perm], feature_dim=vocab)
        y = rf.convert_to_tensor(case.labels, dims=[batch, time], sparse_dim=vocab)
        loss = rf.label_smoothed_cross_entropy(logits=z, targets=y, axis=vocab, smoothing=case.smoothing_value())
        return loss.copy_transpose([batch, time])

    value, (grad,) = backend.value_and_grad(fused, np.transpose(case.logits, case.perm))
    ref_value, (ref_grad,) = backend.value_and_grad(lambda z: _ce_against_smoothed_targets(case, z), case.logits)
    padding = np.arange(case.logits.shape[1])[None, :] >= case.lens[:, None]
    assert np.all(value[padding] == 0.0) and np.all(np.transpose(grad, np.argsort(case.perm))[padding] == 0.0)
    np.testing.assert_allclose(value, ref_value, rtol=ATOL, atol=ATOL)
    np.testing.assert_allclose(np.transpose(grad, np.argsort(case.perm)), ref_grad, atol=ATOL)


@given(case=cases(), data=st.data())
@PROPERTY
def test_ctc_smoothed_gradient_is_softmax_minus_a_distribution(backend, case, data):
    k = max(case.k, 3)  # blank + at least 2 labels
    logits = np.random.default_rng(case.k).standard_normal(case.logits.shape[:2] + (k,)).astype(np.float32)
    max_labels = int((case.lens.max() + 1) // 2)  # L labels always fit into 2L-1 frames
    label_lens = np.array([data.draw(st.integers(0, (n + 1) // 2)) for n in case.lens])
    labels = np.random.default_rng(k).integers(1, k, size=(len(case.lens), max(max_labels, 1)))

    def ctc(z_raw):
        batch, time, _ = case.dims()
        vocab = Dim(k, name="vocab")
        z = rf.convert_to_tensor(z_raw, dims=[batch, time, vocab], feature_dim=vocab)
        label_dim = Dim(rf.convert_to_tensor(label_lens, dims=[batch]), name="labels")
        y = rf.convert_to_tensor(labels, dims=[batch, label_dim], sparse_dim=vocab)
        return rf.ctc_loss(logits=z, targets=y, input_spatial_dim=time, targets_spatial_dim=label_dim,
                           blank_index=0, label_smoothing=case.smoothing_value())  # fmt: skip

    value, (grad,) = backend.value_and_grad(ctc, logits)
    padding = np.arange(logits.shape[1])[None, :] >= case.lens[:, None]
    assert np.all(np.isfinite(value)) and np.all(grad[padding] == 0.0)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    smoothed_posterior = softmax - grad  # q' per valid frame: a distribution (mass preserved by the smoothing)
    np.testing.assert_allclose(smoothed_posterior[~padding].sum(-1), 1.0, atol=ATOL)
    assert np.all(smoothed_posterior[~padding] >= -ATOL)
