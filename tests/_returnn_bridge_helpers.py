"""Shared by the bridge tests: run Python (RETURNN, or a worker of ours) in subprocesses that import this
checkout, and read RETURNN's learning-rate file."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_python(args: Sequence[str], *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` with this checkout first on the path; fail with the end of its output if it fails."""
    proc = subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return proc


def run_python_parallel(jobs: dict[str, Sequence[str]], folder: Path, *, timeout: float = 300) -> None:
    """Run ``python ARGS`` for every job at once (output in ``folder/<job>.log``); fail if any of them fails."""
    procs = {}
    for name, args in jobs.items():
        with open(folder / f"{name}.log", "w") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, *args], env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
    try:
        codes = {name: proc.wait(timeout=timeout) for name, proc in procs.items()}
    finally:  # on a timeout, stop the jobs that still run, with their own subprocesses (RETURNN's data workers)
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    failed = {name: code for name, code in codes.items() if code != 0}
    for name in failed:
        tail = (folder / f"{name}.log").read_text()[-3000:]
        raise AssertionError(f"job {name} failed ({failed[name]}):\n{tail}")


def read_learning_rate_file(path: Path) -> dict[int, dict[str, float]]:
    """:return: epoch -> {score name: value} from RETURNN's ``learning_rate_file`` (``train_loss_ce``; RETURNN's
    TF engine writes ``train_loss:ce``, read as ``train_loss_ce``), without the ``:meta:`` entries"""
    epochs = eval(
        path.read_text(),
        {"__builtins__": {}, "nan": math.nan, "inf": math.inf, "EpochData": lambda learningRate, error: error},
    )  # noqa: S307
    return {
        epoch: {k.replace(":", "_"): float(v) for k, v in scores.items() if not k.startswith(":meta:")}
        for epoch, scores in epochs.items()
    }


def is_finite(values) -> bool:
    """:return: whether every value is a finite number"""
    return all(math.isfinite(v) for v in values)
