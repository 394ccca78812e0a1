"""Our losses on RETURNN Tensors (``from_returnn``/``to_returnn``) give RETURNN's own numbers, on both backends.

RETURNN runs in a subprocess (``_returnn_bridge_worker.py``): on its torch frontend, and on its low-level
TensorFlow frontend in graph mode (sizes of batch and time unknown to the graph, as in RETURNN), which RETURNN
switches on for the whole process. The worker writes ours beside RETURNN's; the comparisons are here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _returnn_bridge_helpers import run_python

SMOOTHING, BLANK = 0.1, 0  # as in the worker
TOL = {"rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, np.ndarray]:
    """The worker's arrays, ``<backend>/<case>/<quantity>``."""
    out = tmp_path_factory.mktemp("returnn_bridge") / "out.npz"
    run_python([str(Path(__file__).with_name("_returnn_bridge_worker.py")), str(out)])
    return dict(np.load(out))


def _case(results, backend, case: str) -> dict[str, np.ndarray]:
    prefix = f"{backend.name}/{case}/"
    values = {k[len(prefix) :]: v for k, v in results.items() if k.startswith(prefix)}
    assert values, f"the worker wrote nothing for {prefix}"
    return values


def test_bridge_shares_raw_tensors_and_pairs_dims_in_returnn(backend, results):
    facts = _case(results, backend, "facts")
    assert len(facts) == 10
    failed = [name for name, value in facts.items() if not bool(value)]
    assert not failed, f"on RETURNN's {backend.name} frontend: {failed}"


def test_fused_ce_on_returnn_tensors_equals_returnn_smoothed_ce(backend, results):
    case = _case(results, backend, "fused_ce")
    frames = results[f"{backend.name}/frame_mask"] > 0
    assert np.all(case["ref_loss"][frames] > 0.1) and np.all(case["ref_loss"][~frames] == 0)
    np.testing.assert_allclose(case["ours_loss"], case["ref_loss"], **TOL)
    np.testing.assert_allclose(case["ours_grad"], case["ref_grad"], **TOL)


@pytest.mark.parametrize("log_softmax_of", ["returnn", "ours"])
def test_log_prob_gradient_on_returnn_tensors_equals_returnn(backend, results, log_softmax_of):
    case = _case(results, backend, "log_prob_gradient" if log_softmax_of == "returnn" else "log_prob_gradient_fused")
    # forward: the identity, so RETURNN's plain CE; backward: RETURNN's CE against its smoothed target
    np.testing.assert_allclose(case["ours_loss"], case["plain_loss"], **TOL)
    np.testing.assert_allclose(case["ours_grad"], case["smoothed_ce_grad"], **TOL)
    assert np.abs(case["ours_grad"] - _case(results, backend, "fused_ce")["ours_grad"]).max() < 1e-6
    if log_softmax_of == "returnn":  # and RETURNN's own label_smoothed_log_prob_gradient
        np.testing.assert_allclose(case["ours_loss"], case["returnn_loss"], **TOL)
        np.testing.assert_allclose(case["ours_grad"], case["returnn_grad"], **TOL)


def test_ctc_loss_on_returnn_tensors_equals_returnn_ctc(backend, results):
    case = _case(results, backend, "ctc")
    assert np.all(np.isfinite(case["ref_loss"])) and np.all(case["ref_loss"] > 0)
    np.testing.assert_allclose(case["ours_loss"], case["ref_loss"], **TOL)
    np.testing.assert_allclose(case["ours_grad"], case["ref_grad"], **TOL)


def test_smoothed_ctc_on_returnn_tensors_smooths_returnns_ctc_posterior(backend, results):
    """Gradient ``softmax - q'``: ``q`` is RETURNN's CTC posterior (``softmax - RETURNN's gradient``) and ``q'``
    smooths its non-blank part as RETURNN's dense ``label_smoothing`` does, scaled to the non-blank mass ``S``:
    ``S * label_smoothing(q / S)`` over the ``K - 1`` non-blank labels; the blank keeps ``q``."""
    plain, case = _case(results, backend, "ctc"), _case(results, backend, "ctc_smoothed")
    softmax, frames = case["softmax"], results[f"{backend.name}/frame_mask"][..., None] > 0
    posterior = softmax - plain["ref_grad"]
    non_blank = np.arange(softmax.shape[-1]) != BLANK
    mass = (posterior * non_blank).sum(-1, keepdims=True)
    floor = SMOOTHING / (non_blank.sum() - 1)
    smoothed = np.where(non_blank, (1.0 - non_blank.sum() * floor) * posterior + floor * mass, posterior)
    expected = np.where(frames, softmax - smoothed, 0.0)
    np.testing.assert_allclose(case["ours_loss"], plain["ref_loss"], **TOL)  # the value is plain CTC
    np.testing.assert_allclose(case["ours_grad"], expected, **TOL)
    assert np.abs(case["ours_grad"] - plain["ref_grad"]).max() > 1e-2  # the smoothing did something
