"""Out-of-range labels inside compiled code never give finite numbers, for every function that takes labels.

Eager mode raises a ValueError naming the function and the argument. ``tf.function`` (graph mode) raises at run
time with the same names (a graph assertion). XLA and ``torch.compile`` cannot raise: there the output of each
frame (sequence, for CTC) with a bad label is NaN, and so is the gradient of that frame's logits; every other
frame equals eager mode. Padding frames may hold any label.
"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

B, T, K, H = 2, 3, 5, 4
LENS, LABEL_LENS = np.array([3, 2]), np.array([2, 1])
_rng = np.random.default_rng(3)
LOGITS = _rng.standard_normal((B, T, K)).astype(np.float32)
HIDDEN = _rng.standard_normal((B, T, H)).astype(np.float32)
WEIGHT = _rng.standard_normal((H, K)).astype(np.float32)
GOOD = np.array([[1, 2, 3], [4, 1, -100]])  # -100 at a padding frame is fine
BAD = GOOD.copy()
BAD[0, 1], BAD[1, 0] = -1, K  # out of range inside the sequences
BAD_FRAMES = BAD != GOOD
SEQ_GOOD = np.array([[1, 2], [3, -100]])
SEQ_BAD = SEQ_GOOD.copy()
SEQ_BAD[0, 1] = K
BAD_SEQS = np.array([True, False])


def _log_probs(z, vocab):
    return rf.label_smoothed_log_prob_gradient(rf.log_softmax(z, axis=vocab), 0.1)


#: function name -> (z, h, y, seq_y, (batch, time, vocab, hidden, labels)) -> its output: every function that
#: takes labels (and the fused path log_softmax -> label_smoothed_log_prob_gradient -> cross_entropy)
PROGRAMS = {
    "label_smoothing": lambda z, h, y, s, d: rf.label_smoothing(y, 0.1),
    "smooth_one_hot": lambda z, h, y, s, d: rf.smooth_one_hot(y, label_prob=0.9),
    "cross_entropy": lambda z, h, y, s, d: rf.cross_entropy(estimated=z, target=y, axis=d[2], estimated_type="logits"),
    "cross_entropy_smoothed_path": lambda z, h, y, s, d: rf.cross_entropy(
        estimated=_log_probs(z, d[2]), target=y, axis=d[2], estimated_type="log-probs"
    ),
    "label_smoothed_cross_entropy": lambda z, h, y, s, d: rf.label_smoothed_cross_entropy(
        logits=z, targets=y, axis=d[2], smoothing=0.1
    ),
    "linear_label_smoothed_cross_entropy": lambda z, h, y, s, d: rf.linear_label_smoothed_cross_entropy(
        hidden=h, weight=rf.convert_to_tensor(WEIGHT, dims=[d[3], d[2]]), targets=y, axis=d[2], smoothing=0.1
    ),
    "ctc_loss": lambda z, h, y, s, d: rf.ctc_loss(
        logits=z, targets=s, input_spatial_dim=d[1], targets_spatial_dim=d[4], blank_index=0, label_smoothing=0.1
    ),
    "label_relaxation_loss": lambda z, h, y, s, d: rf.label_relaxation_loss(logits=z, targets=y, axis=d[2], alpha=0.1),
}


def _run(raw_z, raw_h, raw_y, raw_seq_y, names=tuple(PROGRAMS)) -> dict:
    """:return: {function name: raw output with dims [batch, (time, (vocab))]} for the functions ``names``"""
    batch, vocab, hid = Dim(B, name="batch"), Dim(K, name="vocab"), Dim(H, name="hidden")
    time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
    labels = Dim(rf.convert_to_tensor(LABEL_LENS, dims=[batch]), name="labels")
    z = rf.convert_to_tensor(raw_z, dims=[batch, time, vocab], feature_dim=vocab)
    h = rf.convert_to_tensor(raw_h, dims=[batch, time, hid], feature_dim=hid)
    y = rf.convert_to_tensor(raw_y, dims=[batch, time], sparse_dim=vocab)
    seq_y = rf.convert_to_tensor(raw_seq_y, dims=[batch, labels], sparse_dim=vocab)
    outputs = {name: PROGRAMS[name](z, h, y, seq_y, (batch, time, vocab, hid, labels)) for name in names}
    order = (batch, time, vocab)
    return {name: out.copy_transpose([d for d in order if d in out.dims]).raw_tensor for name, out in outputs.items()}


def _total(outputs: dict, reduce_sum):
    """:return: the sum of every loss (NaN where a bad label is), to differentiate"""
    return sum(reduce_sum(outputs[name]) for name in outputs if name not in ("label_smoothing", "smooth_one_hot"))


def _check_against_eager(got: dict, eager: dict) -> None:
    """Bad frames (sequences) are NaN, every other valid frame equals the eager value with good labels."""
    valid = np.arange(T)[None, :] < LENS[:, None]
    for name, raw in got.items():
        value, ref = np.asarray(raw), np.asarray(eager[name])
        bad = BAD_SEQS if name == "ctc_loss" else BAD_FRAMES
        keep = ~bad if name == "ctc_loss" else valid & ~bad
        assert np.all(np.isnan(value[bad])), name
        np.testing.assert_allclose(value[keep], ref[keep], rtol=1e-5, atol=1e-6, err_msg=name)


def test_eager_mode_raises_naming_the_function_and_argument(backend):
    with pytest.raises(ValueError, match=r"label_smoothing: prob has labels outside \[0, 5\)"):
        _run(backend.raw(LOGITS), backend.raw(HIDDEN), backend.raw(BAD), backend.raw(SEQ_GOOD))
    with pytest.raises(ValueError, match=r"ctc_loss: targets has labels outside \[0, 5\)"):
        batch, vocab = Dim(B, name="batch"), Dim(K, name="vocab")
        time = Dim(rf.convert_to_tensor(LENS, dims=[batch]), name="time")
        labels = Dim(rf.convert_to_tensor(LABEL_LENS, dims=[batch]), name="labels")
        rf.ctc_loss(logits=rf.convert_to_tensor(backend.raw(LOGITS), dims=[batch, time, vocab], feature_dim=vocab),
                    targets=rf.convert_to_tensor(backend.raw(SEQ_BAD), dims=[batch, labels], sparse_dim=vocab),
                    input_spatial_dim=time, targets_spatial_dim=labels, blank_index=0)  # fmt: skip


def test_torch_compile_gives_nan_for_the_frames_with_bad_labels(restore_backend):
    torch = pytest.importorskip("torch")
    rf.select_backend("torch")
    eager = _run(*(torch.tensor(a) for a in (LOGITS, HIDDEN, GOOD, SEQ_GOOD)))

    def value_and_total(z, h, y, seq_y):
        outputs = _run(z, h, y, seq_y)
        return {k: v.detach() for k, v in outputs.items()}, _total(outputs, torch.sum)

    torch._dynamo.reset()
    compiled = torch.compile(value_and_total, backend="aot_eager", fullgraph=True)  # the backward: by AOTAutograd
    z = torch.tensor(LOGITS, requires_grad=True)
    got, total = compiled(z, torch.tensor(HIDDEN), torch.tensor(BAD), torch.tensor(SEQ_BAD))
    (grad,) = torch.autograd.grad(total, z)
    _check_against_eager(got, eager)
    grad = grad.numpy()
    assert np.all(np.isnan(grad[BAD_FRAMES])) and np.all(np.isnan(grad[BAD_SEQS]))  # CTC: the whole sequence
    assert np.all(np.isfinite(grad[~BAD_SEQS][~BAD_FRAMES[~BAD_SEQS]]))


def test_xla_gives_nan_for_the_frames_with_bad_labels(restore_backend):
    tf = pytest.importorskip("tensorflow")
    rf.select_backend("tensorflow")
    eager = _run(*(tf.constant(a) for a in (LOGITS, HIDDEN, GOOD, SEQ_GOOD)))

    @tf.function(jit_compile=True)
    def value_and_grad(z, h, y, seq_y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            outputs = _run(z, h, y, seq_y)
            total = _total(outputs, tf.reduce_sum)
        return outputs, tape.gradient(total, z)

    got, grad = value_and_grad(*(tf.constant(a) for a in (LOGITS, HIDDEN, BAD, SEQ_BAD)))
    _check_against_eager({k: v.numpy() for k, v in got.items()}, eager)
    grad = grad.numpy()
    assert np.all(np.isnan(grad[BAD_FRAMES])) and np.all(np.isnan(grad[BAD_SEQS]))
    assert np.all(np.isfinite(grad[~BAD_SEQS][~BAD_FRAMES[~BAD_SEQS]]))


ARGUMENTS = {"label_smoothing": "prob", "smooth_one_hot": "source", "cross_entropy": "target"}


@pytest.mark.parametrize("function", PROGRAMS)
def test_tf_function_raises_naming_the_function_and_argument(restore_backend, function):
    tf = pytest.importorskip("tensorflow")
    rf.select_backend("tensorflow")

    @tf.function
    def one(z, h, y, seq_y):
        return _run(z, h, y, seq_y, [function])[function]

    y, seq_y = (GOOD, SEQ_BAD) if function == "ctc_loss" else (BAD, SEQ_GOOD)
    name = function.replace("_smoothed_path", "")
    message = rf"{name}: {ARGUMENTS.get(name, 'targets')} has labels outside \[0, 5\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        one(*(tf.constant(a) for a in (LOGITS, HIDDEN, y, seq_y)))
    one(*(tf.constant(a) for a in (LOGITS, HIDDEN, GOOD, SEQ_GOOD)))  # and good labels pass the check
