"""rf.ctc_best_path against a brute-force search over all frame labellings, the CTC duration helpers against
RETURNN's examples and hand-counted runs, and rf.ctc_loss's RETURNN arguments (broadcast batch dims,
``use_native_op``, ``axis``) against per-slice losses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

CLASSES, BLANK = 4, 3  # labels 0..2, blank 3


def _collapse(frames, label_loop: bool):
    """:return: the label sequence of a frame labelling, or None if it is not a path of the topology"""
    out, prev = [], BLANK
    for label in frames:
        if label != BLANK and (label != prev or not label_loop):
            out.append(label)
        prev = label
    return out


def _brute_force(log_probs: np.ndarray, target: list, label_loop: bool) -> float:
    """:return: the best score over all frame labellings that collapse to ``target`` (-inf if none)"""
    best = -np.inf
    for frames in itertools.product(range(CLASSES), repeat=len(log_probs)):
        if _collapse(frames, label_loop) == list(target):
            best = max(best, float(sum(log_probs[t, k] for t, k in enumerate(frames))))
    return best


def _case(rng, lengths, target_lengths, num_labels=3):
    batch = Dim(len(lengths), name="batch")
    time = Dim(rf.convert_to_tensor(np.array(lengths, "int32"), dims=[batch]), name="time")
    labels = Dim(rf.convert_to_tensor(np.array(target_lengths, "int32"), dims=[batch]), name="labels")
    logits = rng.normal(size=(len(lengths), max(lengths), CLASSES)).astype("float32") * 2
    targets = rng.integers(0, num_labels, size=(len(lengths), max(target_lengths))).astype("int32")
    return batch, time, labels, logits, targets


@pytest.mark.parametrize("label_loop", [True, False])
def test_best_path_has_the_brute_force_best_score(backend, rng, label_loop):
    rf.select_backend(backend.name)
    lengths, target_lengths = [6, 5, 3, 4, 2, 5], [3, 2, 3, 0, 2, 1]  # entry 2 has no path with label loops
    batch, time, labels, logits, targets = _case(rng, lengths, target_lengths)
    targets[0, :2] = 1  # a repeated label needs a blank between with label loops
    class_dim = Dim(CLASSES, name="classes")
    path = rf.ctc_best_path(
        logits=rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim),
        targets=rf.convert_to_tensor(targets, dims=[batch, labels]), input_spatial_dim=time,
        targets_spatial_dim=labels, blank_index=BLANK, label_loop=label_loop,
    )  # fmt: skip
    assert path.dims == (batch, time) and path.dtype == "int32" and path.sparse_dim is class_dim
    got = path.numpy()
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    found = 0
    for b, (length, target_length) in enumerate(zip(lengths, target_lengths)):
        target, lp = list(targets[b, :target_length]), log_probs[b, :length]
        best = _brute_force(lp, target, label_loop)
        np.testing.assert_array_equal(got[b, length:], 0)
        if best == -np.inf:
            np.testing.assert_array_equal(got[b], 0)  # no path: zeros, as RETURNN's reference Viterbi
            continue
        found += 1
        assert _collapse(got[b, :length], label_loop) == target
        np.testing.assert_allclose(sum(lp[t, k] for t, k in enumerate(got[b, :length])), best, rtol=1e-5)
    assert found >= 4


def test_best_path_of_normalized_logits_and_broadcast_targets(backend, rng):
    """Log-probabilities in (``logits_normalized``), targets without the beam dim of the logits."""
    rf.select_backend(backend.name)
    batch, time, labels, logits, targets = _case(rng, [5, 4], [2, 1])
    beam, class_dim = Dim(3, name="beam"), Dim(CLASSES, name="classes")
    beams = rng.normal(size=(2, 3, 5, CLASSES)).astype("float32")
    log_probs = beams - np.log(np.exp(beams).sum(-1, keepdims=True))
    path = rf.ctc_best_path(
        logits=rf.convert_to_tensor(log_probs, dims=[batch, beam, time, class_dim], feature_dim=class_dim),
        logits_normalized=True, targets=rf.convert_to_tensor(targets, dims=[batch, labels]), input_spatial_dim=time,
        targets_spatial_dim=labels, blank_index=BLANK,
    )  # fmt: skip
    assert path.dims == (batch, beam, time)
    for b, i in itertools.product(range(2), range(3)):
        length, target = [5, 4][b], list(targets[b, : [2, 1][b]])
        lp = log_probs[b, i, :length]
        score = sum(lp[t, k] for t, k in enumerate(path.numpy()[b, i, :length]))
        np.testing.assert_allclose(score, _brute_force(lp, target, True), rtol=1e-5)


def _paths(examples):
    batch = Dim(len(examples), name="batch")
    time = Dim(rf.convert_to_tensor(np.array([len(p) for p, _ in examples], "int32"), dims=[batch]), name="time")
    raw = np.full((len(examples), max(len(p) for p, _ in examples)), 7, "int32")  # padding: a label, ignored
    for i, (p, _) in enumerate(examples):
        raw[i, : len(p)] = p
    return batch, time, rf.convert_to_tensor(raw, dims=[batch, time])


B = 11  # the blank of RETURNN's examples


def test_durations_from_path_as_returnns_examples(backend):
    rf.select_backend(backend.name)
    examples = [([B, B, 1, 1, 2, B, B, 3, 3, 3, B], [2, 2, 0, 1, 2, 3, 1]), ([B, B, 1, 1, B, 2, B, B, B, B],
                [2, 2, 1, 1, 4]), ([1, 1, 1, B, B, B, B], [0, 3, 4]), ([B, B, B, B, B, 1, 2, 3], [5, 1, 0, 1, 0, 1, 0]),
                ([5], [0, 1, 0]), ([B, B], [2])]  # fmt: skip
    batch, time, path = _paths(examples)
    durations, out_dim = rf.ctc_durations_from_path(path=path, path_spatial_dim=time, blank_index=B)
    assert durations.dims == (batch, out_dim) and durations.dtype == "int32"
    sizes, got = out_dim.dyn_size_ext.numpy(), durations.numpy()
    for i, (_, expected) in enumerate(examples):
        assert sizes[i] == len(expected)
        np.testing.assert_array_equal(got[i, : len(expected)], expected)
        np.testing.assert_array_equal(got[i, len(expected) :], 0)


def test_no_label_loop_blank_durations_as_returnns_examples(backend):
    rf.select_backend(backend.name)
    examples = [([B, B, B, 1, 2, B, B, 3, B], [3, 0, 2, 1]), ([B, B, 1, 1, 2, B, B, 3, B], [2, 0, 0, 2, 1]),
                ([1], [0, 0]), ([B, B, 1], [2, 0]), ([B, B, B], [3])]  # fmt: skip
    batch, time, path = _paths(examples)
    durations, out_dim = rf.ctc_no_label_loop_blank_durations_from_path(path=path, path_spatial_dim=time,
                                                                        blank_index=B)  # fmt: skip
    sizes, got = out_dim.dyn_size_ext.numpy(), durations.numpy()
    for i, (_, expected) in enumerate(examples):
        assert sizes[i] == len(expected)
        np.testing.assert_array_equal(got[i, : len(expected)], expected)


def test_durations_of_best_paths_sum_to_the_lengths_and_check_the_dims(backend, rng):
    rf.select_backend(backend.name)
    lengths, target_lengths = [7, 6, 5], [3, 2, 1]
    batch, time, labels, logits, targets = _case(rng, lengths, target_lengths)
    targets[:] = [[0, 1, 2], [2, 0, 0], [1, 1, 1]]
    class_dim = Dim(CLASSES, name="classes")
    path = rf.ctc_best_path(logits=rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim),
                            targets=rf.convert_to_tensor(targets, dims=[batch, labels]), input_spatial_dim=time,
                            targets_spatial_dim=labels, blank_index=BLANK)  # fmt: skip
    durations, out_dim = rf.ctc_durations_from_path(path=path, path_spatial_dim=time, blank_index=BLANK,
                                                    targets_spatial_dim=labels)  # fmt: skip
    np.testing.assert_array_equal(durations.numpy().sum(-1), lengths)
    np.testing.assert_array_equal(out_dim.dyn_size_ext.numpy(), np.array(target_lengths) * 2 + 1)
    assert (durations.numpy()[:, 1::2][np.arange(3)[None, :] < np.array(target_lengths)[:, None]] >= 1).all()
    with pytest.raises(ValueError, match="ctc_durations_from_path: the sizes of targets_spatial_dim"):
        rf.ctc_durations_from_path(path=path, path_spatial_dim=time, blank_index=BLANK, targets_spatial_dim=time)
    with pytest.warns(UserWarning, match="out_spatial_dim"):
        wrong = Dim(rf.convert_to_tensor(np.array([1, 2, 3], "int32"), dims=[batch]), name="wrong")
        rf.ctc_durations_from_path(path=path, path_spatial_dim=time, blank_index=BLANK, out_spatial_dim=wrong,
                                   stop_on_failed_check=False)  # fmt: skip


def _ctc_inputs(rng, with_beam: bool):
    batch, time, labels, logits, targets = _case(rng, [6, 5], [2, 3])
    class_dim = Dim(CLASSES, name="classes")
    if not with_beam:
        return batch, time, labels, class_dim, None, logits, targets
    beam = Dim(3, name="beam")
    return batch, time, labels, class_dim, beam, rng.normal(size=(2, 3, 6, CLASSES)).astype("float32"), targets


def test_ctc_loss_broadcasts_targets_over_the_beam_of_the_logits(backend, rng):
    rf.select_backend(backend.name)
    batch, time, labels, class_dim, beam, logits, targets = _ctc_inputs(rng, with_beam=True)
    y = rf.convert_to_tensor(targets, dims=[batch, labels])
    loss = rf.ctc_loss(logits=rf.convert_to_tensor(logits, dims=[batch, beam, time, class_dim], feature_dim=class_dim),
                       targets=y, input_spatial_dim=time, targets_spatial_dim=labels, blank_index=BLANK)  # fmt: skip
    assert loss.dims == (batch, beam)
    for i in range(3):
        one = rf.ctc_loss(logits=rf.convert_to_tensor(logits[:, i], dims=[batch, time, class_dim],
                                                      feature_dim=class_dim),
                          targets=y, input_spatial_dim=time, targets_spatial_dim=labels, blank_index=BLANK)  # fmt: skip
        np.testing.assert_allclose(loss.numpy()[:, i], one.numpy(), rtol=1e-5)


def test_ctc_loss_broadcasts_logits_over_the_beam_of_the_targets(backend, rng):
    rf.select_backend(backend.name)
    batch, time, labels, class_dim, _, logits, targets = _ctc_inputs(rng, with_beam=False)
    beam = Dim(2, name="beam")
    both = np.stack([targets, targets[:, ::-1]], 1)
    x = rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim)
    loss = rf.ctc_loss(logits=x, targets=rf.convert_to_tensor(both, dims=[batch, beam, labels]),
                       input_spatial_dim=time, targets_spatial_dim=labels, blank_index=BLANK)  # fmt: skip
    assert loss.dims == (batch, beam)
    one = rf.ctc_loss(logits=x, targets=rf.convert_to_tensor(targets, dims=[batch, labels]), input_spatial_dim=time,
                      targets_spatial_dim=labels, blank_index=BLANK)  # fmt: skip
    np.testing.assert_allclose(loss.numpy()[:, 0], one.numpy(), rtol=1e-6)
    assert not np.allclose(loss.numpy()[:, 1], one.numpy())


def test_ctc_loss_use_native_op_and_axis_change_nothing(backend, rng):
    rf.select_backend(backend.name)
    batch, time, labels, class_dim, _, logits, targets = _ctc_inputs(rng, with_beam=False)
    y = rf.convert_to_tensor(targets, dims=[batch, labels])
    kwargs = {"targets": y, "input_spatial_dim": time, "targets_spatial_dim": labels, "blank_index": BLANK}
    x = rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim)
    ref = rf.ctc_loss(logits=x, **kwargs).numpy()
    for extra in ({"use_native_op": True}, {"use_native_op": False}, {"axis": class_dim}):
        np.testing.assert_array_equal(rf.ctc_loss(logits=x, **kwargs, **extra).numpy(), ref)
    no_feature = rf.convert_to_tensor(logits, dims=[batch, time, class_dim])
    np.testing.assert_array_equal(rf.ctc_loss(logits=no_feature, axis=class_dim, **kwargs).numpy(), ref)
    with pytest.raises(ValueError, match="ctc_loss: logits must have a feature_dim .* or pass axis="):
        rf.ctc_loss(logits=no_feature, **kwargs)
    with pytest.raises(ValueError, match="ctc_loss: axis .* is not one of the tensor's dims"):
        rf.ctc_loss(logits=x, axis=Dim(CLASSES, name="other"), **kwargs)
    with pytest.raises(TypeError, match="ctc_loss: use_native_op must be None or a bool"):
        rf.ctc_loss(logits=x, use_native_op="yes", **kwargs)


def test_best_path_errors_name_the_argument(backend, rng):
    rf.select_backend(backend.name)
    batch, time, labels, class_dim, _, logits, targets = _ctc_inputs(rng, with_beam=False)
    x = rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim)
    y = rf.convert_to_tensor(targets, dims=[batch, labels])
    with pytest.raises(TypeError, match="ctc_best_path: label_loop must be a bool"):
        rf.ctc_best_path(logits=x, targets=y, input_spatial_dim=time, targets_spatial_dim=labels, blank_index=BLANK,
                         label_loop=1)  # fmt: skip
    with pytest.raises(ValueError, match="ctc_best_path: input_spatial_dim"):
        rf.ctc_best_path(logits=x, targets=y, input_spatial_dim=labels, targets_spatial_dim=labels, blank_index=0)
    with pytest.raises(TypeError, match="ctc_durations_from_path: path must hold integer labels"):
        rf.ctc_durations_from_path(path=x, path_spatial_dim=time, blank_index=BLANK)


def test_torch_compile_of_best_path_has_no_graph_break(select, rng):
    import torch

    select("torch")
    batch, time, labels = Dim(2, name="batch"), Dim(5, name="time"), Dim(2, name="labels")
    class_dim = Dim(CLASSES, name="classes")

    def best_path(logits, targets):
        return rf.ctc_best_path(
            logits=rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim),
            targets=rf.convert_to_tensor(targets, dims=[batch, labels]), input_spatial_dim=time,
            targets_spatial_dim=labels, blank_index=BLANK,
        ).raw_tensor  # fmt: skip

    logits = torch.tensor(rng.normal(size=(2, 5, CLASSES)).astype("float32"))
    targets = torch.tensor([[0, 1], [2, 2]], dtype=torch.int32)
    compiled = torch.compile(best_path, backend="aot_eager", fullgraph=True)
    np.testing.assert_array_equal(compiled(logits, targets).numpy(), best_path(logits, targets).numpy())


def test_tf_function_of_best_path_equals_eager(select, rng):
    import tensorflow as tf

    select("tensorflow")
    batch, time, labels = Dim(2, name="batch"), Dim(5, name="time"), Dim(None, name="labels")
    class_dim = Dim(CLASSES, name="classes")

    def best_path(logits, targets, target_lengths):
        labels.dyn_size_ext = rf.convert_to_tensor(target_lengths, dims=[batch])
        return rf.ctc_best_path(
            logits=rf.convert_to_tensor(logits, dims=[batch, time, class_dim], feature_dim=class_dim),
            targets=rf.convert_to_tensor(targets, dims=[batch, labels]), input_spatial_dim=time,
            targets_spatial_dim=labels, blank_index=BLANK,
        ).raw_tensor  # fmt: skip

    specs = [tf.TensorSpec([2, 5, CLASSES]), tf.TensorSpec([2, None], tf.int32), tf.TensorSpec([2], tf.int32)]
    graph = tf.function(best_path, autograph=False, input_signature=specs)
    args = [tf.constant(rng.normal(size=(2, 5, CLASSES)).astype("float32")), tf.constant([[0, 1], [2, 2]]),
            tf.constant([2, 1])]  # fmt: skip
    np.testing.assert_array_equal(graph(*args).numpy(), best_path(*args).numpy())
    dynamic = tf.function(best_path, autograph=False, input_signature=[tf.TensorSpec([2, None, CLASSES])] + specs[1:])
    with pytest.raises(ValueError, match="ctc_best_path: the padded number of frames of logits must be static"):
        dynamic(*args)
