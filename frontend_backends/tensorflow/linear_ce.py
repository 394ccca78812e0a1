"""TensorFlow kernel of the fused output projection + label-smoothed cross entropy (chunked over frames).

Same algorithm as ``frontend_backends.torch.linear_ce``: the forward pass keeps only each frame's
``logsumexp``; the gradient function recomputes the logits chunk by chunk in a ``tf.while_loop`` and
accumulates the gradients of ``hidden``, ``weight`` and ``bias``. Frames are padded to a multiple of the chunk
size (padding frames get a zero upstream gradient), so the loop also works inside ``tf.function`` with an
unknown number of frames. See ``frontend_backends.base.Backend.linear_label_smoothed_cross_entropy``.
"""

from __future__ import annotations

import tensorflow as tf


def _compute_dtype(x: tf.Tensor) -> tf.DType:
    return tf.float64 if x.dtype == tf.float64 else tf.float32


def _logits(h, w, b, cdt):
    z = tf.matmul(h, w)
    return tf.cast(z if b is None else z + b, cdt)


def _chunk_loss(z, y, off_y, on_y, v, vsum):
    """:return: (loss, lse) ``[n]`` of the logits ``z`` ``[n, K]``"""
    m = tf.reduce_max(z, axis=-1, keepdims=True)
    t = z - m
    tv = tf.reduce_sum(t, -1) if v is None else tf.linalg.matvec(t, v)
    t_y = tf.gather(t, y, batch_dims=1)
    lse0 = tf.math.log(tf.reduce_sum(tf.exp(t), -1))
    return on_y * (lse0 - t_y) + off_y * (vsum * lse0 - tv), lse0 + m[:, 0]


def _chunk_grad(z, y, lse, dl, off_y, on_y, v, vsum):
    """:return: ``dl * (coef * softmax(z) - off_y * v - on_y * onehot(y))`` ``[n, K]``"""
    coef = (off_y * vsum + on_y) * dl
    a = (off_y * dl)[:, None]
    g = tf.exp(z - lse[:, None]) * coef[:, None] - (a if v is None else a * v[None, :])
    return g - tf.one_hot(y, tf.shape(z)[-1], dtype=z.dtype) * (on_y * dl)[:, None]


def _split(x, chunk, pad_value=0):
    """:return: ``x`` ``[N, ...]`` padded to a multiple of ``chunk`` rows and reshaped to ``[C, chunk, ...]``"""
    n = tf.shape(x)[0]
    pad = (-n) % chunk
    x = tf.pad(x, [[0, pad]] + [[0, 0]] * (x.shape.rank - 1), constant_values=pad_value)
    return tf.reshape(x, tf.concat([[-1, chunk], tf.shape(x)[1:]], 0))


def _forward(h, w, b, y, off_y, on_y, v, vsum, chunk, cdt):
    """:return: (loss, lse), each ``[C, chunk]``"""
    hs, ys, offs, ons = (_split(x, chunk) for x in (h, y, off_y, on_y))
    num_chunks = tf.shape(hs)[0]

    def body(i, losses, lses):
        loss, lse = _chunk_loss(_logits(hs[i], w, b, cdt), ys[i], offs[i], ons[i], v, vsum)
        return i + 1, losses.write(i, loss), lses.write(i, lse)

    init = (0, tf.TensorArray(cdt, size=num_chunks), tf.TensorArray(cdt, size=num_chunks))
    _, losses, lses = tf.while_loop(lambda i, *_: i < num_chunks, body, init)
    return losses.stack(), lses.stack()


def _backward(h, w, b, y, off_y, on_y, v, vsum, lse, dl, chunk, cdt):
    """:return: (dh ``[N, H]``, dw ``[H, K]``, db ``[K]``) for the upstream per-frame gradient ``dl``

    ``lse`` is ``[C, chunk]`` as returned by :func:`_forward`.
    """
    hs, ys, offs, ons, dls = (_split(x, chunk) for x in (h, y, off_y, on_y, dl))
    dh_parts = tf.TensorArray(h.dtype, size=tf.shape(hs)[0])
    w_c = tf.cast(w, cdt)

    def body(i, dh_parts, dw, db):
        g = _chunk_grad(_logits(hs[i], w, b, cdt), ys[i], lse[i], dls[i], offs[i], ons[i], v, vsum)
        dh_parts = dh_parts.write(i, tf.cast(tf.matmul(g, w_c, transpose_b=True), h.dtype))
        dw += tf.matmul(tf.cast(hs[i], cdt), g, transpose_a=True)
        return i + 1, dh_parts, dw, db + tf.reduce_sum(g, 0)

    init = (0, dh_parts, tf.zeros(tf.shape(w), cdt), tf.zeros(tf.shape(w)[-1:], cdt))
    _, dh_parts, dw, db = tf.while_loop(lambda i, *_: i < tf.shape(hs)[0], body, init)
    dh = tf.reshape(dh_parts.stack(), [-1, tf.shape(h)[-1]])[: tf.shape(h)[0]]
    return dh, dw, db


def linear_label_smoothed_cross_entropy(hidden, weight, bias, targets, off, on, v, mask, chunk):
    """See ``Backend.linear_label_smoothed_cross_entropy``."""
    frame_shape = tf.shape(hidden)[:-1]
    cdt = _compute_dtype(hidden)
    y = tf.reshape(tf.cast(targets, tf.int32), [-1])
    off_y, on_y = (tf.gather(tf.cast(c, cdt), y) for c in (off, on))
    v = None if v is None else tf.cast(v, cdt)
    vsum = tf.cast(tf.shape(weight)[-1], cdt) if v is None else tf.reduce_sum(v)
    valid = None if mask is None else tf.reshape(tf.broadcast_to(mask, frame_shape), [-1])

    def run(h, w, b):
        h = tf.reshape(h, [-1, tf.shape(h)[-1]])
        # stop_gradient: an eager GradientTape would otherwise record (and keep) every chunk's logits
        fwd_inputs = [None if x is None else tf.stop_gradient(x) for x in (h, w, b)]
        loss, lse = _forward(*fwd_inputs, y, off_y, on_y, v, vsum, chunk, cdt)
        loss = tf.reshape(loss, [-1])[: tf.shape(h)[0]]
        if valid is not None:
            loss = tf.where(valid, loss, tf.zeros_like(loss))

        def grad(dy):
            dl = tf.reshape(tf.cast(dy, cdt), [-1])
            if valid is not None:
                dl = tf.where(valid, dl, tf.zeros_like(dl))
            dh, dw, db = _backward(h, w, b, y, off_y, on_y, v, vsum, lse, dl, chunk, cdt)
            out = [tf.reshape(dh, tf.shape(hidden)), tf.cast(dw, w.dtype)]
            return out if b is None else out + [tf.cast(db, b.dtype)]

        return tf.reshape(loss, frame_shape), grad

    hidden, weight = tf.convert_to_tensor(hidden), tf.convert_to_tensor(weight)
    if bias is None:
        return tf.custom_gradient(lambda h, w: run(h, w, None))(hidden, weight)
    return tf.custom_gradient(run)(hidden, weight, tf.convert_to_tensor(bias))
