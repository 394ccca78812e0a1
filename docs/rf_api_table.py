"""Write the rf API coverage table into docs/rf_api.md: every public name of RETURNN's frontend in the areas of
``demos/rf_suite_report.py``, with whether ``returnn_ls`` has it. RETURNN's names come from the installed
``returnn`` package (the version the dev set-up pins), ours from the work tree.

    python docs/rf_api_table.py          # rewrite the table in docs/rf_api.md
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGE = HERE / "rf_api.md"
BEGIN, END = "<!-- rf-api-table: begin -->", "<!-- rf-api-table: end -->"


def table() -> str:
    """:return: the Markdown table (``rf_suite_report.api_table``) of the installed RETURNN against the work tree"""
    sys.path.insert(0, str(ROOT / "demos"))
    try:
        import returnn_rf_suite
        import rf_suite_report
    finally:
        sys.path.remove(str(ROOT / "demos"))
    spec = importlib.util.find_spec("returnn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("RETURNN is not installed (pip install -e '.[dev]' and the Makefile's RETURNN_PIN)")
    base = Path(list(spec.submodule_search_locations)[0]).parent

    def read(path: str) -> str:
        return (base / path).read_text(encoding="utf-8")

    rows = rf_suite_report.api_rows(read, lambda entries: returnn_rf_suite.lookup_in_returnn_ls(entries, ROOT))
    return rf_suite_report.api_table(rows)


def main() -> None:
    """Replace the text between the markers of docs/rf_api.md by the current table."""
    text = PAGE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    PAGE.write_text(f"{text[:start]}\n{table()}\n{text[end:]}", encoding="utf-8")
    print(f"written: {PAGE}")


if __name__ == "__main__":
    main()
