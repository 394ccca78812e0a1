"""RETURNN-style configs: a Python file of top-level assignments, plus ``++name value`` overrides.

A config is code: loading one executes it with the full rights of the user running ``returnn-ls``, exactly as
RETURNN does. Only load configs you trust.

The names read, accepted quietly and rejected are listed in :mod:`returnn_ls.training.config_names`. The backend is
chosen by :func:`resolve_backend`: ``--backend`` > ``RETURNN_LS_BACKEND`` > ``backend =`` (or RETURNN's
``use_tensorflow = True``) in the config > an error.

While a config executes, ``os.getlogin()`` falls back to the user name of the process where there is no login
terminal (it raises ``OSError`` in containers and CI; RETURNN's ``demo-tf-contribrnn-lstm.12ax.config`` calls it).
"""

from __future__ import annotations

import ast
import contextlib
import getpass
import os
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import frontend_backends
from frontend_backends.common import ENV_VAR
from returnn_ls.training.config_names import KNOWN_NAMES, UNSUPPORTED, is_ignored, suggest, warn_once

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_VAR",
    "KNOWN_NAMES",
    "Config",
    "ConfigError",
    "load_config",
    "load_config_text",
    "parse_overrides",
    "resolve_backend",
    "suggest",
]

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

    def has(self, name: str) -> bool:
        """:return: whether the config (or a ``++`` override) sets ``name``"""
        return name in self.values

    def line_of(self, name: str, key: str | None = None) -> int | None:
        """:return: the line of ``name = ...`` or of the dict key ``key`` inside it (e.g. a network layer)"""
        return self._lines.get((name, key)) or self._lines.get((name, None))

    def error(self, message: str, name: str | None = None, key: str | None = None) -> ConfigError:
        """:return: a :class:`ConfigError` pointing at the definition of ``name`` (and ``key``) in the file"""
        return ConfigError(message, self.filename, self.line_of(name, key) if name else None)

    def replace(self, **values: Any) -> Config:
        """:return: a copy with some values replaced (``compare`` varies the network this way)"""
        return Config({**self.values, **values}, self.filename, self.source)


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


@contextlib.contextmanager
def _login_name_fallback() -> Iterator[None]:
    """Inside the block, ``os.getlogin()`` returns the process's user name where there is no login terminal."""
    original = os.getlogin

    def getlogin() -> str:
        try:
            return original()
        except OSError:
            return getpass.getuser()

    os.getlogin = getlogin
    try:
        yield
    finally:
        os.getlogin = original


def parse_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Split RETURNN's ``++name value`` pairs off a command line.

    Example: ``parse_overrides(["train", "a.config", "++num_epochs", "5"]) == (["train", "a.config"],
    [("num_epochs", "5")])``. As in RETURNN, a value written ``+-0.1`` means ``-0.1``.

    :return: the other arguments and the ``(name, value text)`` pairs
    :raise ConfigError: for a ``++name`` without a value
    """
    rest, pairs, i = [], [], 0
    while i < len(argv):
        if argv[i].startswith("++"):
            if i + 1 >= len(argv) or len(argv[i]) == 2:
                raise ConfigError(f"{argv[i]!r} needs a name and a value, e.g. ++num_epochs 5")
            value = argv[i + 1][1:] if argv[i + 1].startswith("+-") else argv[i + 1]
            pairs.append((argv[i][2:], value))
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return rest, pairs


def _override_value(text: str, previous: Any) -> Any:
    """:return: ``text`` as a Python literal where it parses, else the text (kept as text if the config's value is)"""
    if isinstance(previous, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_config_text(source: str, filename: str = "<config>", overrides: Sequence[tuple[str, str]] = ()) -> Config:
    """Execute config ``source`` (code!) and collect its top-level names; then apply ``++`` ``overrides``.

    Example: ``load_config_text("num_epochs = 2\n", "a.config", [("num_epochs", "5")]).get("num_epochs") == 5``

    :raise ConfigError: on a syntax error or an exception while executing (with the config's file and line), an
        unsupported RETURNN feature, or a task other than ``"train"``
    """
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"syntax error in config: {exc.msg}", filename, exc.lineno) from None
    namespace: dict[str, Any] = {"__file__": filename, "__name__": "__returnn_ls_config__"}
    try:
        with _login_name_fallback():
            exec(code, namespace)  # noqa: S102 - a config is code, as in RETURNN
    except Exception as exc:  # noqa: BLE001 - report any failure of user code with its line
        lineno = next((f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename), None)
        raise ConfigError(f"config raised {type(exc).__name__}: {exc}", filename, lineno) from exc
    values = {k: v for k, v in namespace.items() if not k.startswith("_") and type(v).__name__ != "module"}
    for name, text in overrides:
        # into the config's namespace too, as in RETURNN: the config's own functions (get_model, train_step) see
        # the overridden value
        values[name] = namespace[name] = _override_value(text, values.get(name))
    config = Config(values, filename, source)
    _check_names(config, {name for name, _ in overrides})
    return config


def _check_names(config: Config, overridden: set[str]) -> None:
    """Warn about names close to a known one; reject unsupported RETURNN features and tasks other than train."""
    for name, value in config.values.items():
        if name in UNSUPPORTED:
            neutral, why = UNSUPPORTED[name]
            if not any(value is n or (type(value) is type(n) and value == n) for n in neutral):
                raise config.error(f"{name} = {value!r}: {why}", name)
            continue
        if name in KNOWN_NAMES or is_ignored(name):
            continue
        if name not in overridden and (callable(value) or config.line_of(name) is None):
            continue  # the config's own functions and classes, and imported names (Dim, batch_dim, ...)
        if name in overridden and config.line_of(name) is not None:
            continue  # an override of the config's own setting (its functions read it)
        hint = suggest(name, KNOWN_NAMES, cutoff=0.8)  # a config's own helpers (num_layers, ...) are not typos
        if name in overridden:
            warn_once(f"++{name}: unknown config name {name!r} is ignored{hint}")
        elif hint:
            where = f"{config.filename}:{config.line_of(name)}" if config.line_of(name) else config.filename
            warn_once(f"{where}: unknown config name {name!r} is ignored{hint}")
    task = config.get("task")
    if task != "train":
        raise config.error(f"task = {task!r}: returnn-ls only trains; set task = 'train' (or leave it out)", "task")


def load_config(path: str | None, overrides: Sequence[tuple[str, str]] = ()) -> Config:
    """Load the config file ``path``, or the embedded :data:`DEFAULT_CONFIG` when ``path`` is None.

    Example: ``load_config("demos/frame_ce_softmax.config", [("num_epochs", "1")])``

    :raise ConfigError: if the file does not exist, cannot be read, or fails to execute
    """
    if path is None:
        return load_config_text(DEFAULT_CONFIG, "<default config>", overrides)
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path!r} (working directory {os.getcwd()!r})")
    if os.path.isdir(path):
        raise ConfigError(f"config path is a directory, not a file: {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", path) from None
    return load_config_text(source, path, overrides)


def _config_backend(config: Config | None) -> tuple[Any, str | None]:
    """:return: the backend the config asks for (``backend``, else ``use_tensorflow = True``) and its name"""
    if config is None:
        return None, None
    if config.values.get("backend") is not None:
        return config.values["backend"], "backend"
    for flag, backend in frontend_backends.config_flag_backends():
        if config.values.get(flag):
            return backend, flag
    return None, None


def resolve_backend(config: Config | None, cli_backend: str | None = None, environ: Any = None) -> str:
    """:return: the backend: ``cli_backend`` > ``$RETURNN_LS_BACKEND`` > the config's ``backend`` /
    ``use_tensorflow`` > error

    Example: ``resolve_backend(load_config_text("use_tensorflow = True\n"), None, {}) == "tensorflow"``

    :raise ConfigError: for an unknown backend name, or when none is given anywhere
    """
    environ = os.environ if environ is None else environ
    in_config, config_name = _config_backend(config)
    candidates = [
        (cli_backend, "the --backend option", None),
        (environ.get(ENV_VAR) or None, f"the environment variable {ENV_VAR}", None),
        (in_config, "the config", config_name),
    ]
    for value, origin, name in candidates:
        if value is None:
            continue
        names = frontend_backends.backend_names()
        if value not in names:
            message = f"unknown backend {value!r} from {origin}; choose one of {list(names)}"
            message += suggest(value, names)
            raise config.error(message, name) if (config and name) else ConfigError(message)
        return value
    where = config.filename if config else "the config"
    names = frontend_backends.backend_names()
    flags = "".join(f", or {flag} = True" for flag, _ in frontend_backends.config_flag_backends())
    raise ConfigError(
        f"no backend selected: put backend = {names[0]!r} (or one of {list(names[1:])}{flags}) into {where}, "
        f"set {ENV_VAR}={names[0]}, or pass --backend {names[0]}"
    )
