"""Every TensorFlow case of ``returnn-ls bench`` runs in every mode (eager, ``tf.function``, XLA), at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest

import frontend_backends
from returnn_ls.bench.cases import LINEAR_CASES, LOGIT_CASES, make_step

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

KIT = frontend_backends.bench_kit("tensorflow")
MODES = KIT.execution_modes("all")
TF_CASES = [c for c in LOGIT_CASES + LINEAR_CASES if KIT.unavailable(c) is None]


pytestmark = pytest.mark.usefixtures("restore_backend")


def test_the_modes_and_cases_are_those_of_the_committed_results():
    assert MODES == ("eager", "function", "xla")
    assert TF_CASES == [c for c in LOGIT_CASES + LINEAR_CASES if c != "returnn_path"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", TF_CASES)
def test_each_case_runs_in_each_mode(case, mode):
    step = make_step("tensorflow", case, 6, 9, 4, 0.1, np.random.default_rng(0), mode=mode)
    assert step() is None  # traces (compiled modes) and runs
    assert step() is None  # runs the traced step again


def test_unknown_mode_and_the_returnn_case_are_clear_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        make_step("tensorflow", "ours_fused", 6, 9, 4, 0.1, np.random.default_rng(0), mode="jit")
    with pytest.raises(RuntimeError, match="torch only"):
        make_step("tensorflow", "returnn_path", 6, 9, 4, 0.1, np.random.default_rng(0), mode="eager")
