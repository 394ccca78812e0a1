r"""The gradients of the fused projection + label-smoothed CE by blocks of labels, for a huge weight ``W [H, K]``.

Recomputing by chunks of frames (:mod:`.linear_ce`) accumulates ``dW += h_c^T @ G_c``: every chunk makes a
product of ``W``'s size, so ``W``'s gradient, that product and the new sum (three buffers of ``W``'s size) exist
at once; at ``H = 1024``, ``K = 262,144`` those are 1 GB each. By labels instead, a block ``k`` of ``B`` labels
needs only the logits ``z_k = h @ W[:, k] + b[k]`` ``[N, B]`` and the stored ``lse`` for its part of the
gradient ``G_k = dl * (softmax - q)[:, k]``, and then::

    dW[:, k] = h^T @ G_k      (final: written once, in place)      dh += G_k @ W[:, k]^T      db[k] = sum G_k

So besides ``dW`` itself only ``[N, B]`` and ``[H, B]`` temporaries exist. The loop is XLA-compiled, because
XLA writes ``dW[:, k]`` into the loop's buffer in place (``dynamic_update_slice``); TensorFlow's own ops would
copy ``dW`` at every step (or concatenate the blocks at the end, again two buffers of ``W``'s size). The loop runs
over the full blocks; the ``K mod B`` remaining labels are one more, smaller step after it (static shapes).
"""

from __future__ import annotations

import tensorflow as tf

# XLA's dynamic_update_slice, as jax2tf uses it: TensorFlow has no public in-place slice update.
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from frontend_backends.tensorflow.kernels import in_xla_context

__all__ = ["backward_by_labels"]


def _block_size(num_frames: int | None, num_labels: int, chunk: int) -> int:
    """:return: labels per block: the logits ``[N, B]`` of a block as large as those of a chunk of frames"""
    if num_frames is None:
        return min(num_labels, 1024)
    return max(1, min(num_labels, chunk * num_labels // max(1, num_frames)))


def _block(h, w, b, y, off_y, on_y, v, vsum, lse, dl, start, size):
    """:return: (``G_k``, ``W[:, k]``) on the labels ``k = start .. start + size - 1`` (``size`` static), where
    ``G_k = dl * (coef * softmax - off_y * v - on_y * onehot(y))`` and ``coef = off_y * V + on_y``"""
    cdt = lse.dtype
    w_k = tf.cast(tf.slice(w, [0, start], [w.shape[0], size]), cdt)
    z = tf.matmul(tf.cast(h, cdt), w_k)
    if b is not None:
        z += tf.cast(tf.slice(b, [start], [size]), cdt)
    coef = (off_y * vsum + on_y) * dl
    shift = (off_y * dl)[:, None]
    if v is not None:
        shift = shift * tf.slice(v, [start], [size])[None, :]
    g = tf.exp(z - lse[:, None]) * coef[:, None] - shift
    is_target = tf.equal((start + tf.range(size))[None, :], y[:, None])  # not ==: identity in tf.compat.v1 graphs
    return tf.where(is_target, g - (on_y * dl)[:, None], g), w_k


def _by_labels(h, w, b, y, off_y, on_y, v, vsum, lse, dl, chunk):
    """:return: (dh, dW, db): a loop over the full blocks of labels, then the remaining labels (static shapes)"""
    cdt = lse.dtype
    num_labels = w.shape[1]
    size = _block_size(h.shape[0], num_labels, chunk)
    per_frame = (y, off_y, on_y, v, vsum, lse, dl)
    h_c = tf.cast(h, cdt)

    def update(start, size, dh, dw, db):
        g, w_k = _block(h, w, b, *per_frame, start, size)
        dw = dynamic_update_slice(dw, tf.matmul(h_c, g, transpose_a=True), tf.stack([0, start]))
        db = dynamic_update_slice(db, tf.reduce_sum(g, 0), tf.reshape(start, [1]))
        return dh + tf.matmul(g, w_k, transpose_b=True), dw, db

    def body(i, dh, dw, db):
        return (i + 1, *update(i * size, size, dh, dw, db))

    init = (0, tf.zeros(tf.shape(h), cdt), tf.zeros(tf.shape(w), cdt), tf.zeros([num_labels], cdt))
    _, dh, dw, db = tf.while_loop(lambda i, *_: i < num_labels // size, body, init, parallel_iterations=1)
    rest = num_labels % size
    if rest:
        dh, dw, db = update(tf.constant(num_labels - rest), rest, dh, dw, db)
    return dh, dw, db


_by_labels_compiled = tf.function(_by_labels, jit_compile=True)


def backward_by_labels(h, w, b, t, lse, dl):
    """:return: (dh ``[N, H]``, dW ``[H, K]``, db ``[K]``) in the compute dtype, by blocks of labels (module doc)

    ``t`` holds the per-frame target data of ``linear_ce.linear_label_smoothed_cross_entropy``; ``dl`` is the
    upstream per-frame gradient, 0 on masked frames.
    """
    fn = _by_labels if in_xla_context() else _by_labels_compiled
    return fn(h, w, b, t["y"], t["off_y"], t["on_y"], t["v"], t["vsum"], lse, dl, t["chunk"])
