"""The README stays short and its examples cannot rot: every code block runs and shows what it prints, or says
why it is not run (see tests/_doc_blocks.py); the examples of the docs are run by tests/test_docs.py."""

from __future__ import annotations

import re

import pytest
from _doc_blocks import ROOT, blocks, check_not_code, run

README = ROOT / "README.md"
BLOCKS = blocks(README)
GENERIC = [b for b in BLOCKS if b.generic]
AS_WRITTEN = [b for b in BLOCKS if b.kind in ("doctest", "script") and not b.generic]
NOT_CODE = [b for b in BLOCKS if b.kind in ("excerpt", "listing")]


def test_readme_is_short_and_has_an_example_per_function():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    for name in ["label_smoothing", "smooth_one_hot", "label_smoothed_log_prob_gradient", "scaled_gradient_ext",
                 "label_smoothed_cross_entropy", "ctc_loss", "label_relaxation_loss",
                 "linear_label_smoothed_cross_entropy"]:  # fmt: skip
        assert any(f"rf.{name}(" in b.body for b in GENERIC), f"README: no example of rf.{name}"


def test_readme_links_to_docs_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8"))
    assert links and all((ROOT / link).is_file() for link in links), links


@pytest.mark.parametrize("block", GENERIC, ids=lambda b: b.id)
def test_readme_backend_generic_example_runs_and_shows_its_output(block, backend):
    run(block, backend.name)


@pytest.mark.parametrize("block", AS_WRITTEN, ids=lambda b: b.id)
def test_readme_example_runs_and_shows_its_output(block):
    run(block, None)


@pytest.mark.parametrize("block", NOT_CODE, ids=lambda b: b.id)
def test_readme_block_that_is_not_run_says_why(block):
    check_not_code(block)
