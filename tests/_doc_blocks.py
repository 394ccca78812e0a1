"""The code blocks of the Markdown docs (README.md and docs/*.md) and how the tests run them.

Every fenced block is one of:

- a doctest (```` ```pycon ````, or ```` ```python ```` starting with ``>>>``): run with :mod:`doctest`, its shown
  output compared (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``); one that shows no output must ``assert``;
- a script (```` ```python ````): executed, and it must ``assert`` something;
- an excerpt (```` ```py ````): the sentence before it names its file (``Excerpt of `path```), and it must appear
  in that file verbatim (the demos it comes from run in the tests);
- a MyST directive (```` ```{toctree} ````): not code;
- anything else (shell commands, config or output listings): preceded by ``<!-- not run: REASON -->``, whose reason
  any test file or demo it names must exist.

A block that uses no framework directly but selects one (``rf.select_backend("torch")``) is backend-generic: it
runs once per registered backend, with the name replaced.
"""

from __future__ import annotations

import doctest
import linecache
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]+?) -->\s*$")
EXCERPT = re.compile(r"Excerpt of\s+\[?`(?P<path>[^`]+)`")
FRAMEWORK = re.compile(r"\b(import (torch|tensorflow|keras)|from (torch|tensorflow|keras)|(torch|tf|keras)\.)")
SELECTED = re.compile(r"""select_backend\(["'](\w+)["']\)""")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # relative to the repository root
    line: int
    lang: str
    body: str
    before: str  # the text between the previous block (or the file's start) and this one

    @property
    def kind(self) -> str:
        """:return: ``"doctest"``, ``"script"``, ``"excerpt"``, ``"directive"`` or ``"listing"``"""
        if self.lang == "pycon" or (self.lang == "python" and self.body.lstrip().startswith(">>>")):
            return "doctest"
        if self.lang == "python":
            return "script"
        if self.lang == "py":
            return "excerpt"
        return "directive" if self.lang.startswith("{") else "listing"

    @property
    def generic(self) -> bool:
        """:return: whether the block runs on every backend (it selects one but uses no framework directly)"""
        runs = self.kind in ("doctest", "script")
        return runs and bool(SELECTED.search(self.body)) and not FRAMEWORK.search(self.body)

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """:return: the fenced blocks of the Markdown file ``path``"""
    text = path.read_text(encoding="utf-8")
    out, last = [], 0
    for m in FENCE.finditer(text):
        lang = (m.group("info").split() or [""])[0]
        body = "\n".join(line[len(m.group("indent")) :] for line in m.group("body").split("\n"))
        line = text.count("\n", 0, m.start()) + 1
        out.append(Block(str(path.relative_to(ROOT)), line, lang, body, text[last : m.start()]))
        last = m.end()
    return out


def for_backends(all_blocks: list[Block], backends: list[str]) -> list[tuple[Block, str | None]]:
    """:return: (block, backend to run it on, or None for as written) for every block that runs"""
    out: list[tuple[Block, str | None]] = []
    for b in all_blocks:
        if b.kind in ("doctest", "script"):
            out += [(b, name) for name in backends] if b.generic else [(b, None)]
    return out


def run(block: Block, backend: str | None) -> None:
    """Run a doctest or script block (on ``backend``: with its ``select_backend`` calls changed to that name)."""
    body = SELECTED.sub(f'select_backend("{backend}")', block.body) if backend else block.body
    assert "+SKIP" not in body, f"{block.id}: examples are not skipped"
    globs = {"__name__": "__docs__"}
    if block.kind == "script":
        assert re.search(r"^\s*assert\b", body, re.M), f"{block.id}: a block that shows no output must assert"
        exec(compile(body, block.id, "exec"), globs)
        return
    test = doctest.DocTestParser().get_doctest(body, globs, block.id, block.path, block.line)
    shows = any(e.want.strip() for e in test.examples)
    assert test.examples and (shows or "assert " in body), f"{block.id}: shows no output and asserts nothing"
    for i, example in enumerate(test.examples):  # tf.function's autograph reads the source of what it converts
        name = f"<doctest {test.name}[{i}]>"
        linecache.cache[name] = (len(example.source), None, example.source.splitlines(True), name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append, clear_globs=False)
    assert runner.failures == 0, "".join(report)


def check_not_code(block: Block) -> None:
    """A listing must say why it is not run; an excerpt must be verbatim in the file it names."""
    if block.kind == "excerpt":
        m = EXCERPT.search(block.before[-400:])
        assert m, f"{block.id}: a ```py excerpt must follow 'Excerpt of `path`'"
        source = (ROOT / m.group("path")).read_text(encoding="utf-8")
        assert block.body.strip() in source, f"{block.id}: the excerpt is not verbatim in {m.group('path')}"
    elif block.kind == "listing":
        m = NOT_RUN.search(block.before)
        assert m, f"{block.id}: a ```{block.lang} block needs '<!-- not run: REASON -->' right before it"
        assert len(m.group("reason").split()) >= 3, f"{block.id}: give a reason, got {m.group('reason')!r}"
        for named in re.findall(r"\b((?:tests|demos)/[\w./-]+\.(?:py|config|json))", m.group("reason")):
            assert (ROOT / named).is_file(), f"{block.id}: the reason names {named}, which does not exist"
