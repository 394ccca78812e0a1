"""The training side of ``returnn-ls``: configs, datasets, network dicts, the training loop, metrics and plots.

It uses the public functions of :mod:`returnn_ls` like any user would.
"""
