"""``python -m returnn_ls.bench``: the benchmark (also the worker entry point of its subprocesses)."""

import sys

from returnn_ls.bench.runner import main

sys.exit(main())
