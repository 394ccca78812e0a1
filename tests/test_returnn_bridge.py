"""``from_returnn``/``to_returnn`` in this process, on RETURNN Tensors holding torch tensors.

Only RETURNN's Tensor and Dim classes are used here (never ``select_backend_*``, which would switch an imported
TensorFlow to graph mode; a fixture checks that it stays eager). RETURNN accepts TensorFlow tensors only in graph
mode, so the TensorFlow side runs in a subprocess: ``test_returnn_bridge_values.py`` (round trips, shared raw
tensors and dim pairs, values) and here only the error for eager TensorFlow tensors.
"""

from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import returnn_bridge

torch = pytest.importorskip("torch")
rt = pytest.importorskip("returnn.tensor")


@pytest.fixture(autouse=True)
def _isolated():
    """Keep both batch dims as they were, and check that RETURNN did not switch TensorFlow to graph mode."""
    ours, theirs = rf.batch_dim.dyn_size_ext, rt.batch_dim.dyn_size_ext
    graph_mode_before = "returnn.tf.compat" in sys.modules
    yield
    rf.batch_dim.dyn_size_ext, rt.batch_dim.dyn_size_ext = ours, theirs
    if not graph_mode_before:
        assert "returnn.tf.compat" not in sys.modules, "RETURNN switched TensorFlow to graph mode"
        if "tensorflow" in sys.modules:
            assert sys.modules["tensorflow"].executing_eagerly()


def _sizes(values, dims=()) -> rt.Tensor:
    raw = torch.tensor(values, dtype=torch.int32)
    return rt.Tensor("sizes", dims=list(dims), dtype="int32", raw_tensor=raw)


def _batch(lengths) -> tuple[rt.Dim, np.ndarray]:
    """A RETURNN time dim with sizes over RETURNN's batch_dim, as RETURNN's engine sets them; and its mask."""
    rt.batch_dim.dyn_size_ext = _sizes(len(lengths))
    time = rt.Dim(_sizes(lengths, [rt.batch_dim]), name="time")
    return time, np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]


def test_import_returnn_ls_does_not_import_returnn():
    code = "import sys, returnn_ls; sys.exit(any(m.split('.')[0] == 'returnn' for m in sys.modules))"
    from _returnn_bridge_helpers import run_python

    run_python(["-c", code])


def test_tensor_round_trip_shares_the_raw_tensor_and_keeps_dims_and_dtypes():
    time, _ = _batch([3, 2])
    vocab = rt.Dim(4, name="vocab")
    for dtype in ("float32", "float64", "int32", "int64", "bool"):
        raw = torch.zeros(2, 3, 4, dtype=getattr(torch, dtype))
        x = rt.Tensor("x", dims=[rt.batch_dim, time, vocab], dtype=dtype, raw_tensor=raw, feature_dim=vocab)
        ours = rf.from_returnn(x)
        back = rf.to_returnn(ours)
        assert ours.raw_tensor is raw and back.raw_tensor is raw
        assert ours.dtype == back.dtype == dtype
        assert ours.dims == (rf.batch_dim, rf.from_returnn(time), rf.from_returnn(vocab))
        assert back.dims == x.dims and all(a is b for a, b in zip(back.dims, x.dims))
        assert ours.feature_dim is rf.from_returnn(vocab) and back.feature_dim is vocab


def test_sparse_dim_is_carried_over_both_ways():
    vocab = rt.Dim(5, name="vocab")
    y = rt.Tensor("y", dims=[rt.batch_dim], dtype="int64", raw_tensor=torch.tensor([1, 4]), sparse_dim=vocab)
    ours = rf.from_returnn(y)
    assert ours.sparse_dim is rf.from_returnn(vocab) and ours.feature_dim is None
    assert rf.to_returnn(ours).sparse_dim is vocab


def test_dims_are_paired_by_identity_both_ways():
    static, dynamic = rt.Dim(7, name="static"), rt.Dim(None, name="dynamic")
    for dim in (static, dynamic):
        assert rf.from_returnn(dim) is rf.from_returnn(dim)
        assert rf.to_returnn(rf.from_returnn(dim)) is dim
    assert rf.from_returnn(static).dimension == 7 and rf.from_returnn(dynamic).dimension is None
    assert rf.from_returnn(rt.Dim(7, name="static")) is not rf.from_returnn(static)  # equal size, other dim
    ours = rf.Dim(3, name="ours")
    assert rf.to_returnn(ours) is rf.to_returnn(ours) and rf.to_returnn(ours).dimension == 3
    assert rf.from_returnn(rf.to_returnn(ours)) is ours
    assert rf.from_returnn(rt.batch_dim) is rf.batch_dim and rf.to_returnn(rf.batch_dim) is rt.batch_dim


def test_pairs_do_not_keep_returnn_dims_alive():
    before = len(returnn_bridge._PAIRS._by_returnn)
    theirs, ours = rt.Dim(5, name="theirs"), rf.Dim(6, name="ours")
    kept, made = rf.from_returnn(theirs), rf.to_returnn(ours)
    refs = [weakref.ref(theirs), weakref.ref(made)]
    assert len(returnn_bridge._PAIRS._by_returnn) == before + 2
    del theirs, made
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert len(returnn_bridge._PAIRS._by_returnn) == len(returnn_bridge._PAIRS._by_ours) == before
    assert kept.dimension == 5 and rf.from_returnn(rf.to_returnn(ours)) is ours  # a new pair when asked again


def test_dynamic_sizes_are_re_read_for_every_batch():
    """RETURNN's engine keeps one Dim per extern_data dim and gives it new sizes per batch (reset_eager, then
    a new raw tensor in the same dyn_size_ext Tensor)."""
    time, _ = _batch([3, 2])
    ours = rf.from_returnn(time)
    assert ours.dyn_size_ext.raw_tensor is time.dyn_size_ext.raw_tensor
    assert ours.dyn_size_ext.dims == (rf.batch_dim,) and ours.is_padded()
    assert rf.batch_dim.dyn_size_ext.numpy() == 2
    time.reset_eager()
    assert rf.from_returnn(time).dyn_size_ext is None
    rt.batch_dim.dyn_size_ext = _sizes(3)
    time.dyn_size_ext.raw_tensor = torch.tensor([1, 4, 2], dtype=torch.int32)
    assert rf.from_returnn(time) is ours
    np.testing.assert_array_equal(ours.dyn_size_ext.numpy(), [1, 4, 2])
    np.testing.assert_array_equal(rf.sequence_mask(ours).numpy(), np.arange(4)[None, :] < [[1], [4], [2]])
    assert rf.batch_dim.dyn_size_ext.numpy() == 3
    rt.batch_dim.dyn_size_ext = None
    assert rf.to_returnn(rf.batch_dim) is rt.batch_dim and rf.batch_dim.dyn_size_ext.numpy() == 3  # untouched
    assert rt.batch_dim.dyn_size_ext is None
    assert rf.from_returnn(rt.batch_dim).dyn_size_ext is None  # RETURNN does not know it: nor do we


def test_sizes_of_our_dims_go_to_returnn_and_follow_changes():
    lengths = rf.convert_to_tensor(torch.tensor([2, 5], dtype=torch.int32), dims=[rf.Dim(2, name="b")])
    ours = rf.Dim(lengths, name="frames")
    theirs = rf.to_returnn(ours)
    assert theirs.dyn_size_ext.raw_tensor is lengths.raw_tensor and theirs.get_dim_value() == 5
    assert theirs.dyn_size_ext.dims == (rf.to_returnn(lengths.dims[0]),)
    ours.dyn_size_ext = rf.convert_to_tensor(torch.tensor([7, 1], dtype=torch.int32), dims=lengths.dims)
    assert rf.to_returnn(ours) is theirs and theirs.get_dim_value() == 7  # RETURNN's cached max was reset
    assert rf.from_returnn(theirs) is ours


def test_fused_loss_on_returnn_tensors_has_the_smoothed_ce_gradient():
    """Gradients flow from RETURNN's loss tensor through ours into RETURNN's input: ``softmax - q`` with ``q``
    RETURNN's smoothed target (``1 - a`` on the label, ``a/(K-1)`` elsewhere); 0 on padding frames."""
    time, mask = _batch([3, 1])
    vocab = rt.Dim(4, name="vocab")
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.standard_normal((2, 3, 4)), dtype=torch.float32, requires_grad=True)
    labels = rng.integers(0, 4, size=(2, 3))
    logits = rt.Tensor("logits", dims=[rt.batch_dim, time, vocab], dtype="float32", raw_tensor=x, feature_dim=vocab)
    targets = rt.Tensor("t", dims=[rt.batch_dim, time], dtype="int64", raw_tensor=torch.tensor(labels))
    targets.sparse_dim = vocab
    loss = rf.label_smoothed_cross_entropy(
        logits=rf.from_returnn(logits), targets=rf.from_returnn(targets), axis=rf.from_returnn(vocab), smoothing=0.2
    )
    returnn_loss = rf.to_returnn(loss)
    assert returnn_loss.dims == (rt.batch_dim, time) and returnn_loss.dtype == "float32"
    returnn_loss.raw_tensor.sum().backward()
    softmax = torch.softmax(x, -1).detach().numpy()
    q = np.where(np.eye(4, dtype=bool)[labels], 0.8, 0.2 / 3)
    np.testing.assert_allclose(x.grad.numpy(), np.where(mask[..., None], softmax - q, 0.0), atol=1e-6)
    expected = -(q * np.log(softmax)).sum(-1) * mask
    np.testing.assert_allclose(returnn_loss.raw_tensor.detach().numpy(), expected, rtol=1e-6)


def test_from_returnn_rejects_what_it_cannot_share():
    with pytest.raises(TypeError, match=r"from_returnn: x must be a RETURNN Tensor or Dim .* got numpy.ndarray"):
        rf.from_returnn(np.zeros(3))
    with pytest.raises(TypeError, match="use returnn_ls.to_returnn"):
        rf.from_returnn(rf.Dim(2))
    vocab = rt.Dim(3, name="vocab")
    with pytest.raises(ValueError, match="RETURNN Tensor 'template' has no raw tensor"):
        rf.from_returnn(rt.Tensor("template", dims=[vocab], dtype="float32"))
    numpy_backed = rt.Tensor("np", dims=[vocab], dtype="float32", raw_tensor=np.zeros(3, "float32"))
    with pytest.raises(TypeError, match="raw tensor of RETURNN Tensor 'np' is a numpy.ndarray; .* torch.Tensor"):
        rf.from_returnn(numpy_backed)
    square = rt.Tensor("square", dims=[vocab, vocab], dtype="float32", raw_tensor=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="RETURNN Tensor 'square' has a dim more than once"):
        rf.from_returnn(square)


def test_to_returnn_rejects_what_is_not_ours():
    with pytest.raises(TypeError, match=r"to_returnn: x must be a returnn_ls Tensor or Dim, got builtins.int"):
        rf.to_returnn(3)
    with pytest.raises(TypeError, match="use returnn_ls.from_returnn"):
        rf.to_returnn(rt.Dim(2, name="theirs"))
    with pytest.raises(TypeError, match="to_returnn: name must be a str"):
        rf.to_returnn(rf.Dim(2), name=1)


def test_to_returnn_refuses_eager_tensorflow_tensors():
    """RETURNN would switch the whole process to graph mode; the error comes first (the fixture checks it)."""
    tf = pytest.importorskip("tensorflow")
    x = rf.convert_to_tensor(tf.zeros([2]), dims=[rf.Dim(2, name="d")])
    with pytest.raises(ValueError, match="to_returnn: RETURNN takes TensorFlow tensors only in graph mode"):
        rf.to_returnn(x)
    with pytest.raises(ValueError, match="only in graph mode"):
        rf.to_returnn(rf.Dim(rf.convert_to_tensor(tf.constant([2, 1]), dims=[rf.Dim(2)]), name="frames"))
