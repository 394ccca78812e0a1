"""The rf array functions inside ``tf.function`` with an unknown time length, and under XLA
(``jit_compile=True``), give the eager values (masked_select and concat along dynamic dims have data-dependent
shapes: ``tf.function`` only)."""

from __future__ import annotations

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from tests._nn_helpers import restore_global_state  # noqa: F401 (an autouse fixture)

tf = pytest.importorskip("tensorflow")


def _program(raw_x, raw_lens, data_dependent: bool) -> dict:
    batch, feat = Dim(3, name="batch"), Dim(2, name="feat")
    time = Dim(rf.convert_to_tensor(raw_lens, dims=[batch]), name="time")
    x = rf.convert_to_tensor(raw_x, dims=[batch, time, feat])
    outs = {
        "pad": rf.pad(x, axes=[time], padding=[(1, 2)], value=0.5)[0],
        "replicate": rf.pad(x, axes=[time], padding=[(1, 1)], mode="replicate")[0],
        "reverse": rf.reverse_sequence(x, axis=time), "cumsum": rf.cumsum(x, spatial_dim=time),
        "top_k": rf.top_k(x, axis=time, k=1)[0], "slice": rf.slice(x, axis=time, start=1)[0],
        "shift": rf.shift_right(x, axis=time, pad_value=0.0), "matmul": rf.matmul(x, x, reduce=time),
        "gather": rf.gather(x, indices=0, axis=time), "search": rf.search_sorted(rf.cumsum(rf.abs(x), spatial_dim=time),
                                                                                 x, axis=time),
    }  # fmt: skip
    if data_dependent:
        outs["masked_select"] = rf.masked_select(x, mask=x > 0.0, dims=[time])[0]
        outs["concat"] = rf.concat((x, time), (x, time))[0]
    return {k: v.raw_tensor for k, v in outs.items()}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_array_functions_in_tf_function_equal_eager(restore_backend, jit_compile):
    rf.select_backend("tensorflow")
    x = tf.constant(np.random.default_rng(0).standard_normal((3, 4, 2)).astype("float32"))
    lens = tf.constant(np.array([4, 1, 3], "int32"))
    expected = _program(x, lens, not jit_compile)
    spec = [tf.TensorSpec([3, None, 2], tf.float32), tf.TensorSpec([3], tf.int32)]
    compiled = tf.function(lambda a, n: _program(a, n, not jit_compile), input_signature=spec,
                           jit_compile=jit_compile)  # fmt: skip
    got = compiled(x, lens)
    assert sorted(got) == sorted(expected)
    for name, value in got.items():
        np.testing.assert_allclose(value.numpy(), expected[name].numpy(), rtol=1e-6, err_msg=name)
