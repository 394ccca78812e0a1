"""The rf array functions create nothing on the framework's default device: every tensor they make takes the device
of their inputs (or ``device=``), forward and backward. The two checks of ``tests/test_devices.py``: the inputs on
the CPU while ``torch.device("meta")`` is the default device (a tensor made without the inputs' device lands on
"meta" and the call fails), and a guard on torch's factory functions that fails on any call from this library
without ``device=``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import returnn_ls as rf
from returnn_ls import Dim
from returnn_ls.ops import valid_frames
from tests.test_devices import factories_need_a_device  # noqa: F401 (a fixture)

torch = pytest.importorskip("torch")

LENS = [4, 1, 3]


def _inputs() -> dict:
    """:return: CPU tensors (created with an explicit device) and the dims over them"""
    rng = np.random.default_rng(0)
    batch, feat = Dim(3, name="batch"), Dim(2, name="feat")
    time = Dim(rf.convert_to_tensor(torch.tensor(LENS, dtype=torch.int32, device="cpu"), dims=[batch]), name="time")
    raw = torch.tensor(rng.standard_normal((3, 5, 2)), dtype=torch.float32, device="cpu", requires_grad=True)
    keep = torch.tensor(rng.random((3, 5)) < 0.6, device="cpu")
    return {"dims": (batch, time, feat), "raw": raw, "x": rf.convert_to_tensor(raw, dims=[batch, time, feat]),
            "keep": rf.convert_to_tensor(keep, dims=[batch, time])}  # fmt: skip


def _shapes(x: dict) -> list:
    batch, time, feat = x["dims"]
    merged, one = Dim(6, name="merged"), Dim(1, name="one")
    padded, _ = rf.pad(x["x"], axes=[time], padding=[(1, 2)], value=0.5)
    reflected, _ = rf.pad(x["x"], axes=[time], padding=[(1, 1)], mode="reflect")
    start = rf.convert_to_tensor(torch.tensor([1, 0, 2], device="cpu"), dims=[batch])
    return [padded, reflected, rf.slice(x["x"], axis=time, start=1)[0],
            rf.slice(x["x"], axis=time, start=start, size=Dim(2, name="two"))[0],
            rf.shift_right(x["x"], axis=time, pad_value=0.0), rf.shift_left(x["x"], axis=time, pad_value=1.0),
            rf.reverse_sequence(x["x"], axis=time), rf.stack([x["x"], x["x"]])[0],
            rf.reshape(x["x"], in_dims=[batch, feat], out_dims=[merged]),
            rf.squeeze(rf.expand_dim(x["x"], one), one), rf.expand_dim(x["x"], Dim(3, name="beam")),
            rf.concat((x["x"], time), (x["x"], time))[0], rf.zeros_like(x["x"]) + rf.ones_like(x["x"])]  # fmt: skip


def _indexing(x: dict) -> list:
    batch, time, feat = x["dims"]
    values, indices, _ = rf.top_k(x["x"], axis=time, k=1)
    labels = rf.convert_to_tensor(torch.tensor([[3, 0], [0, 0], [2, 1]], device="cpu"), dims=[batch, feat],
                                  sparse_dim=time)  # fmt: skip
    kept, kept_dim = rf.masked_select(x["x"], mask=x["keep"], dims=[time])
    packed, pack_dim = rf.masked_select(x["x"], mask=x["keep"], dims=[batch, time])
    boundaries = rf.cumsum(rf.abs(x["x"]), spatial_dim=time)
    return [values, rf.cast(indices, "float32"), rf.gather(x["x"], indices=labels, clip_to_valid=True), kept,
            rf.masked_scatter(kept, mask=x["keep"], dims=[time], in_dim=kept_dim),
            rf.masked_scatter(packed, mask=x["keep"], dims=[batch, time], in_dim=pack_dim),
            rf.cast(rf.search_sorted(boundaries, x["x"], axis=time), "float32")]  # fmt: skip


def _maths(x: dict) -> list:
    batch, time, feat = x["dims"]
    rf.set_random_seed(1)
    noise = rf.random_normal([batch, feat], stddev=rf.reduce_max(rf.abs(x["x"]), axis=[batch, time]))
    return [rf.cumsum(x["x"], spatial_dim=time), rf.clip_by_value(x["x"], -0.5, 0.5),
            rf.squared_difference(x["x"], 0.5), rf.log_add_exp(x["x"], rf.stop_gradient(x["x"])),
            rf.matmul(x["x"], x["x"], reduce=time), noise, rf.random_uniform([batch], device="cpu"),
            rf.zeros([batch, time], device="cpu"), rf.full(dims=[feat], fill_value=2.0, device="cpu")]  # fmt: skip


CASES: dict[str, Callable[[dict], list]] = {"shapes": _shapes, "indexing": _indexing, "maths": _maths}


def _valid_only(o: rf.Tensor) -> rf.Tensor:
    """:return: ``o`` with its padding frames 0 (what they hold is no business of the test)"""
    mask = valid_frames(o)
    return o if mask is None else rf.where(mask, o, 0.0)


def _run(case: str) -> list[np.ndarray]:
    x = _inputs()
    outs = CASES[case](x)
    total = sum(_valid_only(o).raw_tensor.sum() for o in outs)
    (grad,) = torch.autograd.grad(total, [x["raw"]])
    result = [_valid_only(o).raw_tensor for o in outs] + [grad]
    for r in result:
        assert r.device.type == "cpu", (case, r.device)
    return [np.nan_to_num(r.detach().numpy()) for r in result]


@pytest.mark.parametrize("case", CASES)
def test_every_array_function_takes_the_device_of_its_inputs(restore_backend, factories_need_a_device, case):  # noqa: F811
    rf.select_backend("torch")
    expected = _run(case)
    with torch.device("meta"):  # a tensor created without the inputs' device would land here and fail
        got = _run(case)
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=f"output {i}")
