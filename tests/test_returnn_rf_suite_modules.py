"""``demos/returnn_rf_suite.py``, second group: RETURNN's module test files (attention, Transformer decoder, Conformer
encoder) import ``returnn.frontend.attention``/``.encoder.X``/``.decoder.X``, which point at returnn_ls; their
results are reported apart from the core files. Skipped where the RETURNN mirror is not present (CI) or a backend
is not installed."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("RETURNN_REPO", "/work/.mirror/rwth-i6+returnn/repo"))

TINY = '''"""A tiny RETURNN-style test file of the modules group."""

from __future__ import annotations

import _setup_test_env  # noqa
import returnn.frontend as rf
from returnn.tensor import Dim, Tensor, TensorDict, batch_dim
from rf_utils import run_model, tf_scope


def test_causal_self_attention():
    from returnn.frontend.decoder.transformer import FeedForward  # noqa: F401 (the rewritten module path)

    time_dim = Dim(Tensor("time", [batch_dim], dtype="int32"))
    in_dim = Dim(6, name="in")
    extern_data = TensorDict({"data": Tensor("data", [batch_dim, time_dim, in_dim], dtype="float32")})

    def _forward_step(*, model, extern_data):
        out, _ = model(extern_data["data"], axis=time_dim)
        out.mark_as_default_output(shape=(batch_dim, time_dim, model.out_dim))

    run_model(extern_data, lambda **_: rf.CausalSelfAttention(in_dim, Dim(5, name="out"), key_dim_total=in_dim,
                                                              value_dim_total=in_dim, num_heads=2), _forward_step)


def test_tf_scope():
    with tf_scope() as session:
        assert session is not None


def test_module_that_returnn_ls_lacks():
    from returnn.frontend.encoder.e_branchformer import EBranchformerLayer  # noqa: F401
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


def test_rewrite_points_module_imports_at_returnn_ls(suite):
    source = ("from returnn.frontend.attention import dot_attention\n"
              "    from returnn.frontend.encoder.conformer import ConformerEncoder\n"
              "from returnn.frontend.decoder.transformer import TransformerDecoder\n"
              "from returnn.frontend.conversions.hf_llama import x\n")  # fmt: skip
    assert suite.rewrite(source) == (
        "from returnn_ls.nn.attention import dot_attention\n"
        "    from returnn_ls.encoder.conformer import ConformerEncoder\n"
        "from returnn_ls.decoder.transformer import TransformerDecoder\n"
        "from returnn.frontend.conversions.hf_llama import x\n"
    )
    assert suite.GROUPS["modules"] == ["attention", "decoder_transformer", "encoder_conformer"]


def test_module_files_are_reported_apart(suite, tmp_path):
    test_file = tmp_path / "test_rf_attention.py"  # named as a file of the modules group
    test_file.write_text(TINY)
    out = tmp_path / "suite.json"
    assert suite.main(["--returnn-repo", str(MIRROR), "--test-file", str(test_file), "--out", str(out),
                       "--timeout", "120", "--test-timeout", "60"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["files"] == {} and result["totals"]["total"] == 0
    tests = result["module_files"]["attention"]["tests"]
    assert {k: v["outcome"] for k, v in tests.items()} == {
        "test_causal_self_attention": "passed", "test_tf_scope": "passed",
        "test_module_that_returnn_ls_lacks": "failed",
    }  # fmt: skip
    assert "returnn_ls.encoder.e_branchformer" in tests["test_module_that_returnn_ls_lacks"]["error"]
    assert (result["module_totals"]["total"], result["module_totals"]["passed"]) == (3, 2)
