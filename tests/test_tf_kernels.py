"""The TensorFlow kernels in every way TF runs them: eager, ``tf.function`` and ``tf.function(jit_compile=True)``,
each with the kernels run op by op (small inputs) and XLA-compiled (large inputs; forced here by a zero size
threshold). Values and gradients are compared with numpy references written from the formulas, for an upstream
gradient that differs per frame (so the scaling by ``dl`` is checked, not only ``loss.sum()``).
"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

tf = pytest.importorskip("tensorflow")

from frontend_backends.tensorflow import kernels, linear_ce  # noqa: E402  (needs tensorflow)

B, T, H, K = 2, 4, 3, 6
LENS = np.array([4, 3])
MODES = ["eager", "function", "xla"]
_rng = np.random.default_rng(7)
LOGITS = _rng.standard_normal((B, T, K)).astype(np.float32) * 2.0
HIDDEN = _rng.standard_normal((B, T, H)).astype(np.float32)
WEIGHT = _rng.standard_normal((H, K)).astype(np.float32)
LABELS = _rng.integers(0, K, size=(B, T))
UPSTREAM = _rng.uniform(-1.0, 2.0, size=(B, T)).astype(np.float32)  # dl, per frame, of both signs
VALID = np.arange(T)[None, :] < LENS[:, None]


@pytest.fixture(params=["op_by_op", "compiled"])
def kernel_mode(request, monkeypatch, select):
    """Run the kernels op by op (the default at these sizes) or XLA-compiled; select TensorFlow."""
    if request.param == "compiled":
        monkeypatch.setattr(kernels, "XLA_MIN_ELEMENTS", 0)
    select("tensorflow")
    return request.param


def _dims():
    batch, vocab, hid = Dim(B, name="batch"), Dim(K, name="vocab"), Dim(H, name="hidden")
    time = Dim(rf.convert_to_tensor(tf.constant(LENS), dims=[batch]), name="time")
    return batch, time, vocab, hid


def _run(program, inputs, mode, upstream=UPSTREAM):
    """:return: (per-frame loss, gradients w.r.t. ``inputs``) of ``sum(program(*inputs) * upstream)`` in ``mode``"""

    def value_and_grads(*raw):
        with tf.GradientTape() as tape:
            tape.watch(raw)
            loss = program(*raw)
            total = tf.reduce_sum(tf.cast(loss, tf.float32) * upstream)
        return loss, tape.gradient(total, raw)

    if mode != "eager":
        value_and_grads = tf.function(value_and_grads, jit_compile=mode == "xla")
    loss, grads = value_and_grads(*[tf.constant(x) for x in inputs])
    return loss.numpy(), [g.numpy() for g in grads]


def _softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _smoothed_target(a, included, weight=None):
    """:return: RETURNN's smoothed target ``[B, T, K]`` (an excluded target stays one-hot) times class weights"""
    floor = a / (included.sum() - 1)
    onehot = np.eye(K)[LABELS]
    q = np.where(included, floor, 0.0) * (1 - onehot) + (1 - a) * onehot
    q = np.where(included[LABELS][..., None], q, onehot)
    return q if weight is None else q * weight


def _fused_ce(raw):
    batch, time, vocab, _ = _dims()
    return rf.label_smoothed_cross_entropy(
        logits=rf.convert_to_tensor(raw, dims=[batch, time, vocab]),
        targets=rf.convert_to_tensor(tf.constant(LABELS), dims=[batch, time], sparse_dim=vocab),
        axis=vocab, smoothing=0.2, exclude_labels=[1], z_loss=0.01,
        weight=rf.convert_to_tensor(tf.constant(np.linspace(0.5, 1.5, K, dtype=np.float32)), dims=[vocab]),
    ).raw_tensor  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_fused_cross_entropy_matches_numpy_in_every_mode(kernel_mode, mode):
    included = np.arange(K) != 1
    q = _smoothed_target(0.2, included, np.linspace(0.5, 1.5, K))
    z = LOGITS.astype(np.float64)
    lse = np.log(np.exp(z).sum(-1))
    loss_ref = (-(q * (z - lse[..., None])).sum(-1) + 0.01 * lse**2) * VALID
    dz = (q.sum(-1, keepdims=True) + 0.02 * lse[..., None]) * _softmax(z) - q
    loss, (grad,) = _run(_fused_ce, [LOGITS], mode)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, dz * (UPSTREAM * VALID)[..., None], rtol=1e-5, atol=1e-6)
    assert np.all(grad[~VALID] == 0.0)


def _smoothing_path(excluded):
    def program(raw):
        batch, time, vocab, _ = _dims()
        z = rf.convert_to_tensor(raw, dims=[batch, time, vocab], feature_dim=vocab)
        y = rf.convert_to_tensor(tf.constant(LABELS), dims=[batch, time], sparse_dim=vocab)
        lp = rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.3, exclude_labels=excluded)
        return rf.cross_entropy(estimated=lp, target=y, axis=vocab, estimated_type="log-probs").raw_tensor

    return program


def np_smoothed_path_gradient(z, labels, dl, a, excluded=()):
    """Gradient w.r.t. ``z`` of ``sum(dl * -lp[y])`` with ``lp = log_softmax(z)`` and its gradient ``g`` smoothed:
    ``g' = factor * g - floor * sum_incl |g|`` on the included labels (excluded keep ``g``), then the log-softmax
    backward ``g' - softmax * sum(g')``."""
    included = np.ones(z.shape[-1], bool)
    included[list(excluded)] = False
    floor = a / (included.sum() - 1)
    factor = 1 - included.sum() * floor
    g = -np.eye(z.shape[-1])[labels] * dl[..., None]
    smoothed = np.where(included, factor * g - floor * np.abs(g * included).sum(-1, keepdims=True), g)
    return smoothed - _softmax(z) * smoothed.sum(-1, keepdims=True)


@pytest.mark.parametrize("excluded", [(), (0, 2)])
@pytest.mark.parametrize("mode", MODES)
def test_gradient_smoothing_path_matches_numpy_in_every_mode(kernel_mode, mode, excluded):
    loss, (grad,) = _run(_smoothing_path(list(excluded)), [LOGITS], mode)
    labels = np.where(VALID, LABELS, 0)  # cross_entropy reads label 0 on padding frames (its loss is not masked)
    lp = np.log(_softmax(LOGITS))
    np.testing.assert_allclose(loss, -np.take_along_axis(lp, labels[..., None], -1)[..., 0], rtol=1e-5, atol=1e-6)
    expected = np_smoothed_path_gradient(LOGITS, labels, UPSTREAM, 0.3, excluded)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def _linear_ce(raw_h, raw_w):
    batch, time, vocab, hid = _dims()
    return rf.linear_label_smoothed_cross_entropy(
        hidden=rf.convert_to_tensor(raw_h, dims=[batch, time, hid]),
        weight=rf.convert_to_tensor(raw_w, dims=[hid, vocab]),
        targets=rf.convert_to_tensor(tf.constant(LABELS), dims=[batch, time], sparse_dim=vocab),
        axis=vocab, smoothing=0.2, convention="uniform", chunk_size=7,  # by labels: blocks of 5, then 1
    ).raw_tensor  # fmt: skip


@pytest.fixture(params=["precomputed", "precomputed_uniform_upstream", "by_frames", "by_labels"])
def linear_path(request, monkeypatch, select):
    """How the gradient of the fused linear CE is made (see ``linear_ce``); :return: the upstream gradient.

    ``precomputed`` with a per-frame upstream gradient falls back to recomputing by frames.
    """
    if request.param == "by_frames":  # as if no tape watched the inputs during the forward pass
        monkeypatch.setattr(linear_ce, "_tape_watches", lambda tensors: False)
    if request.param == "by_labels":  # as if the weight were huge
        monkeypatch.setattr(linear_ce, "PRECOMPUTE_MAX_WEIGHT_ELEMENTS", 0)
    select("tensorflow")
    return np.full_like(UPSTREAM, 0.5) if request.param.endswith("uniform_upstream") else UPSTREAM


@pytest.mark.parametrize("mode", MODES)
def test_linear_cross_entropy_matches_numpy_in_every_mode(linear_path, mode):
    upstream = linear_path
    z = HIDDEN.astype(np.float64) @ WEIGHT
    q = np.full((B, T, K), 0.2 / K) + 0.8 * np.eye(K)[LABELS]
    dz = (_softmax(z) - q) * (upstream * VALID)[..., None]
    loss, (dh, dw) = _run(_linear_ce, [HIDDEN, WEIGHT], mode, upstream)
    np.testing.assert_allclose(loss, -(q * np.log(_softmax(z))).sum(-1) * VALID, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dh, dz @ WEIGHT.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, np.einsum("bth,btk->hk", HIDDEN, dz), rtol=1e-5, atol=1e-5)


@pytest.fixture
def tf1_tensor_equality():
    """``==`` on tensors as in TF1 graphs (RETURNN's TF backend): object identity, not elementwise."""
    tf.compat.v1.disable_tensor_equality()
    yield
    tf.compat.v1.enable_tensor_equality()


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_kernels_do_not_rely_on_elementwise_tensor_equality(kernel_mode, linear_path, tf1_tensor_equality, mode):
    """With TF1's ``==`` a kernel comparing tensors with ``==`` gets one Python bool: it dropped the target term
    of the gradient, and RETURNN's TF engine trained on a wrong gradient."""
    tf.compat.v1.enable_tensor_equality()  # the references (the other tests check them against numpy)
    reference = [_run(program, inputs, "eager", linear_path) for program, inputs in PROGRAMS]
    tf.compat.v1.disable_tensor_equality()
    for (program, inputs), (loss_ref, grads_ref) in zip(PROGRAMS, reference):
        loss, grads = _run(program, inputs, mode, linear_path)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
        for grad, grad_ref in zip(grads, grads_ref):
            np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-7)


PROGRAMS = [(_fused_ce, [LOGITS]), (_smoothing_path([0, 2]), [LOGITS]), (_linear_ce, [HIDDEN, WEIGHT])]
