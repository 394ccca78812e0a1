"""PyTorch kernels of the layers (``Backend.lstm``, ``conv1d``, ``dropout``, ...): see ``frontend_backends.base``.

The LSTM runs on ``torch._VF.lstm``, the kernel behind ``torch.nn.LSTM``, on the dense (padded) batch. On CPU
that kernel is oneDNN's fused LSTM (forward and backward), about 9x faster than the same kernel on packed
sequences (``pack_padded_sequence``), which PyTorch runs step by step. Padding is handled exactly all the same:
padding frames get one extra input feature (1 there, 0 elsewhere) whose weights drive the input gate to exactly
0 and the forget gate to exactly 1 (``sigmoid(-1e4)`` and ``sigmoid(1e4)`` are 0 and 1 in every float dtype),
so the cell state passes through padding frames unchanged, with gradient 0 to and from them. See
``tests/test_nn_lstm.py``, which compares with ``torch.nn.LSTM`` on packed sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["activation", "conv1d", "dropout", "embedding", "layer_norm", "linear", "lstm", "pool1d", "zoneout_lstm"]

#: The pre-activation given to the input and forget gates on padding frames: saturates sigmoid to exactly 0 and 1.
_SATURATE = 1e4

_ACTIVATIONS = {
    "gelu": F.gelu,
    "silu": F.silu,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "log_sigmoid": F.logsigmoid,
}


def activation(x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
    """See ``Backend.activation``."""
    if name == "leaky_relu":
        return F.leaky_relu(x, alpha)
    return _ACTIVATIONS[name](x)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """See ``Backend.linear``: one ``addmm`` where the shapes allow."""
    return F.linear(x, weight.t(), bias)


def embedding(weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """See ``Backend.embedding``."""
    return F.embedding(indices.long(), weight)


def layer_norm(x: torch.Tensor, scale, bias, num_axes: int, eps: float) -> torch.Tensor:
    """See ``Backend.layer_norm``: ``torch.nn.functional.layer_norm``."""
    return F.layer_norm(x, tuple(x.shape[-num_axes:]), scale, bias, eps)


def _flatten_batch(x: torch.Tensor, feature_axes: int) -> torch.Tensor:
    """:return: ``x`` with its leading axes (all but the last ``feature_axes``) merged into one"""
    return x.reshape((x.shape[:-feature_axes].numel(),) + tuple(x.shape[-feature_axes:]))


def conv_padding(padding, time: int, size: int, stride: int, dilation: int) -> tuple[int, int]:
    """:return: the zero frames ``(left, right)`` of ``padding`` (``"valid"``, ``"same"`` or a pair) for ``time``
    input frames and a window of ``size`` taps (see ``Backend.conv1d``)"""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out_len = -(-time // stride)
        total = max((out_len - 1) * stride + (size - 1) * dilation + 1 - time, 0)
        return total // 2, total - total // 2
    return int(padding[0]), int(padding[1])


def _windows(time: int, pads: tuple[int, int], size: int, stride: int, dilation: int) -> int:
    """:return: the number of output frames of a window of ``size`` taps over ``time`` frames padded by ``pads``"""
    return max((time + pads[0] + pads[1] - (size - 1) * dilation - 1) // stride + 1, 0)


def conv1d(x: torch.Tensor, filter, bias, padding, stride: int, dilation: int, groups: int = 1) -> torch.Tensor:  # noqa: A002
    """See ``Backend.conv1d``: ``torch.nn.functional.conv1d``, padded explicitly (as TensorFlow's ``"SAME"``)."""
    batch_shape = x.shape[:-2]
    flat = _flatten_batch(x, 2).transpose(1, 2)  # [B, I, T]
    pads = conv_padding(padding, flat.shape[2], filter.shape[2], stride, dilation)
    if _windows(flat.shape[2], pads, filter.shape[2], stride, dilation) == 0:  # the kernel refuses short inputs
        return x.new_zeros(tuple(batch_shape) + (0, filter.shape[0]))
    if pads != (0, 0):
        flat = F.pad(flat, pads)
    out = F.conv1d(flat, filter, bias, stride=stride, dilation=dilation, groups=groups)
    return out.transpose(1, 2).reshape(batch_shape + out.shape[2:] + out.shape[1:2])


def pool1d(x: torch.Tensor, mode: str, pool_size: int, stride: int, dilation: int, padding) -> torch.Tensor:
    """See ``Backend.pool1d``: ``max_pool1d`` on input padded with ``-inf``; ``avg_pool1d`` on input padded with
    zeros, divided by the same pooling of ones (the share of each window inside the input)."""
    batch_shape = x.shape[:-2]
    flat = _flatten_batch(x, 2).transpose(1, 2)  # [N, C, T]
    time = flat.shape[2]
    pads = conv_padding(padding, time, pool_size, stride, dilation)
    if _windows(time, pads, pool_size, stride, dilation) == 0:
        return x.new_zeros(tuple(batch_shape) + (0, x.shape[-1]))
    if mode == "max":
        flat = F.pad(flat, pads, value=float("-inf")) if pads != (0, 0) else flat
        out = F.max_pool1d(flat, pool_size, stride, dilation=dilation)
    else:
        out = F.avg_pool1d(F.pad(flat, pads), pool_size, stride)
        if pads != (0, 0):
            out = out / F.avg_pool1d(F.pad(flat.new_ones((1, 1, time)), pads), pool_size, stride)
    return out.transpose(1, 2).reshape(batch_shape + out.shape[2:] + out.shape[1:2])


def _broadcast_state(state, batch_shape, size: int, like: torch.Tensor) -> torch.Tensor:
    """:return: the state as ``[1, B, H]`` (PyTorch's ``[layers, batch, hidden]``), zeros for None"""
    if state is None:
        return like.new_zeros((1, batch_shape.numel(), size))
    return state.to(like.dtype).expand(tuple(batch_shape) + (size,)).reshape(1, -1, size)


def _reverse_index(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """:return: ``[B, T]``: frame ``t`` of the result is frame ``L-1-t`` of the input inside each sequence"""
    frames = torch.arange(time, device=lengths.device)[None, :]
    return torch.where(frames < lengths[:, None], lengths[:, None] - 1 - frames, frames)


def lstm(x, lengths, h0, c0, ff_weight, rec_weight, bias, reverse: bool):
    """See ``Backend.lstm`` and the module docstring."""
    batch_shape, time, hidden = x.shape[:-2], x.shape[-2], rec_weight.shape[1]
    flat = _flatten_batch(x, 2)
    state = (_broadcast_state(h0, batch_shape, hidden, flat), _broadcast_state(c0, batch_shape, hidden, flat))
    if time == 0:  # no frame: the kernel cannot run, the state stays
        out, h, c = flat.new_zeros(flat.shape[:2] + (hidden,)), state[0][0], state[1][0]
    elif lengths is None:
        out, h, c = _run(flat.flip(1) if reverse else flat, state, ff_weight, rec_weight, bias)
        out = out.flip(1) if reverse else out
    else:
        out, h, c = _run_padded(
            flat, lengths.expand(batch_shape).reshape(-1), state, ff_weight, rec_weight, bias, reverse
        )
    state_shape = tuple(batch_shape) + (hidden,)
    return out.reshape(tuple(batch_shape) + (time, hidden)), h.reshape(state_shape), c.reshape(state_shape)


def _run_padded(x, lengths, state, ff_weight, rec_weight, bias, reverse: bool):
    """:return: out ``[B, T, H]``, h ``[B, H]``, c of sequences ``x`` ``[B, T, I]`` with ``lengths`` ``[B]``"""
    time, hidden = x.shape[1], rec_weight.shape[1]
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    mask = (torch.arange(time, device=x.device)[None, :] < lengths[:, None])[:, :, None]  # [B, T, 1]
    if reverse:
        index = _reverse_index(lengths, time)[:, :, None]
        x = x.gather(1, index.expand(x.shape))
    x = torch.cat([torch.where(mask, x, 0.0), (~mask).to(x.dtype)], dim=-1)
    gates = torch.tensor([-_SATURATE, _SATURATE, 0.0, 0.0], dtype=x.dtype, device=x.device)
    ff_weight = torch.cat([ff_weight.to(x.dtype), gates.repeat_interleave(hidden)[:, None]], dim=1)
    out, _, c = _run(x, state, ff_weight, rec_weight, bias)
    out = torch.where(mask, out, 0.0)
    last = out[torch.arange(out.shape[0], device=out.device), (lengths - 1).clamp(min=0)]
    h = torch.where((lengths > 0)[:, None], last, state[0][0])
    if reverse:
        out = out.gather(1, index.expand(out.shape))
    return out, h, c


def _run(x, state, ff_weight, rec_weight, bias):
    """``torch._VF.lstm`` on a batch-major dense ``x`` ``[B, T, I]``: :return: out ``[B, T, H]``, h ``[B, H]``, c"""
    dtype = x.dtype
    if torch.compiler.is_compiling():  # AOTAutograd cannot save the fused kernel's Parameters (torch 2.13)
        return _run_unrolled(x, state, ff_weight.to(dtype), rec_weight.to(dtype),
                             bias.to(dtype) if bias is not None else None)  # fmt: skip
    params = [ff_weight.to(dtype), rec_weight.to(dtype)]
    if bias is not None:
        params += [bias.to(dtype), torch.zeros_like(bias, dtype=dtype)]
    train = torch.is_grad_enabled()
    # (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    out, h, c = torch._VF.lstm(x, state, params, bias is not None, 1, 0.0, train, False, True)
    return out, h[0], c[0]


def _run_unrolled(x, state, ff_weight, rec_weight, bias):
    """``_run`` frame by frame with the formula of ``Backend.lstm`` (gate blocks ``i, f, g, o``), for
    torch.compile; the number of frames is a trace-time constant"""
    h, c = state[0][0], state[1][0]
    gates_x = x @ ff_weight.t() + (bias if bias is not None else 0.0)  # [B, T, 4H]
    outs = []
    for t in range(x.shape[1]):
        i, f, g, o = (gates_x[:, t] + h @ rec_weight.t()).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), h, c


def zoneout_lstm(x, lengths, h0, c0, rec_weight, *, gate_order: str, forget_bias: float, cell_keep, output_keep,
                 zoneout_output: bool):  # fmt: skip
    """See ``Backend.zoneout_lstm``: one frame after the other (the zoneout between frames rules out the fused
    kernel)."""
    batch_shape, time, hidden = x.shape[:-2], x.shape[-2], rec_weight.shape[1]
    flat = _flatten_batch(x, 2)  # [N, T, 4H]
    h, c = (_broadcast_state(s, batch_shape, hidden, flat)[0] for s in (h0, c0))
    keeps = [_per_frame(k, tuple(batch_shape) + (time, hidden), flat) for k in (cell_keep, output_keep)]
    active = None
    if lengths is not None:
        lengths = lengths.to(flat.device).expand(batch_shape).reshape(-1, 1)
        active = (torch.arange(time, device=flat.device)[None, :] < lengths)[:, :, None]  # [N, T, 1]
    order = [gate_order.index(k) for k in "ijfo"]
    rec_t = rec_weight.to(flat.dtype).t()
    outs = []
    for t in range(time):
        parts = (flat[:, t] + h @ rec_t).chunk(4, dim=-1)
        i, j, f, o = (parts[k] for k in order)
        c_new = torch.sigmoid(f + forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        c_next, h_next = _zoneout(c_new, c, keeps[0], t), _zoneout(h_new, h, keeps[1], t)
        out = h_next if zoneout_output else h_new
        if active is not None:
            c_next, h_next = torch.where(active[:, t], c_next, c), torch.where(active[:, t], h_next, h)
            out = torch.where(active[:, t], out, 0.0)
        c, h = c_next, h_next
        outs.append(out)
    out = torch.stack(outs, dim=1) if outs else flat.new_zeros(flat.shape[:2] + (hidden,))
    state_shape = tuple(batch_shape) + (hidden,)
    return out.reshape(tuple(batch_shape) + (time, hidden)), h.reshape(state_shape), c.reshape(state_shape)


def _per_frame(keep, shape: tuple[int, ...], like: torch.Tensor):
    """:return: a float ``keep`` as it is, a tensor one broadcast to ``shape`` ``[*B, T, H]`` as ``[N, T, H]``"""
    if not isinstance(keep, torch.Tensor):
        return float(keep)
    return torch.broadcast_to(keep.to(device=like.device, dtype=like.dtype), shape).reshape((-1,) + shape[-2:])


def _zoneout(new: torch.Tensor, prev: torch.Tensor, keep, t: int) -> torch.Tensor:
    """:return: ``keep * new + (1 - keep) * prev`` at frame ``t``"""
    if isinstance(keep, float):
        return new if keep == 1.0 else keep * new + (1.0 - keep) * prev
    keep = keep[:, t]
    return keep * new + (1.0 - keep) * prev


def dropout(x: torch.Tensor, drop_prob: float, broadcast_axes: Sequence[int], generator) -> torch.Tensor:
    """See ``Backend.dropout``: a Bernoulli keep-mask from ``generator``, scaled by ``1 / keep``.

    ``torch.nn.functional.dropout`` draws from the global generator and cannot share the mask along axes; this is
    the same computation with our own generator, so a model's dropout is reproducible from ``rf.set_random_seed``.
    """
    keep = 1.0 - drop_prob
    shape = [1 if i in broadcast_axes else n for i, n in enumerate(x.shape)]
    mask = torch.empty(shape, dtype=x.dtype, device=x.device)
    if generator.device != mask.device:  # a CPU generator cannot fill a CUDA tensor
        return x * torch.bernoulli(torch.full(shape, keep, device=generator.device), generator=generator).to(x) / keep
    return x * mask.bernoulli_(keep, generator=generator).div_(keep)


def masked_select(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """See ``Backend.masked_select``."""
    lead = x.shape[: mask.dim()]
    return x[mask.expand(lead)]


def concat(xs: Sequence[torch.Tensor], axis: int) -> torch.Tensor:
    """See ``Backend.concat``."""
    shapes = [list(x.shape) for x in xs]
    for shape in shapes:
        shape[axis] = 1
    target = list(torch.broadcast_shapes(*shapes))
    expanded = []
    for x in xs:
        target[axis] = x.shape[axis]
        expanded.append(x.expand(target))
    return torch.cat(expanded, dim=axis)
