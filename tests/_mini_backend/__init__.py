"""A small, forward-only NumPy backend: the proof that a backend is one package plus one ``register_backend`` call.

Raw tensors are plain :class:`numpy.ndarray` s. Register it with
``register_backend("numpy_mini", BackendInfo("_mini_backend", framework="numpy", type_modules=()))``: with no type
modules of its own, numpy inputs go to whichever backend is selected, so select it (``rf.select_backend``) to use
it. See ``tests/test_backend_plug.py``.
"""

from __future__ import annotations

from _mini_backend.backend import MiniBackend as Backend
from _mini_backend.trainer import MiniTrainer as Trainer

__all__ = ["Backend", "Trainer"]
