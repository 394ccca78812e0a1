"""The README's examples cannot rot: ```python blocks run as they are; ```py blocks are excerpts of a file in
the repository (named in the sentence before the block, "Excerpt of [`path`]") and must appear in it verbatim,
and the demos they come from run in the tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README_TEXT, flags=re.S)
EXCERPTS = re.findall(r"Excerpt of\s+\[`([^`]+)`\][^`]*?(?:`[^`]*`[^`]*?)*?```py\n(.*?)```", README_TEXT, flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    assert BLOCKS[index].strip()


def test_every_excerpt_names_its_file():
    assert len(EXCERPTS) == README_TEXT.count("```py\n") > 0


@pytest.mark.parametrize("index", range(len(EXCERPTS)))
def test_readme_excerpt_is_verbatim_in_its_file(index):
    path, block = EXCERPTS[index]
    source = (ROOT / path).read_text(encoding="utf-8")
    assert block.strip() in source, f"README excerpt {index} is not verbatim in {path}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_demo(args: list[str]) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if os.path.exists("/sys/class/net/lo"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_data_parallel_torch_demo_runs_with_torchrun():
    pytest.importorskip("torch")
    out = _run_demo([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                     "--master_port", str(_free_port()), "demos/data_parallel_torch.py"])  # fmt: skip
    loss = float(re.search(r"last loss per frame \(own shard\) ([0-9.]+)", out).group(1))
    assert 0.0 < loss < 1.5  # log(5) = 1.61 at chance: the workers learned


def test_data_parallel_tensorflow_demo_runs():
    pytest.importorskip("tensorflow")
    out = _run_demo([sys.executable, "demos/data_parallel_tensorflow.py"])
    loss = float(re.search(r"loss per frame after training: ([0-9.]+)", out).group(1))
    assert 0.0 < loss < 1.5
