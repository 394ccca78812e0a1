"""``returnn-ls bench``: time and peak memory of label-smoothed cross entropy, ours against the frameworks'.

The runner (:mod:`returnn_ls.bench.runner`) starts one subprocess per case; the cases themselves are in
:mod:`returnn_ls.bench.cases`, the table and plot in :mod:`returnn_ls.bench.report`.
"""

from returnn_ls.bench.report import format_table, plot
from returnn_ls.bench.runner import add_bench_parser, main, run_bench

__all__ = ["add_bench_parser", "format_table", "main", "plot", "run_bench"]
