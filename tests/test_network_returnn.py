"""RETURNN is the reference for the semantics of its layers: the ``rec`` layer (forward and ``direction: -1``, TF's
LSTM cells with their forget bias), ``"from"`` lists, default ``"from"``, the layers' ``dropout`` (on the input,
one mask per feature shared over batch and time, off in evaluation) and the ``softmax`` layer's ``score`` and
``error`` (with and without ``label_smoothing``). RETURNN's TF network runs once, in a subprocess
(``_network_returnn_reference.py``), on the inputs and parameters the test gives it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _network_cases import RETURNN_CASES
from _network_helpers import build, frame_batch, frame_keys, numpy_of, random_params, set_params, tf_cell_variables

import returnn_ls as rf
from returnn_ls import _backend, batch_dim
from returnn_ls.training.extern_data import ExternData
from returnn_ls.training.network import Network
from returnn_ls.training.network_task import NetworkTask

NUM_INPUTS, NUM_CLASSES, LENGTHS = 5, 3, [6, 3, 4]
EXTERN = {"data": {"dim": NUM_INPUTS}, "classes": {"dim": NUM_CLASSES, "sparse": True}}
#: our LSTM layer -> RETURNN's variable scope of its TF cell
CELLS = {"fw": "fw/rec/lstm_cell", "bw": "bw/rec/basic_lstm_cell"}


def _params(case: str, seed: int) -> dict[str, np.ndarray]:
    """:return: random parameters of ``case``'s network by our parameter names (numpy: the same on both backends)"""
    previous = _backend._selected
    rf.select_backend("torch" if importlib.util.find_spec("torch") else "tensorflow")  # for names and shapes
    try:
        model, _ = build(RETURNN_CASES[case][0], EXTERN, frame_keys(NUM_INPUTS, NUM_CLASSES))
        return random_params(model, np.random.default_rng(seed))
    finally:
        _backend._selected = previous


def _returnn_variables(case: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {f"{case}/output/W": params["output.weight"], f"{case}/output/b": params["output.bias"]}
    for layer, scope in CELLS.items():
        if f"{layer}.ff_weight" in params:
            variables = tf_cell_variables(scope, *(params[f"{layer}.{n}"] for n in ("ff_weight", "rec_weight", "bias")))
            out.update({f"{case}/{name}": value for name, value in variables.items()})
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The batch, the parameters per case, and RETURNN's results."""
    pytest.importorskip("returnn")
    batch = frame_batch(np.random.default_rng(3), LENGTHS, NUM_INPUTS, NUM_CLASSES)
    params = {case: _params(case, seed) for seed, case in enumerate(RETURNN_CASES)}
    inputs = {"data": batch.data["data"], "classes": batch.data["classes"], "lengths": batch.lengths["data"],
              "num_classes": np.int32(NUM_CLASSES)}  # fmt: skip
    for case in RETURNN_CASES:
        inputs.update(_returnn_variables(case, params[case]))
    folder = tmp_path_factory.mktemp("returnn_network")
    np.savez(folder / "in.npz", **inputs)
    script = Path(__file__).with_name("_network_returnn_reference.py")
    proc = subprocess.run([sys.executable, str(script), str(folder / "in.npz"), str(folder / "out.npz")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return batch, params, dict(np.load(folder / "out.npz"))


def _run(case: str, batch, params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float, float]:
    """:return: our outputs of ``case`` (batch major, numpy), and the step's score and error per frame"""
    network, train_flag, fetch = RETURNN_CASES[case]
    extern = ExternData(EXTERN, data_keys=frame_keys(NUM_INPUTS, NUM_CLASSES))
    task = NetworkTask(Network(network, extern), None)
    model = task.model
    set_params(model, params)
    tensors = extern.tensors(batch)
    time = extern.entries["data"].time_dim
    ctx = rf.init_train_step_run_ctx(train_flag=train_flag)
    try:
        out = model(tensors)
        task.train_step(model=model, extern_data=tensors)
        score, error = ((ctx.losses[n].get_summed_loss() / ctx.losses[n].get_inv_norm_factor()).numpy()
                        for n in ("score", "error"))  # fmt: skip
    finally:
        rf.reset_run_ctx()
    values = {name: numpy_of(out.outputs[name], [batch_dim, time, out.outputs[name].feature_dim]) for name in fetch}
    return values, float(score), float(error)


def _valid(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[b, :n] for b, n in enumerate(LENGTHS)])


def test_lstm_layers_and_concatenated_from_equal_returnn(backend, reference):
    batch, params, returnn = reference
    ours, _, _ = _run("lstm", batch, params["lstm"])
    for layer in ("fw", "bw", "output"):
        np.testing.assert_allclose(_valid(ours[layer]), _valid(returnn[f"lstm/{layer}"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["lstm", "smoothed"])
def test_softmax_score_and_error_equal_returnn(backend, reference, case):
    batch, params, returnn = reference
    _, score, error = _run(case, batch, params[case])
    assert score == pytest.approx(float(returnn[f"{case}/score"]), rel=1e-5)
    assert error == pytest.approx(float(returnn[f"{case}/error"]), abs=1e-7)
    assert 0.0 < error < 1.0  # the case has right and wrong frames


def test_dropout_acts_on_the_layer_input_with_one_mask_per_feature(backend, reference):
    batch, params, returnn = reference
    ours, _, _ = _run("rec_dropout", batch, params["rec_dropout"])
    # all input features dropped: the LSTM's output on zeros (RETURNN's too), not a dropped output
    np.testing.assert_allclose(_valid(ours["fw"]), _valid(returnn["rec_dropout/fw"]), rtol=1e-5, atol=1e-6)
    assert np.abs(_valid(ours["fw"])).min() > 0
    data = _valid(batch.data["data"])
    for copy in (_valid(ours["bw"]), _valid(returnn["rec_dropout/bw"])):
        kept = copy != 0
        assert (kept == kept[:1]).all() and 0 < kept[0].sum() < NUM_INPUTS  # one mask per feature, some dropped
        np.testing.assert_allclose(copy[:, kept[0]], 2.0 * data[:, kept[0]], rtol=1e-6)  # scaled by 1 / (1 - p)


def test_dropout_is_off_in_evaluation(backend, reference):
    batch, params, returnn = reference
    ours, _, _ = _run("eval_dropout", batch, params["eval_dropout"])
    np.testing.assert_allclose(_valid(ours["fw"]), _valid(returnn["eval_dropout/fw"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_valid(ours["bw"]), _valid(batch.data["data"]))
    np.testing.assert_array_equal(_valid(returnn["eval_dropout/bw"]), _valid(batch.data["data"]))
