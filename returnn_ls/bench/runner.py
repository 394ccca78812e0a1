"""``returnn-ls bench``: time and peak memory of label-smoothed cross entropy, ours against the frameworks'.

Every (backend, vocabulary size, case) runs in its own subprocess: import the framework, build the inputs,
measure the resident set size (the baseline), reset the peak (``/proc/self/clear_refs``), run one warm-up
fwd+bwd step and ``--repeats`` timed ones. Reported are the median time and the peak RSS above the baseline.
With ``--rounds N`` the subprocesses run N times, the cases alternating, and the medians are over all rounds.
Ratios are against the framework's own label smoothing (``framework_ls``, ``linear_framework_ls``), for
``ours_path`` also against ``ours_path_no_smoothing``. Run ``python -m returnn_ls.bench --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from frontend_backends import BACKEND_NAMES

__all__ = ["add_bench_parser", "main", "run_bench"]

DEFAULT_VOCAB = (1000, 3000, 10000, 30000, 100000)
_REFERENCE = {"linear_framework_ls": "linear_framework_ls", "ours_linear_fused": "linear_framework_ls",
              "ours_path": "framework_ls", "ours_fused": "framework_ls"}  # fmt: skip


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to ``subparsers`` (of ``argparse``); run it with :func:`run_bench`."""
    parser = subparsers.add_parser("bench", help="time label-smoothed CE against the frameworks' own")
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=4096, help="frames (rows of the logits; default 4096)")
    parser.add_argument("--vocab", type=int, nargs="+", default=list(DEFAULT_VOCAB), help="vocabulary sizes")
    parser.add_argument("--hidden", type=int, default=0, help="also time the fused projection with this hidden size")
    parser.add_argument("--smoothing", type=float, default=0.1, help="label smoothing a (default 0.1)")
    parser.add_argument("--backends", nargs="+", default=list(BACKEND_NAMES), choices=BACKEND_NAMES)
    parser.add_argument("--cases", nargs="+", help="a subset of the cases (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case after one warm-up (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="run all cases this many times, alternating")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per framework (default 2)")
    parser.add_argument("--out", default="bench", help="writes OUT.json and OUT.png (default ./bench)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw OUT.png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def _set_threads(backend: str, threads: int) -> None:
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


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

    _set_threads(spec["backend"], spec["threads"])
    if spec["backend"] == "torch":
        from returnn_ls.bench.torch_cases import make_torch as make
    else:
        from returnn_ls.bench.tensorflow_cases import make_tensorflow as make
    args = (spec["case"], spec["frames"], spec["vocab"], spec["hidden"], spec["smoothing"])
    step = make(*args, np.random.default_rng(0))
    baseline = _rss_kb("VmRSS")
    _reset_peak()
    step()  # warm-up
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"times": times, "peak_mb": max(0, _rss_kb("VmHWM") - baseline) / 1024}


def _run_case(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "returnn_ls.bench", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"times": [], "peak_mb": None, "skipped": reason[:200]}
    return json.loads(lines[-1])


def _specs(args: argparse.Namespace) -> list[dict]:
    from returnn_ls.bench.cases import LINEAR_CASES, LOGIT_CASES

    cases = list(LOGIT_CASES) + (list(LINEAR_CASES) if args.hidden else [])
    if args.cases:
        unknown = set(args.cases) - set(cases)
        if unknown:
            raise SystemExit(f"bench: unknown cases {sorted(unknown)}; choose from {cases}")
        cases = [c for c in cases if c in args.cases]
    keys = ("frames", "hidden", "smoothing", "repeats", "threads")
    common = {k: getattr(args, k) for k in keys}
    return [dict(common, backend=b, vocab=v, case=c) for b in args.backends for v in args.vocab for c in cases]


def _summarise(spec: dict, runs: list[dict]) -> dict:
    times = [t for r in runs for t in r["times"]]
    peaks = [r["peak_mb"] for r in runs if r["peak_mb"] is not None]
    row = {k: spec[k] for k in ("backend", "vocab", "frames", "hidden", "case")}
    row.update(time_s=statistics.median(times) if times else None, times=times,
               peak_mb=statistics.median(peaks) if peaks else None)  # fmt: skip
    skipped = [r["skipped"] for r in runs if "skipped" in r]
    if skipped:
        row["skipped"] = skipped[0]
    return row


def _add_ratios(rows: list[dict]) -> None:
    index = {(r["backend"], r["vocab"], r["case"]): r for r in rows}
    for r in rows:
        ref_name = _REFERENCE.get(r["case"], "framework_ls")
        ref = index.get((r["backend"], r["vocab"], ref_name)) if ref_name else None
        for key in ("time", "peak"):
            value, base = r[f"{key}_s" if key == "time" else "peak_mb"], None
            if ref is not None:
                base = ref["time_s"] if key == "time" else ref["peak_mb"]
            r[f"{key}_ratio"] = value / base if value is not None and base else None
        plain = index.get((r["backend"], r["vocab"], "ours_path_no_smoothing"))
        if r["case"] == "ours_path" and plain and plain["time_s"] and r["time_s"]:
            r["time_ratio_vs_no_smoothing"] = r["time_s"] / plain["time_s"]


def format_table(rows: list[dict]) -> str:
    """:return: a Markdown table of ``rows`` (times, peak memory and ratios)"""

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = ["| backend | vocab | case | time (s) | peak (MB) | time ratio | memory ratio | note |",
             "|---|---:|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        note = r.get("skipped", "")
        if "time_ratio_vs_no_smoothing" in r:
            note = f"{r['time_ratio_vs_no_smoothing']:.2f}x of ours_path_no_smoothing"
        lines.append(
            f"| {r['backend']} | {r['vocab']} | {r['case']} | {num(r['time_s'], '.3f')} | {num(r['peak_mb'], '.0f')} "
            f"| {num(r['time_ratio'], '.2f')} | {num(r['peak_ratio'], '.2f')} | {note} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    """Draw time and peak memory against the vocabulary size (log-log), one line per backend and case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    series: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["time_s"] is not None:
            series.setdefault((r["backend"], r["case"]), []).append(r)
    for (backend, case), points in sorted(series.items()):
        points.sort(key=lambda r: r["vocab"])
        style = "-" if backend == "torch" else "--"
        for ax, key in zip(axes, ("time_s", "peak_mb")):
            ax.plot([p["vocab"] for p in points], [max(p[key] or 0, 1e-3) for p in points], style, marker="o",
                    label=f"{backend}: {case}")  # fmt: skip
    for ax, label in zip(axes, ("fwd+bwd time (s, median)", "peak RSS above baseline (MB)")):
        ax.set(xscale="log", yscale="log", xlabel="vocabulary size", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"label-smoothed CE, {rows[0]['frames']} frames" if rows else "")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bench(args: argparse.Namespace) -> dict:
    """Run the benchmark described by parsed ``args`` (see :func:`add_bench_parser`); :return: the report"""
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return {}
    specs = _specs(args)
    runs: list[list[dict]] = [[] for _ in specs]
    for _ in range(args.rounds):
        for i, spec in enumerate(specs):
            runs[i].append(_run_case(spec))
            print(f"  {spec['backend']:<10} vocab {spec['vocab']:>6} {spec['case']:<24} done", file=sys.stderr)
    rows = [_summarise(spec, r) for spec, r in zip(specs, runs)]
    _add_ratios(rows)
    report = {"command": " ".join(["returnn-ls bench"] + list(getattr(args, "argv", []) or [])),
              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "argv", "func")},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "results": rows}  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(format_table(rows))
    if not args.no_plot:
        plot(rows, args.out + ".png")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m returnn_ls.bench [options]``; :return: the exit code"""
    parser = argparse.ArgumentParser(prog="returnn-ls bench", description=__doc__.split("\n")[0])
    _add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    run_bench(args)
    return 0
