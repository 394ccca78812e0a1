"""``padding="same"`` with ``strides > 1`` (``Conv1d``, ``pool1d``): a sequence's output depends only on its own
frames, as RETURNN since its behavior version 24; the padding before (TensorFlow's ``"SAME"`` for the padded length
of the batch, so for the longest sequence) stays available with ``use_consistent_same_padding=False``.

The numpy references pad each sequence with ``left`` zero frames (``-inf`` for max pooling, not counted for the
mean) and slide the window with the stride; frames after the sequence's end count as padding.
"""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import padded_dims, restore_global_state  # noqa: F401 (an autouse fixture)

IN, OUT = Dim(4, name="in"), Dim(3, name="out")


def _windows(x: np.ndarray, size: int, stride: int, left: int, fill: float) -> np.ndarray:
    """:return: ``[T', size, C]``: the ``ceil(T / stride)`` windows of ``x`` ``[T, C]`` padded with ``left`` frames of
    ``fill`` on the left (and as many as needed on the right)"""
    out_len = -(-len(x) // stride)
    right = max((out_len - 1) * stride + size - left - len(x), 0)
    padded = np.concatenate([np.full((left, x.shape[1]), fill), x, np.full((right, x.shape[1]), fill)])
    return np.stack([padded[t * stride : t * stride + size] for t in range(out_len)])


def numpy_conv(x, filter, bias, stride: int, left: int) -> np.ndarray:  # noqa: A002
    """``Conv1d`` with ``"same"`` of one sequence ``x`` ``[T, I]``: :return: ``[ceil(T / stride), O]``"""
    windows = _windows(x, filter.shape[2], stride, left, 0.0)  # [T', K, I]
    return np.einsum("tki,oik->to", windows, filter) + bias


def numpy_pool(x, mode: str, size: int, stride: int, left: int) -> np.ndarray:
    """``pool1d`` with ``"same"`` of one sequence ``x`` ``[T, C]``: :return: ``[ceil(T / stride), C]``"""
    windows = _windows(x, size, stride, left, np.nan)
    return np.nanmax(windows, axis=1) if mode == "max" else np.nanmean(windows, axis=1)


def _run(layer, x: np.ndarray, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """:return: the output ``[B, T', C]`` of ``layer(x, time)`` and its sizes, for ``x`` ``[B, T, 4]``"""
    batch, time = padded_dims(lengths)
    out, out_time = layer(rf.convert_to_tensor(x, dims=[batch, time, IN], feature_dim=IN), time)
    return out.copy_transpose([batch, out_time, out.feature_dim]).numpy(), out_time.dyn_size_ext.numpy()


def _layers(size: int, stride: int, consistent: bool) -> dict:
    """:return: conv, max and avg pooling with ``"same"`` padding, each as ``layer(x, in_spatial_dim)``"""
    rf.set_random_seed(size)
    conv = rf.Conv1d(IN, OUT, size, padding="same", strides=stride, use_consistent_same_padding=consistent)
    conv.bias.initial = 0.3
    pool = {mode: (lambda x, t, mode=mode: rf.pool1d(x, mode=mode, pool_size=size, strides=stride, padding="same",
                                                     in_spatial_dim=t, use_consistent_same_padding=consistent))
            for mode in ("max", "avg")}  # fmt: skip
    return {"conv": (lambda x, t: conv(x, in_spatial_dim=t)), **pool, "module": conv}


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("longest", [7, 8])
def test_a_3_frame_sequence_gives_the_same_outputs_alone_and_beside_a_longer_one(backend, longest, stride):
    x = np.random.default_rng(longest * stride).normal(size=(2, longest, 4)).astype("float32")
    x[1, 3:] = 50.0  # after the end of the 3-frame sequence
    for size in (2, 3, 4, 5):
        layers = _layers(size, stride, consistent=True)
        filter_, bias = layers["module"].filter.numpy(), layers["module"].bias.numpy()
        left = (size - 1) // 2
        for name in ("conv", "max", "avg"):
            batched, lengths = _run(layers[name], x, [longest, 3])
            alone, alone_lengths = _run(layers[name], x[1:, :3], [3])
            assert list(lengths) == [-(-longest // stride), -(-3 // stride)] and list(alone_lengths) == [lengths[1]]
            np.testing.assert_allclose(batched[1, : lengths[1]], alone[0], rtol=1e-5, atol=1e-6, err_msg=name)
            for b, n in enumerate((longest, 3)):
                seq = x[b, :n].astype("float64")
                ref = numpy_conv(seq, filter_, bias, stride, left) if name == "conv" else \
                    numpy_pool(seq, name, size, stride, left)  # fmt: skip
                np.testing.assert_allclose(batched[b, : lengths[b]], ref, rtol=1e-5, atol=1e-5, err_msg=name)
            assert name == "conv" or not batched[1, lengths[1] :].any()  # pooling: 0 after the end


def test_the_old_padding_depends_on_the_padded_length_of_the_batch(backend):
    """``use_consistent_same_padding=False``: TensorFlow's ``"SAME"`` for the padded length ``T``, ``(K - 1 -
    (T - 1) % stride) // 2`` frames on the left, for every sequence (RETURNN before behavior version 24)."""
    x = np.random.default_rng(3).normal(size=(2, 8, 4)).astype("float32")
    differences = {}
    for longest, stride in ((8, 2), (7, 3)):
        for size in (3, 5):
            layers = _layers(size, stride, consistent=False)
            filter_, bias = layers["module"].filter.numpy(), layers["module"].bias.numpy()
            for name in ("conv", "max", "avg"):
                batched, lengths = _run(layers[name], x[:, :longest], [longest, 3])
                alone, _ = _run(layers[name], x[1:, :3], [3])
                for out, padded in ((batched[1, : lengths[1]], longest), (alone[0], 3)):
                    left = (size - 1 - (padded - 1) % stride) // 2
                    ref = numpy_conv(x[1, :3].astype("float64"), filter_, bias, stride, left) if name == "conv" \
                        else numpy_pool(x[1, :3].astype("float64"), name, size, stride, left)  # fmt: skip
                    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=f"{name} {padded}")
                differences[(longest, stride, size, name)] = np.abs(batched[1, : lengths[1]] - alone[0]).max()
    assert differences[(8, 2, 3, "conv")] > 0.1 and differences[(7, 3, 5, "conv")] > 0.1, differences
    assert differences[(8, 2, 3, "max")] > 0.1 and differences[(8, 2, 3, "avg")] > 0.1, differences


def test_same_padding_with_stride_1_is_unchanged_and_keeps_the_spatial_dim(backend):
    batch, time = padded_dims([5, 2])
    x = rf.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32"),
                             dims=[batch, time, IN], feature_dim=IN)  # fmt: skip
    for consistent in (True, False):
        conv = rf.Conv1d(IN, OUT, 4, padding="same", use_consistent_same_padding=consistent)
        assert conv(x, in_spatial_dim=time)[1] is time
        assert rf.pool1d(x, mode="max", pool_size=3, strides=1, padding="same", in_spatial_dim=time)[1] is time
    with pytest.raises(TypeError, match="Conv1d: use_consistent_same_padding must be a bool"):
        rf.Conv1d(IN, OUT, 3, padding="same", use_consistent_same_padding="yes")
