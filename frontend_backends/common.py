"""Helpers shared by the backends and the frontend: names, dtype lists and the dtype lattice, each exactly once."""

from __future__ import annotations

__all__ = ["DTYPE_LATTICE", "ENV_VAR", "FLOAT_DTYPES", "compute_dtype_name", "result_dtype"]

#: The environment variable that selects a backend when none is selected in code or on the command line.
ENV_VAR = "RETURNN_LS_BACKEND"

#: The floating-point dtypes, by name, from the narrowest to the widest.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def compute_dtype_name(dtype: str) -> str:
    """:return: the dtype losses accumulate in: float64 for float64 input, else float32 (half precision too)"""
    return "float64" if dtype == "float64" else "float32"


#: The type-promotion lattice: each dtype with the dtypes directly above it. The result of an operation on
#: several dtypes is their least upper bound (:func:`result_dtype`). As in JAX and Keras: integers promote to any
#: float, ``float16`` and ``bfloat16`` meet in ``float32`` (neither holds the other's values), ``bool`` is below
#: every number.
DTYPE_LATTICE: dict[str, tuple[str, ...]] = {
    "bool": ("int32",),
    "int32": ("int64",),
    "int64": ("float16", "bfloat16"),
    "float16": ("float32",),
    "bfloat16": ("float32",),
    "float32": ("float64",),
    "float64": (),
}


def _upper_sets() -> dict[str, frozenset[str]]:
    """:return: each dtype of :data:`DTYPE_LATTICE` with every dtype at or above it"""
    out: dict[str, frozenset[str]] = {}

    def upper(dtype: str) -> frozenset[str]:
        if dtype not in out:
            out[dtype] = frozenset({dtype}).union(*(upper(parent) for parent in DTYPE_LATTICE[dtype]))
        return out[dtype]

    for dtype in DTYPE_LATTICE:
        upper(dtype)
    return out


_UPPER = _upper_sets()


def result_dtype(*dtypes: str) -> str:
    """:return: the dtype that operands of ``dtypes`` are promoted to: their least upper bound in
    :data:`DTYPE_LATTICE` (e.g. ``int32, int64 -> int64``; ``int64, float16 -> float16``;
    ``float16, bfloat16 -> float32``). Independent of the order of ``dtypes``.

    :raise ValueError: for no dtypes, or a dtype outside the lattice
    """
    unknown = sorted({d for d in dtypes if d not in _UPPER})
    if unknown or not dtypes:
        raise ValueError(f"result_dtype: dtypes must be some of {list(DTYPE_LATTICE)}, got {list(dtypes)}")
    common = frozenset.intersection(*(_UPPER[d] for d in dtypes))
    return next(d for d in DTYPE_LATTICE if _UPPER[d] == common)
