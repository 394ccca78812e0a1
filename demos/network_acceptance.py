"""Acceptance check (slow, not part of ``make test``): RETURNN's four 12AX network-dict demos, trained for 5 epochs
with ``returnn-ls train CONFIG ++num_epochs 5`` on each backend, reach a dev frame error of at most 1%; also with
``"loss_opts": {"label_smoothing": 0.1}`` added to their output layer (``--smoothing``).

    python demos/network_acceptance.py [--returnn-demos RETURNN/demos] [--backends torch tensorflow] [--smoothing]
    python demos/network_acceptance.py --demos demo-tf-native-lstm2.12ax.config --seeds 0 1 2 3   # the spread

With ``--returnn-demos`` it runs RETURNN's own demo files from a RETURNN checkout; without, configs with the same
assignments (``tests/_returnn_demos.py``). Each run is a subprocess with its own ``model`` prefix. Prints a table
(dev frame error per epoch, seconds per epoch) and exits with 1 if a run ends above the limit. With ``--seeds``
each run is repeated with ``++random_seed`` (initial parameters, data order, dropout masks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from _returnn_demos import DEMOS, demo_config_text  # noqa: E402 - the tests' folder is on the path now

LIMIT = 0.01
SMOOTHED = {"loss_opts": {"label_smoothing": 0.1}}


def _config(folder: str, name: str, returnn_demos: str | None, smoothing: bool) -> str:
    """:return: the path of the demo's config (RETURNN's file, or one with the same assignments)"""
    path = os.path.join(folder, name)
    if returnn_demos is None:
        text = demo_config_text(name, SMOOTHED if smoothing else None)
    else:  # RETURNN's own file, run as it is; the smoothing is added to its network afterwards
        original = os.path.abspath(os.path.join(returnn_demos, name))
        text = f"__file__ = {original!r}\nexec(compile(open(__file__).read(), __file__, 'exec'))\n"
        if smoothing:
            text += f"network['output'].update({SMOOTHED!r})\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def run(config: str, backend: str, epochs: int, folder: str, seed: int | None) -> list[dict]:
    """:return: ``metrics.json`` history of ``returnn-ls train config`` (a subprocess)"""
    command = [sys.executable, "-m", "returnn_ls", "train", config, "++num_epochs", str(epochs), "++model",
               os.path.join(folder, "model"), "--out", folder, "--no-progress", "--backend", backend]  # fmt: skip
    command += ["++random_seed", str(seed)] if seed is not None else []
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} on {backend} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)["history"]


def _report(label: str, backend: str, history: list[dict]) -> bool:
    """Print one line for a run; :return: whether its last dev error is within the limit"""
    errors = [h["dev_scores"]["error"] for h in history]
    seconds = sorted(h["seconds"] for h in history[1:]) or [history[0]["seconds"]]
    print(f"{label:<45} {backend:<10} dev error per epoch {[f'{100 * e:.2f}%' for e in errors]}, "
          f"median {seconds[len(seconds) // 2]:.2f} s per epoch (epoch 1: {history[0]['seconds']:.2f} s)",
          flush=True)  # fmt: skip
    return errors[-1] <= LIMIT


def main() -> int:
    """Run the demos and print the table; :return: the exit code"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returnn-demos", help="the demos/ folder of a RETURNN checkout (default: equivalent configs)")
    parser.add_argument("--backends", nargs="+", default=["torch", "tensorflow"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--smoothing", action="store_true", help="also with label_smoothing 0.1 on the output layer")
    parser.add_argument("--demos", nargs="+", default=list(DEMOS), choices=list(DEMOS), metavar="DEMO")
    parser.add_argument("--seeds", nargs="+", type=int, default=[None], help="++random_seed values (default: none)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}", flush=True)
    failed = []
    for smoothing in (False, True) if args.smoothing else (False,):
        for name in args.demos:
            for backend in args.backends:
                for seed in args.seeds:
                    label = f"{name}{' +ls0.1' if smoothing else ''}{'' if seed is None else f' seed {seed}'}"
                    with tempfile.TemporaryDirectory() as folder:
                        config = _config(folder, name, args.returnn_demos, smoothing)
                        history = run(config, backend, args.epochs, folder, seed)
                    if not _report(label, backend, history):
                        failed.append(label + f" on {backend}")
    print(f"load average {os.getloadavg()}")
    if failed:
        print(f"above {100 * LIMIT:g}% after {args.epochs} epochs: {failed}")
        return 1
    print(f"all runs at most {100 * LIMIT:g}% after {args.epochs} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
