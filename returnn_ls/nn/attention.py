"""Dot attention and multi-head self/cross attention (as ``returnn.frontend.attention``, same parameter names).

``dot_attention`` is softmax(q k / sqrt(d)) v over a key axis; padding frames of a dynamic key axis get weight 0.
The modules project with one ``qkv`` :class:`Linear` (``[in_dim, num_heads * (2 * key + value per head)]``, heads
first, as RETURNN) and an optional ``proj``. :class:`CausalSelfAttention` also runs step by step: with
``axis=rf.single_step_dim`` one decoding step appends its key and value to the state (see
:meth:`CausalSelfAttention.default_initial_state`), and gives what the full-sequence call gives at that frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import zeros
from returnn_ls.dim import Dim, single_step_dim
from returnn_ls.math_funcs import matmul
from returnn_ls.nn._att_utils import kv_copy, merge_dims, replace_dim, sizes_on, split, split_dims
from returnn_ls.nn.array import concat
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.linear import Linear
from returnn_ls.nn.module import Module
from returnn_ls.nn.state import State
from returnn_ls.ops import range_over_dim, softmax, where
from returnn_ls.seq_funcs import pad
from returnn_ls.tensor import Tensor

__all__ = ["CausalSelfAttention", "CausalSelfAttentionState", "CrossAttention", "SelfAttention", "SelfAttentionBase",
           "dot_attention"]  # fmt: skip


def dot_attention(
    query: Tensor, keys: Tensor, values: Tensor, *, key_dim: Dim, axis: Dim, att_dropout: float = 0.0,
    att_dropout_broadcast: bool | None = None, causal_query_spatial_dim: Dim | None = None,
    scale: float | None = None,
) -> Tensor:  # fmt: skip
    """``softmax_axis(query . keys * scale) . values``: attention over ``axis``, for any number of heads.

    Dims that ``query`` shares with ``keys``/``values`` (other than ``axis``) are batch dims. If ``query`` has
    ``axis`` itself, that means self-attention: each query frame attends to all frames of ``axis``.

    :param query: ``{..., key_dim}``
    :param keys: ``{..., axis, key_dim}``
    :param values: ``{..., axis, value dims}``
    :param key_dim: the dim of ``query`` and ``keys`` that the energies sum over
    :param axis: the dim of ``keys`` and ``values`` attended over (softmax, then reduced)
    :param att_dropout: dropout on the attention weights (while training)
    :param att_dropout_broadcast: share the dropout mask over all dims but ``axis`` (default False)
    :param causal_query_spatial_dim: a query dim aligned frame by frame with ``axis`` (or ``axis`` itself):
        query frame ``i`` attends to frames ``<= i`` only
    :param scale: applied to the query (default ``key_dim.dimension ** -0.5``)
    :return: ``values`` without ``axis``, plus the other dims of ``query``
    """
    func = "dot_attention"
    for name, x in (("query", query), ("keys", keys), ("values", values)):
        _validate.check_tensor(x, name, func)
    for name, d in (("key_dim", key_dim), ("axis", axis)):
        if not isinstance(d, Dim):
            raise TypeError(f"{func}: {name} must be a Dim, got {type(d).__name__}")
    if key_dim not in query.dims or key_dim not in keys.dims:
        raise ValueError(f"{func}: key_dim {key_dim} must be a dim of query {query} and keys {keys}")
    if axis not in keys.dims or axis not in values.dims:
        raise ValueError(f"{func}: axis {axis} must be a dim of keys {keys} and values {values}")
    mask = None
    if causal_query_spatial_dim is not None:
        if causal_query_spatial_dim not in query.dims:
            raise ValueError(f"{func}: causal_query_spatial_dim {causal_query_spatial_dim} is not a dim of query")
    if axis in query.dims:
        kv_axis = kv_copy(axis, f"{axis.name}:kv")
        keys, values = replace_dim(keys, axis, kv_axis), replace_dim(values, axis, kv_axis)
        query_dim = axis if causal_query_spatial_dim is axis else causal_query_spatial_dim
        axis = kv_axis
    else:
        query_dim = causal_query_spatial_dim
    if query_dim is not None:
        mask = range_over_dim(axis, like=keys) <= range_over_dim(query_dim, like=query)
    return attend(query, keys, values, key_dim=key_dim, axis=axis, mask=mask, att_dropout=att_dropout,
                  att_dropout_broadcast=att_dropout_broadcast, scale=scale)  # fmt: skip


def attend(query: Tensor, keys: Tensor, values: Tensor, *, key_dim: Dim, axis: Dim, mask: Tensor | None = None,
           att_dropout: float = 0.0, att_dropout_broadcast: bool | None = None, scale: float | None = None,
           energy: Tensor | None = None) -> Tensor:  # fmt: skip
    """:func:`dot_attention` after the checks: ``mask`` (bool, True: may attend) limits the frames of ``axis``;
    ``energy`` given: those (already scaled) energies instead of ``query . keys``"""
    if energy is None:
        scale = key_dim.dimension**-0.5 if scale is None else scale
        energy = matmul(query * scale, keys, reduce=key_dim)
    if mask is not None:
        energy = where(mask, energy, float("-inf"))
    weights = softmax(energy, axis=axis)
    weights = dropout(weights, att_dropout, axis=axis if att_dropout_broadcast else None)
    att = matmul(weights, values, reduce=axis, use_mask=False)
    att.feature_dim = values.feature_dim if values.feature_dim in att.dims else None
    return att


class SelfAttentionBase(Module):
    """The projections of multi-head self-attention: ``qkv`` (``in_dim -> num_heads * (2 key + value per head)``)
    and ``proj`` (``value_dim_total -> proj_dim``, if ``proj_dim``); see :class:`SelfAttention`.

    :param in_dim: the input features
    :param proj_dim: the output features (after ``proj``); None: no ``proj``, the output is ``value_dim_total``
    :param key_dim_total: key features of all heads (a multiple of ``num_heads``)
    :param value_dim_total: value features of all heads (a multiple of ``num_heads``)
    :param num_heads: an int or a Dim
    :param with_bias: biases in ``qkv`` and ``proj``
    :param att_dropout: dropout on the attention weights
    :param att_dropout_broadcast: share the dropout mask over all dims but the key axis (default False)
    """

    def __init__(self, in_dim: Dim, proj_dim: Dim | None, *, key_dim_total: Dim, value_dim_total: Dim,
                 num_heads: int | Dim, with_bias: bool = True, att_dropout: float = 0.1,
                 att_dropout_broadcast: bool | None = None):  # fmt: skip
        self.in_dim = in_dim
        self.out_dim = proj_dim if proj_dim else value_dim_total
        self.num_heads = _heads_dim(num_heads, key_dim_total, value_dim_total, type(self).__name__)
        self.key_dim_total, self.value_dim_total = key_dim_total, value_dim_total
        self.key_dim_per_head = key_dim_total.div_left(self.num_heads)
        self.value_dim_per_head = value_dim_total.div_left(self.num_heads)
        self.qkv_dim_total = 2 * key_dim_total + value_dim_total
        self.qkv_dim_per_head = 2 * self.key_dim_per_head + self.value_dim_per_head
        self.qkv = Linear(in_dim, self.qkv_dim_total, with_bias=with_bias)
        self.proj = Linear(value_dim_total, proj_dim, with_bias=with_bias) if proj_dim else None
        self.att_dropout = att_dropout
        self.att_dropout_broadcast = bool(att_dropout_broadcast)

    def forward_qkv(self, source: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:return: q, k, v, each with ``num_heads`` and its per-head dim"""
        qkv = split_dims(self.qkv(source), self.qkv_dim_total, (self.num_heads, self.qkv_dim_per_head))
        dims = (self.key_dim_per_head, self.key_dim_per_head, self.value_dim_per_head)
        return split(qkv, self.qkv_dim_per_head, dims)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, *, kv_axis: Dim, mask: Tensor | None = None) -> Tensor:
        """:return: the attention over ``kv_axis`` with the heads merged, then ``proj``"""
        att = attend(q, k, v, key_dim=self.key_dim_per_head, axis=kv_axis, mask=mask, att_dropout=self.att_dropout,
                     att_dropout_broadcast=self.att_dropout_broadcast)  # fmt: skip
        return self.merge_heads(att)

    def merge_heads(self, att: Tensor) -> Tensor:
        """:return: ``att`` with ``num_heads`` and the value dim per head merged into ``value_dim_total``, then
        ``proj``"""
        out = merge_dims(att, (self.num_heads, self.value_dim_per_head), self.value_dim_total)
        return self.proj(out) if self.proj is not None else out


class SelfAttention(SelfAttentionBase):
    """Multi-head self-attention over a whole sequence: each frame attends to all frames of ``axis``.

    Example: ``att = rf.SelfAttention(in_dim, in_dim, key_dim_total=in_dim, value_dim_total=in_dim, num_heads=4)``
    then ``y = att(x, axis=time_dim)``.
    """

    def __call__(self, source: Tensor, *, axis: Dim) -> Tensor:
        q, k, v = self.forward_qkv(source)
        kv_axis = kv_copy(axis, f"{axis.name}:kv")
        return self.attention(q, replace_dim(k, axis, kv_axis), replace_dim(v, axis, kv_axis), kv_axis=kv_axis)


class CausalSelfAttentionState(State):
    """The state of :class:`CausalSelfAttention`: the keys ``k_accum`` and values ``v_accum`` of the frames so far,
    over ``accum_axis``."""

    def __init__(self, *args: Any, k_accum: Tensor | None = None, v_accum: Tensor | None = None,
                 accum_axis: Dim | None = None):  # fmt: skip
        if args:
            super().__init__(*args)
        else:
            super().__init__(k_accum=k_accum, v_accum=v_accum, accum_axis=accum_axis)


class CausalSelfAttention(SelfAttentionBase):
    """Multi-head self-attention where frame ``i`` attends to frames ``<= i`` only; runs over a whole sequence or,
    with ``axis=rf.single_step_dim``, one step at a time on a state.

    Example::

        state = att.default_initial_state(batch_dims=[batch_dim])
        y_t, state = att(x_t, axis=rf.single_step_dim, state=state)  # one decoding step
        y, _ = att(x, axis=time_dim)  # the whole sequence: the same outputs
    """

    def __call__(self, source: Tensor, axis: Dim, *, state: CausalSelfAttentionState | None = None
                 ) -> tuple[Tensor, CausalSelfAttentionState]:  # fmt: skip
        q, k, v = self.forward_qkv(source)
        k, v, kv_axis, mask, _, new_state = causal_kv(k, v, axis=axis, state=state, func=type(self).__name__)
        return self.attention(q, k, v, kv_axis=kv_axis, mask=mask), new_state

    def default_initial_state(self, *, batch_dims: Sequence[Dim]) -> CausalSelfAttentionState:
        """:return: no frames yet: keys and values over a new dim of size 0"""
        empty = Dim(0, name="self_att_expand_dim_init")
        return CausalSelfAttentionState(
            k_accum=zeros(list(batch_dims) + [empty, self.num_heads, self.key_dim_per_head]),
            v_accum=zeros(list(batch_dims) + [empty, self.num_heads, self.value_dim_per_head]),
            accum_axis=empty,
        )


def causal_kv(k: Tensor, v: Tensor, *, axis: Dim, state: State | None, func: str
              ) -> tuple[Tensor, Tensor, Dim, Tensor | None, Any, CausalSelfAttentionState]:  # fmt: skip
    """The keys and values a causal query attends to, with the state after this call.

    :return: ``(keys, values, their axis, mask or None, offset, new state)``: ``mask`` (over the query's ``axis`` and
        the key axis) is True where a query frame may attend; ``offset`` is the position of the first query frame in
        the key axis (0 with no history; a step's own frame is the last of its sequence)
    """
    fresh = state is None or state.accum_axis.dimension == 0
    if axis is single_step_dim:
        if state is None:
            raise ValueError(f"{func}: axis=single_step_dim needs a state (see default_initial_state)")
        k_all, (accum,) = pad(state.k_accum, axes=[state.accum_axis], padding=[(0, 1)], value=k)
        v_all, _ = pad(state.v_accum, axes=[state.accum_axis], padding=[(0, 1)], value=v, out_dims=[accum])
        offset = sizes_on(accum, k) - 1
        return k_all, v_all, accum, None, offset, CausalSelfAttentionState(k_accum=k_all, v_accum=v_all,
                                                                           accum_axis=accum)  # fmt: skip
    if fresh:
        kv_axis = kv_copy(axis, f"{axis.name}:kv")
        k_kv, v_kv = replace_dim(k, axis, kv_axis), replace_dim(v, axis, kv_axis)
        mask = range_over_dim(kv_axis, like=k_kv) <= range_over_dim(axis, like=k)
        return k_kv, v_kv, kv_axis, mask, 0, CausalSelfAttentionState(k_accum=k, v_accum=v, accum_axis=axis)
    prev = state.accum_axis
    k_all, joined = concat((state.k_accum, prev), (k, axis), handle_dynamic_dims=True)
    v_all, _ = concat((state.v_accum, prev), (v, axis), out_dim=joined, handle_dynamic_dims=True)
    offset = sizes_on(prev, k)
    mask = range_over_dim(joined, like=k_all) <= range_over_dim(axis, like=k) + offset
    return k_all, v_all, joined, mask, offset, CausalSelfAttentionState(k_accum=k_all, v_accum=v_all,
                                                                        accum_axis=joined)  # fmt: skip


class CrossAttention(Module):
    """Multi-head attention of queries over an encoder output: ``kv`` (``encoder_dim -> key + value total``),
    ``q`` (``query_in_dim -> key_dim_total``) and an optional ``proj``, as RETURNN's (also its initialisation:
    Glorot with scale 3/4 for ``kv``, 1/2 for ``q``).

    Example: ``enc = att.transform_encoder(enc_out, axis=enc_time)`` once, then ``y = att(x, enc)`` per step.
    """

    def __init__(self, encoder_dim: Dim, query_in_dim: Dim, proj_dim: Dim | None, *, key_dim_total: Dim,
                 value_dim_total: Dim, num_heads: int | Dim, with_bias: bool = True, att_dropout: float = 0.1,
                 att_dropout_broadcast: bool | None = None):  # fmt: skip
        from returnn_ls.nn import init

        self.encoder_dim, self.query_in_dim = encoder_dim, query_in_dim
        self.out_dim = proj_dim if proj_dim else value_dim_total
        self.num_heads = _heads_dim(num_heads, key_dim_total, value_dim_total, "CrossAttention")
        self.key_dim_total, self.value_dim_total = key_dim_total, value_dim_total
        self.key_dim_per_head = key_dim_total.div_left(self.num_heads)
        self.value_dim_per_head = value_dim_total.div_left(self.num_heads)
        self.kv_dim_total = key_dim_total + value_dim_total
        self.kv_dim_per_head = self.key_dim_per_head + self.value_dim_per_head
        self.kv = Linear(encoder_dim, self.kv_dim_total, with_bias=with_bias)
        self.q = Linear(query_in_dim, key_dim_total, with_bias=with_bias)
        self.kv.weight.initial = init.VarianceScaling(3 / 4, "fan_avg", "uniform")  # Glorot, scaled
        self.q.weight.initial = init.VarianceScaling(1 / 2, "fan_avg", "uniform")
        self.proj = Linear(value_dim_total, proj_dim, with_bias=with_bias) if proj_dim else None
        self.att_dropout = att_dropout
        self.att_dropout_broadcast = bool(att_dropout_broadcast)

    def transform_encoder(self, encoder: Tensor, *, axis: Dim) -> State:
        """:return: ``State(k=..., v=..., kv_axis=axis)``: the keys and values of the encoder output, computed once"""
        if axis not in encoder.dims:
            raise ValueError(f"CrossAttention.transform_encoder: axis {axis} is not a dim of encoder {encoder}")
        k, v = self.forward_kv(encoder)
        return State(k=k, v=v, kv_axis=axis)

    def forward_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """:return: k, v of the encoder output"""
        kv = split_dims(self.kv(source), self.kv_dim_total, (self.num_heads, self.kv_dim_per_head))
        return split(kv, self.kv_dim_per_head, (self.key_dim_per_head, self.value_dim_per_head))

    def forward_query(self, source: Tensor) -> Tensor:
        """:return: q, with ``num_heads`` and the key dim per head"""
        return split_dims(self.q(source), self.key_dim_total, (self.num_heads, self.key_dim_per_head))

    def __call__(self, q: Tensor, encoder: State) -> Tensor:
        return self.attention(self.forward_query(q), encoder["k"], encoder["v"], kv_axis=encoder["kv_axis"])

    def attention(self, q: Tensor, k: Tensor, v: Tensor, *, kv_axis: Dim) -> Tensor:
        """:return: the attention of ``q`` over ``kv_axis``, heads merged, then ``proj``"""
        att = attend(q, k, v, key_dim=self.key_dim_per_head, axis=kv_axis, att_dropout=self.att_dropout,
                     att_dropout_broadcast=self.att_dropout_broadcast)  # fmt: skip
        out = merge_dims(att, (self.num_heads, self.value_dim_per_head), self.value_dim_total)
        return self.proj(out) if self.proj is not None else out


def _heads_dim(num_heads: int | Dim, key_dim_total: Dim, value_dim_total: Dim, func: str) -> Dim:
    """:return: ``num_heads`` as a Dim, after checking that it divides both totals"""
    if isinstance(num_heads, int) and not isinstance(num_heads, bool):
        num_heads = Dim(num_heads, name="num_heads")
    if not isinstance(num_heads, Dim) or not num_heads.dimension:
        raise TypeError(f"{func}: num_heads must be an int >= 1 or a static Dim, got {num_heads!r}")
    for name, total in (("key_dim_total", key_dim_total), ("value_dim_total", value_dim_total)):
        if not isinstance(total, Dim) or total.dimension is None or total.dimension % num_heads.dimension:
            raise ValueError(f"{func}: {name} must be a static Dim, a multiple of num_heads "
                             f"{num_heads.dimension}, got {total!r}")  # fmt: skip
    return num_heads
