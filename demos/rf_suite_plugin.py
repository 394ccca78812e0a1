"""A pytest plugin (``-p rf_suite_plugin``) that logs each test's outcome as one JSON line to ``$RF_SUITE_LOG``.

Lines: ``{"event": "collected", "ids": [...]}``, ``{"event": "start", "id": ...}`` before each test (so a crash or
timeout names the test that was running) and ``{"event": "report", "id", "when", "outcome", "error_type",
"error", "where", "origin", "duration"}`` per setup/call/teardown phase that did not simply pass (and per passed call).
Each test gets at most ``$RF_SUITE_TEST_TIMEOUT`` seconds (SIGALRM; 0: none).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import signal
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

if importlib.util.find_spec("triton") is not None:  # Triton before TensorFlow (both bundle LLVM), as tests/conftest.py
    if not glob.glob("/dev/nvidia[0-9]*"):
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import triton  # noqa: F401

_LOG = os.environ.get("RF_SUITE_LOG", "rf_suite_log.jsonl")


def _write(record: dict[str, Any]) -> None:
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


class TestTimeout(Exception):
    """The test ran longer than ``$RF_SUITE_TEST_TIMEOUT`` seconds."""


def pytest_collection_finish(session: pytest.Session) -> None:  # noqa: D103
    import returnn_ls

    _write({"event": "collected", "ids": [item.nodeid for item in session.items], "returnn_ls": returnn_ls.__file__})


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:  # noqa: D103
    _write({"event": "start", "id": nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:  # noqa: D103
    seconds = int(float(os.environ.get("RF_SUITE_TEST_TIMEOUT", "0")))

    def on_alarm(*_args: Any) -> None:
        raise TestTimeout(f"the test ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm) if seconds > 0 else None
    signal.alarm(max(seconds, 0))
    try:
        yield
    finally:
        signal.alarm(0)
        if previous is not None:
            signal.signal(signal.SIGALRM, previous)


def _innermost(tb: Any) -> tuple[str, str]:
    """:return: the innermost frame ("file:line in func") and whose code it is: ``returnn_ls``, ``harness``
    (``rf_suite_*``), ``test`` or ``other``"""
    frames = traceback.extract_tb(tb)
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    for frame in reversed(frames):
        name = frame.filename.replace(os.sep, "/")
        if "/returnn_ls/" in name or "/frontend_backends/" in name:
            return where, "returnn_ls"
        if "/rf_suite_" in name or name.endswith("/rf_utils.py"):
            return where, "harness"
        if os.path.basename(name).startswith("test_"):
            return where, "test"
    return where, "other"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:  # noqa: D103
    outcome = yield
    report = outcome.get_result()
    if report.passed and call.when != "call":
        return
    record = {"event": "report", "id": item.nodeid, "when": call.when, "outcome": report.outcome,
              "duration": round(call.duration, 3)}  # fmt: skip
    excinfo = call.excinfo
    if excinfo is not None:
        if report.skipped:
            record["error"] = str(getattr(excinfo.value, "msg", excinfo.value)).strip().split("\n")[0][:300]
        else:
            lines = [ln.strip() for ln in str(excinfo.value).strip().split("\n") if ln.strip()]
            message = " | ".join(lines[:2]) if lines and len(lines[0]) < 40 else (lines[0] if lines else "")
            where, origin = _innermost(excinfo.tb)
            record.update(error_type=excinfo.type.__name__, error=message[:300], where=where, origin=origin)
            chain = excinfo.value.__cause__ or excinfo.value.__context__
            if chain is not None and not message:
                record["error"] = f"(from {type(chain).__name__}: {str(chain).strip().split(chr(10))[0][:250]})"
    _write(record)
