"""The benchmark runs end to end on tiny sizes and writes a well-formed table, JSON and plot (not a timed test)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from returnn_ls import bench

#: Each case runs in a subprocess of its own (a few seconds of framework import each), so the test runs a few.
CASES = ["framework_ls", "ours_fused", "ours_linear_fused"]


def test_bench_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    backends = [b for b in ("torch", "tensorflow") if importlib.util.find_spec(b) is not None]
    if not backends:
        pytest.skip("no framework installed")
    out = tmp_path / "bench"
    argv = ["--frames", "8", "--vocab", "20", "--hidden", "4", "--repeats", "1", "--out", str(out)]
    assert bench.main(argv + ["--backends", *backends, "--cases", *CASES]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert report["command"].startswith("returnn-ls bench --frames 8")
    rows = report["results"]
    assert [(r["backend"], r["case"]) for r in rows] == [(b, c) for b in backends for c in CASES]
    for row in rows:
        assert "skipped" not in row, row
        assert row["time_s"] > 0 and len(row["times"]) == 1 and row["peak_mb"] >= 0
        assert row["vocab"] == 20 and row["frames"] == 8
    by_case = {(r["backend"], r["case"]): r for r in rows}
    for b in backends:
        assert by_case[(b, "framework_ls")]["time_ratio"] == pytest.approx(1.0)
        assert by_case[(b, "ours_fused")]["time_ratio"] > 0 and by_case[(b, "ours_fused")]["peak_ratio"] > 0
    table = capsys.readouterr().out
    assert table.count("\n| torch |") + table.count("\n| tensorflow |") == len(rows)


def test_format_table_marks_skipped_cases():
    row = {"backend": "torch", "vocab": 10, "case": "returnn_path", "time_s": None, "peak_mb": None,
           "time_ratio": None, "peak_ratio": None, "skipped": "ImportError: no returnn"}  # fmt: skip
    table = bench.format_table([row])
    assert table.splitlines()[0].startswith("| backend | vocab | case | time (s) | peak (MB)")
    assert "| torch | 10 | returnn_path | - | - | - | - | ImportError: no returnn |" in table


def test_bench_is_a_subcommand_of_returnn_ls(tmp_path, capsys):
    from returnn_ls.cli import main

    out = tmp_path / "b"
    argv = ["bench", "--frames", "4", "--vocab", "8", "--repeats", "1", "--backends", "torch", "--no-plot"]
    assert main(argv + ["--cases", "ours_fused", "--out", str(out)]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert [r["case"] for r in report["results"]] == ["ours_fused"]
    assert report["command"].startswith("returnn-ls bench --frames 4")


def test_unknown_case_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown cases"):
        bench.main(["--cases", "nope", "--out", str(tmp_path / "b")])
