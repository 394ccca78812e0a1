"""The benchmark runs end to end on tiny sizes in every mode and writes a well-formed table, JSON and plot (not a
timed test); bad arguments are usage errors; a failing case makes the command fail."""

from __future__ import annotations

import importlib.util
import json

import pytest

from returnn_ls import bench
from returnn_ls.bench import runner
from returnn_ls.bench.report import LINESTYLES, line_styles

#: Each case runs in a subprocess of its own (a few seconds of framework import each), so the tests run a few.
CASES = ["framework_ls", "ours_fused", "ours_linear_fused"]
TINY = ["--frames", "8", "--vocab", "20", "--hidden", "4", "--repeats", "1"]


def _backends() -> list[str]:
    backends = [b for b in ("torch", "tensorflow") if importlib.util.find_spec(b) is not None]
    if not backends:
        pytest.skip("no framework installed")
    return backends


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
    assert table.count("\n| torch | eager |") + table.count("\n| tensorflow | eager |") == len(rows)


def test_compiled_mode_runs_torch_compile_tf_function_and_xla(tmp_path):
    backends = _backends()
    argv = TINY + ["--mode", "compiled", "--no-plot", "--out", str(tmp_path / "b"), "--cases", "ours_fused"]
    assert bench.main(argv + ["--backends", *backends]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    expected = {"torch": ["compiled"], "tensorflow": ["function", "xla"]}
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
    rows = [{"backend": b, "mode": m, "case": c} for (b, m) in LINESTYLES for c in ("plain_ce", "ours_fused")]
    styles = line_styles(rows)
    for case in ("plain_ce", "ours_fused"):
        assert len({styles[(b, m, case)]["color"] for (b, m) in LINESTYLES}) == 1
    assert styles[("torch", "eager", "plain_ce")]["color"] != styles[("torch", "eager", "ours_fused")]["color"]
    assert len({str(styles[(b, m, "plain_ce")]["linestyle"]) for (b, m) in LINESTYLES}) == len(LINESTYLES)


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
