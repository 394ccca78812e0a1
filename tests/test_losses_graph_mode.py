"""The fused losses inside ``tf.function`` (graph mode: no eager value checks, symbolic shapes)."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

tf = pytest.importorskip("tensorflow")


def test_fused_ce_and_ctc_in_tf_function_match_eager(rng):
    batch, vocab = Dim(2, name="batch"), Dim(5, name="vocab")
    x = rng.standard_normal((2, 4, 5)).astype("float32")
    y = rng.integers(1, 5, size=(2, 4))
    lens, tlens = np.array([4, 3]), np.array([2, 1])

    def losses(raw_x):
        time = Dim(rf.convert_to_tensor(tf.constant(lens), dims=[batch]), name="time")
        labels = Dim(rf.convert_to_tensor(tf.constant(tlens), dims=[batch]), name="labels")
        logits = rf.convert_to_tensor(raw_x, dims=[batch, time, vocab], feature_dim=vocab)
        frame_targets = rf.convert_to_tensor(tf.constant(y), dims=[batch, time], sparse_dim=vocab)
        seq_targets = rf.convert_to_tensor(tf.constant(y[:, :2]), dims=[batch, labels], sparse_dim=vocab)
        ce = rf.label_smoothed_cross_entropy(logits=logits, targets=frame_targets, axis=vocab, smoothing=0.1)
        ctc = rf.ctc_loss(
            logits=logits, targets=seq_targets, input_spatial_dim=time, targets_spatial_dim=labels, blank_index=0,
            label_smoothing=0.1,
        )  # fmt: skip
        return tf.reduce_sum(ce.raw_tensor) * 0.5 + tf.reduce_sum(ctc.raw_tensor)

    def value_and_grad(raw_x):
        with tf.GradientTape() as tape:
            tape.watch(raw_x)
            total = losses(raw_x)
        return total, tape.gradient(total, raw_x)

    eager = value_and_grad(tf.constant(x))
    graph = tf.function(value_and_grad)(tf.constant(x))
    np.testing.assert_allclose(graph[0].numpy(), eager[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(graph[1].numpy(), eager[1].numpy(), atol=1e-6)
