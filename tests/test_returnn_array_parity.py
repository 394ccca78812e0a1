"""The rf array functions give RETURNN's numbers (``returnn.frontend`` on its torch backend, run in a subprocess by
``_returnn_array_reference.py``) on a padded batch, on each of our backends: pad, shift_right, reverse_sequence,
cumsum, slice, top_k, gather, masked_select, concat along dynamic dims, search_sorted, matmul and elementwise maths.
Where RETURNN leaves padding frames undefined (cumsum sums the padding there), only frames inside the sequences are
compared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state, time_mask  # noqa: F401 (an autouse fixture)

pytest.importorskip("returnn")
LENS = np.array([4, 2, 3], "int32")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs, and RETURNN's results on them."""
    rng = np.random.default_rng(1)
    inputs = {
        "x": rng.standard_normal((3, 4, 2)).astype("float32"), "lens": LENS, "keep": rng.random((3, 4)) < 0.6,
        "starts": np.array([1, 0, 2], "int32"), "boundaries": np.array([0.0, 1.0, 1.0, 2.5], "float32"),
        "queries": rng.uniform(-1, 3, (3, 5)).astype("float32"),
    }  # fmt: skip
    folder = tmp_path_factory.mktemp("returnn_array")
    np.savez(folder / "in.npz", **inputs)
    script = Path(__file__).with_name("_returnn_array_reference.py")
    subprocess.run([sys.executable, str(script), str(folder / "in.npz"), str(folder / "out.npz")], check=True,
                   timeout=300)  # fmt: skip
    return inputs, dict(np.load(folder / "out.npz"))


def _dims(inputs: dict) -> tuple[Dim, Dim, Dim, rf.Tensor]:
    batch, feat = Dim(3, name="batch"), Dim(2, name="feat")
    time = Dim(rf.convert_to_tensor(inputs["lens"], dims=[batch]), name="time")
    return batch, time, feat, rf.convert_to_tensor(inputs["x"], dims=[batch, time, feat], feature_dim=feat)


def test_sequence_functions_equal_returnn(backend, case):
    inputs, ref = case
    batch, time, feat, x = _dims(inputs)
    padded, (pt,) = rf.pad(x, axes=[time], padding=[(2, 1)], value=0.5)
    np.testing.assert_array_equal(pt.dyn_size_ext.numpy(), ref["pad_sizes"])
    np.testing.assert_allclose(padded.copy_transpose([batch, pt, feat]).numpy(), ref["pad"], rtol=1e-6)
    shifted = rf.shift_right(x, axis=time, pad_value=-1.0, amount=2)
    np.testing.assert_allclose(shifted.numpy(), ref["shift_right"], rtol=1e-6)
    np.testing.assert_allclose(rf.reverse_sequence(x, axis=time).numpy(), ref["reverse"], rtol=1e-6)
    valid = time_mask(LENS, 4)[..., None]
    np.testing.assert_allclose(np.where(valid, rf.cumsum(x, spatial_dim=time).numpy(), 0),
                               np.where(valid, ref["cumsum"], 0), rtol=1e-6)  # fmt: skip
    sliced, st = rf.slice(x, axis=time, start=1)
    np.testing.assert_array_equal(st.dyn_size_ext.numpy(), ref["slice_sizes"])
    np.testing.assert_allclose(sliced.numpy(), ref["slice"], rtol=1e-6)
    two = Dim(2, name="two")
    starts = rf.convert_to_tensor(inputs["starts"], dims=[batch])
    tensor_slice = rf.slice(x, axis=time, start=starts, size=two)[0]
    np.testing.assert_allclose(tensor_slice.copy_transpose([batch, two, feat]).numpy(), ref["slice_tensor"])


def test_indexing_functions_equal_returnn(backend, case):
    inputs, ref = case
    batch, time, feat, x = _dims(inputs)
    values, indices, k_dim = rf.top_k(x, axis=time, k=2)
    np.testing.assert_allclose(values.copy_transpose([batch, feat, k_dim]).numpy(), ref["top_k_values"])
    np.testing.assert_array_equal(indices.copy_transpose([batch, feat, k_dim]).numpy(), ref["top_k_indices"])
    n = Dim(3, name="n")
    idx = rf.convert_to_tensor(np.array([-1, 1, 7]), dims=[n])
    gathered = rf.gather(x, indices=idx, axis=time, clip_to_valid=True)
    np.testing.assert_allclose(gathered.copy_transpose([batch, n, feat]).numpy(), ref["gather_clip"])
    kept, kd = rf.masked_select(x, mask=rf.convert_to_tensor(inputs["keep"], dims=[batch, time]), dims=[time])
    np.testing.assert_array_equal(kd.dyn_size_ext.numpy(), ref["masked_select_sizes"])
    np.testing.assert_allclose(kept.copy_transpose([batch, kd, feat]).numpy(), ref["masked_select"])
    joined, jd = rf.concat((x, time), (x * 2.0, time))
    np.testing.assert_array_equal(jd.dyn_size_ext.numpy(), ref["concat_sizes"])
    np.testing.assert_allclose(joined.copy_transpose([batch, jd, feat]).numpy(), ref["concat"], rtol=1e-6)


def test_maths_functions_equal_returnn(backend, case):
    inputs, ref = case
    b, q, k = Dim(3, name="b"), Dim(5, name="q"), Dim(4, name="k")
    queries = rf.convert_to_tensor(inputs["queries"], dims=[b, q])
    boundaries = rf.convert_to_tensor(inputs["boundaries"], dims=[k])
    np.testing.assert_array_equal(rf.search_sorted(boundaries, queries, axis=k, side="right").numpy(),
                                  ref["search_sorted"])  # fmt: skip
    t, f = Dim(4, name="t_static"), Dim(2, name="feat")
    x = rf.convert_to_tensor(inputs["x"], dims=[b, t, f])
    np.testing.assert_allclose(rf.matmul(x, x, reduce=t).numpy(), ref["matmul"], rtol=1e-5)
    np.testing.assert_allclose(rf.log_add_exp(x, x * 0.5 - 1.0).numpy(), ref["log_add_exp"], rtol=1e-6)
    np.testing.assert_allclose(rf.squared_difference(x, 0.25).numpy(), ref["squared_difference"], rtol=1e-6)
    np.testing.assert_allclose(rf.clip_by_value(x, -0.5, 0.5).numpy(), ref["clip_by_value"])
