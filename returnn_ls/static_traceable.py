"""The static-traceable mode (as ``returnn.frontend``): ``with rf.set_static_traceable_ctx(): ...``.

Code run in this mode must have shapes that do not depend on the data, so that it can be captured once (a CUDA
graph, ``torch.compile`` without recompiling per batch) and replayed for every batch. Here this means: the padded
length of a dynamic dim (:meth:`returnn_ls.Dim.get_dim_value`) is its declared capacity, or the capacity of the dim
it is ``bounded_by`` (looked up when asked, so a capacity declared later counts); a dynamic dim with neither raises
an error instead of reading the largest size from the device (a value that would be baked into the captured graph
and be wrong for the next batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["is_static_traceable", "set_static_traceable", "set_static_traceable_ctx"]

_static_traceable = False


def is_static_traceable() -> bool:
    """:return: whether the static-traceable mode is on (see the module docstring)"""
    return _static_traceable


def set_static_traceable(flag: bool) -> None:
    """Switch the static-traceable mode on or off (see the module docstring).

    :param flag: True: on
    """
    global _static_traceable
    if not isinstance(flag, bool):
        raise TypeError(f"set_static_traceable: flag must be a bool, got {type(flag).__name__}")
    _static_traceable = flag


@contextlib.contextmanager
def set_static_traceable_ctx(flag: bool = True) -> Iterator[None]:
    """Switch the static-traceable mode to ``flag`` inside the ``with`` block; the previous mode after it.

    Example::

        time_dim.capacity = 100
        with rf.set_static_traceable_ctx():
            assert time_dim.get_dim_value() == 100  # no read of the sizes
    """
    old = _static_traceable
    set_static_traceable(flag)
    try:
        yield
    finally:
        set_static_traceable(old)
