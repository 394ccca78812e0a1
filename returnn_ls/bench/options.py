"""The command-line options of ``returnn-ls bench`` (see :mod:`returnn_ls.bench.runner`); a bad value is a usage
error (exit 2)."""

from __future__ import annotations

import argparse

import frontend_backends
from frontend_backends.bench_base import DTYPES
from returnn_ls.bench import cases

__all__ = ["DEFAULT_VOCAB", "add_arguments"]

DEFAULT_VOCAB = (1000, 3000, 10000, 30000, 100000)


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``returnn-ls bench`` to ``parser``."""
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
    parser.add_argument("--backends", nargs="+", default=frontend_backends.available_backends(),
                        choices=frontend_backends.backend_names())  # fmt: skip
    parser.add_argument(
        "--mode",
        default="all",
        choices=cases.MODE_CHOICES,
        help="eager, compiled (torch.compile; tf.function and XLA) or all (default)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="where the inputs live and the steps run (default cpu; cuda: torch only)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="dtype of the inputs, drawn as float32 and cast (default float32)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        help=f"a subset of the cases (default: all but the optional {' '.join(cases.OPTIONAL_CASES)})",
    )
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
