"""Self-attention with relative positional encoding (Transformer-XL, Dai et al. 2019; as RETURNN's
``RelPosSelfAttention`` and ``RelPosCausalSelfAttention``, same parameters).

The energy of query frame ``i`` and key frame ``j`` is ``((q_i + u) . k_j + (q_i + v) . p_{j-i}) / sqrt(d)``, where
``p_r`` is the (projected) encoding of the distance ``r = j - i`` and ``u``, ``v`` are the learned biases
``pos_bias_u``, ``pos_bias_v``. The position term is computed once per distance (``Tq + Tk - 1`` rows) and then
moved into place per query frame (Transformer-XL's "relative shift", here a gather).
"""

from __future__ import annotations

from typing import Any

from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather
from returnn_ls.math_funcs import matmul
from returnn_ls.nn import init
from returnn_ls.nn._att_utils import kv_copy, replace_dim, split_dims
from returnn_ls.nn.attention import CausalSelfAttention, CausalSelfAttentionState, SelfAttentionBase, attend, causal_kv
from returnn_ls.nn.dropout import dropout
from returnn_ls.nn.linear import Linear
from returnn_ls.nn.parameter import Parameter
from returnn_ls.nn.positional import LearnedRelativePositionalEncoding, relative_encoding, relative_positions
from returnn_ls.ops import cast, range_over_dim
from returnn_ls.tensor import Tensor

__all__ = ["RelPosCausalSelfAttention", "RelPosSelfAttention"]


class _RelPosMixin:
    """The relative-position parts shared by both classes (set up by :meth:`_init_rel_pos`)."""

    def _init_rel_pos(self, *, with_linear_pos: bool, with_pos_bias: bool, learnable_pos_emb: bool,
                      learnable_pos_emb_clipping: int, separate_pos_emb_per_head: bool,
                      pos_emb_dropout: float) -> None:  # fmt: skip
        self.separate_pos_emb_per_head = separate_pos_emb_per_head
        if with_linear_pos:
            self.pos_emb_feat_dim = self.in_dim
        else:
            self.pos_emb_feat_dim = self.key_dim_total if separate_pos_emb_per_head else self.key_dim_per_head
        pos_out = self.key_dim_total if separate_pos_emb_per_head else self.key_dim_per_head
        self.linear_pos = Linear(self.in_dim, pos_out, with_bias=False) if with_linear_pos else None
        self.learned_pos_emb = (LearnedRelativePositionalEncoding(self.pos_emb_feat_dim,
                                                                  clipping=learnable_pos_emb_clipping)
                                if learnable_pos_emb else None)  # fmt: skip
        self.pos_bias_u = self.pos_bias_v = None
        if with_pos_bias:
            self.pos_bias_u = Parameter((self.num_heads, self.key_dim_per_head), initial=init.Glorot())
            self.pos_bias_v = Parameter((self.num_heads, self.key_dim_per_head), initial=init.Glorot())
        self.pos_emb_dropout = pos_emb_dropout

    def _encode(self, indices: Tensor) -> Tensor:
        """:return: the projected encodings of the distances ``indices``, split into heads if separate per head"""
        if self.learned_pos_emb is not None:
            emb = self.learned_pos_emb.encode(indices)
        else:
            emb = relative_encoding(indices, self.pos_emb_feat_dim)
        if self.pos_emb_dropout:
            emb = dropout(emb, self.pos_emb_dropout)
        if self.linear_pos is not None:
            emb = self.linear_pos(emb)
        if self.separate_pos_emb_per_head:
            emb = split_dims(emb, self.key_dim_total, (self.num_heads, self.key_dim_per_head))
        return emb

    def _rel_pos_attention(self, q: Tensor, k: Tensor, v: Tensor, *, query_dim: Dim | None, kv_axis: Dim,
                           mask: Tensor | None, offset: Any) -> Tensor:  # fmt: skip
        """:return: the attention output (heads merged, projected); ``offset``: the key position of query frame 0
        (None: 0, and ``kv_axis`` aligned with ``query_dim``: the per-distance computation is used)"""
        q_u = q + self.pos_bias_u if self.pos_bias_u is not None else q
        q_v = q + self.pos_bias_v if self.pos_bias_v is not None else q
        content = matmul(q_u, k, reduce=self.key_dim_per_head)
        if offset is None:
            distances, pos_dim = relative_positions(query_dim, kv_axis, like=(q, k))
            per_distance = matmul(q_v, self._encode(distances), reduce=self.key_dim_per_head)
            position = _rel_shift(per_distance, query_dim, pos_dim, kv_axis)
        else:  # distances j - (offset + i) per query and key frame
            distances = range_over_dim(kv_axis, like=k) - offset
            if query_dim is not None:
                distances = distances - range_over_dim(query_dim, like=q)
            position = matmul(q_v, self._encode(distances), reduce=self.key_dim_per_head)
        energy = (content + position) * self.key_dim_per_head.dimension**-0.5
        att = attend(q, k, v, key_dim=self.key_dim_per_head, axis=kv_axis, mask=mask, att_dropout=self.att_dropout,
                     att_dropout_broadcast=self.att_dropout_broadcast, energy=energy)  # fmt: skip
        return self.merge_heads(att)


def _rel_shift(x: Tensor, query_dim: Dim, pos_dim: Dim, kv_axis: Dim) -> Tensor:
    """:return: ``x[..., i, j - i + Tq - 1]`` over ``[..., query_dim, kv_axis]``: the entry of distance ``j - i``
    (``pos_dim`` starts at distance ``-(Tq - 1)``, ``Tq`` the padded length of ``query_dim``)"""
    q_pos, kv_pos = range_over_dim(query_dim, like=x), range_over_dim(kv_axis, like=x)
    q_len = x.backend.axis_size(x.raw_tensor, x.dims.index(query_dim))
    index = kv_pos - q_pos + (q_len if isinstance(q_len, int) else Tensor(x.backend.cast(q_len, "int32"), ())) - 1
    return gather(x, indices=cast(index, "int32"), axis=pos_dim)


_OPTIONS = dict(with_linear_pos=True, with_pos_bias=True, learnable_pos_emb=False, learnable_pos_emb_clipping=16,
                separate_pos_emb_per_head=True, pos_emb_dropout=0.0)  # fmt: skip


class RelPosSelfAttention(_RelPosMixin, SelfAttentionBase):
    """Self-attention over a whole sequence with relative positional encoding (Transformer-XL style by default).

    Parameters: those of :class:`~returnn_ls.nn.attention.SelfAttention` plus ``linear_pos`` (``in_dim ->
    key_dim_total``, no bias; if ``with_linear_pos``), ``pos_bias_u``/``pos_bias_v`` ``[num_heads, key per head]``
    (if ``with_pos_bias``), ``learned_pos_emb.pos_emb`` (if ``learnable_pos_emb``).

    :param with_linear_pos: project the sinusoidal encoding (of ``in_dim`` features) with ``linear_pos``
    :param with_pos_bias: the biases ``u``, ``v`` of Transformer-XL
    :param learnable_pos_emb: a learned encoding (:class:`LearnedRelativePositionalEncoding`) instead of sinusoids
    :param learnable_pos_emb_clipping: its largest distance
    :param separate_pos_emb_per_head: one encoding per head (else one shared by all heads)
    :param pos_emb_dropout: dropout on the encoding
    """

    def __init__(self, in_dim: Dim, proj_dim: Dim | None, *, key_dim_total: Dim, value_dim_total: Dim,
                 num_heads: int | Dim, with_bias: bool = True, with_linear_pos: bool = True,
                 with_pos_bias: bool = True, learnable_pos_emb: bool = False, learnable_pos_emb_clipping: int = 16,
                 separate_pos_emb_per_head: bool = True, pos_emb_dropout: float = 0.0,
                 att_dropout: float = 0.1):  # fmt: skip
        super().__init__(in_dim, proj_dim, key_dim_total=key_dim_total, value_dim_total=value_dim_total,
                         num_heads=num_heads, with_bias=with_bias, att_dropout=att_dropout)  # fmt: skip
        self._init_rel_pos(with_linear_pos=with_linear_pos, with_pos_bias=with_pos_bias,
                           learnable_pos_emb=learnable_pos_emb, learnable_pos_emb_clipping=learnable_pos_emb_clipping,
                           separate_pos_emb_per_head=separate_pos_emb_per_head,
                           pos_emb_dropout=pos_emb_dropout)  # fmt: skip

    def __call__(self, source: Tensor, *, axis: Dim, **_kwargs: Any) -> Tensor:
        q, k, v = self.forward_qkv(source)
        kv_axis = kv_copy(axis, f"{axis.name}:kv")
        k, v = replace_dim(k, axis, kv_axis), replace_dim(v, axis, kv_axis)
        return self._rel_pos_attention(q, k, v, query_dim=axis, kv_axis=kv_axis, mask=None, offset=None)


class RelPosCausalSelfAttention(_RelPosMixin, CausalSelfAttention):
    """:class:`RelPosSelfAttention` where frame ``i`` attends to frames ``<= i`` only; also step by step with
    ``axis=rf.single_step_dim`` and a state (see :class:`~returnn_ls.nn.attention.CausalSelfAttention`). Same
    options and parameters as :class:`RelPosSelfAttention`."""

    def __init__(self, in_dim: Dim, proj_dim: Dim | None, *, key_dim_total: Dim, value_dim_total: Dim,
                 num_heads: int | Dim, with_bias: bool = True, with_linear_pos: bool = True,
                 with_pos_bias: bool = True, learnable_pos_emb: bool = False, learnable_pos_emb_clipping: int = 16,
                 separate_pos_emb_per_head: bool = True, pos_emb_dropout: float = 0.0,
                 att_dropout: float = 0.1):  # fmt: skip
        super().__init__(in_dim, proj_dim, key_dim_total=key_dim_total, value_dim_total=value_dim_total,
                         num_heads=num_heads, with_bias=with_bias, att_dropout=att_dropout)  # fmt: skip
        self._init_rel_pos(with_linear_pos=with_linear_pos, with_pos_bias=with_pos_bias,
                           learnable_pos_emb=learnable_pos_emb, learnable_pos_emb_clipping=learnable_pos_emb_clipping,
                           separate_pos_emb_per_head=separate_pos_emb_per_head,
                           pos_emb_dropout=pos_emb_dropout)  # fmt: skip

    def __call__(self, source: Tensor, axis: Dim, *, state: CausalSelfAttentionState | None = None
                 ) -> tuple[Tensor, CausalSelfAttentionState]:  # fmt: skip
        q, k, v = self.forward_qkv(source)
        k, v, kv_axis, mask, offset, new_state = causal_kv(k, v, axis=axis, state=state, func=type(self).__name__)
        query_dim = None if axis not in source.dims else axis
        fresh = query_dim is not None and isinstance(offset, int) and offset == 0
        out = self._rel_pos_attention(q, k, v, query_dim=query_dim, kv_axis=kv_axis, mask=mask,
                                      offset=None if fresh else offset)  # fmt: skip
        return out, new_state
