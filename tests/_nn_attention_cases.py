"""The attention, Transformer and Conformer modules compared with RETURNN's: built by the same code from ``rf``
(``returnn_ls`` or ``returnn.frontend``), so that both sides have the same options (shared by
``test_nn_attention_returnn.py`` and ``_nn_returnn_attention_reference.py``)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

LENGTHS = [5, 3, 4]
ENC_LENGTHS = [4, 6, 2]


def DIMS(dim_cls: type) -> SimpleNamespace:  # noqa: N802 (a constant-like factory)
    """:return: the static dims of the cases, made with ``dim_cls`` (our ``Dim`` or RETURNN's)"""
    names = dict(feat=8, out=6, key=8, value=12, enc=6, vocab=11, model=16)
    return SimpleNamespace(**{k: dim_cls(v, name=k) for k, v in names.items()})


def make_modules(rf: Any, dims: SimpleNamespace) -> dict[str, Any]:
    """:return: the modules by case name (no dropout anywhere: outputs are compared)"""
    conformer = importlib.import_module(f"{rf.__name__}.encoder.conformer")
    transformer_enc = importlib.import_module(f"{rf.__name__}.encoder.transformer")
    transformer_dec = importlib.import_module(f"{rf.__name__}.decoder.transformer")
    att = dict(key_dim_total=dims.key, value_dim_total=dims.value, num_heads=2, att_dropout=0.0)
    return {
        "self_att": rf.SelfAttention(dims.feat, dims.out, **att),
        "causal": rf.CausalSelfAttention(dims.feat, dims.out, **att),
        "rel_pos": rf.RelPosSelfAttention(dims.feat, dims.out, **att),
        "rel_pos_causal": rf.RelPosCausalSelfAttention(dims.feat, dims.out, **att),
        "rel_pos_learned": rf.RelPosSelfAttention(dims.feat, dims.out, with_linear_pos=False, with_pos_bias=False,
                                                  learnable_pos_emb=True, learnable_pos_emb_clipping=2,
                                                  separate_pos_emb_per_head=False, with_bias=False, **att),
        "cross": rf.CrossAttention(dims.enc, dims.feat, dims.out, **att),
        "rope": rf.RotaryPosSelfAttention(dims.feat, dims.out, **att),
        "rope_causal": rf.RotaryPosCausalSelfAttention(dims.feat, dims.out, **att),
        "conformer": conformer.ConformerEncoder(dims.feat, dims.model, num_layers=2, input_layer=None,
                                                conv_kernel_size=3, num_heads=2, dropout=0.0, att_dropout=0.0,
                                                input_dropout=0.0),
        "decoder": transformer_dec.TransformerDecoder(dims.enc, dims.vocab, dims.model, num_layers=2, num_heads=2,
                                                      dropout=0.0, att_dropout=0.0),
        "encoder": transformer_enc.TransformerEncoder(dims.vocab, dims.model, num_layers=2, num_heads=2,
                                                      dropout=0.0, att_dropout=0.0),
    }
