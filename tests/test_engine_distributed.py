"""``torch_distributed = {}``: ``torchrun --nproc_per_node 2 -m returnn_ls train CONFIG`` trains data-parallel over
gloo and ends with the parameters and scores of one process on the same global batches; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from returnn_ls.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _engine_helpers import RF_CONFIG, write_config  # noqa: E402

#: 17 sequences in batches of 8: shards of 4, and a last batch of one sequence (the second worker then only joins)
ARGS = ["++train", "{'class': 'synthetic', 'num_seqs': 17, 'seed': 1}", "--no-progress"]


pytestmark = pytest.mark.usefixtures("cli_isolated")


def test_torchrun_two_workers_equal_one_process(tmp_path):
    pytest.importorskip("torch")
    config = write_config(tmp_path, RF_CONFIG + "\ntorch_distributed = {{}}\n", backend="torch")
    assert main(["train", str(config), "--out", str(tmp_path / "single"), *ARGS]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.path.dirname(HERE))
    if os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "returnn_ls", "train", str(config), "--out", str(tmp_path / "ddp"), *ARGS]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sum(line.startswith("epoch ") for line in proc.stdout.splitlines()) == 2  # rank 0 reports, rank 1 not
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())["history"]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["history"]
    for a, b in zip(single, ddp, strict=True):
        for group in ("train_scores", "dev_scores"):
            for key, value in a[group].items():
                assert b[group][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (group, key)
    with np.load(tmp_path / "single" / "model.npz") as f, np.load(tmp_path / "ddp" / "model.npz") as g:
        for key in f.files:
            np.testing.assert_allclose(g[key], f[key], rtol=1e-5, atol=1e-6, err_msg=key)
            assert np.abs(f[key]).max() > 0
