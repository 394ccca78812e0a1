"""The docs site (docs/): it builds with warnings as errors, its API reference lists every public name with its
docstring, the rf API table is current, and every example on its pages runs and shows what it prints
(see tests/_doc_blocks.py for the kinds of blocks); the data-parallel demos that the excerpts of
reliability.md come from run here too."""

from __future__ import annotations

import html
import importlib
import inspect
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _doc_blocks import ROOT, blocks, check_not_code, run

#: the modules whose every public name the API reference shows
PUBLIC_MODULES = ["returnn_ls", "returnn_ls.nn", "returnn_ls.torch_losses", "returnn_ls.keras_losses"]
PAGES = sorted((ROOT / "docs").glob("*.md"))
BLOCKS = [b for page in PAGES for b in blocks(page)]
GENERIC = [b for b in BLOCKS if b.generic]
AS_WRITTEN = [b for b in BLOCKS if b.kind in ("doctest", "script") and not b.generic]
NOT_CODE = [b for b in BLOCKS if b.kind in ("excerpt", "listing")]


@pytest.mark.parametrize("block", GENERIC, ids=lambda b: b.id)
def test_backend_generic_example_runs_and_shows_its_output(block, backend):
    run(block, backend.name)


@pytest.mark.parametrize("block", AS_WRITTEN, ids=lambda b: b.id)
def test_example_runs_and_shows_its_output(block):
    run(block, None)


@pytest.mark.parametrize("block", NOT_CODE, ids=lambda b: b.id)
def test_block_that_is_not_run_says_why_or_is_verbatim(block):
    check_not_code(block)


def test_every_page_has_examples_and_is_in_the_toctree():
    assert len(PAGES) >= 10 and len(GENERIC) + len(AS_WRITTEN) >= 15
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    toctree = re.search(r"```\{toctree\}\n(.*?)```", index, re.S).group(1)
    assert sorted(p.stem for p in PAGES if p.stem != "index") == sorted(re.findall(r"^(\w+)$", toctree, re.M))


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs_html")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    return out


def _described(page: str, module: str, name: str) -> bool:
    """:return: whether ``page`` (HTML) holds the signature of ``module.name``, indexed or not"""
    indexed = f'id="{module}.{name}"' in page or f'id="module-{module}.{name}"' in page
    prefix = f'<span class="pre">{html.escape(module)}.</span></span><span class="sig-name descname"><span class="pre">'
    return indexed or f"{prefix}{name}</span>" in page


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_api_reference_lists_every_public_name_with_its_signature(built_site, module):
    module = importlib.import_module(module)
    page = (built_site / "api.html").read_text(encoding="utf-8")
    missing = [name for name in module.__all__ if not _described(page, module.__name__, name)]
    assert not missing, f"not in the API reference: {missing}"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module):
    module = importlib.import_module(module)
    undocumented = [name for name in module.__all__ if not inspect.getdoc(getattr(module, name))]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_rf_api_table_is_current():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import rf_api_table
    finally:
        sys.path.remove(str(ROOT / "docs"))
    page = (ROOT / "docs" / "rf_api.md").read_text(encoding="utf-8")
    assert rf_api_table.table() in page, "docs/rf_api.md is stale: run `python docs/rf_api_table.py`"


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
