"""The layer primitives of a backend: the kernels of ``returnn_ls.nn`` (Linear, Conv1d, LSTM, LayerNorm, dropout).

Part of the backend protocol (:class:`frontend_backends.base.Backend` inherits :class:`LayerKernels`), kept in its
own module because the layer kernels are a group of their own. The same conventions hold as for every primitive
of :mod:`frontend_backends.base`: raw tensors and integer axes, no Dims. The frontend moves the axes a kernel works
on to the end (features last, time before features) and passes sequence lengths as raw int tensors. Leading
"batch" axes ``*B`` may be several; kernels flatten them internally where the framework needs one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

#: Names accepted by :meth:`LayerKernels.activation`.
ACTIVATIONS = ("gelu", "silu", "elu", "selu", "softplus", "log_sigmoid", "leaky_relu")


class LayerKernels(ABC):
    """The layer primitives; a mixin of :class:`frontend_backends.base.Backend`, whose primitives (``matmul``,
    ``reduce``, ``unary``, ``shape``) the default implementations use."""

    @abstractmethod
    def activation(self, x: Any, name: str, alpha: float = 0.0) -> Any:
        """Elementwise activation ``name``, one of :data:`ACTIVATIONS`: ``gelu`` (exact, with erf), ``silu``
        (``x * sigmoid(x)``), ``elu``, ``selu``, ``softplus``, ``log_sigmoid``, ``leaky_relu`` (slope ``alpha``
        for ``x < 0``).
        """
        raise NotImplementedError

    def linear(self, x: Any, weight: Any, bias: Any) -> Any:
        """:return: ``x @ weight + bias``: ``x`` ``[*S, I]``, ``weight`` ``[I, O]``, ``bias`` ``[O]`` or None"""
        out = self.matmul(x, weight)
        return out if bias is None else out + bias

    @abstractmethod
    def embedding(self, weight: Any, indices: Any) -> Any:
        """:return: the rows of ``weight`` ``[K, D]`` at ``indices`` (int ``[*S]``, in ``[0, K)``): ``[*S, D]``"""
        raise NotImplementedError

    def layer_norm(self, x: Any, scale: Any, bias: Any, num_axes: int, eps: float) -> Any:
        """Normalize ``x`` over its last ``num_axes`` axes to mean 0 and (biased) variance 1, then
        ``* scale + bias`` (both of the shape of those axes; ``bias`` may be None):
        ``(x - mean) / sqrt(var + eps) * scale + bias``. The statistics are in float32 for half-precision ``x``.
        """
        axes = tuple(range(len(self.shape(x)) - num_axes, len(self.shape(x))))
        mean = self.reduce("mean", x, axes, keepdims=True)
        centered = x - mean
        var = self.reduce("mean", self.unary("square", centered), axes, keepdims=True)
        out = centered / self.unary("sqrt", var + eps) * scale
        return out if bias is None else out + bias

    @abstractmethod
    def conv1d(
        self, x: Any, filter: Any, bias: Any, padding: str | tuple[int, int], stride: int, dilation: int,  # noqa: A002
        groups: int = 1,
    ) -> Any:
        """1-D convolution (cross-correlation) over the time axis.

        ``x`` is ``[*B, T, I]``, ``filter`` ``[O, I / groups, K]`` (PyTorch's layout), ``bias`` ``[O]`` or None; the
        result is ``[*B, T', O]``. ``padding="valid"``: no padding, ``T' = floor((T - (K-1)*dilation - 1) / stride)
        + 1``. ``padding="same"``: ``T' = ceil(T / stride)``, zeros padded with ``p = max((T'-1)*stride +
        (K-1)*dilation + 1 - T, 0)`` frames in total, ``p // 2`` of them on the left (TensorFlow's ``"SAME"``).
        ``padding=(left, right)``: that many zero frames on each side, then as ``"valid"``. ``groups``: the input
        and output channels are split into ``groups`` equal parts, output part ``g`` sees input part ``g`` only
        (``I`` and ``O`` are multiples of ``groups``).
        """
        raise NotImplementedError

    @abstractmethod
    def pool1d(
        self, x: Any, mode: str, pool_size: int, stride: int, dilation: int, padding: str | tuple[int, int]
    ) -> Any:
        """1-D pooling over the time axis of ``x`` ``[*B, T, C]``: :return: ``[*B, T', C]``.

        Output frame ``t`` reduces the input frames ``t * stride + k * dilation - left`` for ``k < pool_size``:
        ``mode="max"``: their maximum; ``mode="avg"``: their mean (``dilation`` is 1 then). ``padding`` (``"valid"``,
        ``"same"`` or ``(left, right)``) and ``T'`` are as in :meth:`conv1d`; padding frames are never the maximum
        and are not counted in the mean (the mean is over the frames of the window inside ``[0, T)``).
        """
        raise NotImplementedError

    def transposed_conv1d(
        self, x: Any, filter: Any, bias: Any, stride: int, padding: int = 0, output_padding: int = 0  # noqa: A002
    ) -> Any:
        """1-D transposed convolution (the gradient of :meth:`conv1d` w.r.t. its input; PyTorch's
        ``conv_transpose1d``) over the time axis: input frame ``t`` adds ``x_t @ filter[:, :, k]`` to output frame
        ``t * stride + k - padding``.

        ``x`` is ``[*B, T, I]``, ``filter`` ``[I, O, K]`` (PyTorch's layout), ``bias`` ``[O]`` or None; the result
        is ``[*B, (T - 1) * stride + K + output_padding - 2 * padding, O]``. Default: zeros inserted between the
        input frames, then :meth:`conv1d` with the flipped filter and ``K - 1`` zero frames on each side.
        """
        size, rank = self.shape(filter)[2], len(self.shape(x))
        if stride > 1:  # [*B, T, I] -> [*B, T, stride, I] (stride - 1 zero frames after each) -> [*B, T * stride, I]
            up = self.pad(self.expand_dims(x, rank - 1), [(0, 0)] * (rank - 1) + [(0, stride - 1), (0, 0)], 0.0)
            shape = [self.axis_size(x, i) for i in range(rank - 2)] + [-1, self.axis_size(x, rank - 1)]
            x = self.slice(self.reshape(up, shape), rank - 2, 0, -(stride - 1), None)  # without the last zeros
        weight = self.flip(self.transpose(filter, [1, 0, 2]), 2)  # [O, I, K]
        out = self.conv1d(x, weight, bias, (size - 1, size - 1 + output_padding), 1, 1, 1)
        return self.slice(out, rank - 2, padding, -padding, None) if padding else out

    @abstractmethod
    def lstm(
        self, x: Any, lengths: Any, h0: Any, c0: Any, ff_weight: Any, rec_weight: Any, bias: Any, reverse: bool
    ) -> tuple[Any, Any, Any]:
        """One LSTM layer over the time axis, on the framework's fused kernel.

        ``x`` is ``[*B, T, I]``; ``lengths`` int ``[*B]`` (or broadcastable to it; None: all ``T``);
        ``h0``, ``c0`` ``[*B, H]`` (broadcastable; None: zeros); ``ff_weight`` ``[4H, I]``, ``rec_weight``
        ``[4H, H]``, ``bias`` ``[4H]`` or None, the gates in the order ``i, f, g, o`` (PyTorch's and RETURNN's
        layout). Per frame::

            i, f, g, o = split(ff_weight @ x_t + rec_weight @ h_{t-1} + bias)
            c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
            h_t = sigmoid(o) * tanh(c_t)

        Only the first ``lengths[b]`` frames of sequence ``b`` are processed; ``reverse``: from frame
        ``lengths[b] - 1`` down to 0. Padding frames never influence the state or any gradient.

        :return: ``(out, h, c)``: ``out`` ``[*B, T, H]`` holds ``h_t`` at frame ``t`` (0 at padding frames),
            ``h`` and ``c`` ``[*B, H]`` the state after the last processed frame (``h0``, ``c0`` for length 0)
        """
        raise NotImplementedError

    @abstractmethod
    def zoneout_lstm(
        self, x: Any, lengths: Any, h0: Any, c0: Any, rec_weight: Any, *, gate_order: str, forget_bias: float,
        cell_keep: Any, output_keep: Any, zoneout_output: bool,
    ) -> tuple[Any, Any, Any]:
        """An LSTM layer with zoneout (Krueger et al. 2016), one frame after the other.

        ``x`` is ``[*B, T, 4H]``: the input's part of the gates (``ff_weight @ x_t + bias``); ``lengths``, ``h0``,
        ``c0`` as in :meth:`lstm`; ``rec_weight`` ``[4H, H]``. ``gate_order`` names the four blocks of ``4H``
        (a permutation of ``"ijfo"``: input gate, cell input, forget gate, output gate). ``cell_keep`` and
        ``output_keep``: the weight of the new value, a float or a raw tensor broadcastable to ``[*B, T, H]``
        (a 0/1 mask while training, ``1 - zoneout factor`` in evaluation). Per frame::

            i, j, f, o = split(x_t + rec_weight @ h_{t-1})  # in the order gate_order
            c' = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * tanh(j);  h' = sigmoid(o) * tanh(c')
            c_t = cell_keep_t * c' + (1 - cell_keep_t) * c_{t-1}
            h_t = output_keep_t * h' + (1 - output_keep_t) * h_{t-1}
            out_t = h_t if zoneout_output else h'

        Padding frames leave the state unchanged and give output 0.

        :return: ``(out, h, c)`` as in :meth:`lstm`
        """
        raise NotImplementedError

    @abstractmethod
    def random_generator(self, seed: int) -> Any:
        """:return: a new random generator of the framework (``torch.Generator``, ``tf.random.Generator``)"""
        raise NotImplementedError

    @abstractmethod
    def seed_generator(self, generator: Any, seed: int) -> None:
        """Reset ``generator`` (from :meth:`random_generator`) in place to the state of a new one with ``seed``."""
        raise NotImplementedError

    @abstractmethod
    def dropout(self, x: Any, drop_prob: float, broadcast_axes: Sequence[int], generator: Any) -> Any:
        """:return: ``x * mask / (1 - drop_prob)`` with ``mask`` 0 with probability ``drop_prob``, else 1, drawn
        from ``generator``; the mask has size 1 (is shared) along ``broadcast_axes``"""
        raise NotImplementedError

    @abstractmethod
    def masked_select(self, x: Any, mask: Any) -> Any:
        """:return: the entries of ``x`` ``[*M, *R]`` where ``mask`` (bool ``[*M]``, or broadcastable to it) is
        true, in row-major order: ``[N, *R]``"""
        raise NotImplementedError

    @abstractmethod
    def arg_reduce(self, op: str, x: Any, axis: int) -> Any:
        """:return: int64 index of the first maximum (``op="argmax"``) or minimum (``"argmin"``) along ``axis``"""
        raise NotImplementedError

    @abstractmethod
    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        """:return: ``xs`` (equal rank) concatenated along ``axis``; their other axes broadcast positionally"""
        raise NotImplementedError

    @abstractmethod
    def full(self, shape: Sequence[Any], value: float, dtype: str, like: Any = None) -> Any:
        """:return: a tensor of ``shape`` (ints, or scalar int tensors inside a graph) filled with ``value``, on the
        device of ``like``"""
        raise NotImplementedError
