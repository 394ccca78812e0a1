"""``returnn-ls bench`` on devices and dtypes: ``--device``/``--dtype`` usage errors and runs, the kits' CUDA
measurement (against a stand-in for ``torch.cuda``), the optional Liger-Kernel and cut-cross-entropy cases, the "also
against" ratios, the incremental JSON, and the GPU check script's quick run on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bench import TINY, _backends

import frontend_backends
from returnn_ls import bench
from returnn_ls.bench import cases, runner

SIZES = (8, 20, 4)


@pytest.mark.parametrize("entry", ["bench", "returnn-ls"])
def test_device_cuda_without_cuda_is_a_usage_error_naming_why(tmp_path, capsys, monkeypatch, entry):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from returnn_ls.cli import main

    monkeypatch.setattr(runner, "_run_case", lambda spec: pytest.fail(f"ran {spec} despite the usage error"))
    argv = ["--backends", "torch", "--device", "cuda", "--cases", "ours_fused", "--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exc:
        bench.main(argv) if entry == "bench" else main(["bench"] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "returnn-ls bench: error: argument --device: cuda on torch: torch.cuda.is_available() is False" in err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [(["--dtype", "bfloat16"], "argument --dtype: bfloat16 on tensorflow: it is timed in float32 only"),
     (["--device", "cuda"], "argument --device: cuda on tensorflow: TensorFlow is timed on cpu only")],
)  # fmt: skip
def test_tensorflow_with_bfloat16_or_cuda_is_a_usage_error(tmp_path, capsys, monkeypatch, argv, message):
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(runner, "_run_case", lambda spec: pytest.fail(f"ran {spec} despite the usage error"))
    with pytest.raises(SystemExit) as exc:
        bench.main(["--backends", "tensorflow", *argv, "--cases", "plain_ce", "--out", str(tmp_path / "b")])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_bfloat16_on_torch_cpu_runs_and_records_device_and_dtype(tmp_path, capsys):
    pytest.importorskip("torch")
    argv = TINY + ["--backends", "torch", "--mode", "eager", "--dtype", "bfloat16", "--cases", "ours_fused"]
    assert bench.main(argv + ["--no-plot", "--out", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["complete"] and (report["settings"]["device"], report["settings"]["dtype"]) == ("cpu", "bfloat16")
    (row,) = report["results"]
    assert (row["device"], row["dtype"], row["case"]) == ("cpu", "bfloat16", "ours_fused") and row["time_s"] > 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].endswith("| note | device | dtype |")
    assert "| torch | eager | 20 | ours_fused |" in table and table.rstrip().endswith("| cpu | bfloat16 |")


def test_the_kit_casts_and_the_input_cache_gives_the_same_values(tmp_path):
    pytest.importorskip("torch")
    kit = frontend_backends.bench_kit("torch")

    def inputs(cache, dtype="float32"):
        rng = np.random.default_rng(0)
        y = kit.targets(rng.integers(0, SIZES[1], SIZES[0]))
        params, _ = cases._linear_case(kit, "ours_linear_fused", y, SIZES, 0.1, rng, dtype=dtype, cache_dir=cache)
        assert all(p.is_leaf and p.requires_grad and str(p.dtype) == f"torch.{dtype}" for p in params)
        return [p.detach().float().numpy() for p in params]

    drawn = inputs(None)
    for _ in range(2):  # the first saves, the second reads
        for a, b in zip(inputs(str(tmp_path)), drawn):
            np.testing.assert_array_equal(a, b)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    np.testing.assert_allclose(inputs(str(tmp_path), "bfloat16")[1], drawn[1], rtol=1e-2)


def test_the_optional_cases_are_skipped_with_the_reason_off_cuda(tmp_path, monkeypatch):
    import importlib.util

    backends = _backends()
    monkeypatch.setattr(runner, "_run_case", lambda spec: pytest.fail(f"ran {spec}, an expected skip"))
    argv = ["--frames", "8", "--vocab", "20", "--hidden", "4", "--mode", "eager", "--no-plot", "--cases"]
    assert bench.main(argv + [*cases.OPTIONAL_CASES, "--backends", *backends, "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [(r["backend"], r["case"]) for r in rows] == [(b, c) for b in backends for c in cases.OPTIONAL_CASES]
    for r in rows:
        assert r["time_s"] is None and "failed" not in r
        if r["backend"] == "torch":
            assert r["skipped"].startswith("needs --device cuda (")
            package = {"cce_linear": "cut_cross_entropy"}.get(r["case"], "liger_kernel")
            assert (f"(no module {package})" in r["skipped"]) == (importlib.util.find_spec(package) is None)
        else:
            assert "timed on torch only" in r["skipped"]


def _fake_packages(monkeypatch, swapped: bool = False):
    """Install stand-ins of ``liger_kernel.transformers`` and ``cut_cross_entropy`` (F.cross_entropy inside) with
    the call signatures of the real ones (with ``swapped``, a fused-linear loss taking the input first)."""
    import sys
    import types

    import torch.nn.functional as F

    class LigerCE:
        def __init__(self, label_smoothing=0.0, reduction="mean"):
            self.a, self.reduction = label_smoothing, reduction

        def __call__(self, x, y):
            return F.cross_entropy(x, y, label_smoothing=self.a, reduction=self.reduction)

    class LigerLinear(LigerCE):
        def forward(self, lin_weight, _input, target, bias=None):
            return F.cross_entropy(F.linear(_input, lin_weight, bias), target, label_smoothing=self.a,
                                   reduction=self.reduction)  # fmt: skip

        __call__ = forward

    class LigerLinearSwapped(LigerCE):  # an API that differs
        def forward(self, _input, lin_weight, target, bias=None):
            raise AssertionError("called despite the differing API")

    def linear_cross_entropy(e, c, targets, bias=None, ignore_index=-100, reduction="mean"):
        return F.cross_entropy(F.linear(e, c, bias), targets, reduction=reduction)

    transformers = types.ModuleType("liger_kernel.transformers")
    transformers.LigerCrossEntropyLoss = LigerCE
    transformers.LigerFusedLinearCrossEntropyLoss = LigerLinearSwapped if swapped else LigerLinear
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", transformers)
    cce = types.ModuleType("cut_cross_entropy")
    cce.linear_cross_entropy = linear_cross_entropy
    monkeypatch.setitem(sys.modules, "cut_cross_entropy", cce)


@pytest.mark.parametrize("case, reference, a", [("liger_ls", "framework_ls", 0.1),
                                                ("liger_linear_ls", "linear_framework_ls", 0.1),
                                                ("cce_linear", "linear_framework_ls", 0.0)])  # fmt: skip
def test_the_optional_cases_call_their_packages_as_documented(monkeypatch, case, reference, a):
    pytest.importorskip("torch")
    _fake_packages(monkeypatch)
    kit = frontend_backends.bench_kit("torch")
    frames, vocab, hidden = SIZES
    y = kit.targets(np.random.default_rng(0).integers(0, vocab, frames))

    def loss(name):
        rng = np.random.default_rng(1)
        if cases.is_linear(name):
            params = kit.params(cases._draw(rng, [(frames, hidden), (vocab, hidden), (vocab,)], scale=0.1))
        else:
            params = kit.params(cases._draw(rng, [(frames, vocab)]))
        return kit.reference_loss(name, y, frames, vocab, a)(*params).detach().numpy()

    np.testing.assert_allclose(loss(case), loss(reference), rtol=1e-6)


def test_a_differing_liger_api_is_a_clear_failure(monkeypatch):
    pytest.importorskip("torch")
    _fake_packages(monkeypatch, swapped=True)
    kit = frontend_backends.bench_kit("torch")
    with pytest.raises(RuntimeError, match=r"liger_linear_ls: .*forward\(self, _input, lin_weight.* is not "
                                           r"\(lin_weight, _input, target, bias, \.\.\.\)"):  # fmt: skip
        kit.reference_loss("liger_linear_ls", None, 8, 20, 0.1)


def test_cuda_measurement_times_by_events_and_counts_memory_above_the_inputs_and_gradients(monkeypatch):
    """The CUDA protocol of the torch kit, against a stand-in of ``torch.cuda`` (no GPU here)."""
    torch = pytest.importorskip("torch")
    from frontend_backends.torch import bench as torch_bench

    state = {"allocated": 0, "peak": 0, "clock": 0.0, "steps": 0}

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self):
            self.at = state["clock"]

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return end.at - self.at  # ms

    def step():  # frees the previous gradients (100 MB), allocates 300 MB of temporaries and 100 MB of gradients
        state["steps"] += 1
        held = state["allocated"] - (100 if state["steps"] > 1 else 0)
        state["peak"] = max(state["peak"], held + 300)
        state["allocated"], state["clock"] = held + 100, state["clock"] + 2.0

    fake = dict(Event=Event, synchronize=lambda device=None: None, memory_allocated=lambda d=None: state["allocated"]
                * 2**20, max_memory_allocated=lambda d=None: state["peak"] * 2**20,
                reset_peak_memory_stats=lambda d=None: state.update(peak=state["allocated"]))  # fmt: skip
    for name, value in fake.items():
        monkeypatch.setattr(torch.cuda, name, value)
    state["allocated"] = 50  # the inputs
    result = torch_bench.TorchBench().measure(step, 3, "cuda")
    assert state["steps"] == 4 and result["times"] == [0.002] * 3  # a warm-up, then 3 steps of 2 ms
    assert result["peak_mb"] == pytest.approx(200)  # 150 held; peak 50 + 300 (after freeing the old gradients)
    assert torch_bench.TorchBench().measure(step, 3, "cpu") is None and state["steps"] == 4


def test_also_against_ratios_are_computed_against_the_named_rows():
    from returnn_ls.bench.report import add_ratios

    def row(case, time_s, peak, mode="eager"):
        return {"backend": "torch", "mode": mode, "vocab": 10, "case": case, "time_s": time_s, "peak_mb": peak}

    rows = [row("plain_ce", 1.0, 100.0), row("framework_ls", 2.0, 200.0), row("liger_ls", 0.5, 10.0),
            row("ours_path", 1.5, 150.0), row("ours_fused", 0.4, 5.0), row("plain_ce", 0.6, 50.0, "compiled"),
            row("framework_ls", 0.8, 40.0, "compiled"), row("ours_fused", 0.2, 4.0, "compiled"),
            row("linear_framework_ls", 4.0, 400.0), row("ours_linear_fused", 3.0, 30.0),
            row("liger_linear_ls", 2.0, 60.0), row("cce_linear", 1.0, 0.0)]  # fmt: skip
    add_ratios(rows)
    by = {(r["mode"], r["case"]): r for r in rows}
    approx = pytest.approx

    def fields(mode, case, *names):
        return tuple(by[(mode, case)].get(name) for name in names)

    fused = ("eager", "ours_fused")
    assert fields(*fused, "reference", "time_ratio", "peak_ratio") == ("framework_ls", approx(0.2), approx(0.025))
    assert fields(*fused, "time_ratio_vs_compiled", "peak_ratio_vs_compiled") == (approx(0.5), approx(0.125))
    assert fields(*fused, "time_ratio_vs_liger", "peak_ratio_vs_liger") == (approx(0.8), approx(0.5))
    assert by[fused]["also_against"] == {"vs_compiled": "compiled framework_ls", "vs_liger": "eager liger_ls"}
    path = fields("eager", "ours_path", "time_ratio_vs_compiled", "peak_ratio_vs_compiled")
    assert path == approx((2.5, 3.0))  # 1.5 / 0.6, 150 / 50
    linear = fields("eager", "ours_linear_fused", "time_ratio", "time_ratio_vs_liger", "peak_ratio_vs_liger")
    assert linear == (approx(0.75), approx(1.5), approx(0.5))
    assert fields("eager", "ours_linear_fused", "time_ratio_vs_cce", "peak_ratio_vs_cce") == (3.0, None)  # 0 MB: none
    compiled = by[("compiled", "ours_fused")]  # its own reference is compiled already; no compiled liger_ls row
    assert compiled["time_ratio"] == 0.25 and "also_against" not in compiled
    assert not any(k.startswith(("time_ratio_", "peak_ratio_")) for k in compiled)
    assert "0.50x time of compiled framework_ls; 0.80x time of eager liger_ls" in bench.format_table(rows)


def test_the_json_is_written_after_every_case(tmp_path, monkeypatch):
    seen = []

    def run_case(spec):
        path = tmp_path / "b.json"
        seen.append(json.loads(path.read_text()) if path.exists() else None)
        return {"times": [0.1], "peak_mb": 1.0}

    monkeypatch.setattr(runner, "_run_case", run_case)
    argv = ["--backends", "torch", "--mode", "eager", "--cases", "plain_ce", "framework_ls", "--no-plot"]
    assert bench.main(argv + ["--vocab", "10", "--out", str(tmp_path / "b")]) == 0
    assert seen[0] is None and not seen[1]["complete"] and [r["case"] for r in seen[1]["results"]] == ["plain_ce"]
    assert json.loads((tmp_path / "b.json").read_text())["complete"]


def test_gpu_check_quick_runs_every_part_on_cpu(tmp_path):
    """``demos/gpu_check.py --quick --device cpu``: the plumbing of the GPU check, every part recorded."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, os.path.join(root, "demos", "gpu_check.py"), "--quick", "--device", "cpu"]
    proc = subprocess.run(cmd + ["--out", str(tmp_path)], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=150)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_h200.json").read_text())
    assert (report["run"], report["device"], report["finished"]) == ("quick", "cpu", True)
    parts = report["parts"]
    assert list(parts) == ["environment", "imports", "tests", "bench_32000_float32", "bench_128256_bfloat16",
                           "bench_linear_128256_bfloat16", "train"]  # fmt: skip
    assert all(p["status"] in ("ok", "skipped", "failed", "timeout", "error") for p in parts.values()), parts
    assert parts["environment"]["result"]["cuda_available"] is False or parts["environment"]["result"]["gpu"]
    imports = parts["imports"]["result"]  # without TensorFlow, h5py, matplotlib, tqdm; from this checkout
    assert set(imports["modules"].values()) == {"ok"} and imports["returnn_ls_from"].startswith(root)
    for name in ("bench_32000_float32", "bench_128256_bfloat16", "bench_linear_128256_bfloat16"):
        rows = parts[name]["report"]["results"]
        assert rows and all(r["device"] == "cpu" and "failed" not in r for r in rows)
        assert all(r.get("skipped") for r in rows if r["case"] in cases.OPTIONAL_CASES)
    assert parts["train"]["status"] == "ok" and parts["train"]["metrics"]["device"] == "cpu"
    assert "part" in proc.stdout and "train" in proc.stdout.splitlines()[-2]
