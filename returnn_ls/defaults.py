"""The default dtypes and the selected backend under RETURNN's names (``get_default_float_dtype``, ...,
``get_selected_backend``, ``is_executing_eagerly``).

The defaults are fixed here: float32 for floats, int32 for ints and array indices (RETURNN's defaults). RETURNN's
setters (``set_default_float_dtype``) are not offered, since the functions here create their tensors in these
dtypes whatever a setter would say.
"""

from __future__ import annotations

from returnn_ls._backend import get_backend_name, selected_backend

__all__ = [
    "get_default_array_index_dtype", "get_default_float_dtype", "get_default_int_dtype", "get_selected_backend",
    "is_executing_eagerly", "is_float_dtype",
]  # fmt: skip


def get_default_float_dtype() -> str:
    """:return: ``"float32"``, the dtype of new float tensors (parameters, ``rf.zeros``, random values)"""
    return "float32"


def get_default_int_dtype() -> str:
    """:return: ``"int32"``, the dtype of new integer tensors (``rf.range_over_dim``, sequence lengths)"""
    return "int32"


def get_default_array_index_dtype() -> str:
    """:return: the dtype of indices, as RETURNN the default int dtype (``"int32"``)"""
    return get_default_int_dtype()


def is_float_dtype(dtype: str) -> bool:
    """:return: whether ``dtype`` is a float dtype (``float16``/``32``/``64`` or ``bfloat16``: those that backprop)"""
    return dtype.startswith("float") or dtype.startswith("bfloat")


def get_selected_backend() -> str:
    """:return: the selected backend's name (RETURNN's name for :func:`returnn_ls.get_backend_name`)"""
    return get_backend_name()


def is_executing_eagerly() -> bool:
    """:return: whether the selected backend runs eagerly now (False inside TensorFlow's graph mode, e.g. in
    ``tf.function``; PyTorch is eager also under ``torch.compile``, as RETURNN says)"""
    return selected_backend().executing_eagerly()
