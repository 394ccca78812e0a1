"""What each kind of smoothing does on G2P: train every variant with several seeds, score the test words, and
write the table (``demos/figures/g2p_sweep.json``) and its figures (``g2p_sweep.png``,
``g2p_sweep_reliability.png``).

    python demos/g2p/sweep.py --out returnn_ls_out/g2p_sweep [--seeds 3] [--epochs 8] [--ctc-epochs 1] [--jobs 2]
    python demos/g2p/sweep.py --out returnn_ls_out/g2p_sweep --plot-only   # table and figures from finished runs

Each run is ``demos/g2p/run.py`` in a subprocess (attention.config or ctc.config with ``++`` overrides: the
smoothing, ``seed``, ``num_epochs``), with ``--out OUT/VARIANT/seed-N``; a run whose ``report.json`` exists is
not run again, so an interrupted sweep resumes. ``--jobs`` runs are started at once, each with
``OMP_NUM_THREADS = cores // jobs``. The sweep's runs are shorter than ``make g2p``'s (``--epochs``, the learning
rate schedule of the config) so that every variant gets several seeds on a small machine: compare the variants
with each other, not with the full run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ATTENTION, CTC = os.path.join(HERE, "attention.config"), os.path.join(HERE, "ctc.config")
METRICS = ("per", "wer", "nll", "ece")

#: name -> (model, ``++`` overrides, what it is)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "none": ("attention", {"label_smoothing": 0.0}, "no smoothing"),
    "loss 0.1": ("attention", {"label_smoothing": 0.1}, "CE against the smoothed target (RETURNN convention)"),
    "loss 0.2": ("attention", {"label_smoothing": 0.2}, "as above, a = 0.2"),
    "uniform 0.1": ("attention", {"label_smoothing": 0.1, "label_smoothing_convention": "uniform"},
                    "loss smoothing, PyTorch/Keras convention"),
    "gradient 0.1": ("attention", {"label_smoothing": 0.1, "smoothing_kind": "gradient"},
                     "plain CE, only its gradient smoothed (label_smoothed_log_prob_gradient)"),
    "gradient 0.2": ("attention", {"label_smoothing": 0.2, "smoothing_kind": "gradient"}, "as above, a = 0.2"),
    "relaxation 0.1": ("attention", {"label_smoothing": 0.1, "smoothing_kind": "relaxation"},
                       "label relaxation, alpha = 0.1"),
    "ctc none": ("ctc", {"label_smoothing": 0.0}, "CTC, no smoothing"),
    "ctc 0.1 blank excluded": ("ctc", {"label_smoothing": 0.1}, "CTC posterior smoothed over the phones only"),
    "ctc 0.1 blank included": ("ctc", {"label_smoothing": 0.1, "smooth_blank": True},
                               "CTC posterior smoothed over all classes, the blank included"),
}  # fmt: skip


def _command(variant: str, seed: int, args: argparse.Namespace) -> tuple[list[str], str]:
    """:return: the command line of one run and its output folder"""
    model, overrides, _ = VARIANTS[variant]
    out = os.path.join(args.out, variant.replace(" ", "_"), f"seed-{seed}")
    epochs = args.ctc_epochs if model == "ctc" else args.epochs
    cmd = [sys.executable, os.path.join(HERE, "run.py"), CTC if model == "ctc" else ATTENTION, "--out", out]
    if args.backend:
        cmd += ["--backend", args.backend]
    if args.test_seqs:
        cmd += ["--test-seqs", str(args.test_seqs)]
    overrides = {**overrides, "seed": seed, "num_epochs": epochs}
    if args.train_seqs:  # a quick check of the sweep itself: a few words in each set
        data = {"class": "CMUDictDataset", **({"seq_postfix": []} if model == "ctc" else {})}
        overrides["train"] = {**data, "subset": "train", "num_seqs": args.train_seqs}
        overrides["dev"] = {**data, "subset": "dev", "num_seqs": args.train_seqs}
    for name, value in overrides.items():
        cmd += [f"++{name}", value if isinstance(value, str) else repr(value)]
    return cmd, out


def _run(variant: str, seed: int, args: argparse.Namespace) -> str:
    """Run one variant and seed unless its report exists; :return: a line saying what happened"""
    cmd, out = _command(variant, seed, args)
    if os.path.exists(os.path.join(out, "report.json")):
        return f"{variant} seed {seed}: done before"
    os.makedirs(out, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads}
    with open(os.path.join(out, "log.txt"), "w", encoding="utf-8") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False).returncode
    return f"{variant} seed {seed}: " + ("ok" if rc == 0 else f"failed (exit {rc}; see {out}/log.txt)")


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(np.min(values)), "max": float(np.max(values))}  # fmt: skip


def collect(args: argparse.Namespace) -> dict:
    """:return: the sweep table: per variant its runs' scores and their mean and spread over the seeds"""
    table: dict[str, Any] = {}
    for variant, (model, overrides, about) in VARIANTS.items():
        reports = []
        for seed in range(args.seeds):
            path = os.path.join(_command(variant, seed, args)[1], "report.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    reports.append(json.load(f))
        if not reports:
            continue
        bins = [r["reliability"] for r in reports]
        table[variant] = {
            "model": model, "overrides": overrides, "about": about, "seeds": len(reports),
            **{m: _spread([r[m] for r in reports]) for m in METRICS},
            "train_seconds": _spread([r["seconds"]["train"] for r in reports]),
            "runs": [{"seed": s, **{m: r[m] for m in METRICS}, "train_seconds": r["seconds"]["train"]}
                     for s, r in enumerate(reports)],
            "reliability": {k: np.sum([b[k] for b in bins], 0).tolist() if k == "count" else
                            np.mean([b[k] for b in bins], 0).tolist() for k in bins[0]},
        }  # fmt: skip
    first = next(iter(table.values()), None)
    sample = os.path.join(_command(next(iter(table)), 0, args)[1], "report.json") if first else None
    meta = {}
    if sample:
        with open(sample, encoding="utf-8") as f:
            report = json.load(f)
        meta = {"backend": report["backend"], "device": report["device"], "beam_size": report["beam_size"],
                "test_words": report["words"]}  # fmt: skip
    return {
        "command": " ".join(["python demos/g2p/sweep.py", *map(shlex.quote, args.argv)]),
        "epochs": {"attention": args.epochs, "ctc": args.ctc_epochs}, **meta, "variants": table,
    }  # fmt: skip


PANELS = (("per", "test PER (%)", 100), ("wer", "test WER (%)", 100), ("nll", "test NLL per phone", 1),
          ("ece", "test ECE (%)", 100))  # fmt: skip


def _scores(table: dict, stem: str) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    variants = table["variants"]
    names = list(variants)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 4.4))
    colors = ["tab:orange" if variants[n]["model"] == "ctc" else "tab:blue" for n in names]
    for ax, (metric, label, scale) in zip(axes, PANELS):
        means = [variants[n][metric]["mean"] * scale for n in names]
        stds = [variants[n][metric]["std"] * scale for n in names]
        ax.barh(range(len(names)), means, xerr=stds, color=colors, alpha=0.6, capsize=3)
        for i, n in enumerate(names):
            ax.plot([r[metric] * scale for r in variants[n]["runs"]], [i] * len(variants[n]["runs"]), "k.", ms=4)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    epochs = table["epochs"]
    fig.suptitle(f"G2P on CMUdict: mean and std over {max(v['seeds'] for v in variants.values())} seeds (dots: "
                 f"runs); attention {epochs['attention']} epochs, CTC {epochs['ctc']} epochs, {table.get('backend')}")
    fig.tight_layout()
    path = f"{stem}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _reliability(table: dict, stem: str) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    variants = table["variants"]
    groups = [[n for n in variants if variants[n]["model"] == m] for m in ("attention", "ctc")]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 5), squeeze=False)
    for ax, names in zip(axes[0], groups):
        ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", label="calibrated")
        for n in names:
            bins = variants[n]["reliability"]
            points = [(c, a) for c, a, k in zip(bins["confidence"], bins["accuracy"], bins["count"]) if k > 0]
            ax.plot(*zip(*points), marker="o", ms=3, label=f"{n} (ECE {variants[n]['ece']['mean']:.2%})")
        ax.set_xlabel("confidence (largest posterior)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{variants[names[0]]['model']} model: test phones, seeds pooled")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = f"{stem}_reliability.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(table: dict, table_path: str) -> list[str]:
    """Write the scores (``STEM.png``) and the reliability diagrams (``STEM_reliability.png``) next to the table
    ``STEM.json``; :return: their paths"""
    import matplotlib  # noqa: PLC0415 - only where figures are made

    matplotlib.use("Agg")
    if not table["variants"]:
        return []
    stem = os.path.splitext(table_path)[0]
    return [_scores(table, stem), _reliability(table, stem)]


def markdown_table(table: dict) -> str:
    """:return: the sweep as a Markdown table (mean ± std over the seeds; what docs/g2p.md shows)"""
    lines = ["| variant | seeds | test PER (%) | test WER (%) | test NLL | test ECE (%) | train s |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in table["variants"].items():
        cells = [f"{row[m]['mean'] * s:.{d}f} ± {row[m]['std'] * s:.{d}f}"
                 for m, s, d in (("per", 100, 2), ("wer", 100, 1), ("nll", 1, 3), ("ece", 100, 2))]  # fmt: skip
        lines.append(f"| {name} | {row['seeds']} | {' | '.join(cells)} | {row['train_seconds']['mean']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (what is not done yet), then write the table and figures; :return: the exit code"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="returnn_ls_out/g2p_sweep")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8, help="attention model: epochs (a quarter of the words)")
    parser.add_argument("--ctc-epochs", type=int, default=1, help="CTC model: epochs (all the words)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--backend", default=None, help="default: the configs' backend")
    parser.add_argument("--train-seqs", type=int, default=None, help="train on this many words (a quick check)")
    parser.add_argument("--test-seqs", type=int, default=None, help="score this many test words (a quick check)")
    parser.add_argument("--only", nargs="*", default=None, help="variants to run (default: all)")
    parser.add_argument("--plot-only", action="store_true", help="only collect finished runs and plot")
    parser.add_argument("--table", default=os.path.join(ROOT, "demos", "figures", "g2p_sweep.json"))
    args = parser.parse_args(argv)
    args.argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--plot-only"]
    unknown = sorted(set(args.only or ()) - set(VARIANTS))
    if unknown:
        parser.error(f"--only: unknown variant {unknown[0]!r}; the variants: {', '.join(VARIANTS)}")
    if not args.plot_only:
        jobs = [(v, s) for s in range(args.seeds) for v in (args.only or VARIANTS)]
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda job: _run(*job, args), jobs):
                print(line, flush=True)
    table = collect(args)
    with open(args.table, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
    for path in plot_sweep(table, args.table):
        print("wrote", path)
    print(markdown_table(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
