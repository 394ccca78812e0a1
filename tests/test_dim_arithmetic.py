"""Dim arithmetic (``returnn_ls.dim_math``): static values, dynamic sizes against numpy, one Dim object per
expression, masks and CTC with derived dims, and the sizes against RETURNN's own dim arithmetic."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim

LENS, LENS2 = np.array([3, 1, 4, 0], "int32"), np.array([2, 5, 0, 3], "int32")

#: expressions over ``t`` (sizes LENS), ``t2`` (sizes LENS2) and ``s`` (static 7), with their sizes in numpy
DYNAMIC_CASES = {
    "t + 1": LENS + 1,
    "1 + t": LENS + 1,
    "t - 1": np.maximum(LENS - 1, 0),
    "t * 2": LENS * 2,
    "2 * t": LENS * 2,
    "t // 2": LENS // 2,
    "t + t2": LENS + LENS2,
    "t * t2": LENS * LENS2,
    "t - t2": np.maximum(LENS - LENS2, 0),
    "t + s": LENS + 7,
    "s - t": 7 - LENS,
    "t // s": LENS // 7,
    "(t + 1) // 2": (LENS + 1) // 2,
    "t.ceildiv_right(2)": -(-LENS // 2),
    "t.sub_left(1)": np.maximum(LENS - 1, 0),
    "(t * 3).div_left(3)": LENS,
}


def _dims(lens=LENS, lens2=LENS2):
    batch = Dim(len(lens), name="batch")
    t = Dim(rf.convert_to_tensor(lens, dims=[batch]), name="time")
    t2 = Dim(rf.convert_to_tensor(lens2, dims=[batch]), name="t2")
    return batch, t, t2, Dim(7, name="vocab")


@pytest.mark.parametrize(
    "expr, dimension, name",
    [("s + 1", 8, "vocab+1"), ("1 + s", 8, "1+vocab"), ("s - 1", 6, "vocab-1"), ("s * 3", 21, "vocab*3"),
     ("3 * s", 21, "3*vocab"), ("s // 2", 3, "vocab//2"), ("s + v", 12, "vocab+v"), ("s * v", 35, "vocab*v"),
     ("s - v", 2, "vocab-v"), ("s // v", 1, "vocab//v"), ("s.ceildiv_right(2)", 4, "ceil(vocab/2)"),
     ("(s + 1) * 2", 16, "(vocab+1)*2"), ("s / 7", 1, "vocab/7")],
)  # fmt: skip
def test_static_arithmetic_gives_static_dims(expr, dimension, name):
    out = eval(expr, {}, {"s": Dim(7, name="vocab"), "v": Dim(5, name="v")})
    assert out.dimension == dimension and out.is_static() and out.dyn_size_ext is None
    assert out.name == name and repr(out) == f"Dim({name!r}, {dimension})"
    assert out.derived_from_op is not None


def test_bad_operands_and_negative_static_results_raise():
    s, t = Dim(7, name="vocab"), Dim(None, name="time")
    with pytest.raises(TypeError, match="must be an int or a Dim, got float"):
        _ = s + 1.5
    with pytest.raises(TypeError, match="must be an int or a Dim, got bool"):
        _ = t * True
    with pytest.raises(ValueError, match="divisor must be an int >= 1, got 0"):
        _ = t // 0
    with pytest.raises(ValueError, match="factor must be an int >= 0, got -2"):
        _ = t * -2
    with pytest.raises(ValueError, match=r"vocab-8 would have the dimension -1"):
        _ = s - 8


@pytest.mark.parametrize("expr", list(DYNAMIC_CASES))
def test_dynamic_sizes_equal_numpy(backend, expr):
    batch, t, t2, s = _dims()
    out = eval(expr, {}, {"t": t, "t2": t2, "s": s})
    assert out.dimension is None and out.is_padded()
    sizes = out.dyn_size_ext
    assert sizes.dims == (batch,) and sizes.dtype == "int32" and sizes.backend_name == backend.name
    np.testing.assert_array_equal(sizes.numpy(), DYNAMIC_CASES[expr])
    np.testing.assert_array_equal(out.get_size_tensor().numpy(), DYNAMIC_CASES[expr])
    assert out.get_dim_value_tensor().numpy() == DYNAMIC_CASES[expr].max()


def test_sizes_over_different_dims_broadcast(backend):
    batch, beam = Dim(2, name="batch"), Dim(3, name="beam")
    a = Dim(rf.convert_to_tensor(np.array([1, 4], "int32"), dims=[batch]), name="a")
    b = Dim(rf.convert_to_tensor(np.array([2, 0, 5], "int32"), dims=[beam]), name="b")
    sizes = (a + b).dyn_size_ext
    assert sizes.dims == (batch, beam)
    np.testing.assert_array_equal(sizes.numpy(), np.array([1, 4])[:, None] + np.array([2, 0, 5]))


def test_equal_expressions_are_the_same_dim():
    t, t2, s = Dim(None, name="time"), Dim(None, name="t2"), Dim(7, name="vocab")
    assert (t + 1) is (t + 1) and (s + 1) is (s + 1) and (t + t2) is (t + t2) and (t // 2) is (t // 2)
    assert (t + 1) is not (1 + t) and (t + t2) is not (t2 + t)  # the order counts, as in RETURNN
    assert (t + 1) + 1 is t + 2 and (t - 1) + 1 is t and (t + 1) - 1 is t and t + 0 is t and t * 1 is t
    assert (t + t2) - t2 is t and (t + t2).sub_left(t) is t2 and (t - t2) + t2 is t
    assert (t * 2) // 2 is t and (t * 2) / 2 is t and (2 * t).div_left(2) is t
    assert (t * 2) * 3 is t * 6 and 3 * (2 * t) is 6 * t and (t // 2) // 3 is t // 6
    other = Dim(7, name="vocab")
    assert (other + 1) is not (s + 1) and (other + 1) != (s + 1)  # another dim of the same size: another axis
    assert hash(t + 1) == hash(t + 1) and {t + 1: 0}[t + 1] == 0


def test_derived_dims_are_freed_with_their_operands():
    t = Dim(None, name="time")
    gc.collect()
    for i in range(50):
        _ = t + Dim(i, name=f"d{i}")  # e.g. a new dim per step: the cache must not keep them all
    gc.collect()
    assert len(t._math_cache) <= 1
    kept = t + 1
    gc.collect()
    assert t + 1 is kept


def test_sizes_set_later_are_computed_on_access_and_follow_new_sizes(backend):
    batch = Dim(3, name="batch")
    time = Dim(None, name="time")  # as in extern_data: the training loop sets the sizes per batch
    plus_one, halves = time + 1, (time + 1) // 2
    assert plus_one.dyn_size_ext is None and not plus_one.is_padded() and plus_one.need_masking()
    for lens in (np.array([2, 5, 3], "int32"), np.array([4, 1, 6], "int32")):
        time.dyn_size_ext = rf.convert_to_tensor(lens, dims=[batch])
        np.testing.assert_array_equal(plus_one.dyn_size_ext.numpy(), lens + 1)
        np.testing.assert_array_equal(halves.dyn_size_ext.numpy(), (lens + 1) // 2)
        assert plus_one.dyn_size_ext is plus_one.dyn_size_ext  # computed once per sizes
    assert time + 1 is plus_one


def test_sequence_mask_of_a_derived_dim(backend):
    batch, t, t2, _ = _dims()
    for dim, lens in ((t + 1, LENS + 1), (t + t2, LENS + LENS2), (t // 2, LENS // 2)):
        mask = rf.sequence_mask(dim)
        assert mask.dims == (batch, dim)
        np.testing.assert_array_equal(mask.numpy(), np.arange(lens.max())[None, :] < lens[:, None])
    x = rf.convert_to_tensor(np.ones((4, 6), "float32"), dims=[batch, t + 1])
    np.testing.assert_allclose(rf.reduce_sum(x, axis=t + 1).numpy(), LENS + 1)


def test_ctc_with_the_blank_from_target_dim_plus_one(backend, rng):
    """The CTC idiom: the model's output dim and the loss's class dim are both written ``target_dim + 1``."""
    batch, target_dim, in_dim = Dim(2, name="batch"), Dim(4, name="target"), Dim(3, name="in")
    time = Dim(rf.convert_to_tensor(np.array([6, 5], "int32"), dims=[batch]), name="time")
    labels = Dim(rf.convert_to_tensor(np.array([3, 2], "int32"), dims=[batch]), name="labels")
    rf.set_random_seed(1)
    model = rf.Linear(in_dim, target_dim + 1)
    x = rf.convert_to_tensor(rng.standard_normal((2, 6, 3)).astype("float32"), dims=[batch, time, in_dim])
    logits = model(x)
    wb_target_dim = target_dim + 1
    assert logits.feature_dim is wb_target_dim and wb_target_dim.dimension == 5
    targets = rf.convert_to_tensor(rng.integers(0, 4, size=(2, 3)), dims=[batch, labels], sparse_dim=target_dim)
    loss = rf.ctc_loss(logits=logits, targets=targets, input_spatial_dim=time, targets_spatial_dim=labels,
                       blank_index=wb_target_dim.dimension - 1)  # fmt: skip
    plain = Dim(5, name="plain")  # the same numbers over an unrelated dim of 5 classes, blank last
    reference = rf.ctc_loss(
        logits=rf.convert_to_tensor(logits.raw_tensor, dims=[batch, time, plain], feature_dim=plain),
        targets=targets, input_spatial_dim=time, targets_spatial_dim=labels, blank_index=4,
    )  # fmt: skip
    np.testing.assert_allclose(loss.numpy(), reference.numpy(), rtol=1e-6)
    assert np.isfinite(loss.numpy()).all()


def test_derived_sizes_inside_tf_function(restore_backend):
    tf = pytest.importorskip("tensorflow")
    rf.select_backend("tensorflow")
    batch, time = Dim(2, name="batch"), Dim(None, name="time")

    @tf.function
    def count(lens):
        time.dyn_size_ext = rf.Tensor(lens, (batch,))
        return rf.reduce_sum(rf.cast(rf.sequence_mask(time * 2 + 1), "int32"), axis=[batch, time * 2 + 1]).raw_tensor

    assert int(count(tf.constant([1, 3], tf.int32))) == 3 + 7
    assert int(count(tf.constant([4, 4], tf.int32))) == 9 + 9


PARITY_EXPRESSIONS = ["t + 1", "1 + t", "t - 1", "t * 2", "t // 2", "t + t2", "t - t2", "t * t2", "t + s",
                      "(t + 1) // 2", "t.ceildiv_right(3)", "(t - 1).ceildiv_right(2) * 2", "t - 5"]  # fmt: skip


@pytest.fixture(scope="module")
def returnn_sizes(tmp_path_factory) -> dict[str, np.ndarray]:
    """RETURNN's sizes of PARITY_EXPRESSIONS (``sizes{i}``) and the dimension of ``s + 1`` (``static``)."""
    pytest.importorskip("returnn")
    script = Path(__file__).with_name("_returnn_dim_reference.py")
    out = tmp_path_factory.mktemp("returnn_dims") / "out.npz"
    args = [json.dumps(PARITY_EXPRESSIONS), json.dumps(LENS.tolist()), json.dumps(LENS2.tolist()), str(out)]
    subprocess.run([sys.executable, str(script), *args], check=True, timeout=300)
    return dict(np.load(out))


def test_sizes_equal_returnns_dim_arithmetic(backend, returnn_sizes):
    reference = returnn_sizes
    batch, t, t2, s = _dims()
    for i, expr in enumerate(PARITY_EXPRESSIONS):
        sizes = eval(expr, {}, {"t": t, "t2": t2, "s": s}).dyn_size_ext.numpy()
        np.testing.assert_array_equal(sizes, reference[f"sizes{i}"], err_msg=expr)
    assert (s + 1).dimension == int(reference["static"])
