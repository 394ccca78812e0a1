"""Seconds per epoch of RETURNN's own engine and of ``returnn-ls`` on the same config, in alternating rounds.

    python demos/engine_speed.py demo-tf-native-lstm2.12ax.config --epochs 3 --rounds 3
    python demos/engine_speed.py demo-torch.config --ls-config demo-torch-ls.config   # imports changed for returnn-ls

Each run is a subprocess. An epoch's time is RETURNN's ``Engine.train_epoch`` (train, checkpoint, dev) and
``returnn-ls``'s ``seconds`` in ``metrics.json`` (the same work). The first epoch also traces / initialises, so the
table shows it apart from the median of the later epochs. Prints the load average before each round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def returnn_worker(config: str, epochs: str, out: str) -> None:
    """Run RETURNN on ``config`` in this process and print the seconds of each epoch as JSON."""
    times: list[float] = []
    with open(config, encoding="utf-8") as f:
        torch_config = re.search(r"^backend\s*=\s*[\"']torch", f.read(), re.MULTILINE) is not None
    if torch_config:
        from returnn.torch.engine import Engine
    else:
        from returnn.tf.engine import Engine
    original = Engine.train_epoch

    def timed(self: Engine) -> None:
        start = time.perf_counter()
        original(self)
        times.append(time.perf_counter() - start)

    Engine.train_epoch = timed
    import returnn.__main__ as rnn

    argv = ["returnn", config, "++num_epochs", epochs, "++model", f"{out}/model", "++learning_rate_file", f"{out}/lr",
            "++log_verbosity", "2"]  # fmt: skip
    try:
        rnn.main(argv)
    except SystemExit:
        pass
    print("EPOCH_SECONDS " + json.dumps(times))


def _run_returnn(config: str, epochs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, __file__, "--returnn-worker", config, str(epochs), out],
                              capture_output=True, text=True, timeout=3600)  # fmt: skip
    line = next((x for x in proc.stdout.splitlines() if x.startswith("EPOCH_SECONDS ")), None)
    if line is None:
        raise RuntimeError(f"RETURNN failed on {config}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(line.split(" ", 1)[1])


def _run_ours(config: str, epochs: int, backend: str | None) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "returnn_ls", "train", config, "--out", out, "--no-progress",
                   "++num_epochs", str(epochs), "++model", f"{out}/model"]  # fmt: skip
        command += ["--backend", backend] if backend else []
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"returnn-ls failed on {config}:\n{proc.stderr[-3000:]}")
        with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
            return [h["seconds"] for h in json.load(f)["history"]]


def main() -> None:
    """Parse the command line and print the table."""
    if sys.argv[1:2] == ["--returnn-worker"]:
        returnn_worker(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a RETURNN config")
    parser.add_argument("--ls-config", help="the config for returnn-ls, if it differs (rf-style: imports changed)")
    parser.add_argument("--backend", help="--backend for returnn-ls")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[list[float]]] = {"RETURNN": [], "returnn-ls": []}
    for r in range(args.rounds):
        print(f"round {r + 1}: load average {os.getloadavg()}", flush=True)
        runs["RETURNN"].append(_run_returnn(args.config, args.epochs))
        runs["returnn-ls"].append(_run_ours(args.ls_config or args.config, args.epochs, args.backend))
    medians = {}
    for name, epochs in runs.items():
        first = statistics.median(e[0] for e in epochs)
        medians[name] = statistics.median(t for e in epochs for t in e[1:])
        print(f"{name:>10}: epoch 1 {first:.2f} s, later epochs median {medians[name]:.2f} s ({epochs})")
    print(f"ratio returnn-ls / RETURNN (later epochs): {medians['returnn-ls'] / medians['RETURNN']:.2f}")


if __name__ == "__main__":
    main()
