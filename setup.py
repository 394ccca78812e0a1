"""Packaging of returnn-ls."""

from setuptools import find_packages, setup

setup(
    name="returnn-ls",
    version="0.1.0",
    description="RETURNN-style label smoothing with named dims on PyTorch or TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["returnn_ls", "returnn_ls.*", "frontend_backends", "frontend_backends.*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "tqdm>=4.60", "matplotlib>=3.7", "h5py>=3.8"],
    extras_require={
        "torch": ["torch>=2.1"],
        "tensorflow": ["tensorflow>=2.16"],
        "dev": ["pytest>=7", "hypothesis>=6.80", "ruff>=0.6", "triton>=3.2"],
    },
    entry_points={"console_scripts": ["returnn-ls=returnn_ls.cli:main"]},
)
