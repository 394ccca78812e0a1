"""The ``returnn-ls`` command (also ``python -m returnn_ls``).

``returnn-ls train CONFIG [++name value ...] [--backend B] [--out DIR] [--no-progress]``: ``++name value``
overrides a config name as in RETURNN (the value read as a Python literal where it parses, else as a string).

``returnn-ls --version`` prints the version.

Before training starts, ``--out``, the config's ``model`` prefix and its ``learning_rate_file`` are checked to be
writable.

Exit codes: 0 success; 1 a bad config or bad input, training stopped on a non-finite loss, an output that could
not be written after an epoch (e.g. a full disk; the previous checkpoint stays usable), or a missing optional
package (the message names the pip extra) (one message, which names file and line where there is one); 2 a usage
error (unknown option, bad option value, an output path that cannot be written: argparse's convention);
130 interrupted (Ctrl-C; the checkpoints of the finished epochs remain).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import frontend_backends
from returnn_ls import __version__
from returnn_ls._optional import MissingExtraError
from returnn_ls.training.config import (
    Config,
    ConfigError,
    load_config,
    load_config_text,
    parse_overrides,
    resolve_backend,
)
from returnn_ls.training.outputs import OutputPathError, check_outputs
from returnn_ls.training.run_state import OutputWriteError

__all__ = ["main"]

DEFAULT_OUT = "returnn_ls_out"
DEFAULT_SMOOTHING = (0.0, 0.1, 0.2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _smoothing(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a float in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a smoothing value must be in [0, 1), got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="returnn-ls", description="Train RETURNN-style configs with label smoothing on PyTorch or TensorFlow."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,compare,bench}")
    train = sub.add_parser(
        "train", help="train a config (the embedded default config if none is given); ++name value overrides a name"
    )
    compare = sub.add_parser("compare", help="train once per label-smoothing value and plot the runs side by side")
    for p in (train, compare):
        p.add_argument("config", nargs="?", help="a config file (Python assignments; a config is code)")
        p.add_argument("--backend", choices=frontend_backends.backend_names(),
                       help="overrides RETURNN_LS_BACKEND and the config")  # fmt: skip
        p.add_argument("--epochs", type=_positive_int, help="overrides num_epochs of the config")
        p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--init-model", help="start from this model.npz (saved by either backend)")
    compare.add_argument("--smoothing", type=_smoothing, nargs="+", default=list(DEFAULT_SMOOTHING),
                         help="the label-smoothing values to compare (default: 0 0.1 0.2)")  # fmt: skip
    from returnn_ls.bench import add_bench_parser

    add_bench_parser(sub)
    return parser


#: The top-level name that ``compare`` varies in an rf-style config (its ``train_step`` reads it).
RF_SMOOTHING_NAME = "label_smoothing"


def _compare_variant(config: Config, value: float, overrides: Sequence[tuple[str, str]]) -> Config:
    """:return: ``config`` with every label-smoothing option of its network dict set to ``value``, or (rf-style) the
    config executed again with ``label_smoothing = value`` set after its own code

    :raise ConfigError: saying what ``compare`` needs if there is nothing to vary
    """
    from returnn_ls.training.network import replace_smoothing

    network = config.get("network")
    if isinstance(network, dict):
        if replace_smoothing(network, 0.0)[1] == 0:
            raise config.error("compare: the network has no label-smoothing option to vary", "network")
        return config.replace(network=replace_smoothing(network, value)[0])
    if network is None and (config.has("get_model") or config.has("train_step")):
        current = config.values.get(RF_SMOOTHING_NAME)
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            raise ConfigError(
                f"compare: this rf-style config (get_model/train_step, no network dict) must define a top-level "
                f"number {RF_SMOOTHING_NAME} = ... that its train_step passes on (e.g. "
                f"rf.label_smoothed_cross_entropy(..., smoothing={RF_SMOOTHING_NAME})); compare sets it to each "
                f"--smoothing value; got {current!r}",
                config.filename,
            )
        # set after the config's own code ran, as a ++ override is (its functions read the name when they run)
        source = f"{config.source.rstrip()}\n{RF_SMOOTHING_NAME} = {value!r}\n"
        return load_config_text(source, config.filename, overrides)
    raise config.error("compare: the config needs a network dict with a label-smoothing option, or get_model and "
                       "train_step with a top-level label_smoothing number", "network")  # fmt: skip


def run_compare(config: Config, args: argparse.Namespace, backend: str) -> list[dict]:
    """Train ``config`` once per value of ``args.smoothing``; write ``compare.png`` and ``compare.json``.

    Network dicts: every label-smoothing option of the network is set to the value. rf-style configs: the config's
    top-level number ``label_smoothing`` is set to it (the config is executed again, so its ``train_step`` sees it).
    """
    from returnn_ls.training import plots
    from returnn_ls.training.train import train, write_json

    overrides = getattr(args, "overrides", [])
    _compare_variant(config, args.smoothing[0], overrides)  # fails before any training if there is nothing to vary
    runs = []
    for value in args.smoothing:
        print(f"== label smoothing {value:g} ==", flush=True)
        out = os.path.join(args.out, f"smoothing_{value:g}")
        variant = _compare_variant(config, value, overrides)
        # each run gets its own checkpoints (next to the config's own `model` prefix if it sets one, as RETURNN's
        # demos do), so a rerun resumes each one and no run continues from another one's checkpoint
        model = f"{config.get('model')}.smoothing_{value:g}" if config.has("model") else os.path.join(out, "model")
        variant = variant.replace(model=model)
        runs.append(train(variant, backend=backend, out_dir=out, epochs=args.epochs, progress=not args.no_progress,
                          extra={"smoothing": value}))  # fmt: skip
    plots.compare_figure(runs, os.path.join(args.out, "compare.png"))
    summary = {"backend": backend, "config": config.filename, "runs": runs}
    write_json(os.path.join(args.out, "compare.json"), summary)
    print(f"wrote {os.path.join(args.out, 'compare.png')} and compare.json")
    return runs


def _bench(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``returnn-ls bench``; :return: the exit code (1 when an optional package it needs is missing)"""
    from returnn_ls.bench import run_bench

    args.argv = argv
    try:
        run_bench(args)
    except MissingExtraError as exc:
        print(f"returnn-ls: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _train_or_compare(args: argparse.Namespace) -> None:
    """Load the config, check the outputs, then train it (``train``) or run the comparison (``compare``)."""
    config = load_config(args.config, args.overrides)
    backend = resolve_backend(config, args.backend)
    check_outputs(config, args.out)
    if args.command == "compare":
        run_compare(config, args, backend)
        return
    from returnn_ls.training.train import train

    train(config, backend=backend, out_dir=args.out, epochs=args.epochs, init_model=args.init_model,
          progress=not args.no_progress)  # fmt: skip
    if os.environ.get("RANK", "0") == "0":  # data-parallel workers other than rank 0 write nothing
        print(f"wrote {os.path.join(args.out, 'metrics.json')}, model.npz and plots")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``).

    :return: the exit code (argparse usage errors exit with 2 via SystemExit)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, overrides = parse_overrides(argv) if argv[:1] in (["train"], ["compare"]) else (argv, [])
    except ConfigError as exc:
        print(f"returnn-ls: error: {exc}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    args.overrides = overrides
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices drown the metrics lines
    if args.command == "bench":
        return _bench(args, argv[1:])
    try:
        _train_or_compare(args)
        return 0
    except OutputPathError as exc:
        print(f"returnn-ls: error: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, FloatingPointError, OutputWriteError, MissingExtraError) as exc:
        print(f"returnn-ls: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("returnn-ls: interrupted; run the same command again to resume after the last checkpoint",
              file=sys.stderr)  # fmt: skip
        return 130
