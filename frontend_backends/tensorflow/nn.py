"""TensorFlow kernels of the layers (``Backend.lstm``, ``conv1d``, ``dropout``, ...): see ``frontend_backends.base``.

The LSTM runs on TensorFlow's fused LSTM kernel ``BlockLSTM`` (the kernel of ``LSTMBlockFusedCell``, which
RETURNN's ``lstmblockfused`` unit uses): one op for all frames, forward and backward. Not ``BlockLSTMV2``: in
TensorFlow 2.21 its registered gradient is the one of ``BlockLSTM``, which assumes another gate order, so its
gradients are wrong. ``BlockLSTM`` takes the gates as ``i, g, f, o`` with a forget bias, which is set to 0.

Keras's ``LSTM`` layer runs its cell step by step on CPU (cuDNN only on GPU): ~130 ms per 12AX batch (forward and
backward) eagerly and ~8 ms inside ``tf.function``, against ~3.5 ms and ~1.5 ms here (``tests/_nn_bench.py``).
``BlockLSTM`` knows no sequence lengths, so padding is handled around it: padding frames are zeroed, reversed
sequences are reversed inside their lengths (``tf.reverse_sequence``), the outputs at padding frames are set to 0,
and the final state is read at each sequence's last frame. Frames after a sequence's end come after everything
that is kept, so they influence no output, state or gradient. ``tests/test_nn_lstm.py`` compares with Keras's
``LSTM`` layer with a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

__all__ = [
    "activation", "concat", "conv1d", "dropout", "layer_norm", "linear", "lstm", "masked_select", "pool1d",
    "zoneout_lstm",
]  # fmt: skip

_ACTIVATIONS = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "silu": tf.nn.silu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "softplus": tf.nn.softplus,
    "log_sigmoid": tf.math.log_sigmoid,
}


def activation(x: tf.Tensor, name: str, alpha: float) -> tf.Tensor:
    """See ``Backend.activation``."""
    if name == "leaky_relu":
        return tf.nn.leaky_relu(x, alpha)
    return _ACTIVATIONS[name](x)


def linear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
    """See ``Backend.linear``."""
    out = tf.matmul(x, weight) if x.shape.rank == 2 else tf.tensordot(x, weight, axes=1)
    if bias is None:
        return out
    return tf.nn.bias_add(out, bias) if out.shape.rank != 1 else out + bias  # bias_add needs rank >= 2


def layer_norm(x: tf.Tensor, scale, bias, num_axes: int, eps: float) -> tf.Tensor:
    """See ``Backend.layer_norm``: ``tf.nn.moments``, then ``(x - mean) * rsqrt(var + eps)``.

    Not ``tf.nn.batch_normalization``: it computes ``x * inv + (bias - mean * inv)``, which cancels catastrophically
    when the mean is large against the standard deviation.
    """
    dtype = x.dtype
    compute = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
    x = tf.cast(x, compute)
    axes = list(range(x.shape.rank - num_axes, x.shape.rank))
    mean, var = tf.nn.moments(x, axes, keepdims=True)
    out = (x - mean) * (tf.math.rsqrt(var + eps) * tf.cast(scale, compute))
    return tf.cast(out if bias is None else out + tf.cast(bias, compute), dtype)


def _flatten_batch(x: tf.Tensor, feature_axes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """:return: ``x`` with its leading axes merged into one, and the shape of those leading axes"""
    shape = tf.shape(x)
    lead = shape[: x.shape.rank - feature_axes]
    inner = [n if n is not None else shape[x.shape.rank - feature_axes + i] for i, n in
             enumerate(x.shape[x.shape.rank - feature_axes:])]  # fmt: skip
    return tf.reshape(x, [-1] + inner), lead


def conv1d(x: tf.Tensor, filter, bias, padding, stride: int, dilation: int, groups: int = 1) -> tf.Tensor:  # noqa: A002
    """See ``Backend.conv1d``: ``tf.nn.conv1d`` on explicitly padded input (grouped when the filter has
    ``I / groups`` input channels)."""
    flat, lead = _flatten_batch(x, 2)
    kernel = tf.transpose(tf.cast(filter, x.dtype), [2, 1, 0])  # [K, I / groups, O]
    padded, frames = _padded(flat, padding, filter.shape[2], stride, dilation, 0.0)
    out = tf.nn.conv1d(padded, kernel, stride, "VALID", dilations=dilation)[:, :frames]
    if bias is not None:
        out = tf.nn.bias_add(out, tf.cast(bias, x.dtype))
    return _unflatten(out, lead)


def pool1d(x: tf.Tensor, mode: str, pool_size: int, stride: int, dilation: int, padding) -> tf.Tensor:
    """See ``Backend.pool1d``: ``tf.nn.max_pool1d``/``avg_pool1d`` on explicitly padded input (``-inf`` for max;
    zeros for avg, divided by the same pooling of ones). With ``dilation > 1``: ``tf.nn.pool`` with stride 1 (it
    refuses both), then every ``stride``-th frame."""
    flat, lead = _flatten_batch(x, 2)  # [N, T, C]

    def pool(value: tf.Tensor, fill: float) -> tf.Tensor:
        value, frames = _padded(value, padding, pool_size, stride, dilation, fill)
        if dilation > 1:
            return tf.nn.pool(value, [pool_size], "MAX", padding="VALID", dilations=[dilation])[:, ::stride][:, :frames]
        op = tf.nn.max_pool1d if mode == "max" else tf.nn.avg_pool1d
        return op(value, pool_size, stride, "VALID")[:, :frames]

    if mode == "max":
        return _unflatten(pool(flat, float("-inf")), lead)
    out = pool(flat, 0.0)
    if padding != "valid":
        out = out / pool(tf.ones(tf.stack([1, tf.shape(flat)[1], 1]), x.dtype), 0.0)
    return _unflatten(out, lead)


def _padded(flat: tf.Tensor, padding, size: int, stride: int, dilation: int, fill: float) -> tuple:
    """:return: ``flat`` ``[N, T, C]`` padded with ``fill`` as ``padding`` (``"valid"``, ``"same"``, ``(left, right)``;
    see ``Backend.conv1d``) and to at least one window (TensorFlow's kernels refuse or misjudge shorter input), and
    the number of output frames to keep"""
    time = tf.shape(flat)[1]
    if padding == "valid":
        left, right = 0, 0
    elif padding == "same":
        total = tf.maximum(((time + stride - 1) // stride - 1) * stride + (size - 1) * dilation + 1 - time, 0)
        left, right = total // 2, total - total // 2
    else:
        left, right = int(padding[0]), int(padding[1])
    span, length = (size - 1) * dilation + 1, time + left + right
    frames = tf.maximum((length - span) // stride + 1, 0)
    pads = [[0, 0], [left, right + tf.maximum(span - length, 0)], [0, 0]]
    return tf.pad(flat, pads, constant_values=tf.constant(fill, flat.dtype)), frames


def _unflatten(out: tf.Tensor, lead: tf.Tensor) -> tf.Tensor:
    """:return: ``out`` ``[N, ...]`` with its first axis split into the leading axes ``lead``"""
    return tf.reshape(out, tf.concat([lead, tf.shape(out)[1:]], 0))


def _state(state, lead: tf.Tensor, size: int, dtype) -> tf.Tensor:
    """:return: the state as ``[B, H]``, zeros for None"""
    if state is None:
        return tf.zeros(tf.stack([tf.reduce_prod(lead), size]), dtype=dtype)
    return tf.reshape(tf.broadcast_to(tf.cast(state, dtype), tf.concat([lead, [size]], 0)), [-1, size])


def lstm(x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse: bool):
    """See ``Backend.lstm`` and the module docstring."""
    if x.dtype not in (tf.float32, tf.float16):
        raise TypeError(f"LSTM: TensorFlow's fused LSTM kernel supports float32 and float16 input, got {x.dtype.name}")
    key = (x.shape.rank, tuple(ff_weight.shape), tuple(rec_weight.shape))
    if key not in _LSTM_GRAPHS:
        _LSTM_GRAPHS[key] = tf.function(_lstm, reduce_retracing=True, autograph=False)
    return _LSTM_GRAPHS[key](x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse)


#: :func:`_lstm` as one graph per rank of the input and shape of the weights: called eagerly, one function call
#: instead of ~40 eager ops makes a 12AX batch (forward and backward) about 4x faster; inside a ``tf.function`` it is
#: inlined. (Per rank and weight shape: ``reduce_retracing`` relaxes the shapes that vary between calls to None, and
#: the graph of LSTMs of several sizes would then read a wrong static size.)
_LSTM_GRAPHS: dict[tuple, Any] = {}


def _lstm(x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse: bool):
    """:func:`lstm` for any number of batch axes: merges them into one for :func:`_lstm_batch`."""
    hidden = rec_weight.shape[1]
    flat, lead = _flatten_batch(x, 2)
    h0, c0 = _state(h0, lead, hidden, x.dtype), _state(c0, lead, hidden, x.dtype)
    if lengths is not None:
        lengths = tf.reshape(tf.broadcast_to(tf.cast(lengths, tf.int64), lead), [-1])
    bias = tf.zeros([4 * hidden], x.dtype) if bias is None else tf.cast(bias, x.dtype)
    weight = tf.cast(tf.concat([ff_weight, rec_weight], axis=1), x.dtype)
    out, h, c = _lstm_batch(flat, lengths, h0, c0, weight, bias, reverse)
    state_shape = tf.concat([lead, [hidden]], 0)
    out_shape = tf.concat([lead, tf.shape(out)[1:]], 0)
    return tf.reshape(out, out_shape), tf.reshape(h, state_shape), tf.reshape(c, state_shape)


def _lstm_batch(x, lengths, h0, c0, weight, bias, reverse: bool):
    """The LSTM of ``x`` ``[B, T, I]`` with ``lengths`` ``[B]`` (or None), ``h0``/``c0`` ``[B, H]``, ``weight``
    ``[4H, I + H]`` and ``bias`` ``[4H]`` (gates ``i, f, g, o``): :return: out ``[B, T, H]``, h, c ``[B, H]``"""
    time = tf.shape(x)[1]
    x_tm = tf.transpose(x, [1, 0, 2])  # time-major [T, B, I]
    if lengths is not None:
        mask = tf.transpose(tf.sequence_mask(lengths, time))[:, :, None]  # [T, B, 1]
        x_tm = tf.where(mask, x_tm, tf.zeros((), x.dtype))
    x_tm = _reverse(x_tm, lengths) if reverse else x_tm
    zeros = tf.zeros(tf.shape(h0)[1:], x.dtype)
    out = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(time, tf.int64), x=x_tm, cs_prev=c0, h_prev=h0, w=tf.transpose(_block_gate_order(weight)),
        wci=zeros, wcf=zeros, wco=zeros, b=_block_gate_order(bias), forget_bias=0.0, cell_clip=-1.0,
        use_peephole=False,
    )  # fmt: skip
    h_all = out.h
    if lengths is None:
        last = tf.fill(tf.shape(h0)[:1], tf.cast(time, tf.int64) - 1)
        nonempty = tf.broadcast_to(time > 0, tf.shape(last))
    else:
        last, nonempty = tf.maximum(lengths - 1, 0), lengths > 0
        h_all = tf.where(mask, h_all, tf.zeros((), x.dtype))
    h, c = (_at_frame(seq, last, nonempty, init) for seq, init in ((out.h, h0), (out.cs, c0)))
    h_all = _reverse(h_all, lengths) if reverse else h_all
    return tf.transpose(h_all, [1, 0, 2]), h, c


def _block_gate_order(gates: tf.Tensor) -> tf.Tensor:
    """:return: ``gates`` (first axis ``4H`` in the order ``i, f, g, o``) in ``BlockLSTM``'s order ``i, g, f, o``"""
    i, f, g, o = tf.split(gates, 4, axis=0)
    return tf.concat([i, g, f, o], axis=0)


def _reverse(x_tm: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
    """:return: time-major ``x_tm`` with each sequence's first ``lengths`` frames reversed"""
    if lengths is None:
        return tf.reverse(x_tm, [0])
    return tf.reverse_sequence(x_tm, lengths, seq_axis=0, batch_axis=1)


def _at_frame(seq: tf.Tensor, frame: tf.Tensor, valid: tf.Tensor, default: tf.Tensor) -> tf.Tensor:
    """:return: ``seq[frame[b], b]`` of a time-major ``seq`` ``[T, B, H]`` where ``valid``, else ``default``"""
    index = tf.stack([tf.maximum(frame, 0), tf.range(tf.shape(frame, out_type=tf.int64)[0])], axis=1)
    return tf.cond(  # T = 0: nothing to read
        tf.shape(seq)[0] > 0, lambda: tf.where(valid[:, None], tf.gather_nd(seq, index), default), lambda: default
    )


def dropout(x: tf.Tensor, drop_prob: float, broadcast_axes: Sequence[int], generator) -> tf.Tensor:
    """See ``Backend.dropout``: ``tf.nn.experimental.stateless_dropout`` seeded from ``generator``."""
    shape = tf.shape(x)
    noise_shape = tf.stack([1 if i in broadcast_axes else shape[i] for i in range(x.shape.rank)])
    seed = generator.make_seeds(1)[:, 0]
    return tf.nn.experimental.stateless_dropout(x, drop_prob, seed=seed, noise_shape=noise_shape)


def random_generator(seed: int) -> tf.random.Generator:
    """See ``Backend.random_generator``; created outside any ``tf.function`` graph (its state is a variable)."""
    with tf.init_scope():
        return tf.random.Generator.from_seed(seed)


def masked_select(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """See ``Backend.masked_select``."""
    return tf.boolean_mask(x, tf.broadcast_to(mask, tf.shape(x)[: mask.shape.rank]))


def concat(xs: Sequence[tf.Tensor], axis: int) -> tf.Tensor:
    """See ``Backend.concat``."""
    static = [x.shape.as_list()[:axis] + x.shape.as_list()[axis + 1 :] for x in xs]
    if None not in static[0] and all(shape == static[0] for shape in static):
        return tf.concat(xs, axis=axis)
    shapes = [tf.tensor_scatter_nd_update(tf.shape(x), [[axis]], [1]) for x in xs]
    target = shapes[0]
    for shape in shapes[1:]:
        target = tf.broadcast_dynamic_shape(target, shape)
    expanded = [tf.broadcast_to(x, tf.tensor_scatter_nd_update(target, [[axis]], tf.shape(x)[axis : axis + 1]))
                for x in xs]  # fmt: skip
    return tf.concat(expanded, axis=axis)


def zoneout_lstm(x, lengths, h0, c0, rec_weight, *, gate_order: str, forget_bias: float, cell_keep, output_keep,
                 zoneout_output: bool):  # fmt: skip
    """See ``Backend.zoneout_lstm``: a ``tf.while_loop`` over the frames (eagerly a Python loop; inside a
    ``tf.function`` one loop op, for any number of frames)."""
    hidden, dtype = rec_weight.shape[1], x.dtype
    flat, lead = _flatten_batch(x, 2)  # [N, T, 4H]
    time = tf.shape(flat)[1]
    h0, c0 = _state(h0, lead, hidden, dtype), _state(c0, lead, hidden, dtype)
    frames = [tf.transpose(flat, [1, 0, 2])]  # time-major [T, N, 4H]
    if lengths is not None:
        lengths = tf.reshape(tf.broadcast_to(tf.cast(lengths, tf.int32), lead), [-1])
        frames.append(tf.transpose(tf.sequence_mask(lengths, time))[:, :, None])  # [T, N, 1]
    keeps = []  # per keep: a float, or the index of its frames [T, N, H] in frames
    for keep in (cell_keep, output_keep):
        keeps.append(float(keep) if isinstance(keep, (int, float)) else len(frames))
        if not isinstance(keep, (int, float)):
            full = tf.broadcast_to(tf.cast(keep, dtype), tf.concat([lead, [time, hidden]], 0))
            frames.append(tf.transpose(tf.reshape(full, [-1, time, hidden]), [1, 0, 2]))
    rec_t = tf.transpose(tf.cast(rec_weight, dtype))
    order = [gate_order.index(k) for k in "ijfo"]

    def body(t, h, c, outs):
        now = [f[t] for f in frames]
        parts = tf.split(now[0] + tf.matmul(h, rec_t), 4, axis=-1)
        i, j, f, o = (parts[k] for k in order)
        c_new = tf.sigmoid(f + forget_bias) * c + tf.sigmoid(i) * tf.tanh(j)
        h_new = tf.sigmoid(o) * tf.tanh(c_new)
        c_next, h_next = _zoneout(c_new, c, keeps[0], now), _zoneout(h_new, h, keeps[1], now)
        out = h_next if zoneout_output else h_new
        if lengths is not None:
            c_next, h_next = tf.where(now[1], c_next, c), tf.where(now[1], h_next, h)
            out = tf.where(now[1], out, tf.zeros((), dtype))
        return t + 1, h_next, c_next, outs.write(t, out)

    outs = tf.TensorArray(dtype, size=time, element_shape=tf.TensorShape([None, hidden]))
    _, h, c, outs = tf.while_loop(lambda t, *_: t < time, body, (tf.constant(0), h0, c0, outs))
    out = tf.cond(time > 0, lambda: tf.transpose(outs.stack(), [1, 0, 2]),
                  lambda: tf.zeros(tf.stack([tf.shape(h0)[0], 0, hidden]), dtype))  # fmt: skip
    state_shape = tf.concat([lead, [hidden]], 0)
    return tf.reshape(out, tf.concat([lead, [time, hidden]], 0)), tf.reshape(h, state_shape), tf.reshape(c, state_shape)


def _zoneout(new: tf.Tensor, prev: tf.Tensor, keep, frame: list) -> tf.Tensor:
    """:return: ``keep * new + (1 - keep) * prev``; ``keep`` a float or the index of its frame in ``frame``"""
    if isinstance(keep, float):
        return new if keep == 1.0 else keep * new + (1.0 - keep) * prev
    keep = frame[keep]
    return keep * new + (1.0 - keep) * prev
