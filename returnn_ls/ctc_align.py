r"""CTC alignments (as ``returnn.frontend``): the best path (Viterbi) and the durations of a path's states.

A target ``y_1 .. y_N`` is expanded into ``2N+1`` states ``_ y_1 _ y_2 _ .. y_N _`` (``_``: blank); state ``s``
emits ``ext[s]`` (blank for even ``s``, ``y_{(s+1)/2}`` for odd ``s``). A path stays in a state (a blank always;
a label only with ``label_loop=True``), moves to the next one, or skips a blank (``s-2 -> s`` for a label, not
between two equal labels when label loops are allowed, as then the blank separates them). It starts in state 0
or 1 and ends in state ``2N`` or ``2N-1``. ``label_loop=False`` is the topology of RNA (each label on one frame).
The Viterbi recursion over the frames ``t`` of one sequence::

    score_0(s) = lp_0(ext[s])  for s < 2,   score_t(s) = lp_t(ext[s]) + max_{s' -> s} score_{t-1}(s')

keeps the arg max per state; the backtrace from the better of the two final states gives one state per frame.
"""

from __future__ import annotations

import warnings

from returnn_ls import _validate
from returnn_ls.array_funcs import ones_like, stack
from returnn_ls.ctc import _check_blank, _check_dims, broadcast_to
from returnn_ls.dim import Dim
from returnn_ls.index_funcs import gather
from returnn_ls.math_funcs import cumsum
from returnn_ls.nn.array import reduce_argmax
from returnn_ls.ops import cast, constant, log_softmax, maximum, range_over_dim, sequence_mask, where
from returnn_ls.reduce import reduce_max, reduce_sum
from returnn_ls.scatter_funcs import scatter
from returnn_ls.seq_funcs import shift_right
from returnn_ls.tensor import Tensor

__all__ = ["ctc_best_path", "ctc_durations_from_path", "ctc_no_label_loop_blank_durations_from_path"]

_NEG_INF = float("-inf")


def ctc_best_path(
    *,
    logits: Tensor,
    logits_normalized: bool = False,
    targets: Tensor,
    input_spatial_dim: Dim,
    targets_spatial_dim: Dim,
    blank_index: int,
    label_loop: bool = True,
) -> Tensor:
    """The best CTC path (Viterbi alignment) of ``targets`` through ``logits`` (see the module doc).

    Runs a loop over the padded number of frames (a Python loop: under ``torch.compile`` or ``tf.function`` that
    number must be static) of frontend ops (max, arg max, gather), on the device of ``logits``.

    :param logits: float ``[*batch, input_spatial_dim, classes]``, the class axis ``logits.feature_dim`` (blank
        included); ``log_softmax`` is applied unless ``logits_normalized``
    :param logits_normalized: ``logits`` are log-probabilities already
    :param targets: int labels ``[*batch, targets_spatial_dim]`` (no blanks); batch dims broadcast as in
        :func:`~returnn_ls.ctc_loss`
    :param input_spatial_dim: the time dim of ``logits``
    :param targets_spatial_dim: the label dim of ``targets``
    :param blank_index: the blank's class index
    :param label_loop: True: standard CTC (a label may last several frames); False: each label on exactly one frame
    :return: int32 ``[*batch, input_spatial_dim]`` with ``sparse_dim`` the class axis: the label (or blank) of each
        frame. 0 on padding frames, and on every frame of a sequence that has no path (too few frames).
    """
    func = "ctc_best_path"
    _validate.check_tensor(logits, "logits", func)
    _validate.check_tensor(targets, "targets", func)
    _validate.check_float(logits, "logits", func)
    axis = _validate.resolve_axis(logits, None, func, name="logits.feature_dim")
    batch_dims = _check_dims(logits, targets, input_spatial_dim, targets_spatial_dim, axis, func)
    blank = _check_blank(blank_index, axis.dimension, func)
    for name, flag in (("logits_normalized", logits_normalized), ("label_loop", label_loop)):
        if not isinstance(flag, bool):
            raise TypeError(f"{func}: {name} must be a bool, got {type(flag).__name__}")
    log_probs = logits if logits_normalized else log_softmax(logits, axis=axis)
    log_probs, targets = broadcast_to(log_probs, batch_dims), broadcast_to(targets, batch_dims)
    state_dim = _state_dim(targets_spatial_dim)
    ext = _expanded_labels(targets, targets_spatial_dim, state_dim, blank)
    emissions = gather(log_probs, indices=ext, axis=axis)  # [*batch, time, states]
    states = range_over_dim(state_dim, like=ext)
    valid_state = sequence_mask(state_dim, ext) if state_dim.is_padded() else None
    skip = (states % 2 == 1) & (states >= 3)
    if label_loop:
        skip = skip & (ext != _shift(ext, states, state_dim, 2, -1))
    stay = (states % 2 == 0) if not label_loop else None
    backpointers, score = _forward(emissions, input_spatial_dim, state_dim, states, valid_state, skip, stay)
    path = _backtrace(backpointers, score, ext, state_dim, input_spatial_dim, blank)
    path.sparse_dim = axis
    return path


def _state_dim(targets_spatial_dim: Dim) -> Dim:
    """:return: a new dim of ``2N+1`` states (no Dim arithmetic, whose cache torch.compile cannot trace)"""
    if targets_spatial_dim.dimension is not None:
        return Dim(2 * targets_spatial_dim.dimension + 1, name="ctc_states")
    return Dim(targets_spatial_dim.dyn_size_ext * 2 + 1, name="ctc_states")


def _shift(x: Tensor, states: Tensor, state_dim: Dim, amount: int, pad_value: float | int) -> Tensor:
    """:return: ``x`` shifted by ``amount`` states to the right along ``state_dim``, ``pad_value`` in front (a
    gather: ``rf.shift_right`` makes a new dim by Dim arithmetic, which torch.compile cannot trace)"""
    return where(states >= amount, gather(x, indices=maximum(states - amount, 0), axis=state_dim), pad_value)


def _expanded_labels(targets: Tensor, targets_spatial_dim: Dim, state_dim: Dim, blank: int) -> Tensor:
    """:return: int32 ``[*batch, state_dim]``: blank at even states, label ``(s-1)/2`` at odd state ``s``"""
    states = range_over_dim(state_dim, like=targets)
    label_pos = where(states >= 1, (states - 1) // 2, 0)
    mask = sequence_mask(targets_spatial_dim, targets) if targets_spatial_dim.is_padded() else None
    labels = cast(where(mask, targets, blank) if mask is not None else targets, "int32")
    labels = gather(labels, indices=label_pos, axis=targets_spatial_dim, clip_to_valid=True)
    return where(states % 2 == 1, labels, blank)


def _forward(emissions, time_dim, state_dim, states, valid_state, skip, stay):
    """:return: the backpointers (per frame ``t >= 1``: how many states back the best predecessor is, int32
    ``[*batch, state_dim]``; 0 at padding frames) and the final scores ``[*batch, state_dim]``"""
    frames = emissions.backend.axis_size(emissions.raw_tensor, emissions.dims.index(time_dim))
    try:
        frames = int(frames)  # a torch.compile size is specialized; a symbolic TensorFlow size cannot be
    except TypeError:
        raise ValueError("ctc_best_path: the padded number of frames of logits must be static when tracing (give "
                         "the time axis a static size in tf.function's input signature)") from None  # fmt: skip
    lengths = time_dim.dyn_size_ext if time_dim.is_padded() else None
    score = where(states < 2, gather(emissions, indices=0, axis=time_dim), _NEG_INF)
    if valid_state is not None:
        score = where(valid_state, score, _NEG_INF)
    backpointers = []
    for t in range(1, frames):
        candidates = [where(skip, _shift(score, states, state_dim, 2, _NEG_INF), _NEG_INF),
                      _shift(score, states, state_dim, 1, _NEG_INF),
                      score if stay is None else where(stay, score, _NEG_INF)]  # fmt: skip
        stacked, choice_dim = stack(candidates)
        best = reduce_max(stacked, axis=choice_dim)
        back = 2 - cast(reduce_argmax(stacked, axis=choice_dim), "int32")  # 2: skip, 1: previous, 0: stay
        new_score = best + gather(emissions, indices=t, axis=time_dim)
        if lengths is not None:
            active = lengths > t
            new_score, back = where(active, new_score, score), where(active, back, 0)
        score = new_score
        backpointers.append(back)
    return backpointers, score


def _backtrace(backpointers, score, ext, state_dim, time_dim, blank):
    """:return: the label of each frame on the best path ending in state ``2N`` or ``2N-1``"""
    if state_dim.is_padded():
        last = cast(state_dim.dyn_size_ext, "int32") - 1  # 2N, per sequence
    else:
        last = constant(state_dim.dimension - 1, like=ext, dtype="int32")
    end_blank = gather(score, indices=last, axis=state_dim)
    end_label = where(last >= 1, gather(score, indices=where(last >= 1, last - 1, 0), axis=state_dim), _NEG_INF)
    state = where(end_label > end_blank, last - 1, last)
    found = (end_blank > _NEG_INF) | (end_label > _NEG_INF)
    labels = [gather(ext, indices=state, axis=state_dim)]
    for back in reversed(backpointers):
        state = state - gather(back, indices=state, axis=state_dim)
        labels.append(gather(ext, indices=state, axis=state_dim))
    stacked, frames_dim = stack(labels[::-1])  # a static dim of the padded length, then renamed to time_dim
    path = Tensor(stacked.raw_tensor, tuple(time_dim if d is frames_dim else d for d in stacked.dims),
                  backend=stacked.backend)  # fmt: skip
    keep = found & sequence_mask(time_dim, path) if time_dim.is_padded() else found
    return cast(where(keep, path, 0), "int32")


def ctc_durations_from_path(
    *,
    path: Tensor,
    path_spatial_dim: Dim,
    blank_index: int,
    targets_spatial_dim: Dim | None = None,
    out_spatial_dim: Dim | None = None,
    check_dims: bool = True,
    stop_on_failed_check: bool = True,
) -> tuple[Tensor, Dim]:
    """The number of frames of each state ``_ y_1 _ y_2 .. y_N _`` of a CTC path (``2N+1`` durations; a blank
    state that the path skips gets 0). Example: path ``_ _ a a b _ _ c c c _`` gives ``2 2 0 1 2 3 1``.

    :param path: int ``[*batch, path_spatial_dim]``, one label (or blank) per frame, e.g. :func:`ctc_best_path`
    :param path_spatial_dim: the frames of ``path``
    :param blank_index: the blank's index
    :param targets_spatial_dim: the label dim of the target (its sizes must be the number of labels ``N`` in the
        path); default: a new dim of those sizes
    :param out_spatial_dim: the output dim (sizes ``2N+1``); default: ``targets_spatial_dim * 2 + 1``
    :param check_dims: check the given dims' sizes (in eager mode only; skipped while tracing or compiling)
    :param stop_on_failed_check: a failed check raises ValueError; False: a warning
    :return: int32 durations ``[*batch, out_spatial_dim]`` and ``out_spatial_dim``
    """
    func = "ctc_durations_from_path"
    _check_path(path, path_spatial_dim, func)
    new_label = (path != blank_index) & (path != shift_right(path, axis=path_spatial_dim, pad_value=blank_index))
    num_labels, targets_spatial_dim = _num_labels(new_label, path_spatial_dim, targets_spatial_dim, check_dims,
                                                  stop_on_failed_check, func)  # fmt: skip
    blank_state = cumsum(cast(new_label, "int32"), spatial_dim=path_spatial_dim) * 2  # state of the blank after
    state = blank_state - cast(path != blank_index, "int32")  # a label's state is one before its next blank
    if out_spatial_dim is None:
        out_spatial_dim = targets_spatial_dim * 2 + 1
    elif check_dims:
        _check_sizes(out_spatial_dim, num_labels * 2 + 1, "out_spatial_dim", "2 * N + 1", stop_on_failed_check, func)
    ones = ones_like(state)
    if path_spatial_dim.is_padded():  # padding frames add 0 to state 0
        inside = sequence_mask(path_spatial_dim, state)
        state, ones = where(inside, state, 0), where(inside, ones, 0)
    durations = scatter(ones, indices=state, indices_dim=path_spatial_dim, out_dim=out_spatial_dim)
    return durations, out_spatial_dim


def ctc_no_label_loop_blank_durations_from_path(
    *,
    path: Tensor,
    path_spatial_dim: Dim,
    blank_index: int,
    targets_spatial_dim: Dim | None = None,
    out_spatial_dim: Dim | None = None,
    check_dims: bool = True,
    stop_on_failed_check: bool = True,
) -> tuple[Tensor, Dim]:
    """The number of blank frames before the first label, between labels and after the last (``N+1`` durations)
    of a path without label loops (``label_loop=False`` in :func:`ctc_best_path`: every non-blank frame is a label
    of its own). Example: ``_ _ _ a b _ _ c _`` gives ``3 0 2 1``.

    Arguments as :func:`ctc_durations_from_path`; ``out_spatial_dim`` has sizes ``N+1`` (default:
    ``targets_spatial_dim + 1``). :return: int32 durations ``[*batch, out_spatial_dim]`` and ``out_spatial_dim``
    """
    func = "ctc_no_label_loop_blank_durations_from_path"
    _check_path(path, path_spatial_dim, func)
    is_label = path != blank_index
    num_labels, targets_spatial_dim = _num_labels(is_label, path_spatial_dim, targets_spatial_dim, check_dims,
                                                  stop_on_failed_check, func)  # fmt: skip
    if out_spatial_dim is None:
        out_spatial_dim = targets_spatial_dim + 1
    elif check_dims:
        _check_sizes(out_spatial_dim, num_labels + 1, "out_spatial_dim", "N + 1", stop_on_failed_check, func)
    blank_index_of_frame = cumsum(cast(is_label, "int32"), spatial_dim=path_spatial_dim)
    counts = cast(~is_label, "int32")  # label frames add 0 to the blank run they interrupt
    if path_spatial_dim.is_padded():  # padding frames add 0 to the first run
        inside = sequence_mask(path_spatial_dim, counts)
        blank_index_of_frame, counts = where(inside, blank_index_of_frame, 0), where(inside, counts, 0)
    durations = scatter(counts, indices=blank_index_of_frame, indices_dim=path_spatial_dim, out_dim=out_spatial_dim)
    return durations, out_spatial_dim


def _check_path(path: Tensor, path_spatial_dim: Dim, func: str) -> None:
    _validate.check_tensor(path, "path", func)
    if not path.dtype.startswith("int"):
        raise TypeError(f"{func}: path must hold integer labels, got dtype {path.dtype}")
    if not isinstance(path_spatial_dim, Dim) or path_spatial_dim not in path.dims:
        raise ValueError(f"{func}: path_spatial_dim {path_spatial_dim!r} is not a dim of path {path}")


def _num_labels(is_label: Tensor, spatial_dim: Dim, targets_spatial_dim: Dim | None, check: bool, stop: bool,
                func: str) -> tuple[Tensor, Dim]:  # fmt: skip
    """:return: the number of labels per sequence (frames of ``is_label`` inside it) and the target dim"""
    if spatial_dim.is_padded():
        is_label = is_label & sequence_mask(spatial_dim, is_label)
    num_labels = reduce_sum(cast(is_label, "int32"), axis=spatial_dim, use_mask=False)
    if targets_spatial_dim is None:
        return num_labels, Dim(num_labels, name="target_spatial")
    if check:
        _check_sizes(targets_spatial_dim, num_labels, "targets_spatial_dim", "N", stop, func)
    return num_labels, targets_spatial_dim


def _check_sizes(dim: Dim, expected: Tensor, name: str, what: str, stop: bool, func: str) -> None:
    """Compare the sizes of ``dim`` with ``expected`` where both can be read now (eager mode)"""
    backend = expected.backend
    sizes = dim.dyn_size_ext if dim.is_padded() else dim.dimension
    if isinstance(sizes, Tensor):
        sizes = sizes.raw_tensor if sizes.backend is backend else None
    if sizes is None or not backend.is_concrete(expected.raw_tensor) or (
            not isinstance(sizes, int) and not backend.is_concrete(sizes)):  # fmt: skip
        return
    got = backend.concrete_value(sizes) if not isinstance(sizes, int) else sizes
    if not (got == backend.concrete_value(expected.raw_tensor)).all():
        message = f"{func}: the sizes of {name} {dim} do not match {what} (N: the number of labels in the path)"
        if stop:
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
