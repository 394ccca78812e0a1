"""Beam search over a step function, as a helper over :func:`returnn_ls.top_k` (label-synchronous decoding of
attention decoders, without ``rf.Loop``).

Every step extends each hypothesis of the beam by every label and keeps the ``beam_size`` best of all
``beam * vocab`` extensions by their summed log probabilities (no length normalization). A hypothesis that has
emitted ``eos_idx`` has ended: from then on it can only be extended by ``eos_idx`` at no cost, so it keeps its
score and competes with the running ones. At step ``max_seq_len`` every hypothesis is ended, so no output is
longer than ``max_seq_len``. The model's state (any nesting of dicts, :class:`~returnn_ls.State`, lists and tuples
of Tensors) is gathered along the beam dim after every step; Tensors without the beam dim (e.g. the initial state
before the first step) are kept as they are (they broadcast).

The steps run eagerly in Python; a step has no Python branching on tensor values, and between steps one scalar
("have all hypotheses ended?") is read to stop early.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from returnn_ls import _validate
from returnn_ls.array_funcs import full, stack
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather, top_k
from returnn_ls.ops import cast, range_over_dim, where
from returnn_ls.reduce import reduce_min
from returnn_ls.slice_funcs import slice as slice_
from returnn_ls.tensor import Tensor

__all__ = ["beam_search", "ctc_greedy_decode", "map_state"]

StepFunction = Callable[[Tensor, Any], tuple[Tensor, Any]]


def map_state(func: Callable[[Tensor], Any], state: Any) -> Any:
    """:return: ``state`` with ``func`` applied to every Tensor in it (dicts, States, lists and tuples are
    rebuilt with the same type; anything else, such as None, is kept)

    Example: ``map_state(lambda x: x * 2, rf.LstmState(h=h, c=c))``
    """
    if isinstance(state, Tensor):
        return func(state)
    if isinstance(state, dict):
        return type(state)({k: map_state(func, v) for k, v in state.items()})
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(func, v) for v in state))
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(func, v) for v in state)
    return state


def beam_search(
    step_fn: StepFunction,
    *,
    initial_state: Any,
    batch_dims: Sequence[Dim],
    vocab_dim: Dim,
    beam_size: int,
    max_seq_len: int | Tensor,
    bos_idx: int,
    eos_idx: int,
    device: str | None = None,
) -> tuple[Tensor, Tensor, Dim, Dim]:
    """Beam search (see the module docstring).

    :param step_fn: ``(labels, state) -> (log_probs, new_state)``: ``labels`` [batch dims, beam] (sparse
        ``vocab_dim``; ``bos_idx`` in the first step) are the previous labels, ``log_probs`` the normalized
        log probabilities of the next label over ``batch dims + [beam, vocab_dim]`` (other dims broadcast)
    :param initial_state: the state before the first step (any nesting of Tensors; may lack the beam dim)
    :param batch_dims: the dims searched independently (e.g. ``[batch_dim]``)
    :param vocab_dim: the labels' dim
    :param beam_size: hypotheses kept per step (1: greedy search)
    :param max_seq_len: the longest output (labels before ``eos_idx``): an int or an int Tensor over (some of)
        ``batch_dims``
    :param bos_idx: the label fed in the first step
    :param eos_idx: the label that ends a hypothesis (not part of the output)
    :param device: where the first labels are created (default: the default device)
    :return: ``(seqs, scores, out_spatial_dim, beam_dim)``: ``seqs`` [batch dims, beam_dim, out_spatial_dim]
        (sparse ``vocab_dim``; each hypothesis's labels without ``eos_idx``, its length in
        ``out_spatial_dim.dyn_size_ext``), ``scores`` [batch dims, beam_dim] its summed log probability, the
        beam sorted best first
    :raise ValueError: for a bad argument, naming it
    """
    batch_dims = list(batch_dims)
    _check_args(vocab_dim, beam_size, max_seq_len, bos_idx, eos_idx)
    beam_dim = Dim(1, name="beam0")
    labels = full(dims=batch_dims + [beam_dim], fill_value=bos_idx, dtype="int32", device=device,
                  sparse_dim=vocab_dim)  # fmt: skip
    state, hyps = initial_state, None
    history: list[tuple[Tensor, Tensor, Dim]] = []  # per step: labels, backrefs (both over the new beam), new beam
    for step in itertools.count():
        log_probs, state = step_fn(labels, state)
        _check_log_probs(log_probs, batch_dims, beam_dim, vocab_dim)
        if hyps is None:  # the first step: zeros over the labels' dims, on their device
            zeros = Tensor((labels * 0).raw_tensor, labels.dims, backend=labels.backend)  # not sparse
            hyps = _Hyps(cast(zeros, log_probs.dtype), zeros != 0, zeros)
        if isinstance(max_seq_len, Tensor):
            stop = hyps.ended | (max_seq_len <= step)
        else:
            stop = hyps.ended if step < max_seq_len else (hyps.ended == hyps.ended)  # all True at the longest length
        new_beam = Dim(min(beam_size, beam_dim.dimension * vocab_dim.dimension), name=f"beam{step + 1}")
        labels, backrefs, hyps = _prune(hyps, log_probs, stop, beam_dim, vocab_dim, new_beam, eos_idx)
        state = map_state(lambda x, b=beam_dim, r=backrefs: gather(x, indices=r, axis=b) if b in x.dims else x, state)
        history.append((labels, backrefs, new_beam))
        beam_dim = new_beam
        if bool(reduce_min(cast(hyps.ended, "int32"), axis=[*hyps.ended.dims]).concrete_value()):
            break
    seqs, out_spatial_dim = _backtrack(history, hyps.seq_len)
    return seqs, hyps.scores, out_spatial_dim, beam_dim


@dataclass
class _Hyps:
    """The hypotheses of the beam: summed log probs, whether each has ended, its length (EOS not counted)."""

    scores: Tensor
    ended: Tensor
    seq_len: Tensor


def _prune(hyps: _Hyps, log_probs: Tensor, stop: Tensor, beam_dim: Dim, vocab_dim: Dim, new_beam: Dim,
           eos_idx: int) -> tuple[Tensor, Tensor, _Hyps]:  # fmt: skip
    """Extend every hypothesis by every label (only by EOS, at no cost, where ``stop``) and keep the best.

    :return: the labels and back-references (into ``beam_dim``) of the new beam, and its hypotheses
    """
    eos_only = where(range_over_dim(vocab_dim, like=log_probs) == eos_idx, 0.0, float("-inf"))
    log_probs = where(stop, cast(eos_only, log_probs.dtype), log_probs)
    scores, (backrefs, labels), _ = top_k(hyps.scores + log_probs, axis=[beam_dim, vocab_dim], k_dim=new_beam)
    labels = cast(labels, "int32")
    was_ended = gather(hyps.ended, indices=backrefs, axis=beam_dim)
    is_eos = labels == eos_idx
    seq_len = gather(hyps.seq_len, indices=backrefs, axis=beam_dim) + cast(~(was_ended | is_eos), "int32")
    return labels, backrefs, _Hyps(scores, was_ended | is_eos, seq_len)


def _check_args(vocab_dim: Dim, beam_size: Any, max_seq_len: Any, bos_idx: Any, eos_idx: Any) -> None:
    func = "beam_search"
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"{func}: beam_size must be an int >= 1, got {beam_size!r}")
    for name, value in (("bos_idx", bos_idx), ("eos_idx", eos_idx)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_dim.dimension:
            raise ValueError(f"{func}: {name} must be an int in [0, {vocab_dim.dimension}), got {value!r}")
    if isinstance(max_seq_len, Tensor):
        _validate.check_tensor(max_seq_len, "max_seq_len", func)
    elif isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 0:
        raise ValueError(f"{func}: max_seq_len must be an int >= 0 or an int Tensor, got {max_seq_len!r}")


def _check_log_probs(log_probs: Tensor, batch_dims: list[Dim], beam_dim: Dim, vocab_dim: Dim) -> None:
    _validate.check_tensor(log_probs, "log_probs (of step_fn)", "beam_search")
    extra = [d for d in log_probs.dims if d not in (*batch_dims, beam_dim, vocab_dim)]
    if vocab_dim not in log_probs.dims or extra:
        raise ValueError(f"beam_search: step_fn must return log_probs over batch dims {batch_dims} + the beam "
                         f"dim + vocab_dim {vocab_dim}, got {log_probs}")  # fmt: skip


def _backtrack(history: list[tuple[Tensor, Tensor, Dim]], seq_len: Tensor) -> tuple[Tensor, Dim]:
    """:return: the labels of each final hypothesis over a new dynamic dim (lengths ``seq_len``), and that dim"""
    index = None
    out: list[Tensor] = []
    for labels, backrefs, beam in reversed(history):
        if index is not None:
            labels = gather(labels, indices=index, axis=beam)
            backrefs = gather(backrefs, indices=index, axis=beam)
        out.insert(0, labels)
        index = backrefs
    stacked, steps_dim = stack(out)
    out_spatial_dim = Dim(seq_len, name="beam_search_out")
    seqs, _ = slice_(stacked, axis=steps_dim, start=0, size=out_spatial_dim)  # the padded length: the longest
    return seqs, out_spatial_dim


def ctc_greedy_decode(
    logits: Tensor, *, in_spatial_dim: Dim, blank_index: int, out_spatial_dim: Dim | None = None,
    target_dim: Dim | None = None, wb_target_dim: Dim | None = None,
) -> tuple[Tensor, Dim]:  # fmt: skip
    """Best-path CTC decoding: the most likely class per frame, repeats merged, blanks removed (per sequence).

    Example: ``labels, labels_dim = rf.ctc_greedy_decode(logits, in_spatial_dim=time_dim, blank_index=0)``

    :param logits: (log) scores ``[*batch, in_spatial_dim, wb_target_dim]``
    :param wb_target_dim: the class dim with the blank (default: ``logits.feature_dim``)
    :param target_dim: the labels' dim without the blank; only with the blank last (``blank_index ==
        target_dim.dimension``, as RETURNN)
    :return: int32 labels ``[*batch, out_spatial_dim]`` (dynamic: each sequence's number of labels) and that dim
    """
    from returnn_ls.mask_funcs import masked_select
    from returnn_ls.nn.array import reduce_argmax
    from returnn_ls.seq_funcs import shift_right

    func = "ctc_greedy_decode"
    _validate.check_tensor(logits, "logits", func)
    wb_target_dim = wb_target_dim if wb_target_dim is not None else logits.feature_dim
    if wb_target_dim is None:
        raise ValueError(f"{func}: logits has no feature_dim; pass wb_target_dim= (the class dim with the blank)")
    if target_dim is not None and target_dim.dimension != blank_index:
        raise ValueError(f"{func}: target_dim needs the blank last (blank_index == {target_dim.dimension}), got "
                         f"blank_index={blank_index}")  # fmt: skip
    labels = cast(reduce_argmax(logits, axis=wb_target_dim), "int32")
    previous = shift_right(labels, axis=in_spatial_dim, pad_value=blank_index)
    keep = (labels != blank_index) & (labels != previous)
    labels, out_spatial_dim = masked_select(labels, mask=keep, dims=[in_spatial_dim], out_dim=out_spatial_dim)
    labels.sparse_dim = target_dim if target_dim is not None else wb_target_dim
    return labels, out_spatial_dim
