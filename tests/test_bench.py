"""The benchmark runs end to end on tiny sizes in every mode and writes a well-formed table, JSON and plot (not a
timed test); bad arguments are usage errors; a failing case makes the command fail. The backends' kits
(``frontend_backends.bench_base.BenchKit``) keep the modes, skips and layouts of the results committed so far, and
their reference losses agree with ours on the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import frontend_backends
from frontend_backends.bench_base import BenchKit
from returnn_ls import bench
from returnn_ls.bench import cases, runner
from returnn_ls.bench.report import LINESTYLES, backend_mode_pairs, line_styles, pair_linestyles

#: Each case runs in a subprocess of its own (a few seconds of framework import each), so the tests run a few.
CASES = ["framework_ls", "ours_fused", "ours_linear_fused"]
TINY = ["--frames", "8", "--vocab", "20", "--hidden", "4", "--repeats", "1"]
#: The (backend, mode) pairs and line styles of the results and plots committed so far: they must not change.
BUILT_IN_STYLES = {
    ("torch", "eager"): "-",
    ("torch", "compiled"): "--",
    ("tensorflow", "eager"): ":",
    ("tensorflow", "function"): "-.",
    ("tensorflow", "xla"): (0, (5, 1, 1, 1, 1, 1)),
}


def _backends() -> list[str]:
    backends = frontend_backends.available_backends()
    if not backends:
        pytest.skip("no framework installed")
    return backends


@pytest.fixture
def nobench():
    """A registered backend whose package (``json``) has no ``Bench``; unregistered after the test."""
    frontend_backends.register_backend("nobench", frontend_backends.BackendInfo("json", "json", type_modules=()))
    yield "nobench"
    frontend_backends.unregister_backend("nobench")


def test_bench_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    backends = _backends()
    out = tmp_path / "bench"
    argv = TINY + ["--mode", "eager", "--out", str(out)]
    assert bench.main(argv + ["--backends", *backends, "--cases", *CASES]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert report["command"].startswith("returnn-ls bench --frames 8")
    rows = report["results"]
    assert [(r["backend"], r["mode"], r["case"]) for r in rows] == [(b, "eager", c) for b in backends for c in CASES]
    for row in rows:
        assert "skipped" not in row and "failed" not in row, row
        assert row["time_s"] > 0 and len(row["times"]) == 1 and row["peak_mb"] >= 0
        assert row["vocab"] == 20 and row["frames"] == 8
    by_case = {(r["backend"], r["case"]): r for r in rows}
    for b in backends:
        assert by_case[(b, "ours_fused")]["reference"] == "framework_ls"
        assert by_case[(b, "ours_fused")]["time_ratio"] == pytest.approx(
            by_case[(b, "ours_fused")]["time_s"] / by_case[(b, "framework_ls")]["time_s"]
        )
    table = capsys.readouterr().out
    assert sum(table.count(f"\n| {b} | eager |") for b in backends) == len(rows)


def test_compiled_mode_runs_torch_compile_tf_function_and_xla(tmp_path):
    backends = _backends()
    argv = TINY + ["--mode", "compiled", "--no-plot", "--out", str(tmp_path / "b"), "--cases", "ours_fused"]
    assert bench.main(argv + ["--backends", *backends]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    expected = {"torch": ("compiled",), "tensorflow": ("function", "xla")}
    assert [(r["backend"], r["mode"]) for r in rows] == [(b, m) for b in backends for m in expected[b]]
    assert all(r["time_s"] > 0 and "failed" not in r for r in rows), rows


def test_mode_all_is_eager_and_compiled_on_each_backend():
    parser = runner.argparse.ArgumentParser(prog="returnn-ls bench")
    runner._add_arguments(parser)
    args = parser.parse_args(["--cases", "plain_ce", "--vocab", "10"])
    assert args.mode == "all"
    specs = runner._specs(args)
    assert [(s["backend"], s["mode"]) for s in specs] == [
        ("torch", "eager"), ("torch", "compiled"), ("tensorflow", "eager"), ("tensorflow", "function"),
        ("tensorflow", "xla"),
    ]  # fmt: skip


def test_bench_is_a_subcommand_of_returnn_ls(tmp_path, capsys):
    from returnn_ls.cli import main

    out = tmp_path / "b"
    argv = ["bench", "--frames", "4", "--vocab", "8", "--repeats", "1", "--backends", "torch", "--no-plot"]
    assert main(argv + ["--mode", "eager", "--cases", "ours_fused", "--out", str(out)]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert [r["case"] for r in report["results"]] == ["ours_fused"]
    assert report["command"].startswith("returnn-ls bench --frames 4")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--frames", "-5"], "argument --frames: expected a positive integer, got -5"),
        (["--vocab", "0"], "argument --vocab: expected an integer >= 2, got 0"),
        (["--repeats", "0"], "argument --repeats: expected a positive integer, got 0"),
        (["--rounds", "x"], "argument --rounds: expected a positive integer, got 'x'"),
        (["--smoothing", "1.5"], "argument --smoothing: expected a number in [0, 1], got 1.5"),
        (["--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
        (["--cases", "nope"], "argument --cases: unknown cases ['nope']"),
        (["--cases", "ours_linear_fused"], "--cases ours_linear_fused needs --hidden"),
    ],
)
@pytest.mark.parametrize("entry", ["bench", "returnn-ls"])
def test_bad_arguments_are_usage_errors(tmp_path, capsys, argv, message, entry):
    from returnn_ls.cli import main

    argv = argv + ["--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exc:
        bench.main(argv) if entry == "bench" else main(["bench"] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "returnn-ls bench: error: " in err and message in err
    assert not (tmp_path / "b.json").exists()


def test_a_failing_case_makes_the_command_fail_after_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "_run_case", lambda spec: {"times": [], "peak_mb": None, "failed": "Boom: broken"})
    argv = TINY + ["--backends", "torch", "--mode", "eager", "--cases", "ours_fused", "--no-plot"]
    assert bench.main(argv + ["--out", str(tmp_path / "b")]) == 1
    captured = capsys.readouterr()
    row = "| torch | eager | 20 | ours_fused | - | - | framework_ls | - | - | **failed**: Boom: broken |"
    assert row in captured.out
    assert "returnn-ls bench: error: 1 case(s) failed: torch eager ours_fused" in captured.err
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["failed"] == "Boom: broken"


def test_an_unfused_case_over_the_memory_limit_is_an_expected_skip_with_its_estimate(tmp_path, capsys):
    argv = ["--frames", "4096", "--vocab", "262144", "--hidden", "1024", "--backends", "torch", "--mode", "eager"]
    argv += ["--cases", "linear_framework_ls", "--no-plot", "--out", str(tmp_path / "b")]
    assert bench.main(argv) == 0  # not run at all: nothing of that size is allocated
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    expected_mb = (3 * 4096 * 262144 + 1024 * 262144) * 4 / 2**20
    assert row["estimated_peak_mb"] == pytest.approx(expected_mb) and row["time_s"] is None
    assert "needs >= 13.0 GB" in row["skipped"] and "--max-memory-gb 12" in row["skipped"]
    assert f">= {expected_mb:.0f} (estimated)" in capsys.readouterr().out


def test_plot_gives_each_case_one_colour_on_every_backend_and_mode():
    pairs = list(BUILT_IN_STYLES)
    rows = [{"backend": b, "mode": m, "case": c} for (b, m) in pairs for c in ("plain_ce", "ours_fused")]
    styles = line_styles(rows)
    for case in ("plain_ce", "ours_fused"):
        assert len({styles[(b, m, case)]["color"] for (b, m) in pairs}) == 1
    assert styles[("torch", "eager", "plain_ce")]["color"] != styles[("torch", "eager", "ours_fused")]["color"]
    assert {(b, m): styles[(b, m, "plain_ce")]["linestyle"] for (b, m) in pairs} == BUILT_IN_STYLES


def test_line_styles_go_by_registry_and_mode_order_and_keep_the_committed_ones():
    assert pair_linestyles(list(BUILT_IN_STYLES)) == BUILT_IN_STYLES
    more = pair_linestyles(list(BUILT_IN_STYLES) + [("newfw", "eager"), ("newfw", "jit")])
    assert more[("newfw", "eager")] == LINESTYLES[5] and more[("newfw", "jit")] == LINESTYLES[6]
    assert len({str(v) for v in more.values()}) == len(more)  # all distinct
    cycled = pair_linestyles([("b", str(i)) for i in range(len(LINESTYLES) + 1)])
    assert cycled[("b", str(len(LINESTYLES)))] == LINESTYLES[0]


def test_a_pair_keeps_its_line_style_whichever_pairs_ran():
    if not {"torch", "tensorflow"} <= set(frontend_backends.available_backends()):
        pytest.skip("needs both frameworks (their kits give the modes that come first)")
    for (b, m), style in BUILT_IN_STYLES.items():
        assert line_styles([{"backend": b, "mode": m, "case": "plain_ce"}])[(b, m, "plain_ce")]["linestyle"] == style
    assert backend_mode_pairs([{"backend": "tensorflow", "mode": "xla"}]) == list(BUILT_IN_STYLES)


def test_a_backend_without_a_kit_gets_the_next_styles_for_the_modes_of_its_rows(nobench):
    if not {"torch", "tensorflow"} <= set(frontend_backends.available_backends()):
        pytest.skip("needs both frameworks (their kits give the modes that come first)")
    rows = [{"backend": nobench, "mode": "fast"}, {"backend": "torch", "mode": "eager"}]
    assert backend_mode_pairs(rows) == list(BUILT_IN_STYLES) + [(nobench, "fast")]
    assert pair_linestyles(backend_mode_pairs(rows))[(nobench, "fast")] == LINESTYLES[len(BUILT_IN_STYLES)]


#: Each built-in kit's modes, whether its allocator keeps buffers, and its weight layout (``[H, K]``), as the
#: results committed so far were measured.
KITS = {
    "torch": ({"eager": ("eager",), "compiled": ("compiled",)}, False, False),
    "tensorflow": ({"eager": ("eager",), "compiled": ("function", "xla")}, True, True),
}


def test_the_built_in_kits_keep_the_modes_and_layouts_of_the_committed_results(backend):
    kit = frontend_backends.bench_kit(backend.name)
    assert isinstance(kit, BenchKit)
    assert (kit.modes, kit.keeps_buffers, kit.weight_hidden_first) == KITS[backend.name]
    assert kit.execution_modes("all") == kit.modes["eager"] + kit.modes["compiled"]
    assert cases.framework_modes(backend.name, "compiled") == KITS[backend.name][0]["compiled"]


def test_returnn_path_is_an_expected_skip_on_tensorflow_and_without_returnn():
    import importlib.util

    reasons = {
        "torch": None if importlib.util.find_spec("returnn") else "RETURNN is not installed",
        "tensorflow": "RETURNN's TF backend builds graph-mode layers; timed on torch only",
    }
    for b in _backends():
        assert cases.expected_skip(b, "returnn_path", (8, 20, 4), 12.0) == reasons[b]
        assert all(cases.expected_skip(b, c, (8, 20, 4), 12.0) is None for c in cases.OURS_CASES)


@pytest.mark.parametrize(
    "reference, ours",
    [("plain_ce", "ours_path_no_smoothing"), ("plain_ce", "ours_path"),  # the smoothing of the path is in its gradient
     ("framework_ls", "ours_fused"), ("linear_framework_ls", "ours_linear_fused")],
)  # fmt: skip
def test_the_kits_references_agree_with_ours_on_the_same_inputs(backend, reference, ours):
    kit = frontend_backends.bench_kit(backend.name)
    frames, vocab, hidden = 6, 9, 4
    y = kit.targets(np.random.default_rng(0).integers(0, vocab, frames))

    def loss(case: str) -> np.ndarray:
        rng = np.random.default_rng(1)
        if case in cases.LINEAR_CASES:  # the weight in the kit's layout, read so by ours
            params, fn = cases._linear_case(kit, case, y, (frames, hidden, vocab), 0.1, rng)
        else:
            params, fn = cases._logit_case(kit, case, y, frames, vocab, 0.1, rng)
        return backend.numpy(fn(*params))

    expected = loss(reference)
    assert expected.shape == (frames,)
    np.testing.assert_allclose(loss(ours), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entry", ["bench", "returnn-ls"])
def test_a_backend_without_bench_is_a_usage_error_naming_it(tmp_path, capsys, monkeypatch, nobench, entry):
    from returnn_ls.cli import main

    monkeypatch.setattr(runner, "_run_case", lambda spec: pytest.fail(f"ran {spec} despite the usage error"))
    argv = ["--backends", *_backends()[:1], nobench, "--mode", "eager", "--cases", "plain_ce", "--no-plot"]
    argv += ["--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exc:
        bench.main(argv) if entry == "bench" else main(["bench"] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "returnn-ls bench: error: argument --backends: backend 'nobench' has no benchmark cases (json.Bench)" in err
    assert not (tmp_path / "b.json").exists()


def test_format_table_marks_skipped_cases():
    row = {"backend": "torch", "mode": "eager", "vocab": 10, "case": "returnn_path", "time_s": None,
           "peak_mb": None, "reference": "plain_ce", "skipped": "RETURNN is not installed"}  # fmt: skip
    table = bench.format_table([row])
    assert table.splitlines()[0].startswith("| backend | mode | vocab | case | time (s) | peak (MB) | vs")
    assert "| torch | eager | 10 | returnn_path | - | - | plain_ce | - | - | RETURNN is not installed |" in table


def test_time_ratio_is_the_median_of_the_per_round_ratios():
    from returnn_ls.bench.report import add_ratios

    def row(case, rounds):
        return {"backend": "torch", "mode": "eager", "vocab": 10, "case": case, "time_s": sorted(rounds)[1],
                "peak_mb": 1.0, "round_medians": rounds}  # fmt: skip

    # the load tripled while the reference ran in rounds 2 and 3, but only in round 2 for the fused case
    rows = [row("framework_ls", [0.2, 0.6, 0.6]), row("ours_fused", [0.1, 0.3, 0.1])]
    add_ratios(rows)
    assert rows[1]["reference"] == "framework_ls"
    assert rows[1]["time_ratio"] == pytest.approx(0.5)  # per-round ratios 0.5, 0.5, 0.17; the medians' ratio: 0.17


# --- devices, dtypes, the optional references, the "also against" ratios, the GPU check script ---------------------

#: The shapes of a tiny run: frames, vocab, hidden.
