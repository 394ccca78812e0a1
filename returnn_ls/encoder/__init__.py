"""Encoders at RETURNN's paths (``rf.encoder.conformer``, ``rf.encoder.transformer``); the code is in
:mod:`returnn_ls.nn`."""

from returnn_ls.encoder import conformer, transformer

__all__ = ["conformer", "transformer"]
