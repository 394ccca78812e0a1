"""Helpers shared by the backends and the frontend: names and dtype lists that exist exactly once."""

from __future__ import annotations

__all__ = ["ENV_VAR", "FLOAT_DTYPES", "compute_dtype_name"]

#: The environment variable that selects a backend when none is selected in code or on the command line.
ENV_VAR = "RETURNN_LS_BACKEND"

#: The floating-point dtypes, by name, from the narrowest to the widest.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def compute_dtype_name(dtype: str) -> str:
    """:return: the dtype losses accumulate in: float64 for float64 input, else float32 (half precision too)"""
    return "float64" if dtype == "float64" else "float32"
