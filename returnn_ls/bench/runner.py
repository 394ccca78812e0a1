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
cases (no ``Bench``) is a usage error (exit 2), and so is a ``--device`` or ``--dtype`` its kit does not time
(``BenchKit.device_unavailable``, ``BenchKit.dtypes``; e.g. ``--device cuda`` where torch sees no GPU).

``--device cuda`` (torch): the kit measures (``BenchKit.measure``): times by CUDA events, peak by
``torch.cuda.max_memory_allocated`` above the memory allocated after the warm-up (inputs and gradients held). Off the
CPU the host memory is not measured, so the drawn inputs are kept in a temporary folder for the next subprocess with
the same sizes (drawing 10^9 normal floats takes seconds). ``--dtype`` casts the inputs, drawn as float32. The JSON is
rewritten after every case (``"complete": false`` until the end), so a run that is stopped leaves its results so far.
Run ``python -m returnn_ls.bench --help``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import frontend_backends
from returnn_ls.bench import cases
from returnn_ls.bench.options import add_arguments as _add_arguments
from returnn_ls.bench.report import add_ratios, format_table, plot

__all__ = ["add_bench_parser", "main", "run_bench"]


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to ``subparsers`` (of ``argparse``); run it with :func:`run_bench`."""
    parser = subparsers.add_parser("bench", help="time label-smoothed CE against the frameworks' own")
    _add_arguments(parser)
    return parser


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
    device = spec.get("device", "cpu")
    step = cases.make_step(*args, np.random.default_rng(0), mode=spec["mode"], device=device,
                           dtype=spec.get("dtype", "float32"), cache_dir=spec.get("input_cache"))  # fmt: skip
    measured = kit.measure(step, spec["repeats"], device)
    if measured is not None:
        return measured
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
    known = list(cases.ALL_CASES)
    if not args.cases:
        return list(cases.LOGIT_CASES) + (list(cases.LINEAR_CASES) if args.hidden else [])
    unknown = sorted(set(args.cases) - set(known))
    if unknown:
        args.bench_parser.error(f"argument --cases: unknown cases {unknown}; choose from {known}")
    linear = [c for c in args.cases if cases.is_linear(c)]
    if linear and not args.hidden:
        args.bench_parser.error(f"--cases {' '.join(linear)} needs --hidden (the hidden size of the projection)")
    return [c for c in known if c in args.cases]


def _check_backends(args: argparse.Namespace) -> None:
    """A usage error (exit 2) for a backend of ``--backends`` without benchmark cases (no ``Bench``) or whose
    framework is not importable, or whose kit does not time on ``--device`` here or in ``--dtype``; this imports
    the frameworks, whose kits give the modes, devices and expected skips"""
    device, dtype = getattr(args, "device", "cpu"), getattr(args, "dtype", "float32")
    for backend in args.backends:
        try:
            kit = frontend_backends.bench_kit(backend)
        except ValueError as exc:
            args.bench_parser.error(f"argument --backends: {str(exc).removeprefix('bench: ')}")
        reason = kit.device_unavailable(device)
        if reason is not None:
            args.bench_parser.error(f"argument --device: {device} on {backend}: {reason}")
        if dtype not in kit.dtypes:
            args.bench_parser.error(f"argument --dtype: {dtype} on {backend}: it is timed in "
                                    f"{', '.join(kit.dtypes)} only in this project's bench")  # fmt: skip


def _specs(args: argparse.Namespace) -> list[dict]:
    _check_backends(args)
    keys = ("frames", "hidden", "smoothing", "repeats", "threads", "device", "dtype")
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
    row = {k: spec[k] for k in ("backend", "mode", "vocab", "frames", "hidden", "case", "device", "dtype")}
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
    itemsize = 4 if spec["dtype"] == "float32" else 2
    reason = cases.expected_skip(spec["backend"], spec["case"], sizes, max_memory_gb, spec["device"], itemsize)
    if reason is None:
        return None
    return {"times": [], "peak_mb": None, "skipped": reason, "estimated_peak_mb": cases.estimated_peak_mb(
        spec["case"], *sizes, itemsize=itemsize)}  # fmt: skip


def _write_report(args: argparse.Namespace, specs: list[dict], runs: list[list[dict]], complete: bool) -> dict:
    """Write ``OUT.json`` with the rows of the specs run so far (and their ratios); :return: the report"""
    rows = [_summarise(spec, r) for spec, r in zip(specs, runs) if r]
    add_ratios(rows)
    report = {"command": " ".join(["returnn-ls bench"] + list(getattr(args, "argv", []) or [])),
              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "argv", "func", "bench_parser")},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": os.getloadavg()},
              "complete": complete, "results": rows}  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json.part", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(args.out + ".json.part", args.out + ".json")
    return report


def _run_all(args: argparse.Namespace, specs: list[dict]) -> dict:
    """Run ``specs`` ``--rounds`` times, rewriting the JSON after each; :return: the complete report"""
    runs: list[list[dict]] = [[] for _ in specs]
    for _ in range(args.rounds):
        for i, spec in enumerate(specs):
            runs[i].append(_skip(spec, args.max_memory_gb) or _run_case(spec))
            print(f"  {spec['backend']:<10} {spec['mode']:<8} vocab {spec['vocab']:>6} {spec['case']:<24} done",
                  file=sys.stderr)  # fmt: skip
            _write_report(args, specs, runs, complete=False)
    return _write_report(args, specs, runs, complete=True)


def run_bench(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed ``args`` (see :func:`add_bench_parser`); :return: the report.

    Raises ``SystemExit(1)`` after writing the outputs if a case failed (expected skips are not failures).
    """
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return {}
    specs = _specs(args)
    cache = None if getattr(args, "device", "cpu") == "cpu" else tempfile.mkdtemp(prefix="returnn_ls_bench_")
    try:
        for spec in specs:
            spec["input_cache"] = cache
        report = _run_all(args, specs)
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    rows = report["results"]
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
    if not args.worker:  # a worker runs one case its parent checked
        _selected_cases(args)  # usage errors exit with 2 before anything runs
        _check_backends(args)
    try:
        run_bench(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
