"""Decoders at RETURNN's paths (``rf.decoder.transformer``); the code is in :mod:`returnn_ls.nn`."""

from returnn_ls.decoder import transformer

__all__ = ["transformer"]
