r"""TensorFlow kernel of the fused output projection + label-smoothed cross entropy (chunked over frames).

With logits ``z = h @ W + b``, ``lse = logsumexp(z)`` and the smoothed target ``q`` (see
``Backend.linear_label_smoothed_cross_entropy``), a frame's loss gradient w.r.t. its logits is
``dl * G``, ``G = softmax(z) - q``, and the gradients of the projection are::

    dh = dl * (G @ W^T)        dW = h^T @ (dl * G)        db = sum_frames dl * G

The logits of at most ``chunk`` frames exist at a time. Three ways to get the gradients:

- **precomputed** (when a tape watches the inputs and ``W`` is not huge): the forward pass computes ``G`` of
  each chunk anyway (it has the chunk's logits), so it also accumulates ``dh1 = G @ W^T`` and
  ``dW1 = h^T @ G``, ``db1 = sum G``: three matrix products per chunk, as many as the unfused projection + CE.
  The backward pass then needs no product: ``dh = dl * dh1`` holds for any ``dl``; ``dW = c * dW1`` needs the
  same ``dl = c`` on every valid frame (``loss.sum()``, ``loss.mean()``: the usual case). Otherwise it
  recomputes.
- **recomputed by frames**: the forward pass keeps only ``lse``; the backward pass recomputes each chunk's
  logits and accumulates the three gradients (four products per chunk in all).
- **recomputed by labels** (:mod:`.linear_ce_blocks`, for a huge ``W``): the same, by blocks of labels, with
  ``dW`` written block by block in place, so no temporary of ``W``'s size exists.

Frames are padded to a multiple of the chunk size (padding frames get ``dl = 0``), so the ``tf.while_loop``\ s
also work inside ``tf.function`` and under XLA with an unknown number of frames. The loops run one chunk at a
time (``parallel_iterations=1``: graph mode would otherwise start the next chunks' products early and keep their
logits alive), and a chunk's elementwise work is one XLA-compiled kernel (:mod:`.kernels`).
"""

from __future__ import annotations

import tensorflow as tf

from frontend_backends.tensorflow.kernels import Kernel, compute_dtype
from frontend_backends.tensorflow.linear_ce_blocks import backward_by_labels

try:  # whether a GradientTape records these tensors: the check tf.custom_gradient itself makes
    from tensorflow.python.eager.record import should_record_backprop as _tape_watches
except ImportError:  # pragma: no cover  (then always prepare the gradient)

    def _tape_watches(tensors) -> bool:
        return True


#: Above this many weight elements the gradient is recomputed by blocks of labels (no second weight-sized buffer)
#: instead of precomputed in the forward pass. 2**26 floats are 256 MB.
PRECOMPUTE_MAX_WEIGHT_ELEMENTS = 1 << 26


def _logits(h, w, b, cdt):
    z = tf.matmul(h, w)
    return tf.cast(z if b is None else z + b, cdt)


def _chunk_loss(z, y, off_y, on_y, v, vsum):
    """:return: (loss, lse) ``[n]`` and ``softmax(z)`` of the logits ``z`` ``[n, K]`` (shifted by the row
    maximum: no cancellation; the softmax reuses the ``exp`` of the sum)"""
    m = tf.reduce_max(z, axis=-1, keepdims=True)
    t = z - m
    tv = tf.reduce_sum(t, -1) if v is None else tf.linalg.matvec(t, v)
    exp = tf.exp(t)
    total = tf.reduce_sum(exp, -1)
    lse0 = tf.math.log(total)
    loss = on_y * (lse0 - tf.gather(t, y, batch_dims=1)) + off_y * (vsum * lse0 - tv)
    return loss, lse0 + m[:, 0], exp / total[:, None]


def _chunk_grad(z, y, lse, dl, off_y, on_y, v, vsum, probs=None):
    """:return: ``dl * (coef * softmax(z) - off_y * v - on_y * onehot(y))`` ``[n, K]``, ``coef = off_y * V + on_y``;
    ``probs`` is ``softmax(z)`` unless given"""
    coef = (off_y * vsum + on_y) * dl
    a = (off_y * dl)[:, None]
    probs = tf.exp(z - lse[:, None]) if probs is None else probs
    g = probs * coef[:, None] - (a if v is None else a * v[None, :])
    return g - tf.one_hot(y, tf.shape(z)[-1], dtype=z.dtype) * (on_y * dl)[:, None]


@Kernel
def _chunk_forward(z, y, off_y, on_y, v, vsum, dl, with_grad):
    """:return: (loss, lse) ``[n]`` of the logits ``z`` ``[n, K]``, and their gradient for ``dl`` if ``with_grad``
    (one kernel: XLA-compiled for large chunks, so the elementwise work is a few fused loops)"""
    loss, lse, probs = _chunk_loss(z, y, off_y, on_y, v, vsum)
    return loss, lse, _chunk_grad(z, y, lse, dl, off_y, on_y, v, vsum, probs) if with_grad else None


_chunk_grad_kernel = Kernel(_chunk_grad)


def _split(x, chunk):
    """:return: ``x`` ``[N, ...]`` padded with zeros to a multiple of ``chunk`` rows, reshaped to ``[C, chunk, ...]``"""
    pad = (-tf.shape(x)[0]) % chunk
    x = tf.pad(x, [[0, pad]] + [[0, 0]] * (x.shape.rank - 1))
    return tf.reshape(x, tf.concat([[-1, chunk], tf.shape(x)[1:]], 0))


def _forward(h, w, b, t, precompute):
    """:return: (loss, lse) ``[N]``, and (``dh1``, ``dW1``, ``db1``) if ``precompute`` else None.

    ``t`` holds the per-frame target data (see :func:`linear_label_smoothed_cross_entropy`).
    """
    cdt, chunk, n = t["cdt"], t["chunk"], tf.shape(h)[0]
    hs, ys, offs, ons, dls = (_split(x, chunk) for x in (h, t["y"], t["off_y"], t["on_y"], t["valid_dl"]))
    num_chunks = tf.shape(hs)[0]
    w_c = tf.cast(w, cdt)

    def body(i, losses, lses, dh1, dw1, db1):
        z = _logits(hs[i], w, b, cdt)
        loss, lse, g = _chunk_forward(z, ys[i], offs[i], ons[i], t["v"], t["vsum"], dls[i], precompute)
        if precompute:
            dh1 = dh1.write(i, tf.matmul(g, w_c, transpose_b=True))
            dw1 += tf.matmul(tf.cast(hs[i], cdt), g, transpose_a=True)
            db1 += tf.reduce_sum(g, 0)
        return i + 1, losses.write(i, loss), lses.write(i, lse), dh1, dw1, db1

    arrays = [tf.TensorArray(cdt, size=num_chunks) for _ in range(3)]
    grads = [tf.zeros(tf.shape(w), cdt), tf.zeros(tf.shape(w)[-1:], cdt)] if precompute else [0.0, 0.0]
    _, losses, lses, dh1, dw1, db1 = tf.while_loop(
        lambda i, *_: i < num_chunks, body, [0] + arrays + grads, parallel_iterations=1
    )
    loss, lse = (tf.reshape(a.stack(), [-1])[:n] for a in (losses, lses))
    if not precompute:
        return loss, lse, None
    return loss, lse, (tf.reshape(dh1.stack(), [-1, tf.shape(h)[-1]])[:n], dw1, db1)


def _backward_by_frames(h, w, b, t, lse, dl):
    """:return: (dh ``[N, H]``, dW ``[H, K]``, db ``[K]``) recomputed chunk by chunk for the per-frame ``dl``"""
    cdt, chunk = t["cdt"], t["chunk"]
    hs, ys, offs, ons, dls, lses = (_split(x, chunk) for x in (h, t["y"], t["off_y"], t["on_y"], dl, lse))
    w_c = tf.cast(w, cdt)

    def body(i, dh_parts, dw, db):
        z = _logits(hs[i], w, b, cdt)
        g = _chunk_grad_kernel(z, ys[i], lses[i], dls[i], offs[i], ons[i], t["v"], t["vsum"])
        dh_parts = dh_parts.write(i, tf.matmul(g, w_c, transpose_b=True))
        dw += tf.matmul(tf.cast(hs[i], cdt), g, transpose_a=True)
        return i + 1, dh_parts, dw, db + tf.reduce_sum(g, 0)

    init = (0, tf.TensorArray(cdt, size=tf.shape(hs)[0]), tf.zeros(tf.shape(w), cdt), tf.zeros(tf.shape(w)[-1:], cdt))
    _, dh_parts, dw, db = tf.while_loop(lambda i, *_: i < tf.shape(hs)[0], body, init, parallel_iterations=1)
    return tf.reshape(dh_parts.stack(), [-1, tf.shape(h)[-1]])[: tf.shape(h)[0]], dw, db


def _backward(h, w, b, t, lse, precomputed, dl):
    """:return: (dh, dW, db) in the compute dtype for the per-frame upstream gradient ``dl`` (0 on masked frames)"""
    if precomputed is None:
        if w.shape.num_elements() is None or w.shape.num_elements() > PRECOMPUTE_MAX_WEIGHT_ELEMENTS:
            return backward_by_labels(h, w, b, t, lse, dl)
        return _backward_by_frames(h, w, b, t, lse, dl)
    dh1, dw1, db1 = precomputed
    valid = t["valid_dl"] > 0
    low = tf.reduce_min(tf.where(valid, dl, float("inf")))
    high = tf.reduce_max(tf.where(valid, dl, -float("inf")))
    c = tf.where(tf.math.is_finite(high), high, tf.zeros_like(high))  # no valid frame: G is 0 anyway

    def scaled():
        return dl[:, None] * dh1, c * dw1, c * db1

    return tf.cond(low >= high, scaled, lambda: _backward_by_frames(h, w, b, t, lse, dl))


def linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk):
    """See ``Backend.linear_label_smoothed_cross_entropy`` and the module docstring."""
    hidden, weight = tf.convert_to_tensor(hidden), tf.convert_to_tensor(weight)
    frame_shape = tf.shape(hidden)[:-1]
    cdt = compute_dtype(hidden)
    y = tf.reshape(tf.cast(targets, tf.int32), [-1])
    valid = None if mask is None else tf.reshape(tf.broadcast_to(mask, frame_shape), [-1])
    t = {"cdt": cdt, "chunk": chunk, "y": y, "v": None if v is None else tf.cast(v, cdt)}
    t["off_y"], t["on_y"] = (tf.gather(tf.cast(c, cdt), y) for c in (off, on))
    t["vsum"] = tf.cast(tf.shape(weight)[-1], cdt) if v is None else tf.reduce_sum(t["v"])
    t["valid_dl"] = tf.ones_like(t["off_y"]) if valid is None else tf.cast(valid, cdt)
    inputs = [hidden, weight] + ([] if bias is None else [tf.convert_to_tensor(bias)])
    precompute = _tape_watches(inputs) and (weight.shape.num_elements() or 0) <= PRECOMPUTE_MAX_WEIGHT_ELEMENTS

    def run(h, w, b=None):
        h2 = tf.reshape(h, [-1, tf.shape(h)[-1]])
        # stop_gradient: an eager GradientTape would otherwise record (and keep) every chunk's logits
        fwd = [None if x is None else tf.stop_gradient(x) for x in (h2, w, b)]
        loss, lse, precomputed = _forward(*fwd, t, precompute)
        loss = loss if valid is None else tf.where(valid, loss, tf.zeros_like(loss))

        def grad(dy):
            dl = tf.reshape(tf.cast(dy, cdt), [-1]) * t["valid_dl"]
            dh, dw, db = _backward(*fwd, t, lse, precomputed, dl)
            out = [tf.reshape(tf.cast(dh, h.dtype), tf.shape(h)), tf.cast(dw, w.dtype)]
            return out if b is None else out + [tf.cast(db, b.dtype)]

        return tf.reshape(loss, frame_shape), grad

    return tf.custom_gradient(run)(*inputs)
