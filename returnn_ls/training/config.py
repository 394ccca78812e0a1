"""RETURNN-style configs: a Python file of top-level assignments.

A config is code: loading one executes it with the full rights of the user running ``returnn-ls``, exactly as
RETURNN does. Only load configs you trust.

The names read are listed in :data:`KNOWN_NAMES` (see API.md section 4). The backend is chosen by
:func:`resolve_backend`: ``--backend`` > ``RETURNN_LS_BACKEND`` > ``backend =`` in the config > an error.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
import traceback
from typing import Any

from frontend_backends import BACKEND_NAMES
from frontend_backends.common import ENV_VAR

__all__ = ["DEFAULT_CONFIG", "Config", "ConfigError", "load_config", "load_config_text", "resolve_backend"]

#: Top-level names a config may set, with their defaults (None: required).
KNOWN_NAMES: dict[str, Any] = {
    "backend": None,
    "extern_data": None,
    "train": None,
    "dev": None,
    "network": None,
    "num_epochs": 3,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "seed": 0,
}

#: The config ``returnn-ls`` trains when none is given: frame-level CE with RETURNN's softmax output layer.
DEFAULT_CONFIG = """\
# The embedded default config of returnn-ls: frame-level cross entropy with RETURNN's softmax output layer.
# A small training set and a wide network overfit quickly, which makes the unsmoothed model overconfident.
backend = "torch"
extern_data = {"data": {"dim": 16}, "classes": {"dim": 8, "sparse": True}, "alignment": {"dim": 8, "sparse": True}}
train = {"class": "synthetic", "num_seqs": 48, "seed": 1, "noise": 1.6}
dev = {"class": "synthetic", "num_seqs": 64, "seed": 2, "noise": 1.6}
num_epochs = 20
batch_size = 8
learning_rate = 3e-3
network = {
    "enc1": {"class": "linear", "from": "data", "n_out": 256, "activation": "relu"},
    "enc2": {"class": "linear", "from": "enc1", "n_out": 256, "activation": "relu"},
    "output": {"class": "softmax", "from": "enc2", "target": "alignment", "loss": "ce",
               "loss_opts": {"label_smoothing": 0.1}},
}
"""


class ConfigError(Exception):
    """A bad config or bad input: the message names the file and line where there is one."""

    def __init__(self, message: str, filename: str | None = None, lineno: int | None = None):
        self.message, self.filename, self.lineno = message, filename, lineno
        where = f"{filename}:{lineno}: " if filename and lineno else (f"{filename}: " if filename else "")
        super().__init__(where + message)


def suggest(name: str, known: Any) -> str:
    """:return: ``"; did you mean 'x'?"`` for the closest of ``known``, or ``""``"""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Config:
    """The values of a loaded config, plus where its names and network layers are defined (for messages)."""

    def __init__(self, values: dict[str, Any], filename: str, source: str):
        self.values = values
        self.filename = filename
        self.source = source
        self._lines = _definition_lines(source)

    def get(self, name: str, default: Any = None) -> Any:
        """:return: the config value ``name``, else ``KNOWN_NAMES[name]``, else ``default``"""
        if name in self.values:
            return self.values[name]
        return KNOWN_NAMES.get(name) if KNOWN_NAMES.get(name) is not None else default

    def line_of(self, name: str, key: str | None = None) -> int | None:
        """:return: the line of ``name = ...`` or of the dict key ``key`` inside it (e.g. a network layer)"""
        return self._lines.get((name, key)) or self._lines.get((name, None))

    def error(self, message: str, name: str | None = None, key: str | None = None) -> ConfigError:
        """:return: a :class:`ConfigError` pointing at the definition of ``name`` (and ``key``) in the file"""
        return ConfigError(message, self.filename, self.line_of(name, key) if name else None)


def _definition_lines(source: str) -> dict[tuple[str, str | None], int]:
    """:return: ``(name, None) -> line`` for top-level assignments, ``(name, key) -> line`` for their dict keys"""
    lines: dict[tuple[str, str | None], int] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return lines
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                lines[(target.id, None)] = node.lineno
                if isinstance(node.value, ast.Dict):
                    for key in node.value.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            lines[(target.id, key.value)] = key.lineno
    return lines


def load_config_text(source: str, filename: str = "<config>") -> Config:
    """Execute config ``source`` (code!) and collect its top-level names.

    :raise ConfigError: on a syntax error or an exception while executing, with the config's file and line
    """
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"syntax error in config: {exc.msg}", filename, exc.lineno) from None
    namespace: dict[str, Any] = {"__file__": filename, "__name__": "__returnn_ls_config__"}
    try:
        exec(code, namespace)  # noqa: S102 - a config is code, as in RETURNN
    except Exception as exc:  # noqa: BLE001 - report any failure of user code with its line
        lineno = next((f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename), None)
        raise ConfigError(f"config raised {type(exc).__name__}: {exc}", filename, lineno) from exc
    values = {k: v for k, v in namespace.items() if not k.startswith("_") and not callable(v)}
    values = {k: v for k, v in values.items() if type(v).__name__ != "module"}
    config = Config(values, filename, source)
    _warn_unknown_names(config)
    return config


def _warn_unknown_names(config: Config) -> None:
    """Warn about top-level names that look like a misspelled known name (``num_epoch`` for ``num_epochs``)."""
    for name in config.values:
        if name in KNOWN_NAMES:
            continue
        hint = suggest(name, KNOWN_NAMES)
        if hint:
            where = f"{config.filename}:{config.line_of(name)}" if config.line_of(name) else config.filename
            print(f"returnn-ls: warning: {where}: unknown config name {name!r} is ignored{hint}", file=sys.stderr)


def load_config(path: str | None) -> Config:
    """Load the config file ``path``, or the embedded :data:`DEFAULT_CONFIG` when ``path`` is None.

    :raise ConfigError: if the file does not exist, cannot be read, or fails to execute
    """
    if path is None:
        return load_config_text(DEFAULT_CONFIG, "<default config>")
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path!r} (working directory {os.getcwd()!r})")
    if os.path.isdir(path):
        raise ConfigError(f"config path is a directory, not a file: {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", path) from None
    return load_config_text(source, path)


def resolve_backend(config: Config | None, cli_backend: str | None = None, environ: Any = None) -> str:
    """:return: the backend: ``cli_backend`` > ``$RETURNN_LS_BACKEND`` > the config's ``backend`` > error

    :raise ConfigError: for an unknown backend name, or when none is given anywhere
    """
    environ = os.environ if environ is None else environ
    candidates = [
        (cli_backend, "the --backend option", None),
        (environ.get(ENV_VAR) or None, f"the environment variable {ENV_VAR}", None),
        (config.values.get("backend") if config else None, "the config", "backend"),
    ]
    for value, origin, name in candidates:
        if value is None:
            continue
        if value not in BACKEND_NAMES:
            message = f"unknown backend {value!r} from {origin}; choose one of {list(BACKEND_NAMES)}"
            message += suggest(value, BACKEND_NAMES)
            raise config.error(message, name) if (config and name) else ConfigError(message)
        return value
    where = config.filename if config else "the config"
    raise ConfigError(
        f'no backend selected: put backend = "torch" (or "tensorflow") into {where}, '
        f"set {ENV_VAR}=torch, or pass --backend torch"
    )
