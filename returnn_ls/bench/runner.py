"""``returnn-ls bench``: time and peak memory of label-smoothed cross entropy, ours against the frameworks'.

Every (backend, mode, vocabulary size, case) runs in its own subprocess: import the framework, build the inputs,
run one warm-up fwd+bwd step (which also traces and compiles in the compiled modes) and ``--repeats`` timed steps.
The peak memory is the peak resident set size above a baseline (reset through ``/proc/self/clear_refs``): on torch
the baseline is taken after the warm-up, so the one-time memory of lazy imports and compilation does not count;
TensorFlow's allocator keeps the buffers of one step for the next (after a warm-up its steps would look free), so
there the baseline is taken before the warm-up and the peak covers all steps (tracing and XLA compilation included;
the backend's kit says which applies: ``BenchKit.keeps_buffers``, see :mod:`frontend_backends.bench_base`).
Reported are the median time and the peak RSS above the baseline. ``--mode`` picks the execution modes:
``eager``, ``compiled`` (``torch.compile`` with inductor; ``tf.function`` and ``tf.function(jit_compile=True)``)
or ``all`` (the default); each backend's kit maps them onto its execution modes (``BenchKit.modes``). With
``--rounds N`` the subprocesses run N times, the cases alternating, and the medians are over all rounds. Ratios
are against the reference case of the same backend and mode (:data:`returnn_ls.bench.cases.REFERENCE`); with
several rounds, the time ratio is the median of the per-round ratios, which cancels load that changes between
rounds. A case that fails makes the command exit with 1 (after the table); expected skips (a combination that does
not exist, an unfused case that would need more than ``--max-memory-gb``) do not. A backend without benchmark
cases (no ``Bench``) is a usage error (exit 2). Run ``python -m returnn_ls.bench --help``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import frontend_backends
from returnn_ls.bench import cases
from returnn_ls.bench.report import add_ratios, format_table, plot

__all__ = ["add_bench_parser", "main", "run_bench"]

DEFAULT_VOCAB = (1000, 3000, 10000, 30000, 100000)


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to ``subparsers`` (of ``argparse``); run it with :func:`run_bench`."""
    parser = subparsers.add_parser("bench", help="time label-smoothed CE against the frameworks' own")
    _add_arguments(parser)
    return parser


def _bounded(kind: type, low: float, what: str):
    """:return: an argparse ``type`` that parses ``kind`` and requires a value >= ``low`` (a usage error, exit 2)"""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value >= low:  # also rejects NaN
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = _bounded(float, 0.0, "a number in [0, 1]")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    positive = _bounded(int, 1, "a positive integer")
    parser.add_argument("--frames", type=positive, default=4096, help="frames (rows of the logits; default 4096)")
    parser.add_argument("--vocab", type=_bounded(int, 2, "an integer >= 2"), nargs="+", default=list(DEFAULT_VOCAB),
                        help="vocabulary sizes")  # fmt: skip
    parser.add_argument(
        "--hidden",
        type=_bounded(int, 0, "an integer >= 0"),
        default=0,
        help="also time the fused projection with this hidden size (needed by the linear_* cases)",
    )
    parser.add_argument("--smoothing", type=_fraction, default=0.1, help="label smoothing a (default 0.1)")
    parser.add_argument("--backends", nargs="+", default=list(frontend_backends.backend_names()),
                        choices=frontend_backends.backend_names())  # fmt: skip
    parser.add_argument(
        "--mode",
        default="all",
        choices=cases.MODE_CHOICES,
        help="eager, compiled (torch.compile; tf.function and XLA) or all (default)",
    )
    parser.add_argument("--cases", nargs="+", help="a subset of the cases (default: all)")
    parser.add_argument("--repeats", type=positive, default=5, help="timed runs per case after one warm-up (default 5)")
    parser.add_argument("--rounds", type=positive, default=1, help="run all cases this many times, alternating")
    parser.add_argument("--threads", type=positive, default=2, help="intra-op threads per framework (default 2)")
    parser.add_argument(
        "--max-memory-gb",
        type=_bounded(float, 0.0, "a number >= 0"),
        default=12.0,
        help="skip unfused cases whose memory, estimated from the sizes, exceeds this (default 12)",
    )
    parser.add_argument("--out", default="bench", help="writes OUT.json and OUT.png (default ./bench)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw OUT.png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.set_defaults(bench_parser=parser)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: peak since the start


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak includes the import and set-up


def _worker(spec: dict) -> dict:
    """Run one case in this process; :return: its times and peak memory"""
    import numpy as np

    kit = frontend_backends.bench_kit(spec["backend"])
    kit.set_threads(spec["threads"])
    args = (spec["backend"], spec["case"], spec["frames"], spec["vocab"], spec["hidden"], spec["smoothing"])
    step = cases.make_step(*args, np.random.default_rng(0), mode=spec["mode"])
    measure_first = kit.keeps_buffers
    if measure_first:
        baseline = _start_peak()
    step()  # warm-up: traces and compiles in the compiled modes
    if not measure_first:
        getattr(step, "release", lambda: None)()  # the warm-up's gradients
        baseline = _start_peak()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"times": times, "peak_mb": max(0, _rss_kb("VmHWM") - baseline) / 1024}


def _start_peak() -> int:
    """Collect garbage, reset the peak RSS; :return: the RSS now (KiB), the baseline of the peak"""
    gc.collect()
    baseline = _rss_kb("VmRSS")
    _reset_peak()
    return baseline


def _run_case(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "returnn_ls.bench", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"times": [], "peak_mb": None, "failed": reason[:300]}
    return json.loads(lines[-1])


def _selected_cases(args: argparse.Namespace) -> list[str]:
    """:return: the cases to run; a usage error (exit 2) for unknown cases or linear cases without ``--hidden``"""
    known = list(cases.LOGIT_CASES + cases.LINEAR_CASES)
    if not args.cases:
        return list(cases.LOGIT_CASES) + (list(cases.LINEAR_CASES) if args.hidden else [])
    unknown = sorted(set(args.cases) - set(known))
    if unknown:
        args.bench_parser.error(f"argument --cases: unknown cases {unknown}; choose from {known}")
    linear = [c for c in args.cases if c in cases.LINEAR_CASES]
    if linear and not args.hidden:
        args.bench_parser.error(f"--cases {' '.join(linear)} needs --hidden (the hidden size of the projection)")
    return [c for c in known if c in args.cases]


def _check_backends(args: argparse.Namespace) -> None:
    """A usage error (exit 2) for a backend of ``--backends`` without benchmark cases (no ``Bench``) or whose
    framework is not importable; this imports the frameworks, whose kits give the modes and expected skips"""
    for backend in args.backends:
        try:
            frontend_backends.bench_kit(backend)
        except ValueError as exc:
            args.bench_parser.error(f"argument --backends: {str(exc).removeprefix('bench: ')}")


def _specs(args: argparse.Namespace) -> list[dict]:
    _check_backends(args)
    keys = ("frames", "hidden", "smoothing", "repeats", "threads")
    common = {k: getattr(args, k) for k in keys}
    return [
        dict(common, backend=b, mode=m, vocab=v, case=c)
        for b in args.backends
        for m in cases.framework_modes(b, args.mode)
        for v in args.vocab
        for c in _selected_cases(args)
    ]


def _summarise(spec: dict, runs: list[dict]) -> dict:
    times = [t for r in runs for t in r["times"]]
    peaks = [r["peak_mb"] for r in runs if r["peak_mb"] is not None]
    row = {k: spec[k] for k in ("backend", "mode", "vocab", "frames", "hidden", "case")}
    row.update(time_s=statistics.median(times) if times else None, times=times,
               round_medians=[statistics.median(r["times"]) for r in runs if r["times"]],
               peak_mb=statistics.median(peaks) if peaks else None)  # fmt: skip
    for key in ("failed", "skipped", "estimated_peak_mb"):
        values = [r[key] for r in runs if r.get(key)]
        if values:
            row[key] = values[0]
    return row


def _skip(spec: dict, max_memory_gb: float) -> dict | None:
    """:return: the result of an expected skip of ``spec``, or None to run it"""
    sizes = (spec["frames"], spec["vocab"], spec["hidden"])
    reason = cases.expected_skip(spec["backend"], spec["case"], sizes, max_memory_gb)
    if reason is None:
        return None
    return {"times": [], "peak_mb": None, "skipped": reason, "estimated_peak_mb": cases.estimated_peak_mb(
        spec["case"], *sizes)}  # fmt: skip


def run_bench(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed ``args`` (see :func:`add_bench_parser`); :return: the report.

    Raises ``SystemExit(1)`` after writing the outputs if a case failed (expected skips are not failures).
    """
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return {}
    specs = _specs(args)
    runs: list[list[dict]] = [[] for _ in specs]
    for _ in range(args.rounds):
        for i, spec in enumerate(specs):
            runs[i].append(_skip(spec, args.max_memory_gb) or _run_case(spec))
            print(f"  {spec['backend']:<10} {spec['mode']:<8} vocab {spec['vocab']:>6} {spec['case']:<24} done",
                  file=sys.stderr)  # fmt: skip
    rows = [_summarise(spec, r) for spec, r in zip(specs, runs)]
    add_ratios(rows)
    report = {"command": " ".join(["returnn-ls bench"] + list(getattr(args, "argv", []) or [])),
              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "argv", "func", "bench_parser")},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": os.getloadavg()},
              "results": rows}  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(format_table(rows))
    if not args.no_plot:
        plot(rows, args.out + ".png")
    failed = [f"{r['backend']} {r['mode']} {r['case']}" for r in rows if r.get("failed")]
    if failed:
        print(f"returnn-ls bench: error: {len(failed)} case(s) failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m returnn_ls.bench [options]``; :return: the exit code (1 if a case failed)"""
    parser = argparse.ArgumentParser(prog="returnn-ls bench", description=__doc__.split("\n")[0])
    _add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    _selected_cases(args)  # usage errors exit with 2 before anything runs
    _check_backends(args)
    try:
        run_bench(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
