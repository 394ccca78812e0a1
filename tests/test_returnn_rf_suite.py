"""``demos/returnn_rf_suite.py``: the harness that runs RETURNN's own frontend tests on returnn_ls.

A tiny RETURNN-style test file (RETURNN's template API, ``run_model``) is run through the harness, which must
report each test's outcome: a pass (with the gradient of a ``"loss"`` output, padded data and sparse labels in
range), an n/a test, a crash (the rest of the file still runs), a difference between the backends, a
single-sequence run that differs from the batched one and a missing function. Skipped where the RETURNN
mirror is not present (CI) or a backend is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("RETURNN_REPO", "/work/.mirror/rwth-i6+returnn/repo"))

TINY = '''"""A tiny RETURNN-style frontend test file."""

from __future__ import annotations

import os

import _setup_test_env  # noqa
import numpy
import returnn.frontend as rf
from returnn.tensor import Dim, Tensor, TensorDict, batch_dim
from rf_utils import run_model


def _extern():
    time_dim = Dim(Tensor("time", [batch_dim], dtype="int32"))
    in_dim, vocab_dim = Dim(7, name="in"), Dim(5, name="vocab")
    extern_data = TensorDict({
        "data": Tensor("data", [batch_dim, time_dim, in_dim], dtype="float32"),
        "targets": Tensor("targets", [batch_dim, time_dim], dtype="int32", sparse_dim=vocab_dim),
    })
    return extern_data, time_dim, in_dim, vocab_dim


def _module(**_kwargs):
    return rf.Module()


def test_passes():
    extern_data, time_dim, in_dim, vocab_dim = _extern()

    def _forward_step(*, model, extern_data):
        x = extern_data["data"]
        x.mark_as_output("data", shape=(batch_dim, time_dim, in_dim))
        extern_data["targets"].mark_as_output("targets", shape=(batch_dim, time_dim))
        rf.reduce_sum(x * x, axis=in_dim).mark_as_output("loss", shape=(batch_dim, time_dim))

    out = run_model(extern_data, _module, _forward_step, dyn_dim_max_sizes={time_dim: 9})
    data, grad, targets = out["data"].raw_tensor, out["data_grad"].raw_tensor, out["targets"].raw_tensor
    assert data.shape[1] == 9 and (data[:, -1] == 0).any()  # padded to the max size; the padding zeroed
    numpy.testing.assert_allclose(grad, 2 * data, rtol=1e-5)
    assert 0 <= targets.min() and targets.max() < vocab_dim.dimension


def test_na_internal():
    from returnn.frontend import _utils  # noqa: F401


def test_crashes():
    os._exit(3)


def test_backend_difference():
    extern_data, time_dim, in_dim, _ = _extern()

    def _forward_step(*, model, extern_data):
        shift = 1.0 if extern_data["data"].backend_name == "tensorflow" else 0.0
        (extern_data["data"] + shift).mark_as_default_output(shape=(batch_dim, time_dim, in_dim))

    run_model(extern_data, _module, _forward_step, test_single_batch_entry=False)


def test_single_vs_batched():
    extern_data, time_dim, in_dim, _ = _extern()

    def _forward_step(*, model, extern_data):
        x = extern_data["data"]
        (x * float(x.raw_tensor.shape[0])).mark_as_default_output(shape=(batch_dim, time_dim, in_dim))

    run_model(extern_data, _module, _forward_step)


def test_missing_function():
    extern_data, _, _, _ = _extern()

    def _forward_step(*, model, extern_data):
        rf.not_a_function_of_returnn_ls(extern_data["data"]).mark_as_default_output()

    run_model(extern_data, _module, _forward_step)
'''


@pytest.fixture(scope="module")
def suite():
    """:return: the harness module (``demos/returnn_rf_suite.py``)"""
    if not (MIRROR / "HEAD").is_file() and not (MIRROR / "tests").is_dir():
        pytest.skip(f"the RETURNN repository mirror is not present at {MIRROR} (set RETURNN_REPO)")
    missing = [m for m in ("torch", "tensorflow") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the harness compares torch with tensorflow; not installed: {missing}")
    sys.path.insert(0, str(ROOT / "demos"))
    try:
        spec = importlib.util.spec_from_file_location("returnn_rf_suite", ROOT / "demos" / "returnn_rf_suite.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(ROOT / "demos"))


def test_rewrite(suite):
    source = "import returnn.frontend as rf\nfrom returnn.tensor import Tensor, Dim\n"
    source += "    from returnn.tensor.utils import x\nfrom returnn.util import better_exchook\n"
    assert suite.rewrite(source) == (
        "import returnn_ls as rf\nfrom rf_utils import Tensor, Dim\n    from rf_utils import x\n"
        "from returnn.util import better_exchook\n"
    )


def test_tiny_file_outcomes(suite, tmp_path):
    test_file = tmp_path / "test_rf_tiny.py"
    test_file.write_text(TINY)
    out = tmp_path / "suite.json"
    assert suite.main(["--returnn-repo", str(MIRROR), "--test-file", str(test_file), "--out", str(out),
                       "--timeout", "120", "--test-timeout", "60"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["returnn_commit"] == suite.git(MIRROR, "rev-parse", "HEAD")
    tests = result["files"]["tiny"]["tests"]
    assert {k: v["outcome"] for k, v in tests.items()} == {
        "test_passes": "passed", "test_na_internal": "passed", "test_crashes": "crashed",
        "test_backend_difference": "failed", "test_single_vs_batched": "failed", "test_missing_function": "failed",
    }  # fmt: skip
    assert tests["test_na_internal"]["na"].startswith("tests a RETURNN internal module")
    assert tests["test_passes"]["na"] is None
    assert tests["test_backend_difference"]["error_type"] == "CompareResultsMismatchTfVsPtException"
    assert tests["test_single_vs_batched"]["error_type"] == "CompareResultsMismatchSingleVsMultiBatchException"
    assert (tests["test_missing_function"]["group"], tests["test_missing_function"]["detail"]) == (
        "missing function", "rf.not_a_function_of_returnn_ls")
    assert tests["test_crashes"]["group"] == "harness limitation"
    counts = result["files"]["tiny"]["counts"]
    assert (counts["total"], counts["passed"], counts["n/a"], counts["passed_applicable"]) == (6, 2, 1, 1)
    rows = {r["name"]: r for r in result["api_table"]["rows"]}
    assert rows["reduce_sum"]["returnn_ls"] == "supported"
    assert rows["reduce_sum"]["area"] == "reduce"
