"""``python -m returnn_ls``: the ``returnn-ls`` command."""

import sys

from returnn_ls.cli import main

sys.exit(main())
