"""Every TensorFlow case of ``returnn-ls bench`` runs in every mode (eager, ``tf.function``, XLA), at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest

from returnn_ls.bench.cases import LINEAR_CASES, LOGIT_CASES

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from returnn_ls.bench.tensorflow_cases import MODES, make_tensorflow  # noqa: E402

TF_CASES = [c for c in LOGIT_CASES + LINEAR_CASES if c != "returnn_path"]


pytestmark = pytest.mark.usefixtures("restore_backend")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", TF_CASES)
def test_each_case_runs_in_each_mode(case, mode):
    step = make_tensorflow(case, 6, 9, 4, 0.1, np.random.default_rng(0), mode=mode)
    assert step() is None  # traces (compiled modes) and runs
    assert step() is None  # runs the traced step again


def test_unknown_mode_and_the_returnn_case_are_clear_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        make_tensorflow("ours_fused", 6, 9, 4, 0.1, np.random.default_rng(0), mode="jit")
    with pytest.raises(RuntimeError, match="torch only"):
        make_tensorflow("returnn_path", 6, 9, 4, 0.1, np.random.default_rng(0), mode="eager")
